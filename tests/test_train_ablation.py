"""benchmarks/train_ablation.py on the CPU: the grid's order (none, all four, each alone, then the rest) and its
table; the runs themselves are on the device (docs/benchmarks.md section 7)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(ROOT))  # the script imports its sibling experiment_run.py
spec = importlib.util.spec_from_file_location("train_ablation", ROOT / "train_ablation.py")
ablation = importlib.util.module_from_spec(spec)
sys.modules.setdefault("train_ablation", ablation)
spec.loader.exec_module(ablation)


def test_the_grid_runs_none_all_then_singles_then_the_rest():
    grid = ablation.grid()
    names = [ablation.name_of(c) for c in grid]
    assert len(grid) == 16 == len(set(names))
    assert names[0] == "none" and names[1] == "+".join(ablation.SEED_EXTENSIONS)
    assert sorted(names[2:6]) == sorted(ablation.SEED_EXTENSIONS)
    assert [sum(c.values()) for c in grid[6:]] == [2] * 6 + [3] * 4


def test_the_table_marks_each_configuration_and_says_what_did_not_run():
    def row(model, combo=None):
        outcomes = {"passed": 1, "parse/syntax_error": 3}
        return {"model": model, "pass@1": 0.25, "pass@1_ci": [0.0, 0.5], "pass@4": 0.5, "pass@4_ci": [0.0, 1.0],
                "outcomes": outcomes, **({"extensions": combo} if combo else {})}  # fmt: skip

    combo = dict.fromkeys(ablation.SEED_EXTENSIONS, False) | {"curriculum": True}
    staged = dict.fromkeys(ablation.SEED_EXTENSIONS, False) | {"staged_reward": True}
    results = {
        "args": {"k": 4},
        "eval": [row("sft"), row("curriculum", combo), row("staged_reward", staged)],
        "phases": {"grid-curriculum": {"steps": 3, "mean_reward_per_round": [0.1, 0.3],
                                       "compiled_frac_per_round": [0.5, 0.75], "correct_frac_per_round": [0.0, 0.25]},
                   "grid-staged_reward": {"steps": 2, "mean_reward_per_step": [0.4]},  # written before the rename
                   "grid-none": {"error": "RuntimeError('x')"}, "grid-multi_input": {"skipped": "budget"}},
    }  # fmt: skip
    text = ablation.table(results)
    assert "| sft (start, no GRPO) |" in text
    assert (
        "| curriculum | - | - | on | - | 3 | 0.100, 0.300 | 0.50/0.00 0.75/0.25 | 0.250 [0.000, 0.500] | "
        "0.500 [0.000, 1.000] | 3 parse/syntax_error, 1 passed |"
    ) in text
    assert "| staged_reward | - | on | - | - | 2 | 0.400 |  |" in text
    assert "failed: grid-none" in text and "not run (budget): grid-multi_input" in text


def test_a_greedy_run_has_one_score_column_named_greedy():
    results = {
        "args": {"k": 1, "temperature": 0.0},
        "eval": [{"model": "sft", "pass@1": 0.5, "pass@1_ci": [0.25, 0.75], "outcomes": {"passed": 2}}],
        "phases": {},
    }
    text = ablation.table(results)
    assert "| pass@1 (greedy) [95% CI] | held-out outcomes |" in text and "pass@1 [95% CI]" not in text
    assert text.splitlines()[2].endswith("| 0.500 [0.250, 0.750] | 2 passed |")


@pytest.mark.parametrize("reward", ["staged", "binary"])
def test_the_experiments_grpo_arm_stands_for_its_configuration_only_with_its_extensions_and_flags(tmp_path, reward):
    import json

    from experiment_run import Run, grpo_arm, parser, setup_args

    from tritonrl.train.config import preset

    GRPO_ARM = grpo_arm(reward)
    assert GRPO_ARM["staged_reward"] is (reward == "staged") and GRPO_ARM["multi_input"] and GRPO_ARM["curriculum"]
    args = parser().parse_args(["--out", str(tmp_path), "--device", "cpu", "--smoke", "--grpo-reward", reward])
    setup_args(args)
    run = Run(args, tmp_path, "ablation.json")
    row = {"model": "sft+grpo", "pass@1": 0.25}
    arm = list(preset("hardened", **GRPO_ARM).enabled)
    prior = {"args": dict(run.results["args"]), "phases": {"data": run.results["phases"]["data"],
             "grpo": {"seconds": 60.0, "steps": 4, "extensions": arm}}, "eval": [row]}  # fmt: skip
    (tmp_path / "results.json").write_text(json.dumps(prior))
    name = ablation.name_of(GRPO_ARM)
    assert ablation._from_experiment(run, set()) == {name}
    assert run.results["eval"][-1] == {"model": name, "pass@1": 0.25, "extensions": GRPO_ARM}
    assert run.results["phases"][f"grid-{name}"]["steps"] == 4

    for change in (
        {"args": {**prior["args"], "grpo_lr": 1.0}},  # trained otherwise: the grid trains its own
        {"args": {**prior["args"], "grpo_reward": "x"}},  # another reward
        {"phases": {**prior["phases"], "grpo": {**prior["phases"]["grpo"], "extensions": arm[:1]}}},
    ):
        (tmp_path / "results.json").write_text(json.dumps({**prior, **change}))
        assert ablation._from_experiment(Run(args, tmp_path, "ablation.json"), set()) == set()


def test_parts_of_one_grid_join_into_one_table_and_other_tasks_are_refused(tmp_path):
    import json

    import pytest

    off = dict.fromkeys(ablation.SEED_EXTENSIONS, False)

    def part(rows, held_out=("t1", "t2")):
        evals = [{"model": m, "pass@1": p, "pass@1_ci": [0, 1], "pass@4": p, "pass@4_ci": [0, 1],
                  **({"extensions": off} if m != "sft" else {})} for m, p in rows]  # fmt: skip
        grid = {f"grid-{m}": {"steps": 8} for m, _ in rows if m != "sft"}
        return {"args": {"k": 4}, "phases": {"data": {"held_out": list(held_out)}, **grid}, "eval": evals}

    a, b = part([("sft", 0.0), ("none", 0.25)]), part([("sft", 0.0), ("curriculum", 0.5), ("none", 0.75)])
    joined = ablation.join([a, b])
    assert [(e["model"], e["pass@1"]) for e in joined["eval"]] == [("sft", 0.0), ("none", 0.25), ("curriculum", 0.5)]
    assert joined["phases"]["grid-curriculum"] == {"steps": 8}
    with pytest.raises(SystemExit, match="differ in held-out tasks"):
        ablation.join([a, part([("sft", 0.0)], held_out=("t3",))])
    with pytest.raises(SystemExit, match="differ in k"):  # scored with other flags: its numbers do not compare
        ablation.join([a, {**b, "args": {"k": 8}}])
    files = []
    for i, p in enumerate((a, b)):
        files.append(tmp_path / f"part{i}.json")
        files[-1].write_text(json.dumps(p))
    sys.argv = ["train_ablation.py", "--out", str(tmp_path / "joined"), "--join", *map(str, files)]
    assert ablation.main() == 0
    assert len(json.loads((tmp_path / "joined" / "ablation.json").read_text())["eval"]) == 3
