"""The `tritonrl` command line. Thin: parse arguments, call the library, print. Heavy imports happen per command.

Exit codes: 0 success (the candidate passed / the command worked), 1 a candidate was rejected, 2 usage or
infrastructure error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from tritonrl.cli import eval as eval_cmd
from tritonrl.cli import tasks as tasks_cmd
from tritonrl.cli import verify as verify_cmd
from tritonrl.cli.common import EXIT_ERROR


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tritonrl", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="WARNING")
    sub = parser.add_subparsers(dest="command", required=True)
    verify_cmd.add_parsers(sub)
    eval_cmd.add_parsers(sub)
    sub.add_parser("train", help="sft | grpo | best-of-n with a preset and YAML config (see `tritonrl train -h`)")
    tasks_cmd.add_tasks_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:  # `tritonrl train sft|grpo|best-of-n ...` has its own parser (cli/train.py)
        from tritonrl.cli.train import train_main

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
