"""The `tritonrl` command line. Thin: parse arguments, call the library, print. Heavy imports happen per command.

Exit codes: 0 success (the candidate passed / the command worked), 1 a candidate was rejected, 2 usage or
infrastructure error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

EXIT_OK, EXIT_REJECTED, EXIT_ERROR = 0, 1, 2


def _device(value: str) -> str:
    if value != "auto":
        return value
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _load_reference(ref: str):  # noqa: ANN202
    from tritonrl.tasks.loader import builtin_task, load_task

    path = Path(ref)
    if path.exists():
        return load_task(path)
    if "/" not in ref and not ref.endswith(".py"):
        return builtin_task(ref)
    raise FileNotFoundError(f"reference {ref!r} is neither a file nor a built-in task id (see `tritonrl tasks list`)")


def _read_candidate(value: str) -> str:
    if value == "-":
        return sys.stdin.read()
    path = Path(value)
    if not path.exists():
        raise FileNotFoundError(f"candidate file {value!r} does not exist")
    return path.read_text(errors="replace")


def _config(args: argparse.Namespace):  # noqa: ANN202
    from tritonrl.verify.config import VerifyConfig

    return VerifyConfig(
        device=_device(args.device),
        policy=args.policy,
        timeout_s=args.timeout_s,
        static_checks=not args.no_static,
        timing=not args.no_timing,
        compile_baseline=not args.no_compile_baseline,
    )


def cmd_verify(args: argparse.Namespace) -> int:
    from tritonrl.verify.funnel import verify
    from tritonrl.verify.pool import verify_many

    task = _load_reference(args.reference)
    texts = [_read_candidate(c) for c in args.candidate]
    cfg = _config(args)
    if len(texts) == 1:
        verdicts = [verify(task, texts[0], cfg)]
    else:  # warm workers, several at a time; on a GPU timing still runs alone
        verdicts = verify_many([(task, t) for t in texts], cfg, jobs=args.jobs)
    if args.json:
        print(verdicts[0].to_json() if len(verdicts) == 1 else json.dumps([v.to_dict() for v in verdicts]))
    else:
        from tritonrl.cli_display import print_verdict

        for path, verdict in zip(args.candidate, verdicts, strict=True):
            if len(verdicts) > 1:
                print(f"== {path}")
            print_verdict(verdict)
    return EXIT_OK if all(v.passed for v in verdicts) else EXIT_REJECTED


def cmd_demo(args: argparse.Namespace) -> int:
    from tritonrl.cli_display import demo_progress, print_demo
    from tritonrl.demo import export_candidates, run_demo

    if args.export_candidates:
        n = export_candidates(Path(args.export_candidates))
        print(
            f"wrote {n} candidates to {args.export_candidates}; evaluate them with: tritonrl eval --suite builtin "
            f"--candidates {args.export_candidates} --run RUN_DIR"
        )
        return EXIT_OK

    with demo_progress(disable=args.json) as advance:
        rows = run_demo(_config(args), jobs=args.jobs, on_result=advance)
    if args.json:
        print(json.dumps([{"case": r.name, "expected": r.expected, **r.verdict.to_dict()} for r in rows]))
    else:
        print_demo(rows)
    return EXIT_OK if all(r.as_expected for r in rows) else EXIT_REJECTED


def _eval_sources(args: argparse.Namespace):  # noqa: ANN202
    """(tasks, candidates folder or None, generator or None, deselected task ids) from the eval/ablate arguments."""
    from tritonrl.eval.generate import SamplingConfig, make_generator
    from tritonrl.tasks.suites import resolve_suite

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
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                              seed=args.seed)  # fmt: skip
    gen = make_generator(model=args.model, backend=args.gen_backend, endpoint=args.endpoint,
                         endpoint_model=args.endpoint_model, sampling=sampling)  # fmt: skip
    return tasks, None, gen, skip


def cmd_eval(args: argparse.Namespace) -> int:
    from tritonrl.cli_display import eval_progress
    from tritonrl.eval.pipeline import evaluate

    tasks, candidates, generator, skip = _eval_sources(args)
    run_dir = Path(args.run)
    with eval_progress(disable=args.json) as progress:
        result = evaluate(run_dir, tasks, _config(args), candidates=candidates, generator=generator, k=args.k,
                          jobs=args.jobs, backend=args.backend, meta={"suite": args.suite}, progress=progress,
                          skip_tasks=skip)  # fmt: skip
    if args.json:
        print(json.dumps(result.summary.to_dict()))
    else:
        print(result.report_md.read_text())
        print(f"report: {result.report_md}" + (f" and {result.report_html}" if result.report_html else ""))
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
    from tritonrl.cli_display import eval_progress
    from tritonrl.eval.ablation import grid_from_toggles, load_grid, run_ablation

    if bool(args.grid) == bool(args.toggle):
        raise ValueError("give either --grid FILE or one or more --toggle NAME")
    grid = load_grid(Path(args.grid)) if args.grid else grid_from_toggles(args.toggle)
    tasks, candidates, generator, skip = _eval_sources(args)
    with eval_progress(disable=False) as progress:
        _, path = run_ablation(Path(args.out), tasks, _config(args), grid, candidates=candidates,
                               generator=generator, k=args.k, jobs=args.jobs, backend=args.backend,
                               progress=progress, skip_tasks=skip)  # fmt: skip
    print(path.read_text())
    return EXIT_OK


def _add_source_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default="builtin", help="builtin | kernelbench:PATH[:1,2] | a folder of task files")
    p.add_argument("--tasks", help="comma-separated task ids to keep (default: all of the suite)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--candidates", help="folder of <task_id>/<name>.py|.txt (k samples) or <task_id>.py")
    src.add_argument("--model", help="local model directory to sample from (see --gen-backend)")
    src.add_argument("--endpoint", help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1")
    p.add_argument("--endpoint-model", help="model name served at --endpoint")
    p.add_argument("--gen-backend", choices=["hf", "vllm"], default="hf")
    p.add_argument("--k", type=int, default=1, help="samples per task when sampling from a model")
    p.add_argument("--max-new-tokens", type=int, default=4096)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--seed", type=int)
    p.add_argument("--jobs", type=int, default=2, help="parallel verifications (CPU; on CUDA one per GPU)")
    p.add_argument("--backend", choices=["local", "ray"], default="local")


def _add_verify_options(p: argparse.ArgumentParser, json_flag: bool = True, policy_flag: bool = True) -> None:
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="cpu runs kernels in the Triton interpreter; auto picks cuda when available",
    )
    if policy_flag:
        p.add_argument(
            "--policy",
            choices=["strict", "partial"],
            default="strict",
            help="strict: only Triton kernels may compute in forward; partial: torch ops allowed too",
        )
    else:  # curation tries strict, then partial where torch computes: both policies are used
        p.set_defaults(policy="strict")
    p.add_argument("--timeout-s", type=float, default=60.0, help="wall-clock limit for the sandboxed worker")
    p.add_argument("--no-static", action="store_true", help="skip the AST pre-filter (runtime layers still apply)")
    p.add_argument("--no-timing", action="store_true", help="on cuda: stop after correctness (no speedup)")
    p.add_argument(
        "--no-compile-baseline",
        action="store_true",
        help="on cuda: skip the speedup over torch.compile (its first use per task compiles the reference: 5-60 s)",
    )
    if json_flag:
        p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tritonrl", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="WARNING")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("verify", help="verify candidates against one reference")
    p.add_argument("reference", help="KernelBench-format reference file, or a built-in task id")
    p.add_argument("candidate", nargs="+", help="candidate .py files or raw LLM completions; '-' reads stdin")
    p.add_argument("--jobs", type=int, default=4, help="with several candidates: verified at once (warm workers)")
    _add_verify_options(p)
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser("demo", help="verify the bundled tasks' solutions and bundled bad candidates")
    _add_verify_options(p)
    p.add_argument("--jobs", type=int, default=2, help="candidates verified in parallel")
    p.add_argument("--export-candidates", metavar="DIR", help="write the demo candidates as an eval folder and exit")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("eval", help="verify a candidate folder or a model's samples over a suite; writes a report")
    _add_source_options(p)
    _add_verify_options(p)
    p.add_argument("--run", required=True, help="run directory (results.sqlite, report.md, report.html); resumable")
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("report", help="(re)write the report of a run, or compare two runs")
    p.add_argument("run")
    p.add_argument("other", nargs="?", help="a second run to compare with")
    p.add_argument("--baseline", choices=["eager", "compile"], default="eager")
    p.add_argument("--jsonl", metavar="PATH", help="also export every record (one verdict per sample) as JSON lines")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("ablate", help="evaluate one candidate set under a grid of verifier configurations")
    _add_source_options(p)
    _add_verify_options(p)
    p.add_argument("--toggle", action="append", help="a defence to switch on/off (repeat for a full grid)")
    p.add_argument("--grid", help="YAML/JSON {name: {VerifyConfig field: value}}")
    p.add_argument("--out", required=True, help="folder for one run per configuration and ablation.md")
    p.set_defaults(func=cmd_ablate)
    sub.add_parser("train", help="sft | grpo | best-of-n with a preset and YAML config (see `tritonrl train -h`)")
    from tritonrl.tasks.cli import add_tasks_parser  # here: that module imports this one

    add_tasks_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:  # `tritonrl train sft|grpo|best-of-n ...` has its own parser (train/cli.py)
        from tritonrl.train.cli import train_main

        return train_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    from tritonrl.errors import TritonRLError
    from tritonrl.log import setup_logging

    setup_logging(args.log_level)
    try:
        return args.func(args)
    except (TritonRLError, FileNotFoundError, ValueError) as exc:
        return _error(args, exc)
    except Exception as exc:  # noqa: BLE001 - a bug of ours: still one JSON object and exit 2, with the traceback logged
        logging.getLogger("tritonrl").exception("internal error")
        return _error(args, exc)


def _error(args: argparse.Namespace, exc: BaseException) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
    else:
        print(f"error: {exc}", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
