"""`tritonrl tasks list|show|check|curate|export`: the task-suite commands (parser and handlers).

Split from `tritonrl/cli.py` (which calls `add_tasks_parser`); only the CLI prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from tritonrl.cli.common import EXIT_ERROR, EXIT_OK, EXIT_REJECTED, add_verify_options, verify_config


def cmd_tasks(args: argparse.Namespace) -> int:
    from tritonrl.data.suites import load_suite

    if args.action == "export":
        return _export_tasks(args)
    suite = load_suite(getattr(args, "suite_spec", None) or args.path or args.suite)
    tasks = suite.tasks
    if args.action == "check":
        return _check_tasks(tasks, args)
    if args.action == "curate":
        return _curate_tasks(suite, args)
    if args.action == "list":
        for e in suite.entries:
            sizes = ", ".join(f"{k}={v}" for k, v in e.task.size_constants.items())
            print(f"{e.task_id:48s} L{e.level} {e.split:5s} {e.difficulty:6s} {sizes}")
        for item, why in suite.skipped:
            print(f"# skipped {item}: {why}", file=sys.stderr)
        return EXIT_OK
    if not args.task_id:
        print("tasks show needs a TASK_ID; try `tritonrl tasks list`", file=sys.stderr)
        return EXIT_ERROR
    matches = [t for t in tasks if t.task_id == args.task_id]
    if not matches:
        print(f"no task {args.task_id!r}; try `tritonrl tasks list`", file=sys.stderr)
        return EXIT_ERROR
    task = matches[0]
    print(task.source)
    for c in task.constants:
        print(f"# {c.name} = {c.value}  [{c.role.value}: {c.reason}]")
    return EXIT_OK


def _curate_tasks(suite, args: argparse.Namespace) -> int:  # noqa: ANN001
    from tritonrl.cli.display import print_curation, stage_progress
    from tritonrl.data.curate import curate
    from tritonrl.verify.verdict_store import open_verdict_store

    entries = [e for e in suite.entries if e.solution is not None or e.label == "blocked"]
    with open_verdict_store(args.cache) as cache, stage_progress(disable=args.json) as progress:
        done = [0]

        def tick(_result) -> None:  # noqa: ANN001
            done[0] += 1
            progress("verify", done[0], len(entries))

        results = curate(entries, verify_config(args), cache, on_result=tick, jobs=args.jobs)
    if args.json:
        print(json.dumps([{**dataclasses.asdict(r), "status": r.status.value} for r in results]))
    else:
        print_curation(results, suite.skipped)
    return EXIT_OK


def _export_tasks(args: argparse.Namespace) -> int:
    from tritonrl.cli.display import stage_progress
    from tritonrl.data.export import ExportConfig, export
    from tritonrl.data.splits import SplitConfig, parse_fractions
    from tritonrl.data.suites import load_suite

    specs = args.suites or [args.suite]
    splits = SplitConfig(fractions=parse_fractions(args.split_fractions), seed=args.split_seed, by=args.split_by)
    cfg = ExportConfig(out=args.out, formats=tuple(args.format or ["jsonl"]), include_partial=args.include_partial,
                       dtypes=tuple(d for d in args.dtypes.split(",") if d), splits=splits,
                       scales=tuple(float(x) for x in args.scales.split(",") if x), dedup=not args.no_dedup,
                       cache=args.cache, pass_rates=args.pass_rates, prompt=args.prompt, jobs=args.jobs)  # fmt: skip
    suites = [load_suite(spec, splits=splits) for spec in specs]
    with stage_progress(disable=args.json) as progress:
        result = export(suites, cfg, verify_config(args), progress=progress)
    if args.json:
        print(json.dumps(result.manifest))
    else:
        counts = result.manifest["counts"]
        print(f"exported {result.n_rl} RL rows and {result.n_sft} SFT rows to {result.out}")
        for kind in ("rl", "sft"):
            c = counts[kind]
            print(f"  {kind}: level {c['level']}  source {c['source']}  split {c['split']}")
        print(f"  curation: {counts['curation']}  skipped: {counts['skipped']} (see skipped.jsonl)")
        for split, pairs in result.manifest["splits"]["held_out_pairs"].items():
            print(f"  {split}: {len(pairs)} op pairs held out of train: " + ", ".join(f"{a}>{b}" for a, b in pairs))
    return EXIT_OK


def _check_tasks(tasks: list, args: argparse.Namespace) -> int:
    from tritonrl.data.check import check_tasks

    def show(r) -> None:  # noqa: ANN001
        if not args.json:
            status = "ok  " if r.ok else "FAIL"
            flagged = ("DEGENERATE", "weak", "single shape")
            extra = r.reason if not r.ok else "; ".join(n for n in r.notes if n.startswith(flagged))
            print(f"{status} {r.task_id:48s} variants={r.n_variants} {r.seconds:5.2f}s {extra[:240]}")

    results = check_tasks(tasks, on_result=show)
    bad = [r for r in results if not r.ok]
    if args.json:
        print(json.dumps([{**dataclasses.asdict(r), "reason": r.reason} for r in results]))
    else:
        print(f"{len(results) - len(bad)}/{len(results)} tasks can be verified on the CPU")
    return EXIT_OK if not bad else EXIT_REJECTED


def add_tasks_parser(sub) -> None:  # noqa: ANN001
    from tritonrl.data.splits import SPLIT_MODES
    from tritonrl.tasks.prompts import PromptStyle

    suite_help = ("builtin | kernelbench:PATH[:1,2] | kernelbench-hf:SRC[:1,2] | kernelbook:SRC | fusion:N[:SEED] | "
                  "a folder; add @train/@val/@test for one split")  # fmt: skip
    tasks = sub.add_parser("tasks", help="list, show, check, curate or export the tasks of a suite")
    actions = tasks.add_subparsers(dest="action", required=True)
    for name, help_text in (("list", "one line per task: id, level, split, difficulty, sizes"),
                            ("show", "print a task's source and its constants' roles"),
                            ("check", "can every task be verified on the CPU? (plans and runs each reference)"),
                            ("curate", "verify each task's solution (KernelBook ports, generated, bundled); "
                                       "label it verified / partial_port / rejected / ...")):  # fmt: skip
        p = actions.add_parser(name, help=help_text)
        if name == "show":
            p.add_argument("task_id", nargs="?")
        else:
            p.add_argument("suite_spec", nargs="?", metavar="SUITE", help=f"same as --suite ({suite_help})")
        p.add_argument("--suite", default="builtin", help=suite_help)
        p.add_argument("--path", help="same as --suite PATH (a folder of task files)")
        p.add_argument("--json", action="store_true", help="print JSON")
        if name == "curate":
            add_verify_options(p, json_flag=False, policy_flag=False)
            p.add_argument("--cache", help="verdict cache, reused across runs: a .jsonl or .sqlite file")
            p.add_argument("--jobs", type=int, default=2,
                           help="verifications at once per device (cuda: every visible GPU)")  # fmt: skip
        p.set_defaults(func=cmd_tasks)
    p = actions.add_parser("export", help="write SFT/RL training data (JSONL and/or HF datasets) with a manifest")
    p.add_argument("suites", nargs="*", help=f"one or more suites ({suite_help}); default --suite")
    p.add_argument("--suite", default="builtin", help=argparse.SUPPRESS)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", action="append", choices=["jsonl", "hf"], help="jsonl (default) and/or hf (repeat)")
    p.add_argument("--include-partial", action="store_true", help="SFT rows also from partial ports (policy partial)")
    p.add_argument("--dtypes", default="", help="dtype variants, e.g. float16,bfloat16")
    p.add_argument("--scales", default="", help="shape variants: size factors, e.g. 0.5,2")
    p.add_argument("--no-dedup", action="store_true", help="keep tasks whose normalized source repeats")
    p.add_argument("--split-fractions", default="0.8,0.1,0.1", help="train,val,test fractions of families")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the family hash (and of the op-pair order)")
    p.add_argument("--split-by", choices=SPLIT_MODES, default="family",
                   help="family: hash of each family; op-pair: hold whole adjacent op pairs (linear>gelu) out "
                        "of train, so test tasks ask for fusions never trained on (pairs in the manifest)")  # fmt: skip
    p.add_argument("--prompt", choices=[s.value for s in PromptStyle], default=PromptStyle.ONE_SHOT.value,
                   help="prompt style of the rows: with a worked example (one-shot) or not (zero-shot)")  # fmt: skip
    p.add_argument("--jobs", type=int, default=2,
                   help="verifications at once per device (cuda: every visible GPU), pre-started)")  # fmt: skip
    p.add_argument("--cache", help="verdict cache: a .jsonl or .sqlite file (default OUT/verdicts.jsonl)")
    p.add_argument("--pass-rates", help="verdict JSONL (task_id, passed) to relabel difficulty by pass rate")
    add_verify_options(p, policy_flag=False)
    p.set_defaults(func=cmd_tasks, path=None)
