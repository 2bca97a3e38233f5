"""Does training teach? A from-scratch model, SFT, then GRPO on the verifier's reward, against a control, in one run.

    python benchmarks/train_experiment.py --out runs/experiment --device cuda            # one process, phase by phase
    python benchmarks/train_experiment.py --out runs/experiment --device cuda --parallel --control-steps 200 \
        --deadline-s 560                                                                  # one 10-minute GPU call
    python benchmarks/train_experiment.py --out /tmp/exp --device cpu --smoke            # the plumbing, on a CPU
    python benchmarks/train_experiment.py --replot runs/experiment/results.json          # table + plot again

Phases (each writes its folder under --out, and `results.json` is rewritten after every phase, so a run cut by a
time limit keeps what it measured; `--resume` keeps the finished phases and runs the rest):
  data      fusion tasks split by op pair (`data/splits.py`): held-out test tasks contain an adjacent op pair that no
            training task has, so a pass there is composition, not recall
  init      `init-model`: a byte-level BPE tokenizer trained on the *training* tasks only, and a random Qwen3
  untrained held-out pass@1 / pass@k of the random model (the floor)
  sft       full-parameter SFT on the training tasks' verified template solutions, held-out NLL every --eval-every
            steps (TensorBoard logs and checkpoints in sft/)
  grpo      GRPO from the SFT model on the training tasks, rewards from the hardened verifier's correctness layers
            with multi_input, staged_reward and curriculum on (calibrated timing off: the ablation's configuration
            of those three, which `train_ablation.py` reuses)
  control   the same wall time as GRPO spent on more SFT from the SFT model (the compute control)
  eval      held-out pass@1 / pass@k after each phase, hardened verifier, bootstrap 95% intervals over tasks
`--parallel` trains SFT once, then runs GRPO (and its evaluation) beside the other evaluations and the control, as
processes on one machine, and joins them (`experiment_parallel.py`): how the whole run fits in one device call.

Success criteria, fixed before the first run (printed with the results):
  C1  SFT teaches: the SFT model's held-out pass@1 interval lies above the untrained model's.
  C2  RL adds: GRPO's held-out pass@1 exceeds the control's by more than the control's interval half-width.
Whatever the outcome, the table says what happened; `docs/benchmarks.md` records the run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import experiment_parallel  # noqa: E402 - the sibling modules of this script
from experiment_run import (  # noqa: E402 - the sibling modules of this script
    Run,
    comparable,
    grpo_arm,
    outcomes_text,
    parser,
    replot,
    score_cells,
    score_columns,
    setup_args,
    setup_logging,
    write_joined,
)


def main() -> int:
    ap = parser()
    ap.add_argument(
        "--control-steps",
        type=int,
        default=0,
        help="SFT steps of the control (default: GRPO's wall time at SFT's measured rate)",
    )
    ap.add_argument("--skip-grpo", action="store_true",
                    help="run the control (--control-steps) without GRPO in this folder: the control of a GRPO run "
                         "training at the same time in another folder, both then given steps, not seconds (processes "
                         "sharing a machine slow each other)")  # fmt: skip
    ap.add_argument("--stop-after", choices=("init", "sft-train", "sft", "grpo"),
                    help="end the run after this phase and its evaluation (sft-train: after SFT's training, before "
                         "its evaluation); the rest can follow with --resume, e.g. in a call where other processes "
                         "share the machine")  # fmt: skip
    ap.add_argument("--skip-sft-eval", action="store_true",
                    help="do not score the SFT model here (another folder does, at the same time: `--resume "
                         "--stop-after sft` on a copy; `--join` merges the parts)")  # fmt: skip
    ap.add_argument("--join", nargs="+", metavar="RESULTS_JSON",
                    help="join the results.json of parts of one experiment run in parallel folders (e.g. GRPO in one, "
                         "its --skip-grpo control in another) into --out/results.json; trains nothing")  # fmt: skip
    ap.add_argument(
        "--parallel",
        action="store_true",
        help="after SFT, run GRPO and its evaluation, the SFT evaluation and the control (--control-steps), and the "
        "untrained evaluation as processes side by side, then join them into --out/results.json "
        "(experiment_parallel.py): the whole run in one device call",
    )
    ap.add_argument(
        "--deadline-s",
        type=float,
        default=0,
        help="with --parallel: end the processes still running this many seconds after the start and join what they "
        "finished (each saves after every phase); 0: no deadline",
    )
    args = ap.parse_args()
    if args.parallel:
        return parallel(ap, args)
    if args.deadline_s:
        ap.error("--deadline-s applies to --parallel runs only (one process ends its phases with --budget-s)")
    if args.join:
        return write_joined(ap, args, "results.json", join, table, plot)
    if args.replot:
        return replot(args.replot, table, plot)
    if not args.out:
        ap.error("--out is required (or --replot RESULTS)")
    if args.skip_grpo and args.control_steps < 1:
        ap.error("--skip-grpo needs --control-steps N: beside a GRPO run in another folder, the control's compute is "
                 "given in steps (the two slow each other, so wall time would not match them)")  # fmt: skip
    setup_args(args)
    from tritonrl.train.config import preset

    run = Run(args, Path(args.out).resolve())
    out = run.out
    if not run.done("init", out / "init"):
        run.init_model()
    if args.stop_after == "init":
        print(json.dumps(run.results["phases"]["init"], indent=1))
        return 0
    if not args.skip_untrained:
        run.evaluate("untrained", out / "init")
    if not run.done("sft", out / "sft"):
        run.sft("sft", out / "init", args.sft_steps, args.sft_lr, args.seed)
    sft_s = run.results["phases"]["sft"]["seconds"]
    if args.stop_after == "sft-train":
        print(json.dumps(run.results["phases"]["sft"], indent=1))
        return 0
    if not args.skip_sft_eval:
        run.evaluate("sft", out / "sft")
    if args.stop_after != "sft" and not args.skip_grpo and run.in_budget("grpo"):
        trained = run.done("grpo", out / "grpo")
        if not trained:
            trained, _ = run.grpo("grpo", out / "sft", preset("hardened", **grpo_arm(args.grpo_reward)))
        if trained:
            run.evaluate("sft+grpo", out / "grpo")
    grpo_s = run.results["phases"].get("grpo", {}).get("seconds")
    if args.stop_after is None and (grpo_s or args.control_steps) and run.in_budget("control"):
        # The control spends GRPO's wall time on more SFT from the same start, as steps at SFT's measured rate
        # (or the steps it is given, beside a GRPO run elsewhere).
        steps = args.control_steps or max(1, round(grpo_s / max(sft_s / args.sft_steps, 1e-6)))
        if not run.done("control", out / "control"):
            run.sft("control", out / "sft", steps, args.sft_lr / 10, args.seed + 1)
        run.evaluate("sft+more-sft (control)", out / "control")
    run.results["total_s"] = round(time.monotonic() - run.t_start, 1)
    run.results["criteria"] = criteria(run.results["eval"])
    run.save()
    print(table(run.results))
    print(plot(run.results, run.out / "results.png"))
    return 0


def parallel(ap: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """`--parallel`: the run as processes side by side (experiment_parallel.py), then the joined table and plot."""
    clash = [
        flag
        for flag, on in (
            ("--join", args.join),
            ("--replot", args.replot),
            ("--skip-grpo", args.skip_grpo),
            ("--skip-sft-eval", args.skip_sft_eval),
            ("--stop-after", args.stop_after),
        )
        if on
    ]
    if clash:
        ap.error(f"--parallel runs every phase itself and cannot take {', '.join(clash)}; drop it")
    if not args.out:
        ap.error("--parallel needs --out (the folder its parts go under)")
    if args.control_steps < 1:
        ap.error("--parallel needs --control-steps N: the control trains beside GRPO, so its compute is given in steps "
                 "(the two slow each other, so wall time would not match them)")  # fmt: skip
    if args.deadline_s < 0:
        ap.error(f"--deadline-s {args.deadline_s:g} is negative; give seconds from the start, or 0 for none")
    setup_logging()  # not setup_args: this process only starts and joins the parts, it needs no torch
    results = experiment_parallel.run(args, sys.argv[1:], Path(__file__).resolve(), join)
    print(table(results))
    print(plot(results, Path(args.out) / "results.png"))
    return 0


MODEL_ORDER = ("untrained", "sft", "sft+grpo", "sft+more-sft (control)")


def _model_rank(model: str) -> int:
    """The tables' and the plot's order of models; names it does not know go last."""
    return MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER)


def join(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One experiment from parts run in parallel folders on the same data split: the first part, then each other
    part's phases and evaluations it lacks; the criteria again. Parts scored on other tasks are refused."""
    base = json.loads(json.dumps(parts[0]))
    for part in parts[1:]:
        if differ := comparable(base, part):
            raise SystemExit(f"--join: the parts differ in {', '.join(differ)}; join only parts of one experiment")
        for key in ("eval", "eval_train"):
            seen = {e["model"] for e in base.get(key, [])}
            base.setdefault(key, []).extend(e for e in part.get(key, []) if e["model"] not in seen)
        for phase, record in part["phases"].items():
            base["phases"].setdefault(phase, record)
    for key in ("eval", "eval_train"):  # the table's order, whichever part scored which model
        base.get(key, []).sort(key=lambda e: _model_rank(e["model"]))
    base["criteria"] = criteria(base["eval"])
    return base


def plot(results: dict[str, Any], path: Path) -> str:
    """pass@1 with its interval per model, held-out tasks beside the in-distribution ones (where scored), and the
    held-out NLL curves of the SFT phases; returns what it wrote."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot: matplotlib is not installed (pip install matplotlib), table only"
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    groups = plot_groups(results)
    models = sorted({m for _, by in groups for m in by}, key=_model_rank)
    width = 0.8 / len(groups)
    for g, ((label, by), color) in enumerate(zip(groups, ("#4878a8", "#e39b3c"), strict=False)):
        legend = label  # on the group's first bar only
        for x, model in enumerate(models):
            offset = x + (g - (len(groups) - 1) / 2) * width
            if (e := by.get(model)) is None:
                left.text(offset, 0.01, "not scored", rotation=90, ha="center", va="bottom", fontsize=7)
                continue
            low, high = e["pass@1_ci"]
            yerr = [[e["pass@1"] - low], [high - e["pass@1"]]]
            left.bar(offset, e["pass@1"], width, yerr=yerr, capsize=3, color=color, label=legend)
            legend = None
    left.set_xticks(list(range(len(models))), models, rotation=15, fontsize=8)
    left.set_ylabel("pass@1 (95% CI)")
    left.set_ylim(0, max([0.1, *(e["pass@1_ci"][1] for _, by in groups for e in by.values())]) * 1.15)
    left.legend(fontsize=7)
    for phase in ("sft", "control"):
        curve = results["phases"].get(phase, {}).get("held_out_nll") or []
        if curve:
            offset = 0 if phase == "sft" else results["args"]["sft_steps"]  # the control continues from SFT
            right.plot([c["step"] + offset for c in curve], [c["held_out_nll"] for c in curve], marker="o", label=phase)
    right.set_xlabel("SFT step")
    right.set_ylabel("held-out NLL (nats/token)")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return f"plot: {path}"


def plot_groups(results: dict[str, Any]) -> list[tuple[str, dict[str, dict[str, Any]]]]:
    """(label, {model: evaluation}) for the held-out tasks and, where scored, the in-distribution ones."""
    groups = [("held-out tasks", {e["model"]: e for e in results["eval"]})]
    if results.get("eval_train"):
        fresh = results["args"].get("held_in") == "fresh"
        label = "fresh tasks, seen compositions" if fresh else "training tasks"
        groups.append((label, {e["model"]: e for e in results["eval_train"]}))
    return groups


def criteria(evals: list[dict[str, Any]]) -> dict[str, bool | None]:
    """The criteria fixed in the module docstring; None where a phase did not run."""
    by = {e["model"]: e for e in evals}
    untrained, sft = by.get("untrained"), by.get("sft")
    grpo, control = by.get("sft+grpo"), by.get("sft+more-sft (control)")
    c1 = sft["pass@1_ci"][0] > untrained["pass@1_ci"][1] if sft and untrained else None
    c2 = None
    if grpo and control:
        c2 = grpo["pass@1"] - control["pass@1"] > (control["pass@1_ci"][1] - control["pass@1_ci"][0]) / 2
    return {"C1 SFT interval above untrained": c1, "C2 GRPO beyond the control's half-width": c2}


def table(results: dict[str, Any]) -> str:
    """The held-out table (and the training-task one when scored), then the criteria. Columns: pass@1 (greedy when
    the run's --temperature is 0), pass@k when k > 1, greedy pass@1 when scored beside sampling, the outcomes of the
    main pass, and the answers' mean length with the share that hit --max-new-tokens."""
    cols = score_columns(results["args"], results["eval"] + results.get("eval_train", []))
    head = ["| model | " + " | ".join(f"{c} [95% CI]" for c in cols) + " | outcomes | tokens per answer (at the "
            "limit) |", "|---|" + "---|" * (len(cols) + 2)]  # fmt: skip

    def rows(evals: list[dict[str, Any]]) -> list[str]:
        out = []
        for e in evals:
            cells = score_cells(e, cols)
            n = e.get("generation")
            tokens = f"{n['mean_tokens']:.0f} ({100 * n['at_limit_frac']:.0f}%)" if n else "-"
            out.append(f"| {e['model']} | {' | '.join(cells)} | {outcomes_text(e['outcomes'])} | {tokens} |")
        return out

    lines = head + rows(results["eval"])
    if results.get("eval_train"):
        fresh = results["args"].get("held_in") == "fresh"
        where = "fresh tasks of compositions seen in training" if fresh else "training tasks"
        lines += ["", f"On {where} (in distribution):", "", *head, *rows(results["eval_train"])]
    verdict = {True: "met", False: "not met", None: "not run"}
    lines += [f"{name}: {verdict[ok]}" for name, ok in results.get("criteria", {}).items()]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
