"""tasks/rows.py: rows from JSONL, JSON, parquet, a folder of them; clear errors for everything else."""

from __future__ import annotations

import json

import pytest

from tritonrl.data.sources.rows import read_rows
from tritonrl.errors import TaskError

ROWS = [{"code": "a", "level": 1}, {"code": "b", "level": 2}]


def test_jsonl_json_and_a_folder(tmp_path):
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS) + "\n")
    assert read_rows(tmp_path / "a.jsonl") == ROWS
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.json").write_text(json.dumps(ROWS))
    assert read_rows(tmp_path) == ROWS + ROWS  # files sorted by path, searched recursively


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "x.parquet")
    assert read_rows(tmp_path / "x.parquet", required=("code", "level")) == ROWS


def test_required_fields_are_named(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"code": "a"}) + "\n")
    with pytest.raises(TaskError, match=r"lack the fields \['level'\]"):
        read_rows(tmp_path / "a.jsonl", required=("code", "level"))


def test_unreadable_sources_raise_with_the_accepted_forms(tmp_path):
    with pytest.raises(TaskError, match="not a file, a folder or a hub dataset name"):
        read_rows(tmp_path / "missing.jsonl")
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(TaskError, match="bad.jsonl:1: not a JSON object"):
        read_rows(tmp_path / "bad.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TaskError, match="no .jsonl/.json/.parquet files"):
        read_rows(tmp_path / "empty")
