"""data/hf.py: datasets built from rows without pickling their state (the GPU image's dill could not)."""

from __future__ import annotations

import pytest

pytest.importorskip("datasets")

from datasets import Dataset  # noqa: E402
from datasets import fingerprint as fp  # noqa: E402

from tritonrl.data.hf import rows_dataset  # noqa: E402

ROWS = [
    {"prompt": [{"role": "user", "content": p}], "completion": [{"role": "assistant", "content": c}], "task_id": t}
    for p, c, t in (("p1", "c1", "a"), ("p2", "c2", "b"))
]


@pytest.fixture
def no_state_pickling(monkeypatch: pytest.MonkeyPatch) -> None:
    """The failure seen on the H100 image: hashing a dataset's state raises (PicklingError on MonthDayNano)."""

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("dill could not pickle the table's state")

    monkeypatch.setattr(fp.Hasher, "hash", broken)


def test_rows_dataset_matches_from_list() -> None:
    ours, theirs = rows_dataset(ROWS), Dataset.from_list(ROWS)
    assert ours.features == theirs.features
    assert ours.to_list() == theirs.to_list() == ROWS


def test_fingerprint_is_the_content() -> None:
    assert rows_dataset(ROWS)._fingerprint == rows_dataset([dict(r) for r in ROWS])._fingerprint
    assert rows_dataset(ROWS)._fingerprint != rows_dataset(ROWS[:1])._fingerprint


def test_no_pickling_where_from_list_fails(no_state_pickling: None) -> None:
    with pytest.raises(RuntimeError, match="could not pickle"):
        Dataset.from_list(ROWS)  # the reproduction: datasets' own constructor hashes the state
    assert len(rows_dataset(ROWS)) == 2


def test_training_datasets_need_no_pickling(no_state_pickling: None) -> None:
    from tritonrl.tasks.loader import builtin_task
    from tritonrl.train.data import rl_dataset, sft_dataset

    tasks = [builtin_task("relu"), builtin_task("softmax")]
    assert len(sft_dataset(tasks)) == 2
    assert rl_dataset(tasks)["task_id"] == ["relu", "softmax"]
