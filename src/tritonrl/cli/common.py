"""Options and helpers every command shares: exit codes, device choice, reference/candidate loading, verifier flags."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_REJECTED, EXIT_ERROR = 0, 1, 2


def device(value: str) -> str:
    if value != "auto":
        return value
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_reference(ref: str):  # noqa: ANN202
    from tritonrl.tasks.loader import builtin_task, load_task

    path = Path(ref)
    if path.exists():
        return load_task(path)
    if "/" not in ref and not ref.endswith(".py"):
        return builtin_task(ref)
    raise FileNotFoundError(f"reference {ref!r} is neither a file nor a built-in task id (see `tritonrl tasks list`)")


def read_candidate(value: str) -> str:
    if value == "-":
        return sys.stdin.read()
    path = Path(value)
    if not path.exists():
        raise FileNotFoundError(f"candidate file {value!r} does not exist")
    return path.read_text(errors="replace")


def verify_options(args: argparse.Namespace) -> dict:
    """The VerifyConfig fields the verifier flags set, `device` as given ("auto" unresolved: resolving it imports
    torch, which a `--server` client does not need)."""
    return {
        "device": args.device,
        "policy": args.policy,
        "timeout_s": args.timeout_s,
        "static_checks": not args.no_static,
        "timing": not args.no_timing,
        "compile_baseline": args.compile_baseline,
    }


def verify_config(args: argparse.Namespace):  # noqa: ANN202
    from tritonrl.verify.config import VerifyConfig

    return VerifyConfig(**{**verify_options(args), "device": device(args.device)})


def add_source_options(p: argparse.ArgumentParser) -> None:
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
    p.add_argument(
        "--prompt",
        choices=["one-shot", "zero-shot"],
        default="one-shot",
        help="prompt style when sampling: with a worked example, or without (as the model was trained)",
    )
    p.add_argument("--prompts-per-call", type=int, default=8, help="prompts batched into one generate call (hf)")
    p.add_argument("--jobs", type=int, default=2,
                   help="verifications at once per device (--device cuda: on every visible GPU)")  # fmt: skip
    p.add_argument("--backend", choices=["local", "ray"], default="local")


def add_verify_options(
    p: argparse.ArgumentParser, json_flag: bool = True, policy_flag: bool = True, compile_baseline: bool = False
) -> None:
    """The verifier's flags. `compile_baseline` is the default of `--compile-baseline`: on only for `eval`, whose
    report has the fast_p-over-torch.compile columns, since its first use per task compiles the reference (5-60 s,
    then cached on disk) and a first `tritonrl verify` must not wait for a number it did not ask for."""
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="cpu runs kernels in the Triton interpreter; cuda spreads over every visible GPU (CUDA_VISIBLE_DEVICES "
        "picks them); auto picks cuda when available",
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
        "--compile-baseline",
        action=argparse.BooleanOptionalAction,
        default=compile_baseline,
        help="on cuda: also report the speedup over torch.compile (its first use per task compiles the reference: "
        f"5-60 s, cached on disk afterwards; default: {'on' if compile_baseline else 'off'})",
    )
    if json_flag:
        p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
