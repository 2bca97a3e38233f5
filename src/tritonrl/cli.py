"""The `tritonrl` command line. Thin: parse arguments, call the library, print. Heavy imports happen per command.

Exit codes: 0 success (the candidate passed / the command worked), 1 a candidate was rejected, 2 usage or
infrastructure error.
"""

from __future__ import annotations

import argparse
import json
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
        device=_device(args.device), policy=args.policy, timeout_s=args.timeout_s, static_checks=not args.no_static
    )


def cmd_verify(args: argparse.Namespace) -> int:
    from tritonrl.verify.funnel import verify

    task = _load_reference(args.reference)
    verdict = verify(task, _read_candidate(args.candidate), _config(args))
    if args.json:
        print(verdict.to_json())
    else:
        from tritonrl.cli_display import print_verdict

        print_verdict(verdict)
    return EXIT_OK if verdict.passed else EXIT_REJECTED


def cmd_demo(args: argparse.Namespace) -> int:
    from tritonrl.cli_display import demo_progress, print_demo
    from tritonrl.demo import run_demo

    with demo_progress(disable=args.json) as advance:
        rows = run_demo(_config(args), jobs=args.jobs, on_result=advance)
    if args.json:
        print(json.dumps([{"case": r.name, "expected": r.expected, **r.verdict.to_dict()} for r in rows]))
    else:
        print_demo(rows)
    return EXIT_OK if all(r.as_expected for r in rows) else EXIT_REJECTED


def cmd_tasks(args: argparse.Namespace) -> int:
    from tritonrl.tasks.loader import builtin_tasks, load_task_dir

    tasks = load_task_dir(args.path) if args.path else builtin_tasks()
    if args.action == "list":
        for t in tasks:
            sizes = ", ".join(f"{k}={v}" for k, v in t.size_constants.items())
            print(f"{t.task_id:40s} {sizes}")
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


def _add_verify_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="cpu runs kernels in the Triton interpreter; auto picks cuda when available",
    )
    p.add_argument(
        "--policy",
        choices=["strict", "partial"],
        default="strict",
        help="strict: only Triton kernels may compute in forward; partial: torch ops allowed too",
    )
    p.add_argument("--timeout-s", type=float, default=60.0, help="wall-clock limit for the sandboxed worker")
    p.add_argument("--no-static", action="store_true", help="skip the AST pre-filter (runtime layers still apply)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tritonrl", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="WARNING")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("verify", help="verify one candidate against one reference")
    p.add_argument("reference", help="KernelBench-format reference file, or a built-in task id")
    p.add_argument("candidate", help="candidate .py file or raw LLM completion; '-' reads stdin")
    _add_verify_options(p)
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser("demo", help="verify the bundled tasks' solutions and bundled bad candidates")
    _add_verify_options(p)
    p.add_argument("--jobs", type=int, default=2, help="candidates verified in parallel")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("tasks", help="list or show tasks")
    p.add_argument("action", choices=["list", "show"])
    p.add_argument("task_id", nargs="?")
    p.add_argument("--path", help="a directory of task files (default: the built-in tasks)")
    p.set_defaults(func=cmd_tasks)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from tritonrl.errors import TritonRLError
    from tritonrl.log import setup_logging

    setup_logging(args.log_level)
    try:
        return args.func(args)
    except (TritonRLError, FileNotFoundError, ValueError) as exc:
        if getattr(args, "json", False):
            print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        else:
            print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
