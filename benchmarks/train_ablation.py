"""The seed design's 2^4 ablation, at small scale: GRPO from one SFT model under each combination of the four seed
extensions, every result scored on the same held-out tasks by the hardened verifier.

    python benchmarks/train_ablation.py --out runs/experiment --device cuda --grpo-budget-s 45 --budget-s 500
    python benchmarks/train_ablation.py --out /tmp/exp --device cpu --smoke             # the plumbing, on a CPU
    python benchmarks/train_ablation.py --replot runs/experiment/ablation.json

The four switches are `multi_input`, `staged_reward`, `curriculum` and `calibrated_timing` (`train/config.py`); the
other flags stay at the `hardened` preset's values (edge-value testing and the strict sandbox on, the rest off), so
only the four differ between configurations. Configurations run in a fixed order until --budget-s is spent: none,
all four, each one alone, then the pairs and triples. `--out` is a `train_experiment.py` run folder with the same
data flags: its `sft/` model and its SFT evaluation are reused, and so are the configurations an earlier call of this
script scored from that model (a grid can take several device calls); without them this script trains and scores the
SFT model first. Writes `ablation.json` after every configuration, then the table and `ablation.png`.
Configurations without calibrated timing verify correctness only, so several can train at once as separate processes,
each in its own folder (holding a link to the same `sft/` and a copy of `results.json`); `--from DIR` then joins
their rows into one table. A configuration with calibrated timing runs alone: other processes' training would share
the GPU its timings measure.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import experiment_run as experiment  # noqa: E402 - the run folder and phases train_experiment.py uses

SEED_EXTENSIONS = experiment.SEED_EXTENSIONS


def grid() -> list[dict[str, bool]]:
    """All 16 combinations, in the order they run: none, all four, each alone, then pairs and triples."""
    combos = [dict(zip(SEED_EXTENSIONS, states, strict=True)) for states in itertools.product((False, True), repeat=4)]

    def rank(combo: dict[str, bool]) -> tuple[int, int]:
        n = sum(combo.values())
        return ({0: 0, 4: 1, 1: 2}.get(n, 1 + n), combos.index(combo))

    return sorted(combos, key=rank)


def name_of(combo: dict[str, bool]) -> str:
    return "+".join(n for n, on in combo.items() if on) or "none"


def main() -> int:
    ap = experiment.parser()
    ap.description = __doc__.splitlines()[0]
    ap.add_argument("--configs", help="comma-separated configuration names to run (default: the whole grid, in order)")
    ap.add_argument("--from", dest="sources", action="append", default=[], metavar="DIR",
                    help="also keep the configurations scored in DIR/ablation.json (same held-out tasks): grids run "
                         "as parallel processes, each in its own folder, are joined this way")  # fmt: skip
    ap.add_argument("--join", nargs="+", metavar="ABLATION_JSON",
                    help="join the rows of several ablation.json files (same held-out tasks) into --out/ablation.json "
                         "and print the table; trains nothing")  # fmt: skip
    args = ap.parse_args()
    if args.join:
        return experiment.write_joined(ap, args, "ablation.json", join, table, plot)
    if args.replot:
        return experiment.replot(args.replot, table, plot)
    if not args.out:
        ap.error("--out is required (or --replot ABLATION_JSON)")
    experiment.setup_args(args)
    from tritonrl.train.config import preset

    combos = grid()
    if args.configs:
        wanted = args.configs.split(",")
        names = {name_of(c): c for c in combos}
        if unknown := [w for w in wanted if w not in names]:
            ap.error(f"--configs {unknown}: not in the grid; names look like {sorted(names)[:4]}")
        combos = [names[w] for w in wanted]
    out = Path(args.out).resolve()
    earlier = json.loads((out / "ablation.json").read_text()) if (out / "ablation.json").exists() else None
    run = experiment.Run(args, out, "ablation.json")
    sft = run.out / "sft"
    if (sft / "config.json").exists() and (prior := _prior_sft_eval(run)) is not None:
        run.results["eval"].append(prior)
        run.results["phases"]["sft"] = {"reused": str(sft)}
        done = _carry_over(run, earlier)
        for source in args.sources:
            path = Path(source) / "ablation.json"
            done |= _carry_over(run, json.loads(path.read_text()) if path.exists() else None, done)
        done |= _from_experiment(run, done)
    else:
        run.init_model()
        run.sft("sft", run.out / "init", args.sft_steps, args.sft_lr, args.seed)
        run.evaluate("sft", sft)
        done = set()
    for combo in combos:
        name = name_of(combo)
        if name in done:
            continue
        if not run.in_budget(f"grid-{name}"):
            break
        trained, _ = run.grpo(f"grid-{name}", sft, preset("hardened", **combo))
        if trained:
            row = run.evaluate(name, run.out / f"grid-{name}")
            row["extensions"] = combo
            run.save()
    run.results["total_s"] = round(time.monotonic() - run.t_start, 1)
    run.save()
    print(table(run.results))
    print(plot(run.results, run.out / "ablation.png"))
    return 0


def _carry_over(run: experiment.Run, earlier: dict[str, Any] | None, done: frozenset[str] | set[str] = frozenset()
                ) -> set[str]:  # fmt: skip
    """The configurations an earlier call (or a parallel process, `--from`) scored from the same SFT model on the
    same tasks, except those in `done`: their rows and phases are kept and they are not run again, so a grid can be
    spread over several device calls."""
    if not earlier:
        return set()
    if differ := experiment.comparable(earlier, run.results):
        experiment.log.warning("not kept: configurations scored with other %s", ", ".join(differ))
        return set()
    rows = [e for e in earlier["eval"] if e.get("extensions") and e["model"] not in done]
    run.results["eval"] += rows
    for e in rows:
        run.results["phases"][f"grid-{e['model']}"] = earlier["phases"].get(f"grid-{e['model']}", {})
    run.save()
    return {e["model"] for e in rows}


def join(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One ablation result from several (parallel processes, or calls): the first part's rows, then each other
    part's configurations not seen yet. A part scored on other held-out tasks or trained with other GRPO flags is
    refused: its numbers would not compare."""
    base = json.loads(json.dumps(parts[0]))
    seen = {e["model"] for e in base["eval"]}
    for part in parts[1:]:
        if differ := experiment.comparable(base, part):
            raise SystemExit(f"--join: the parts differ in {', '.join(differ)}; join only parts of one grid")
        for e in part["eval"]:
            if e.get("extensions") and e["model"] not in seen:
                base["eval"].append(e)
                base["phases"][f"grid-{e['model']}"] = part["phases"].get(f"grid-{e['model']}", {})
                seen.add(e["model"])
    return base


def _from_experiment(run: experiment.Run, done: set[str]) -> set[str]:
    """The experiment's GRPO arm is one configuration of this grid (`experiment_run.grpo_arm`): its row stands for
    that configuration when it trained with those extensions, on the same held-out split, with the same GRPO flags
    (otherwise the grid trains its own)."""
    ext = experiment.grpo_arm(run.args.grpo_reward)
    name = name_of(ext)
    path = run.out / "results.json"
    if name in done or not path.exists():
        return set()
    prior = json.loads(path.read_text())
    phase = prior["phases"].get("grpo", {})
    row = next((e for e in prior["eval"] if e["model"] == "sft+grpo"), None)
    from tritonrl.train.config import preset

    arm = list(preset("hardened", **ext).enabled)  # a kept phase of an older arm is not this one
    if (
        row is None
        or "seconds" not in phase
        or phase.get("extensions") != arm
        or experiment.comparable(prior, run.results)
    ):
        return set()
    run.results["eval"].append({**row, "model": name, "extensions": dict(ext)})
    run.results["phases"][f"grid-{name}"] = phase
    run.save()
    return {name}


def _prior_sft_eval(run: experiment.Run) -> dict[str, Any] | None:
    """The SFT model's evaluation from the experiment's results.json, when it scored the same held-out tasks."""
    path = run.out / "results.json"
    if not path.exists():
        return None
    prior = json.loads(path.read_text())
    same = prior["phases"].get("data", {}).get("held_out") == run.results["phases"]["data"]["held_out"]
    row = next((e for e in prior["eval"] if e["model"] == "sft"), None)
    return row if same else None


def table(results: dict[str, Any]) -> str:
    """One row per configuration. Score columns as in the experiment's table: pass@1 (greedy when --temperature is
    0), pass@k when k > 1, greedy pass@1 when scored beside sampling; then the held-out outcomes."""
    cols = experiment.score_columns(results["args"], results["eval"])
    head = " | ".join(SEED_EXTENSIONS)
    # Rewards differ in kind between configurations (binary, staged, speed): the comparable training-time signal is
    # the share of sampled completions that compiled and that were correct, per generation round.
    lines = [f"| configuration | {head} | GRPO steps | reward per round | compiled / correct on training prompts | "
             + " | ".join(f"{c} [95% CI]" for c in cols) + " | held-out outcomes |",
             "|---|" + "---|" * (len(SEED_EXTENSIONS) + len(cols) + 4)]  # fmt: skip
    for e in results["eval"]:
        combo = e.get("extensions")
        phase = results["phases"].get(f"grid-{e['model']}", {})
        marks = " | ".join(("on" if combo[n] else "-") if combo else "" for n in SEED_EXTENSIONS)
        rewards = ", ".join(f"{r:.3f}" for r in _rounds(phase, "mean_reward"))
        correct = _rounds(phase, "correct_frac")
        compiled = [f"{c:.2f}" for c in _rounds(phase, "compiled_frac")] or ["-"] * len(correct)
        fractions = " ".join(f"{c}/{r:.2f}" for c, r in zip(compiled, correct, strict=False))
        scores = experiment.score_cells(e, cols)
        outcomes = experiment.outcomes_text(e.get("outcomes", {}))
        label = e["model"] if combo else f"{e['model']} (start, no GRPO)"
        lines.append(f"| {label} | {marks} | {phase.get('steps', '')} | {rewards} | {fractions} | "
                     + " | ".join(scores) + f" | {outcomes} |")  # fmt: skip
    failed = [p for p, v in results["phases"].items() if isinstance(v, dict) and "error" in v]
    skipped = [p for p, v in results["phases"].items() if isinstance(v, dict) and "skipped" in v]
    if failed:
        lines.append(f"failed: {', '.join(failed)}")
    if skipped:
        lines.append(f"not run (budget): {', '.join(skipped)}")
    return "\n".join(lines)


def _rounds(phase: dict[str, Any], name: str) -> list[float]:
    """A GRPO phase's series, one entry per generation round (results written before the rename say `_per_step`)."""
    return phase.get(f"{name}_per_round") or phase.get(f"{name}_per_step") or []


def plot(results: dict[str, Any], path: Path) -> str:
    """Held-out pass@1 with its interval per configuration; returns what it wrote."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot: matplotlib is not installed (pip install matplotlib), table only"
    evals = results["eval"]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(evals)), 3.6))
    xs = range(len(evals))
    err = [[e["pass@1"] - e["pass@1_ci"][0] for e in evals], [e["pass@1_ci"][1] - e["pass@1"] for e in evals]]
    ax.bar(xs, [e["pass@1"] for e in evals], yerr=err, capsize=4, color="#4878a8")
    ax.set_xticks(list(xs), [e["model"].replace("+", "+\n") for e in evals], fontsize=7)
    ax.set_ylabel("held-out pass@1 (95% CI)")
    ax.set_title("GRPO from one SFT model, per seed-extension configuration", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return f"plot: {path}"


if __name__ == "__main__":
    raise SystemExit(main())
