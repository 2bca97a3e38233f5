"""benchmarks/fusion_recall.py: the chain an answer declares, against the task's and the training set's pairs."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import fusion_recall  # noqa: E402 - a script of benchmarks/


def _solution(chain: str, dtype: str = "float16") -> str:
    # the template's first docstring sentence, wrapped as the generator wraps it
    return (
        f'"""Triton solution for a generated fusion task ({chain},\n{dtype}): one program per row."""\nimport torch\n'
    )


SOLUTIONS = {
    "train/a": _solution("LayerNorm -> Sigmoid"),
    "train/b": _solution("Linear -> HardSwish -> +bias"),
    "test/c": _solution("LayerNorm -> HardSwish"),
}
TRAIN = {"train/a", "train/b"}


def test_a_declared_chain_is_read_across_the_line_break():
    assert fusion_recall.declared_chain(SOLUTIONS["test/c"]) == (("LayerNorm", "HardSwish"), "float16")
    assert fusion_recall.declared_chain("```python\nimport torch\n```") is None


def test_recited_composition_vs_the_one_asked():
    samples = [
        {"task_id": "test/c", "passed": False, "stage": "correctness", "failure": "wrong_values",
         "text": "Plan: ...\n```python\n" + SOLUTIONS["train/a"] + "```"},
        {"task_id": "test/c", "passed": True, "stage": "done", "failure": None, "text": SOLUTIONS["test/c"]},
        {"task_id": "test/c", "passed": False, "stage": "extract", "failure": "no_code", "text": "no code"},
    ]  # fmt: skip
    rows = fusion_recall.recall_rows(samples, SOLUTIONS, TRAIN)
    recited, asked, none = rows
    assert recited["task_pairs_unseen"] == ["LayerNorm -> HardSwish"]
    assert (
        not recited["as_asked"]
        and recited["declared_pairs_unseen"] == []
        and recited["outcome"] == "correctness/wrong_values"
    )
    assert asked["as_asked"] and asked["declared_pairs_unseen"] == ["LayerNorm -> HardSwish"]
    assert none["declared_chain"] is None and not none["as_asked"]
    assert fusion_recall.summary(rows) == {
        "answers": 3, "declare_a_chain": 2, "as_asked": 1, "only_training_pairs": 1, "tasks_with_an_unseen_pair": 3,
        "passed": 1,
    }  # fmt: skip
