"""benchmarks/train_experiment.py and its modules on the CPU: the held-out set is fixed before any model is scored
(tasks whose reference cannot run are skipped with the reason), the intervals and the criteria; the training itself
runs on the device (docs/benchmarks.md section 7)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tritonrl.tasks.loader import builtin_task, load_task

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import experiment_eval  # noqa: E402 - scripts of benchmarks/, importable from there
import experiment_run  # noqa: E402
import train_experiment  # noqa: E402

BROKEN = """
import torch
import torch.nn as nn


class Model(nn.Module):
    def forward(self, x):
        return x.view(size, -1) @ torch.ones(3, 3)  # the reference itself fails: 4 * 64 elements are not 3 per row


size = 64


def get_inputs():
    return [torch.randn(size, 4)]


def get_init_inputs():
    return []
"""


def test_held_out_tasks_whose_reference_fails_are_skipped_before_any_model_is_scored():
    cfg = experiment_eval.eval_config(experiment_run.parser().parse_args(["--device", "cpu"]))
    broken = load_task(BROKEN, task_id="broken_reference")
    tasks = [broken, builtin_task("relu"), builtin_task("softmax")]
    kept, excluded = experiment_eval.verifiable(tasks, 1, cfg)
    assert [t.task_id for t in kept] == ["relu"]
    assert list(excluded) == ["broken_reference"] and "reference" in excluded["broken_reference"]


def test_bootstrap_interval_brackets_the_mean():
    mean, lo, hi = experiment_eval.bootstrap_ci([0.0, 0.0, 1.0, 1.0, 0.5])
    assert lo <= mean == 0.5 <= hi and lo < hi
    assert experiment_eval.bootstrap_ci([]) == (0.0, 0.0, 0.0)


def test_criteria_are_not_run_where_a_phase_is_missing():
    def row(model, p1, lo, hi):
        return {"model": model, "pass@1": p1, "pass@1_ci": [lo, hi]}

    only_sft = train_experiment.criteria([row("untrained", 0.0, 0.0, 0.0), row("sft", 0.3, 0.1, 0.5)])
    assert list(only_sft.values()) == [True, None]
    rows = [row("untrained", 0.0, 0.0, 0.0), row("sft", 0.3, 0.1, 0.5), row("sft+grpo", 0.5, 0.3, 0.7),
            row("sft+more-sft (control)", 0.3, 0.2, 0.4)]  # fmt: skip
    both = train_experiment.criteria(rows)
    assert list(both.values()) == [True, True]


def test_resume_keeps_finished_phases_and_their_evaluations(tmp_path):
    args = experiment_run.parser().parse_args(["--out", str(tmp_path), "--device", "cpu", "--smoke", "--resume"])
    experiment_run.setup_args(args)
    first = experiment_run.Run(args, tmp_path)  # no results.json yet: nothing to keep
    assert first.prior is None and not first.done("init")
    row = {"model": "sft", "pass@1": 0.5}
    first.results["phases"]["init"] = {"seconds": 1.0}
    first.results["phases"]["sft"] = {"seconds": 2.0}
    first.results["phases"]["grpo"] = {"error": "RuntimeError('x')"}
    first.results["eval"] = [row]
    first.results["eval_train"] = [dict(row, tasks=1)]
    first.save()
    (tmp_path / "init").mkdir()
    (tmp_path / "init" / "config.json").write_text("{}")
    again = experiment_run.Run(args, tmp_path)
    assert again.done("init", tmp_path / "init") and again.results["phases"]["init"] == {"seconds": 1.0}
    assert not again.done("sft", tmp_path / "sft")  # its model is gone: train it again
    assert not again.done("grpo")  # failed before: run it again
    assert again.evaluate("sft", tmp_path / "sft") == row  # kept, not scored again
    assert again.results["eval_train"] == [dict(row, tasks=1)]
    data = json.loads(again.path.read_text())
    data["phases"]["data"]["held_out"] = ["another/task"]
    again.path.write_text(json.dumps(data))
    with pytest.raises(SystemExit, match="other tasks"):
        experiment_run.Run(args, tmp_path)


def test_the_grpo_budget_ends_training_only_at_the_end_of_a_generation_round():
    from types import SimpleNamespace

    stop = experiment_run.StopAfter(1e-9, every=4)  # the budget is spent at once
    stop.on_train_begin(None, None, None)
    for step, expected in ((1, False), (3, False), (4, True)):
        control = SimpleNamespace(should_training_stop=False)
        stop.on_step_end(None, SimpleNamespace(global_step=step), control)
        assert control.should_training_stop is expected, step  # steps 2-4 reuse step 1's generation: nearly free


def test_a_grpo_part_and_its_control_part_join_into_one_table():
    def part(rows, phases, held_out=("t1",)):
        evals = [{"model": m, "pass@1": p, "pass@1_ci": [p - 0.1, p + 0.1]} for m, p in rows]
        return {"phases": {"data": {"held_out": list(held_out)}, **phases}, "eval": evals}

    grpo = part([("sft", 0.2), ("sft+grpo", 0.5)], {"grpo": {"steps": 8}})
    control = part([("sft", 0.2), ("sft+more-sft (control)", 0.25)], {"control": {"steps": 600}})
    joined = train_experiment.join([grpo, control])
    assert [e["model"] for e in joined["eval"]] == ["sft", "sft+grpo", "sft+more-sft (control)"]
    assert joined["phases"]["control"] == {"steps": 600} and joined["phases"]["grpo"] == {"steps": 8}
    assert joined["criteria"]["C2 GRPO beyond the control's half-width"] is True
    # SFT scored in a third folder: the table keeps its order whichever part scored which model
    three = train_experiment.join([part([("sft+grpo", 0.5)], {}), part([("sft+more-sft (control)", 0.25)], {}),
                                   part([("sft", 0.2)], {})])  # fmt: skip
    assert [e["model"] for e in three["eval"]] == ["sft", "sft+grpo", "sft+more-sft (control)"]
    with pytest.raises(SystemExit, match="differ in held-out tasks"):
        train_experiment.join([grpo, part([], {}, held_out=("t2",))])


def test_the_table_of_a_greedy_run_names_its_column_and_counts_outcomes_most_frequent_first():
    row = {"model": "sft", "pass@1": 0.25, "pass@1_ci": [0.0, 0.5], "outcomes": {"passed": 1, "parse/bad_signature": 3},
           "generation": {"mean_tokens": 1220.4, "at_limit_frac": 0.125}}  # fmt: skip
    results = {"args": {"k": 1, "temperature": 0.0}, "eval": [row], "eval_train": [{**row, "pass@1": 0.5}],
               "criteria": {"C2 GRPO beyond the control's half-width": False}}  # fmt: skip
    lines = train_experiment.table(results).splitlines()
    assert lines[0] == "| model | pass@1 (greedy) [95% CI] | outcomes | tokens per answer (at the limit) |"
    assert lines[2] == "| sft | 0.250 [0.000, 0.500] | 3 parse/bad_signature, 1 passed | 1220 (12%) |"
    assert "On training tasks (in distribution):" in lines and lines[-2].startswith("| sft | 0.500 [0.000, 0.500] |")
    assert lines[-1] == "C2 GRPO beyond the control's half-width: not met"


def test_greedy_evaluation_takes_one_answer_per_task():
    args = experiment_run.parser().parse_args(["--out", "x", "--temperature", "0", "--k", "4"])
    with pytest.raises(SystemExit, match="--k must be 1"):
        experiment_run.setup_args(args)


def test_answer_tokens_counts_the_reference_answers_against_the_generation_limit(tiny_model_dir, caplog):
    args = experiment_run.parser().parse_args(["--out", "x", "--max-new-tokens", "8", "--max-length", "64"])
    relu = builtin_task("relu")
    pairs = [("relu", "short"), ("relu", "a much longer answer " * 20)]
    out = experiment_eval.answer_tokens(tiny_model_dir, args, [("train", [relu], pairs)])
    assert out["train"]["answers"] == 2 and out["train"]["over_max_new_tokens"] == 1
    assert out["train"]["max"] > 8 and out["train"]["longest_prompt"] > 0
    assert "1 of 2 reference answers exceed --max-new-tokens 8" in caplog.text
    assert "exceed --max-length 64: SFT cuts them" in caplog.text


def test_a_control_beside_grpo_needs_its_steps(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["train_experiment.py", "--out", "x", "--skip-grpo"])
    with pytest.raises(SystemExit):
        train_experiment.main()
    assert "--skip-grpo needs --control-steps N" in capsys.readouterr().err


def test_fresh_held_in_tasks_are_new_instances_of_training_compositions():
    from tritonrl.data.splits import SplitConfig, op_pairs
    from tritonrl.data.suites import load_suite

    args = experiment_run.parser().parse_args(["--tasks", "300", "--held-in", "fresh"])
    train = load_suite("fusion:300:0", splits=SplitConfig(by="op-pair", seed=args.seed)).only("train")
    fresh = experiment_run.seen_compositions(args, train)
    seen = set().union(*(op_pairs(e.op_chain()) for e in train.entries))
    train_sources = {e.task.source for e in train.entries}
    assert len(fresh) >= 50  # most generated chains recombine pairs that training has
    assert not {t.task_id for t in fresh} & {e.task_id for e in train.entries}
    assert not {t.source for t in fresh} & train_sources
    regenerated = {e.task_id: e for e in load_suite("fusion:300:1").entries}
    assert all(op_pairs(regenerated[t.task_id].op_chain()) <= seen for t in fresh)


def test_sft_training_can_end_before_its_evaluation_and_resume_without_it(tmp_path, monkeypatch):
    # the device call's order: SFT trains, then GRPO, its control and SFT's evaluation run side by side in copies
    base = ["train_experiment.py", "--out", str(tmp_path), "--device", "cpu", "--smoke", "--skip-untrained"]
    monkeypatch.setattr(sys, "argv", [*base, "--stop-after", "sft-train"])
    assert train_experiment.main() == 0
    first = json.loads((tmp_path / "results.json").read_text())
    assert "sft" in first["phases"] and first["eval"] == []
    monkeypatch.setattr(sys, "argv", [*base, "--resume", "--stop-after", "sft", "--skip-sft-eval"])
    assert train_experiment.main() == 0
    again = json.loads((tmp_path / "results.json").read_text())
    assert again["phases"]["sft"] == first["phases"]["sft"] and again["eval"] == []  # kept, and not scored here


def test_the_plot_sets_held_out_beside_in_distribution_scores_and_marks_what_was_not_scored(tmp_path):
    def ev(model, p):
        return {"model": model, "pass@1": p, "pass@1_ci": [max(0.0, p - 0.2), p + 0.2]}

    results = {
        "args": {"held_in": "fresh", "sft_steps": 400},
        "phases": {"sft": {"held_out_nll": [{"step": 100, "held_out_nll": 0.2}]}},
        "eval": [ev("sft", 0.0), ev("sft+grpo", 0.0)],
        "eval_train": [ev("sft", 0.25)],  # GRPO's in-distribution evaluation was cut
    }
    groups = train_experiment.plot_groups(results)
    assert [label for label, _ in groups] == ["held-out tasks", "fresh tasks, seen compositions"]
    assert set(groups[1][1]) == {"sft"}
    pytest.importorskip("matplotlib")
    assert train_experiment.plot(results, tmp_path / "r.png") == f"plot: {tmp_path / 'r.png'}"
    assert (tmp_path / "r.png").stat().st_size > 1000
    nothing_scored = {**results, "eval": [], "eval_train": []}  # a run that stopped after SFT's training
    assert train_experiment.plot(nothing_scored, tmp_path / "e.png") == f"plot: {tmp_path / 'e.png'}"
