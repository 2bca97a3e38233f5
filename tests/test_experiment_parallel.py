"""benchmarks/experiment_parallel.py: `train_experiment.py --parallel` runs SFT once, then GRPO beside the other
evaluations and the control as two processes, and joins them; a deadline cuts the parts still running and the join
keeps what they finished."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import experiment_parallel  # noqa: E402 - scripts of benchmarks/, importable from there
import train_experiment  # noqa: E402

SCRIPT = Path(train_experiment.__file__).resolve()

# A part's program for the process tests: writes its pid, then sleeps as long as its --sleep-s says.
SLEEPER = """
import os, sys, time
out = sys.argv[sys.argv.index("--out") + 1]
open(os.path.join(out, "pid"), "w").write(str(os.getpid()))
print("step 1 of 3", flush=True)
print("Tokenizing: 10%\\rTokenizing: 100%", flush=True)
time.sleep(float(sys.argv[sys.argv.index("--sleep-s") + 1]))
sys.exit(int(sys.argv[sys.argv.index("--exit") + 1]))
"""


def test_parts_inherit_the_command_line_without_the_flags_set_per_part():
    argv = ["--out", "runs/x", "--device=cuda", "--jobs", "14", "--parallel", "--deadline-s=560", "--resume",
            "--control-steps", "200", "--sft-steps", "400", "--skip-untrained"]  # fmt: skip
    assert experiment_parallel.inherited(argv) == ["--device=cuda", "--sft-steps", "400", "--skip-untrained"]


def test_grpo_gets_most_of_the_workers_and_each_part_at_least_one():
    assert experiment_parallel.split_jobs(14) == (8, 6)
    assert experiment_parallel.split_jobs(1) == (1, 1)


def test_a_part_past_the_deadline_is_ended_with_its_process_group_and_the_others_are_kept(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(experiment_parallel, "PROGRESS_S", 1.0)
    caplog.set_level("INFO", logger="train_experiment")
    script = tmp_path / "sleeper.py"
    script.write_text(SLEEPER)
    quick = experiment_parallel.Part("quick", tmp_path / "quick", ("--sleep-s", "0", "--exit", "3"))
    slow = experiment_parallel.Part("slow", tmp_path / "slow", ("--sleep-s", "600", "--exit", "0"))
    t0 = time.monotonic()
    ends = experiment_parallel.run_parts(script, [], [quick, slow], deadline=time.monotonic() + 4)
    assert time.monotonic() - t0 < 4 + 2 * experiment_parallel.TERM_GRACE_S
    assert [(e.name, e.returncode, e.cut) for e in ends] == [("quick", 3, False), ("slow", None, True)]
    pid = int((tmp_path / "slow" / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # ended, not left running on the machine
    assert ends[1].log_path == tmp_path / "slow" / "part.log"
    # while it ran, the slow part was reported with its log's last state (a progress bar's last rewrite)
    assert "part slow running" in caplog.text and "Tokenizing: 100%" in caplog.text


def test_the_parallel_mode_refuses_flags_it_sets_itself(monkeypatch, capsys):
    for extra, message in (
        (["--skip-grpo"], "cannot take --skip-grpo"),
        ([], "--parallel needs --control-steps N"),
        (["--control-steps", "5", "--deadline-s", "-1"], "--deadline-s -1 is negative"),
    ):
        monkeypatch.setattr(sys, "argv", ["train_experiment.py", "--out", "x", "--parallel", *extra])
        with pytest.raises(SystemExit):
            train_experiment.main()
        assert message in capsys.readouterr().err
    monkeypatch.setattr(sys, "argv", ["train_experiment.py", "--out", "x", "--deadline-s", "60"])
    with pytest.raises(SystemExit):
        train_experiment.main()
    assert "applies to --parallel runs only" in capsys.readouterr().err


def test_the_whole_experiment_runs_as_parts_and_joins_into_one_table(tmp_path, monkeypatch, capsys):
    out = tmp_path / "exp"
    argv = ["--out", str(out), "--device", "cpu", "--smoke", "--parallel", "--control-steps", "1", "--jobs", "2",
            "--deadline-s", "900"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["train_experiment.py", *argv])
    assert train_experiment.main() == 0
    results = json.loads((out / "results.json").read_text())
    assert [e["model"] for e in results["eval"]] == list(train_experiment.MODEL_ORDER)
    assert {"data", "init", "sft", "grpo", "control"} <= set(results["phases"])
    parts = results["parallel"]["parts"]
    assert list(parts) == ["base", "grpo", "control", "floor"] and all(p["exit"] == 0 for p in parts.values())
    # the parts trained from base's SFT model: linked, not trained again
    assert (out / "grpo-part" / "sft").resolve() == (out / "base" / "sft").resolve()
    assert "| sft+grpo |" in capsys.readouterr().out and (out / "results.png").exists()


def test_a_part_folder_links_the_sft_model_and_keeps_its_own_results_on_a_rerun(tmp_path):
    base, part = tmp_path / "base", tmp_path / "grpo-part"
    for model in ("init", "sft"):
        (base / model).mkdir(parents=True)
        (base / model / "config.json").write_text("{}")
    (base / "results.json").write_text('{"phases": {"sft": {}}}')
    experiment_parallel.fork_folder(base, part)
    assert (part / "sft" / "config.json").exists() and (part / "sft").is_symlink()
    assert json.loads((part / "results.json").read_text()) == {"phases": {"sft": {}}}
    (part / "results.json").write_text('{"phases": {"sft": {}, "grpo": {}}}')  # what a cut first run finished
    experiment_parallel.fork_folder(base, part)  # the same command again
    assert "grpo" in json.loads((part / "results.json").read_text())["phases"]
