"""Scripted rollouts (`--rollouts scripted`): solution and wrong answer alternate within every group."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tritonrl.errors import ConfigError
from tritonrl.tasks.loader import builtin_task, load_task
from tritonrl.tasks.prompts import build_messages
from tritonrl.train.data import solution_completion
from tritonrl.train.scripted import WRONG_ANSWER, ScriptedGenerator, scripted_rollout


def test_generator_alternates_solution_and_wrong_answer():
    relu = builtin_task("relu")
    assert ScriptedGenerator([relu]).generate(relu, 3) == [solution_completion(relu), WRONG_ANSWER,
                                                           solution_completion(relu)]  # fmt: skip


def test_tasks_without_a_solution_are_refused():
    bare = load_task("import torch\nclass Model(torch.nn.Module):\n    def forward(self, x):\n        return x\n\n"
                     "def get_inputs():\n    return [torch.randn(4)]\n\ndef get_init_inputs():\n    return []\n",
                     task_id="bare")  # fmt: skip
    with pytest.raises(ConfigError, match="bare"):
        ScriptedGenerator([bare])


def test_rollout_answers_each_prompt_with_its_own_task(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    relu, softmax = builtin_task("relu"), builtin_task("softmax")
    rollout = scripted_rollout([relu, softmax])
    prompts = [build_messages(softmax)] * 2 + [build_messages(relu)] * 2  # two groups of two
    out = rollout(prompts, SimpleNamespace(processing_class=tok))
    texts = [tok.decode(ids[:-1]) for ids in out["completion_ids"]]
    assert texts == [solution_completion(softmax), WRONG_ANSWER, solution_completion(relu), WRONG_ANSWER]
    assert all(ids[-1] == tok.eos_token_id for ids in out["completion_ids"])
    assert len(out["prompt_ids"]) == 4 and out["logprobs"] is None
    with pytest.raises(ConfigError, match="not a task prompt"):
        rollout([[{"role": "user", "content": "something else"}]], SimpleNamespace(processing_class=tok))
