"""Best-of-N expert iteration: real verification picks the correct sample, and a fine-tuning step runs on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")

from tritonrl.rewards.client import VerifierClient  # noqa: E402
from tritonrl.tasks.loader import builtin_task  # noqa: E402
from tritonrl.train.best_of_n import run_best_of_n  # noqa: E402
from tritonrl.train.config import LoraSettings, preset, to_verify_config  # noqa: E402
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
            tiny_model_dir, [relu], tmp_path / "bon", preset("baseline"), rounds=1, n=2, k=1, steps=2, lr=1e-2,
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
    assert (Path(result.model_path) / "config.json").is_file()  # the merged model the next round samples from
