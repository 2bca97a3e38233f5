"""`tritonrl verify` and `tritonrl demo`."""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path

from tritonrl.cli.common import (
    EXIT_OK,
    EXIT_REJECTED,
    add_verify_options,
    device,
    load_reference,
    read_candidate,
    verify_config,
    verify_options,
)
from tritonrl.verify.server import SERVER_ENV, VerifyServer, default_socket, request_verdicts


def cmd_verify(args: argparse.Namespace) -> int:
    texts = [read_candidate(c) for c in args.candidate]
    server = args.server or os.environ.get(SERVER_ENV)
    if server:
        verdicts = _verify_on_server(Path(server), args, texts)
        return _print_verdicts(args, verdicts)
    from tritonrl.verify.funnel import verify
    from tritonrl.verify.verifier import verify_many

    task = load_reference(args.reference)
    cfg = verify_config(args)
    replay = _recorded_seeds(args.replay) if args.replay else None
    if replay is not None and len(texts) != 1:
        raise ValueError("--replay takes one candidate: the one the recorded verdict judged")
    if replay is not None and args.cache:
        raise ValueError("--replay draws the recorded cases again, which a cached verdict would skip: drop --cache")
    if args.cache:  # verdicts judged before (same task, code and verifier config) come from the file
        from tritonrl.verify.verdict_store import open_verdict_store
        from tritonrl.verify.verifier import Verifier

        with open_verdict_store(args.cache) as store, Verifier(cfg, jobs=args.jobs, cache=store,
                                                               keep_warm=False) as verifier:  # fmt: skip
            verdicts = verifier.verify_many([(task, t) for t in texts])
    elif len(texts) == 1:
        verdicts = [verify(task, texts[0], cfg, replay=replay)]
    else:  # warm workers, several at a time; on a GPU timing still runs alone
        verdicts = verify_many([(task, t) for t in texts], cfg, jobs=args.jobs)
    return _print_verdicts(args, verdicts)


def _verify_on_server(server: Path, args: argparse.Namespace, texts: list[str]) -> list:
    """The verdicts of a resident `tritonrl serve` (this process imports neither torch nor triton)."""
    if args.replay or args.cache:
        raise ValueError("--server answers fresh verifications only: drop --replay/--cache, or --server")
    reference = str(Path(args.reference).resolve()) if Path(args.reference).exists() else args.reference
    return request_verdicts(server, reference, texts, verify_options(args))


def _print_verdicts(args: argparse.Namespace, verdicts: list) -> int:
    if args.json:
        print(verdicts[0].to_json() if len(verdicts) == 1 else json.dumps([v.to_dict() for v in verdicts]))
    else:
        from tritonrl.cli.display import print_verdict

        for path, verdict in zip(args.candidate, verdicts, strict=True):
            if len(verdicts) > 1:
                print(f"== {path}")
            print_verdict(verdict)
    return EXIT_OK if all(v.passed for v in verdicts) else EXIT_REJECTED


def cmd_serve(args: argparse.Namespace) -> int:
    path = Path(args.socket) if args.socket else default_socket()
    with VerifyServer(path, load_reference=load_reference, default_device=device(args.device),
                      jobs=args.jobs) as server:  # fmt: skip
        # SIGTERM ends it as Ctrl-C does (a handler that touched threading's locks could deadlock on a second signal)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        print(
            f"serving verifications on {path} ({server.default_device}, {args.jobs} warm workers per config); "
            f"verify with: tritonrl verify REFERENCE CANDIDATE --server {path}   (Ctrl-C stops)",
            flush=True,
        )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:  # closing (the workers, the socket) is short and must finish: a second signal must not cut it
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_IGN)
        print(f"stopped after {server.served} verdicts")
    return EXIT_OK


def _recorded_seeds(path: str) -> dict:
    """The seeds a `tritonrl verify --json` verdict recorded (`extra.seeds`)."""
    try:
        seeds = json.loads(Path(path).read_text())["extra"]["seeds"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"--replay {path}: not a verdict with recorded seeds ({exc!r}); pass the JSON that "
                         "`tritonrl verify --json` printed") from None  # fmt: skip
    if not isinstance(seeds, dict) or not seeds:
        raise ValueError(f"--replay {path}: the verdict recorded no seeds (it stopped before drawing any case)")
    return seeds


def cmd_demo(args: argparse.Namespace) -> int:
    from tritonrl.cli.demo import export_candidates, run_demo
    from tritonrl.cli.display import demo_progress, print_demo

    if args.export_candidates:
        n = export_candidates(Path(args.export_candidates))
        print(
            f"wrote {n} candidates to {args.export_candidates}; evaluate them with: tritonrl eval --suite builtin "
            f"--candidates {args.export_candidates} --run RUN_DIR"
        )
        return EXIT_OK

    with demo_progress(disable=args.json) as advance:
        rows = run_demo(verify_config(args), jobs=args.jobs, on_result=advance)
    if args.json:
        print(json.dumps([{"case": r.name, "expected": r.expected, **r.verdict.to_dict()} for r in rows]))
    else:
        print_demo(rows)
    return EXIT_OK if all(r.as_expected for r in rows) else EXIT_REJECTED


def add_parsers(sub) -> None:  # noqa: ANN001
    p = sub.add_parser("verify", help="verify candidates against one reference")
    p.add_argument("reference", help="KernelBench-format reference file, or a built-in task id")
    p.add_argument("candidate", nargs="+", help="candidate .py files or raw LLM completions; '-' reads stdin")
    p.add_argument("--jobs", type=int, default=4, help="with several candidates: verified at once (warm workers)")
    p.add_argument("--cache", metavar="PATH",
                   help="a verdict cache (.jsonl, or .sqlite/.sqlite3/.db for one file several processes share): "
                        "candidates judged before under the same verifier settings are answered from it")  # fmt: skip
    p.add_argument("--replay", metavar="VERDICT_JSON",
                   help="draw the cases of an earlier verdict again from its recorded seeds (same task, config and "
                        "device): the same verdict, up to the candidate's own nondeterminism")  # fmt: skip
    p.add_argument("--server", metavar="SOCKET", nargs="?", const=str(default_socket()),
                   help="send the verification to a running `tritonrl serve` (warm workers: no start-up per call); "
                        f"without a value its default socket; ${SERVER_ENV} sets it for every call")  # fmt: skip
    add_verify_options(p)
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser("serve", help="keep warm verifier workers and answer `tritonrl verify --server` on a socket")
    p.add_argument("--socket", help=f"the Unix socket to listen on (default: {default_socket()})")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="the device of requests that say 'auto' (every `tritonrl verify` by default)")  # fmt: skip
    p.add_argument("--jobs", type=int, default=4, help="warm workers per verifier config (candidates verified at once)")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("demo", help="verify the bundled tasks' solutions and bundled bad candidates")
    add_verify_options(p)
    p.add_argument("--jobs", type=int, default=2, help="candidates verified in parallel")
    p.add_argument("--export-candidates", metavar="DIR", help="write the demo candidates as an eval folder and exit")
    p.set_defaults(func=cmd_demo)
