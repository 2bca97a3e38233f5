"""cli/main.py: `main(argv)` called directly (no subprocess): exit codes, the one-object JSON output, `tasks`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tritonrl.cli.common import EXIT_ERROR, EXIT_OK, EXIT_REJECTED
from tritonrl.cli.main import main
from tritonrl.tasks.loader import builtin_task, builtin_tasks

ROOT = Path(__file__).resolve().parents[2]
TORCH_FALLBACK = ROOT / "src/tritonrl/tasks/builtin/examples/relu/torch_fallback.py"
KERNELBOOK = ROOT / "tests/fixtures/kernelbook/sample.jsonl"
BUILTIN_IDS = ["cumsum", "layernorm", "leaky_relu", "linear_bias_relu", "matmul", "relu", "rmsnorm", "row_sum",
               "softmax", "vector_add"]  # fmt: skip


@pytest.fixture(scope="module")
def relu_solution() -> str:
    return builtin_task("relu").solution_path


def test_verify_json_prints_exactly_one_object_and_returns_ok(capsys, relu_solution):
    code = main(["verify", "relu", relu_solution, "--device", "cpu", "--json"])
    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert len(out.strip().splitlines()) == 1
    verdict = json.loads(out)
    assert {"passed", "stage", "failure", "message", "checks"} <= verdict.keys()
    assert verdict["passed"] is True and verdict["stage"] == "done" and verdict["failure"] is None


def test_verify_rejected_candidate_returns_rejected(capsys):
    code = main(["verify", "relu", str(TORCH_FALLBACK), "--device", "cpu", "--json"])
    verdict = json.loads(capsys.readouterr().out)
    assert code == EXIT_REJECTED
    assert verdict["passed"] is False
    assert (verdict["stage"], verdict["failure"]) == ("provenance", "torch_compute")


def test_verify_several_candidates_uses_the_batch_path(capsys, relu_solution):
    code = main(["verify", "relu", relu_solution, str(TORCH_FALLBACK), "--device", "cpu", "--jobs", "2", "--json"])
    verdicts = json.loads(capsys.readouterr().out)
    assert code == EXIT_REJECTED  # one of them is rejected
    assert [v["passed"] for v in verdicts] == [True, False]
    assert verdicts[1]["failure"] == "torch_compute"


def test_verify_nonexistent_reference_file_returns_error(capsys, relu_solution, tmp_path):
    missing = tmp_path / "no_such_reference.py"
    code = main(["verify", str(missing), relu_solution, "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == EXIT_ERROR
    assert "no_such_reference.py" in err and "neither a file nor a built-in task id" in err


def test_verify_unknown_builtin_task_returns_error_listing_the_tasks(capsys, relu_solution):
    code = main(["verify", "no_such_task", relu_solution, "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == EXIT_ERROR
    assert "no_such_task" in err and "relu" in err


def test_verify_nonexistent_candidate_returns_error_as_json(capsys, tmp_path):
    code = main(["verify", "relu", str(tmp_path / "missing.py"), "--device", "cpu", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == EXIT_ERROR
    assert out["error"] == "FileNotFoundError" and "missing.py" in out["message"]


def test_tasks_list_lists_the_builtin_tasks(capsys):
    assert main(["tasks", "list"]) == EXIT_OK
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == BUILTIN_IDS == [t.task_id for t in builtin_tasks()]


def test_tasks_list_shows_level_split_and_difficulty(capsys):
    assert main(["tasks", "list", "--suite", "builtin"]) == EXIT_OK
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("linear_bias_relu"))
    assert row.split()[1:4] == ["L2", "train", "medium"]


def test_tasks_list_of_kernelbook_reports_skipped_rows(capsys):
    assert main(["tasks", "list", "--suite", f"kernelbook:{KERNELBOOK}"]) == EXIT_OK
    captured = capsys.readouterr()
    assert "kernelbook/101_ShiftedReLU" in captured.out and "skipped kernelbook/106_Attention" in captured.err


def test_tasks_curate_json_reports_a_status_per_solution(tmp_path, capsys):
    rows = [line for line in KERNELBOOK.read_text().splitlines() if json.loads(line)["uuid"] in (106, 107, 108)]
    (tmp_path / "rows.jsonl").write_text("\n".join(rows) + "\n")
    argv = ["tasks", "curate", "--suite", f"kernelbook:{tmp_path / 'rows.jsonl'}", "--device", "cpu", "--json"]
    assert main([*argv, "--cache", str(tmp_path / "v.sqlite")]) == EXIT_OK
    statuses = {r["task_id"]: r["status"] for r in json.loads(capsys.readouterr().out)}
    assert statuses == {"kernelbook/107_ErfGELU": "needs_gpu", "kernelbook/108_RowNorm": "blocked"}
    assert (tmp_path / "v.sqlite").is_file()  # the SQLite backend, by suffix
    assert main([*argv, "--cache", str(tmp_path / "v.txt")]) == 2
    assert json.loads(capsys.readouterr().out)["error"] == "ConfigError"  # --json: the error is a JSON object


def test_tasks_export_writes_rows_and_a_manifest(tmp_path, capsys):
    folder = tmp_path / "tasks"
    folder.mkdir()
    for name in ("relu", "softmax"):
        (folder / f"{name}.py").write_text(builtin_task(name).source)
    out = tmp_path / "out"
    assert main(["tasks", "export", str(folder), "--out", str(out), "--device", "cpu", "--json"]) == EXIT_OK
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["counts"]["rl"]["total"] == 2 and manifest["counts"]["sft"]["total"] == 0  # no solutions
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert main(["tasks", "list", "--suite", str(out)]) == EXIT_OK  # the export is a suite
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["relu", "softmax"]


def test_tasks_export_bad_split_fractions_is_a_usage_error(tmp_path, capsys):
    code = main(["tasks", "export", "builtin", "--out", str(tmp_path), "--split-fractions", "1,1", "--json"])
    assert code == EXIT_ERROR and "three numbers" in json.loads(capsys.readouterr().out)["message"]


def test_tasks_show_prints_the_source(capsys):
    assert main(["tasks", "show", "relu"]) == EXIT_OK
    assert builtin_task("relu").source.strip() in capsys.readouterr().out


def test_tasks_show_unknown_task_returns_error(capsys):
    assert main(["tasks", "show", "no_such_task"]) == EXIT_ERROR
    assert "no_such_task" in capsys.readouterr().err


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["no_such_command"])
    assert exc.value.code == 2


def test_timing_flags_reach_the_verify_config():
    from tritonrl.cli.common import verify_config
    from tritonrl.cli.main import build_parser

    args = build_parser().parse_args(["verify", "relu", "x.py", "--device", "cuda"])
    cfg = verify_config(args)
    assert cfg.times and not cfg.compile_baseline  # off unless asked: a first verify never compiles the reference
    args = build_parser().parse_args(["verify", "relu", "x.py", "--device", "cuda", "--compile-baseline"])
    assert verify_config(args).compile_baseline
    args = build_parser().parse_args(["eval", "--candidates", "c", "--run", "r", "--device", "cuda"])
    assert verify_config(args).compile_baseline  # reports carry fast_p over torch.compile
    args = build_parser().parse_args(["eval", "--candidates", "c", "--run", "r", "--no-compile-baseline"])
    assert not verify_config(args).compile_baseline
    args = build_parser().parse_args(["verify", "relu", "x.py", "--device", "cuda", "--no-timing"])
    assert not verify_config(args).times


def test_verify_replay_draws_the_recorded_cases_again(capsys, tmp_path):
    """`--replay VERDICT.json` reuses the recorded seeds: the same cases, the same errors, the same verdict."""
    wrong = ROOT / "tests/fixtures/candidates/softmax/running_max_from_zero.py"
    assert main(["verify", "softmax", str(wrong), "--device", "cpu", "--json"]) == EXIT_REJECTED
    first = json.loads(capsys.readouterr().out)
    recorded = tmp_path / "verdict.json"
    recorded.write_text(json.dumps(first))
    assert main(["verify", "softmax", str(wrong), "--device", "cpu", "--json", "--replay", str(recorded)]) == 1
    again = json.loads(capsys.readouterr().out)

    def cases(verdict: dict) -> list:
        return [(c["case"], c["seed"], c["stats"]["n_mismatch"], c["stats"]["max_abs_err"]) for c in verdict["checks"]]

    assert (again["stage"], again["failure"], again["message"]) == (first["stage"], first["failure"], first["message"])
    assert cases(again) == cases(first) and again["extra"]["seeds"] == first["extra"]["seeds"]
    other = dict(first, extra={"seeds": {"base": {"init": 1}}})  # a verdict of another configuration
    recorded.write_text(json.dumps(other))
    assert main(["verify", "softmax", str(wrong), "--device", "cpu", "--replay", str(recorded)]) == EXIT_ERROR
    assert "recorded seeds have no base/" in capsys.readouterr().err


def test_verify_cache_answers_a_candidate_judged_before(capsys, tmp_path):
    """`--cache v.sqlite`: the second run answers with the stored verdict (planted: no verification gives it)."""
    import sqlite3

    escape = str(TORCH_FALLBACK.parent / "sandbox_escape.py")
    cache = tmp_path / "v.sqlite"
    assert main(["verify", "relu", escape, "--device", "cpu", "--json", "--cache", str(cache)]) == EXIT_REJECTED
    first = json.loads(capsys.readouterr().out)
    with sqlite3.connect(cache) as conn:
        (stored,) = conn.execute("SELECT verdict_json FROM verdict_cache").fetchone()
        planted = dict(json.loads(stored), message="answered by the cache")
        conn.execute("UPDATE verdict_cache SET verdict_json = ?", (json.dumps(planted),))
    assert main(["verify", "relu", escape, "--device", "cpu", "--json", "--cache", str(cache)]) == EXIT_REJECTED
    again = json.loads(capsys.readouterr().out)
    assert (again["stage"], again["failure"]) == (first["stage"], first["failure"])
    assert again["message"] == "answered by the cache" != first["message"]
    assert main(["verify", "relu", escape, "--cache", str(tmp_path / "v.txt")]) == EXIT_ERROR
    assert "suffix" in capsys.readouterr().err
