"""Best-of-N expert iteration: real verification picks the correct sample, and a fine-tuning step runs on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")

from tritonrl.errors import ConfigError  # noqa: E402
from tritonrl.rewards.client import VerifierClient  # noqa: E402
from tritonrl.tasks.loader import builtin_task  # noqa: E402
from tritonrl.train.best_of_n import Scored, run_best_of_n, top_k  # noqa: E402
from tritonrl.train.config import preset, to_verify_config  # noqa: E402
from tritonrl.train.settings import LoraSettings, TrainSettings  # noqa: E402
from tritonrl.verify.config import VerifyConfig  # noqa: E402

GARBAGE = "```python\nclass ModelNew:\n    pass  # no kernel, wrong signature\n```"


class StubGenerator:
    """Returns the bundled relu solution and a garbage answer, in that order, for any task."""

    name = "stub"

    def __init__(self, correct: str) -> None:
        self.correct = correct
        self.calls: list[tuple[str, int]] = []

    def generate(self, task, k: int) -> list[str]:
        self.calls.append((task.task_id, k))
        return [self.correct, GARBAGE][:k]


@pytest.mark.slow
def test_best_of_n_keeps_the_verified_sample_and_fine_tunes(tiny_model_dir, tmp_path, lora_snapshot):
    relu = builtin_task("relu")
    solution = Path(relu.solution_path).read_text()
    stub = StubGenerator(solution)
    verify_cfg = to_verify_config(preset("baseline"), VerifyConfig(device="cpu"))
    with VerifierClient({relu.task_id: relu}, verify_cfg) as client:
        result = run_best_of_n(
            tiny_model_dir, [relu], tmp_path / "bon", preset("baseline"),
            TrainSettings(rounds=1, n=2, k=1, steps=2, learning_rate=1e-2),
            lora=LoraSettings(r=4, alpha=8), generator_factory=lambda path: stub, client=client,
            callbacks=[lora_snapshot],
        )  # fmt: skip
        assert client.n_submitted == 2  # both samples went through the real verifier
    assert stub.calls == [("relu", 2)]
    assert [s.completion for s in result.kept] == [solution]
    (row,) = result.rounds
    assert row["n_samples"] == 2 and row["correct_frac"] == 0.5 and row["n_kept"] == 1 and row["trained"]
    # Fine-tuning updated every LoRA weight (2 steps: B starts at 0, so A only moves from step 2 on).
    assert lora_snapshot.before and lora_snapshot.unchanged() == []
    stats = json.loads((Path(result.out_dir) / "best_of_n.json").read_text())
    assert stats["rounds"][0]["per_task"]["relu"] == {"n": 2, "n_correct": 1, "kept": 1, "best_reward": 1.0}
    assert result.model_path == str(tmp_path / "bon" / "model")  # the last round's merged model: OUT/model
    assert all((Path(result.model_path) / f).is_file() for f in ("config.json", "tokenizer.json"))


def _scored(completion: str, reward: float = 1.0) -> Scored:
    return Scored("relu", completion, True, reward, "done", None)


def test_top_k_keeps_distinct_kernels_only():
    code = "```python\nclass ModelNew:\n    def forward(self, x):\n        return x\n```"
    same = "Plan: the same kernel, reformatted.\n```python\nclass ModelNew:  # hi\n\n    def forward(self,x):\n" \
           "        return (x)\n```"  # fmt: skip
    other = "```python\nclass ModelNew:\n    def forward(self, x):\n        return x + 0\n```"
    kept = top_k([_scored(code), _scored(same), _scored(code), _scored(other)], 3)
    assert [s.completion for s in kept] == [code, other]  # 4 correct samples, 2 distinct kernels


def test_a_missing_base_fails_before_sampling(tmp_path):
    adapter = tmp_path / "grpo"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "../gone"}))
    calls = []
    with pytest.raises(ConfigError, match="gone"):
        run_best_of_n(str(adapter), [builtin_task("relu")], tmp_path / "bon", preset("baseline"),
                      TrainSettings(n=2, k=1), generator_factory=lambda path: calls.append(path))  # fmt: skip
    assert calls == []


class BatchStub(StubGenerator):
    """A generator that batches: records how many tasks each call got."""

    prompts_per_call = 2

    def generate_batch(self, tasks, k: int) -> list[list[str]]:
        self.calls.append((tuple(t.task_id for t in tasks), k))
        return [[GARBAGE] * k for _ in tasks]


def test_sampling_batches_several_prompts_per_call(tiny_model_dir, tmp_path):
    tasks = [builtin_task(t) for t in ("relu", "vector_add", "softmax")]
    stub = BatchStub("")
    verify_cfg = to_verify_config(preset("baseline"), VerifyConfig(device="cpu"))
    with VerifierClient({t.task_id: t for t in tasks}, verify_cfg, workers=1) as client:
        result = run_best_of_n(tiny_model_dir, tasks, tmp_path / "bon", preset("baseline"), TrainSettings(n=2, k=1),
                               generator_factory=lambda path: stub, client=client)  # fmt: skip
    assert stub.calls == [(("relu", "vector_add"), 2), (("softmax",), 2)]
    assert result.rounds[0]["n_samples"] == 6 and not result.rounds[0]["trained"]
