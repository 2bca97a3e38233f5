"""data/export.py: SFT/RL rows, JSONL + HF DatasetDict, manifest, verdict cache; the export is readable by
train/data.py and is itself a suite. Two solutions are verified for real (CPU interpreter); the rest is cheap."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from tritonrl.data.export import ExportConfig, export, load_export_suite
from tritonrl.data.splits import SPLITS, SplitConfig, split_of
from tritonrl.data.suites import load_suite, make_suite
from tritonrl.tasks.loader import builtin_task
from tritonrl.tasks.prompts import build_messages
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.extract import extract_code

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures/kernelbook/sample.jsonl"
CPU = VerifyConfig(device="cpu")


def _subset(spec: str, keep: set[str]):
    suite = load_suite(spec)
    return make_suite(suite.name, [e for e in suite.entries if e.task_id in keep], skipped=suite.skipped)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _all(out: Path, kind: str) -> list[dict]:
    return [row for split in SPLITS for row in _rows(out / kind / f"{split}.jsonl")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    suites = [_subset("builtin", {"relu", "vector_add"}),
              _subset(f"kernelbook:{SAMPLE}", {"kernelbook/107_ErfGELU", "kernelbook/108_RowNorm"})]  # fmt: skip
    formats = ("jsonl", "hf") if _has_datasets() else ("jsonl",)
    result = export(suites, ExportConfig(out=str(out), formats=formats), CPU)
    return out, result, suites


def _has_datasets() -> bool:
    try:
        import datasets  # noqa: F401
    except ImportError:
        return False
    return True


def test_files_and_manifest(exported):
    out, result, suites = exported
    for name in ("manifest.json", "curation.jsonl", "skipped.jsonl", "verdicts.jsonl"):
        assert (out / name).is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["name"] for s in manifest["suites"]] == ["builtin", "kernelbook:sample"]
    assert [s["version"] for s in manifest["suites"]] == [s.version for s in suites]
    assert manifest["generator_seed"] is None and manifest["splits"]["by"] == "family"
    assert manifest["counts"]["curation"] == {"blocked": 1, "needs_gpu": 1, "verified": 2}
    assert manifest["counts"]["rl"]["source"] == {"builtin": 2, "kernelbook": 2}
    assert manifest["counts"]["rl"]["total"] == result.n_rl == 4 and result.n_sft == 2
    assert sum(manifest["counts"]["rl"]["split"].values()) == 4
    assert manifest["counts"]["skipped"] == 2  # the sample's load failure and duplicate


def test_sft_rows_hold_only_verified_solutions_with_a_plan(exported):
    out, _, _ = exported
    rows = _all(out, "sft")
    assert sorted(r["task_id"] for r in rows) == ["relu", "vector_add"]
    for row in rows:
        task = builtin_task(row["task_id"])
        assert row["prompt"] == build_messages(task) and row["policy"] == "strict"
        assert row["completion"].startswith("Plan: ") and "Kernels: `" in row["completion"]
        code, _ = extract_code(row["completion"])
        assert code.strip() == Path(task.solution_path).read_text().strip()
        assert row["split"] == split_of(row["family"]) and row["source"] == "builtin"


def test_rl_rows_carry_reference_and_metadata(exported):
    out, _, _ = exported
    rows = {r["task_id"]: r for r in _all(out, "rl")}
    assert set(rows) == {"relu", "vector_add", "kernelbook/107_ErfGELU", "kernelbook/108_RowNorm"}
    relu = rows["relu"]
    assert relu["reference"] == builtin_task("relu").source and relu["level"] == 1
    assert {"task_id", "level", "source", "split", "difficulty", "family", "prompt"} <= set(relu)
    assert rows["kernelbook/108_RowNorm"]["label"] == "blocked"


def test_a_rerun_verifies_nothing_again(exported, tmp_path):
    out, _, suites = exported
    copy = tmp_path / "again"
    shutil.copytree(out, copy)
    again = export(suites, ExportConfig(out=str(copy)), CPU)
    assert again.manifest["verify"]["verified_now"] == 0 and again.manifest["verify"]["cache_hits"] == 2
    assert _all(copy, "sft") == _all(out, "sft")


def test_the_export_is_a_suite_with_its_splits(exported):
    out, _, _ = exported
    suite = load_export_suite(out)
    rows = {r["task_id"]: r for r in _all(out, "rl")}
    assert {e.task_id: e.split for e in suite.entries} == {i: r["split"] for i, r in rows.items()}
    assert suite.entries[0].task.constants  # roles survive the round trip
    for split in SPLITS:
        assert {e.task_id for e in load_suite(f"{out}@{split}").entries} == {
            i for i, r in rows.items() if r["split"] == split
        }


def test_train_data_reads_the_export(exported):
    pytest.importorskip("datasets")
    from tritonrl.train.data import export_dataset

    out, _, _ = exported
    split = _all(out, "sft")[0]["split"]
    sft = export_dataset(out, "sft", split)
    assert set(sft["task_id"]) == {r["task_id"] for r in _rows(out / "sft" / f"{split}.jsonl")}
    assert sft[0]["completion"][0]["role"] == "assistant"
    rl = export_dataset(out, "rl", split)
    assert set(rl["task_id"]) == {r["task_id"] for r in _rows(out / "rl" / f"{split}.jsonl")}


def test_hf_dataset_dicts_are_saved(exported):
    datasets = pytest.importorskip("datasets")
    out, _, _ = exported
    rl = datasets.load_from_disk(str(out / "hf" / "rl"))
    assert set(rl) <= set(SPLITS) and sum(len(rl[s]) for s in rl) == 4
    columns = set(rl[next(iter(rl))].column_names)
    assert {"task_id", "level", "source", "split", "difficulty", "family", "reference"} <= columns


def test_augmented_variants_share_their_familys_split_and_pass_rates_relabel(tmp_path):
    folder = tmp_path / "tasks"
    folder.mkdir()
    for name in ("relu", "softmax", "cumsum"):
        shutil.copy(builtin_task(name).path, folder / f"{name}.py")
    records = tmp_path / "records.jsonl"
    records.write_text("".join(json.dumps({"task_id": "relu", "passed": False}) + "\n" for _ in range(5)))
    cfg = ExportConfig(out=str(tmp_path / "out"), dtypes=("float16",), scales=(2.0,), pass_rates=str(records))
    result = export([load_suite(str(folder))], cfg, CPU)
    rows = _all(tmp_path / "out", "rl")
    by_family: dict[str, set[str]] = {}
    for row in rows:
        by_family.setdefault(row["family"], set()).add(row["split"])
    assert all(len(splits) == 1 for splits in by_family.values())
    assert {r["variant"] for r in rows} == {"", "float16", "x2"} and result.n_sft == 0
    assert next(r for r in rows if r["task_id"] == "relu")["difficulty"] == "hard"  # 0/5 passed


def test_op_pair_split_and_zero_shot_prompts_reach_the_rows_and_manifest(tmp_path):
    """Solutions are dropped so nothing is verified: this is about splits and prompts."""
    from tritonrl.data.splits import op_pairs

    fusion = load_suite("fusion:40:0")
    suite = make_suite("fusion", [dataclasses.replace(e, solution=None) for e in fusion.entries], seed=0)
    splits = SplitConfig(by="op-pair", fractions=(0.6, 0.2, 0.2))
    result = export([suite], ExportConfig(out=str(tmp_path), splits=splits, prompt="zero-shot"), CPU)
    manifest = result.manifest
    assert manifest["splits"]["by"] == "op-pair" and manifest["prompt"] == "zero-shot"
    held = {tuple(p) for pairs in manifest["splits"]["held_out_pairs"].values() for p in pairs}
    assert manifest["splits"]["held_out_pairs"]["test"] and held
    chains = {e.task_id: e.op_chain() for e in fusion.entries}
    train = [r for r in _all(tmp_path, "rl") if r["split"] == "train"]
    assert train and not any(op_pairs(chains[r["task_id"]]) & held for r in train)
    row = _all(tmp_path, "rl")[0]
    assert row["prompt"] == build_messages(next(e.task for e in fusion.entries if e.task_id == row["task_id"]),
                                           style="zero-shot")  # fmt: skip
    assert load_export_suite(tmp_path).counts("split") == manifest["counts"]["rl"]["split"]


def test_export_dataset_defaults_to_the_exports_prompt_style(tmp_path):
    pytest.importorskip("datasets")
    from tritonrl.train.data import export_dataset

    suite = _subset("builtin", {"relu", "softmax", "cumsum", "rmsnorm", "matmul"})
    suite = make_suite("builtin", [dataclasses.replace(e, solution=None) for e in suite.entries])
    export([suite], ExportConfig(out=str(tmp_path), prompt="zero-shot", splits=SplitConfig(fractions=(1, 0, 0))), CPU)
    rows = export_dataset(tmp_path, "rl", "train")
    assert rows[0]["prompt"] == build_messages(builtin_task(rows[0]["task_id"]), style="zero-shot")
    assert "Example." in export_dataset(tmp_path, "rl", "train", style="one-shot")[0]["prompt"][-1]["content"]


def test_cli_export_flags_reach_the_manifest(tmp_path, capsys):
    from tritonrl.cli.main import main

    folder = tmp_path / "tasks"
    folder.mkdir()
    for name in ("relu", "linear_bias_relu"):
        shutil.copy(builtin_task(name).path, folder / f"{name}.py")  # no solutions/: nothing to verify
    argv = ["tasks", "export", str(folder), "--out", str(tmp_path / "out"), "--split-by", "op-pair", "--prompt",
            "zero-shot", "--jobs", "3", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (manifest["splits"]["by"], manifest["prompt"]) == ("op-pair", "zero-shot")
    assert "op pairs held out of train" in capsys.readouterr().out
    assert main([*argv[:-4], "--jobs", "0", "--device", "cpu"]) == 2
    assert "jobs=0: must be >= 1" in capsys.readouterr().err


def test_bad_format_or_cache_suffix_is_a_config_error():
    from tritonrl.errors import ConfigError

    with pytest.raises(ConfigError, match="must be one of"):
        ExportConfig(out="x", formats=("csv",))
    with pytest.raises(ConfigError, match=r"verdict cache 'v\.txt': the suffix picks the backend"):
        ExportConfig(out="x", cache="v.txt")
    assert dataclasses.fields(ExportConfig)[0].metadata["help"]
