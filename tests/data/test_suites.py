"""tasks/suites.py: suite specs, names, versions, levels, splits, KernelBook and fusion suites."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonrl.data.splits import SPLITS
from tritonrl.data.suites import load_suite, resolve_suite
from tritonrl.errors import TaskError
from tritonrl.tasks.loader import builtin_task

KERNELBOOK = Path(__file__).resolve().parents[1] / "fixtures/kernelbook/sample.jsonl"


def test_builtin_suite_has_name_version_levels_and_splits():
    suite = load_suite("builtin")
    assert suite.name == "builtin" and len(suite.version) == 12
    assert {e.level for e in suite.entries} == {1, 2}
    assert all(e.split in SPLITS and e.family == e.task_id and e.solution for e in suite.entries)
    assert load_suite("builtin").version == suite.version  # same content, same version


def test_version_changes_with_the_content(tmp_path):
    path = tmp_path / "relu.py"
    path.write_text(builtin_task("relu").source)
    before = load_suite(str(tmp_path)).version
    path.write_text(path.read_text().replace("batch_size", "n_rows"))
    assert load_suite(str(tmp_path)).version != before


def test_split_suffix_keeps_one_split():
    suite = load_suite("builtin")
    for split in SPLITS:
        part = load_suite(f"builtin@{split}")
        assert [e.task_id for e in part.entries] == [e.task_id for e in suite.entries if e.split == split]


def test_kernelbook_suite_converts_dedups_and_labels():
    suite = load_suite(f"kernelbook:{KERNELBOOK}")
    assert suite.name == "kernelbook:sample"
    labels = {e.task_id: e.label for e in suite.entries}
    assert labels["kernelbook/104_TinyProjection"] == "partial_port"
    assert labels["kernelbook/108_RowNorm"] == "blocked"
    skipped = dict(suite.skipped)
    assert "no module-level class 'Attention'" in skipped["kernelbook/106_Attention"]
    assert skipped["kernelbook/109_ShiftedReLU"].startswith("duplicate of kernelbook/101_ShiftedReLU")
    assert dict(suite.entries[0].meta)["repo_name"] == "example-org/activations"


def test_unknown_spec_lists_the_accepted_forms():
    with pytest.raises(TaskError, match="kernelbook:SRC"):
        resolve_suite("no/such/folder")


def test_fusion_suite_uses_the_generator():
    pytest.importorskip("tritonrl.data.fusion.spec")
    suite = load_suite("fusion:3:7")
    assert suite.name == "fusion" and suite.seed == 7 and len(suite.entries) == 3
    assert all(e.level == 2 and e.origin == "fusion" and e.solution and e.family.startswith("fusion/")
               for e in suite.entries)  # fmt: skip
    assert [e.task_id for e in suite.entries] == [e.task_id for e in load_suite("fusion:3:7").entries]
