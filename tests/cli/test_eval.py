"""cli/eval.py: `tritonrl eval --model` asks the question the model was trained on (`--prompt`) and batches prompts
into each generate call (`--prompts-per-call`)."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from tritonrl.cli.eval import _eval_sources  # noqa: E402
from tritonrl.cli.main import build_parser  # noqa: E402
from tritonrl.tasks.prompts import render_prompt  # noqa: E402


def test_eval_model_takes_the_prompt_style_and_batch(tiny_model_dir):
    base = ["eval", "--suite", "builtin", "--tasks", "relu", "--model", tiny_model_dir, "--run", "unused"]
    args = build_parser().parse_args([*base, "--prompt", "zero-shot", "--prompts-per-call", "3"])
    tasks, _, gen, _ = _eval_sources(args)
    assert gen.sampling.prompts_per_call == 3
    prompt = render_prompt(tasks[0], gen.tokenizer)
    assert "class Model" in prompt and "vector_add" not in prompt.lower()  # no worked example in a zero-shot prompt
    one_shot = build_parser().parse_args(base)
    _eval_sources(one_shot)
    assert len(render_prompt(tasks[0], gen.tokenizer)) > len(prompt)
