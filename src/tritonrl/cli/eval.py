"""`tritonrl eval`, `tritonrl report` and `tritonrl ablate`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tritonrl.cli.common import EXIT_OK, add_source_options, add_verify_options, verify_config
from tritonrl.verify.layers import LAYERS


def _eval_sources(args: argparse.Namespace):  # noqa: ANN202
    """(tasks, candidates folder or None, generator or None, deselected task ids) from the eval/ablate arguments."""
    from tritonrl.data.suites import resolve_suite
    from tritonrl.generate import SamplingConfig, make_generator

    tasks = resolve_suite(args.suite)
    suite_ids = {t.task_id for t in tasks}
    if args.tasks:
        wanted = set(args.tasks.split(","))
        tasks = [t for t in tasks if t.task_id in wanted]
        if missing := wanted - {t.task_id for t in tasks}:
            raise ValueError(f"--tasks: not in suite {args.suite!r}: {sorted(missing)}")
    skip = frozenset(suite_ids - {t.task_id for t in tasks})
    if args.candidates:
        return tasks, Path(args.candidates), None, skip
    from tritonrl.tasks.prompts import set_default_style

    set_default_style(args.prompt)  # every prompt of this run, as `train --prompt` does for training
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                              seed=args.seed, prompts_per_call=args.prompts_per_call)  # fmt: skip
    gen = make_generator(model=args.model, backend=args.gen_backend, endpoint=args.endpoint,
                         endpoint_model=args.endpoint_model, sampling=sampling)  # fmt: skip
    return tasks, None, gen, skip


def cmd_eval(args: argparse.Namespace) -> int:
    from tritonrl.cli.display import eval_progress
    from tritonrl.eval.pipeline import evaluate

    tasks, candidates, generator, skip = _eval_sources(args)
    run_dir = Path(args.run)
    with eval_progress(disable=args.json) as progress:
        result = evaluate(run_dir, tasks, verify_config(args), candidates=candidates, generator=generator, k=args.k,
                          jobs=args.jobs, backend=args.backend, meta={"suite": args.suite, "prompt": args.prompt},
                          progress=progress,
                          skip_tasks=skip)  # fmt: skip
    if args.json:
        print(json.dumps(result.summary.to_dict()))
    else:
        print(result.report_md.read_text())
        print(f"report: {result.report_md}" + (f" and {result.report_html}" if result.report_html else ""))
    if result.stats.skipped:
        print(f"{len(result.stats.skipped)} task(s) skipped, unscored: their reference cannot run on this device "
              f"({', '.join(sorted(result.stats.skipped))}); the report lists why", file=sys.stderr)  # fmt: skip
    if result.stats.interrupted:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from tritonrl.eval.pipeline import load_run, write_run_report

    summary, meta = load_run(Path(args.run), baseline=args.baseline)
    if args.jsonl:
        from tritonrl.eval.store import ResultStore

        with ResultStore(Path(args.run) / "results.sqlite") as store:
            n = store.export_jsonl(args.jsonl, meta.get("config_hash"), meta.get("device"))
        print(f"exported {n} records to {args.jsonl}", file=sys.stderr)
    other = load_run(Path(args.other), baseline=args.baseline)[0] if args.other else None
    md, html = write_run_report(Path(args.run), summary, meta, other)
    print(md.read_text())
    print(f"report: {md}" + (f" and {html}" if html else ""))
    return EXIT_OK


def cmd_ablate(args: argparse.Namespace) -> int:
    from tritonrl.cli.display import eval_progress
    from tritonrl.eval.ablation import grid_from_toggles, load_grid, run_ablation

    if bool(args.grid) == bool(args.toggle):
        raise ValueError("give either --grid FILE or one or more --toggle NAME")
    grid = load_grid(Path(args.grid)) if args.grid else grid_from_toggles(args.toggle, verify_config(args))
    tasks, candidates, generator, skip = _eval_sources(args)
    with eval_progress(disable=False) as progress:
        _, path = run_ablation(Path(args.out), tasks, verify_config(args), grid, candidates=candidates,
                               generator=generator, k=args.k, jobs=args.jobs, backend=args.backend,
                               progress=progress, skip_tasks=skip)  # fmt: skip
    print(path.read_text())
    return EXIT_OK


def add_parsers(sub) -> None:  # noqa: ANN001
    p = sub.add_parser("eval", help="verify a candidate folder or a model's samples over a suite; writes a report")
    add_source_options(p)
    add_verify_options(p, compile_baseline=True)  # reports give fast_p over torch.compile too
    p.add_argument("--run", required=True, help="run directory (results.sqlite, report.md, report.html); resumable")
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("report", help="(re)write the report of a run, or compare two runs")
    p.add_argument("run")
    p.add_argument("other", nargs="?", help="a second run to compare with")
    p.add_argument("--baseline", choices=["eager", "compile"], default="eager")
    p.add_argument("--jsonl", metavar="PATH", help="also export every record (one verdict per sample) as JSON lines")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("ablate", help="evaluate one candidate set under a grid of verifier configurations")
    add_source_options(p)
    add_verify_options(p)
    p.add_argument(
        "--toggle",
        action="append",
        help="a verifier layer to switch on/off (repeat for a full grid): " + ", ".join(sorted(LAYERS)),
    )
    p.add_argument("--grid", help="YAML/JSON {name: {VerifyConfig field: value}}")
    p.add_argument("--out", required=True, help="folder for one run per configuration and ablation.md")
    p.set_defaults(func=cmd_ablate)
