"""tasks/kernelbench.py: a KernelBench checkout (levels 1-3 by default) and the HF row form, loaded unchanged."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tritonrl.data.suites import load_suite, resolve_suite
from tritonrl.errors import TaskError
from tritonrl.tasks.loader import builtin_task


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A KernelBench-shaped checkout: KernelBench/level{1,2,3,4}/<n>_<name>.py (builtin task files)."""
    for level, names in {1: ["relu", "softmax"], 2: ["linear_bias_relu"], 3: ["layernorm"], 4: ["matmul"]}.items():
        folder = tmp_path / "KernelBench" / f"level{level}"
        folder.mkdir(parents=True)
        for i, name in enumerate(names, 1):
            shutil.copy(builtin_task(name).path, folder / f"{i}_{name}.py")
    return tmp_path


def test_kernelbench_checkout_defaults_to_levels_1_to_3(checkout):
    ids = [t.task_id for t in resolve_suite(f"kernelbench:{checkout}")]
    assert ids == ["L1/1_relu", "L1/2_softmax", "L2/1_linear_bias_relu", "L3/1_layernorm"]
    assert [t.task_id for t in resolve_suite(f"kernelbench:{checkout}:4")] == ["L4/1_matmul"]
    assert [t.level for t in resolve_suite(f"kernelbench:{checkout}:1,3")] == [1, 1, 3]
    assert len(resolve_suite(str(checkout))) == 4  # a bare checkout path works too


def test_kernelbench_missing_level_names_the_levels_present(checkout):
    with pytest.raises(TaskError, match=r"levels present: \[1, 2, 3, 4\]"):
        resolve_suite(f"kernelbench:{checkout}:7")


def test_kernelbench_hf_rows_from_jsonl_and_parquet(tmp_path, checkout):
    rows = [{"code": p.read_text(), "level": int(p.parent.name[-1]), "name": p.stem.split("_", 1)[1],
             "problem_id": int(p.stem.split("_")[0])}
            for p in sorted((checkout / "KernelBench").glob("level*/*.py"))]  # fmt: skip
    (tmp_path / "kb.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    from_jsonl = resolve_suite(f"kernelbench-hf:{tmp_path / 'kb.jsonl'}")
    assert [t.task_id for t in from_jsonl] == [t.task_id for t in resolve_suite(f"kernelbench:{checkout}")]
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "kb.parquet")
    suite = load_suite(f"kernelbench-hf:{tmp_path / 'kb.parquet'}:2")
    assert suite.name == "kernelbench-hf" and [e.task_id for e in suite.entries] == ["L2/1_linear_bias_relu"]


def test_kernelbench_hf_rows_need_their_fields(tmp_path):
    (tmp_path / "bad.jsonl").write_text(json.dumps({"code": "x = 1\n"}) + "\n")
    with pytest.raises(TaskError, match="lack the fields"):
        resolve_suite(f"kernelbench-hf:{tmp_path / 'bad.jsonl'}")


@pytest.mark.skipif(not os.environ.get("KERNELBENCH_DIR"), reason="set KERNELBENCH_DIR to a KernelBench checkout")
def test_real_kernelbench_checkout_loads_250_problems_unchanged():
    root = Path(os.environ["KERNELBENCH_DIR"])
    suite = load_suite(f"kernelbench:{root}")
    assert suite.counts("level") == {"1": 100, "2": 100, "3": 50}
    for e in suite.entries:
        level, stem = e.task_id.split("/", 1)
        assert e.task.source == next(root.glob(f"**/level{level[1:]}/{stem}.py")).read_text()
