"""KernelBench's own evaluation harness on a batch of (reference, candidate) sources: `eval_kernel_against_ref` from
a local KernelBench checkout, N worker processes at a time, each candidate bounded by a timeout. Used by
`bench_timing_gpu.py kernelbench` (issue 13: its one-at-a-time and 8-process throughput beside ours, on one batch).

The eval module is loaded from the checkout by path, as a submodule of its package WITHOUT running the package's
`__init__.py` (which imports `utils`, and with it openai, litellm and python-dotenv, that the eval path does not
need). Nothing is stubbed: an import the eval module or its call path really makes and that is missing here is
reported by `import_report` and the KernelBench part is skipped with that message. KernelBench runs candidates in
its worker process, unsandboxed: that is the harness being measured, not a choice of ours.

On a GPU machine without pydantic (eval.py imports it at import time), carry its wheels. KernelBench after commit
b6c5259 (Jan 2026) also imports `utils` (openai, litellm, python-dotenv) inside `eval_kernel_against_ref`; b6c5259's
eval path is the same for Triton on NVIDIA (the later change adds an AMD/NVIDIA vendor check) and needs only pydantic.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import io
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from queue import SimpleQueue

# (eval module path under the checkout, package it belongs to): the layout since KernelBench's package metadata
# change (Dec 2025), then the older flat `src/` package.
LAYOUTS = (("src/kernelbench/eval.py", "kernelbench"), ("src/eval.py", "src"))
ENTRY = "eval_kernel_against_ref"
ERROR_KEYS = ("compilation_error", "runtime_error", "correctness_issue", "max_difference", "other_error",
              "error_during_performance", "error")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Candidate:
    name: str  # "relu#0" for a built-in solution, "relu/aten_direct" for a fixture
    good: bool  # a built-in solution (should be accepted) rather than a known-bad fixture
    reference: str  # the task's PyTorch reference, KernelBench format (Model, get_inputs, get_init_inputs)
    source: str  # the candidate file's text, as it is (ModelNew)


@dataclass(frozen=True, slots=True)
class Options:
    correct_trials: int = 5  # KernelBench's eval_from_generations defaults: 5 correctness trials,
    perf_trials: int = 100  # 100 timed runs, performance measured, CUDA-event timing, fp32
    measure_performance: bool = True
    timeout_s: float = 120.0  # per candidate, worker start included; a timeout is a rejection
    backend: str = "triton"


class KernelBenchUnavailable(RuntimeError):
    """The eval module could not be loaded or called with the arguments we bind (an infrastructure error)."""


def locate(root: Path) -> tuple[Path, str]:
    """The checkout's eval module and its package name; raises KernelBenchUnavailable if neither layout is there."""
    for rel, package in LAYOUTS:
        if (root / rel).is_file():
            return root / rel, package
    raise KernelBenchUnavailable(f"no {' or '.join(r for r, _ in LAYOUTS)} under {root}: pass a KernelBench checkout")


def load_eval(root: Path):
    """Import the checkout's eval module under its package name, the package's __init__ not run (see module doc)."""
    path, package = locate(root)
    if package not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            package, path.parent / "__init__.py", submodule_search_locations=[str(path.parent)]
        )
        sys.modules[package] = importlib.util.module_from_spec(spec)  # a real package object; __init__ not executed
    return importlib.import_module(f"{package}.{path.stem}")


def _imports(nodes: list[ast.stmt]) -> tuple[set[str], set[str]]:
    """(absolute top-level module names, sibling modules of relative imports) imported by these statements."""
    absolute, relative = set(), set()
    for node in nodes:
        if isinstance(node, ast.Import):
            absolute |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            absolute.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            relative |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
    return absolute, relative


def _top_level_imports(file: Path) -> tuple[set[str], set[str]]:
    return _imports([n for n in ast.parse(file.read_text()).body if isinstance(n, ast.Import | ast.ImportFrom)])


def import_report(root: Path) -> dict:
    """Which third-party modules the eval path imports (the eval module and its sibling modules at import time, and
    what `eval_kernel_against_ref` imports when called), and whether each is importable in this interpreter."""
    path, _ = locate(root)
    tree = ast.parse(path.read_text())
    entry = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == ENTRY), None)
    at_call = [n for n in ast.walk(entry) if isinstance(n, ast.Import | ast.ImportFrom)] if entry else []
    report, seen = {}, set()
    for when, (absolute, relative) in (("at import", _top_level_imports(path)), ("at call", _imports(at_call))):
        report[f"{path.name} {when}"] = absolute
        for sibling in sorted(relative - seen):
            seen.add(sibling)
            file = path.parent / f"{sibling}.py"
            if file.is_file():
                report[f"{file.name} (imported by {path.name} {when})"] = _top_level_imports(file)[0]
    third_party = {k: sorted(m for m in v if m not in sys.stdlib_module_names) for k, v in report.items()}
    missing = sorted({m for mods in third_party.values() for m in mods if importlib.util.find_spec(m) is None})
    return {"eval_module": str(path.relative_to(root)), "third_party_imports": third_party, "missing": missing}


def call_kwargs(fn, opts: Options) -> tuple[dict, list[str]]:
    """The keyword arguments we pass besides the two sources (KernelBench's batch-script values), limited to the
    parameters `fn` has, and the names of the optional ones it lacks. Checked by binding to the signature."""
    import torch

    kwargs = {
        "seed_num": 42,
        "num_correct_trials": opts.correct_trials,
        "num_perf_trials": opts.perf_trials,
        "measure_performance": opts.measure_performance,
        "verbose": False,
        "build_dir": os.path.join(tempfile.gettempdir(), "kb-build"),  # read by the CUDA backend only
        "device": torch.device("cuda:0"),  # as KernelBench's batch script passes it
    }
    optional = {"backend": opts.backend, "timing_method": "cuda_event", "precision": torch.float32}
    params = inspect.signature(fn).parameters
    kwargs |= {k: v for k, v in optional.items() if k in params}  # an older KernelBench lacks some
    inspect.signature(fn).bind(original_model_src="", custom_model_src="", **kwargs)  # TypeError if they don't fit
    return kwargs, [k for k in optional if k not in params]


def _record(result, error: str | None) -> dict:
    """A KernelExecResult (or None: KernelBench's "retry" return) as plain JSON values."""
    if result is None:
        return {"compiled": False, "correct": False, "error": error or f"{ENTRY} returned None (KernelBench: retry)"}
    meta = {k: str(v)[:300] for k, v in (result.metadata or {}).items()}
    runtime, ref = result.runtime, getattr(result, "ref_runtime", -1.0)
    return {
        "compiled": bool(result.compiled), "correct": bool(result.correctness),
        "runtime_ms": runtime if runtime > 0 else None, "ref_runtime_ms": ref if ref > 0 else None,
        "speedup": round(ref / runtime, 3) if runtime > 0 and ref > 0 else None,
        "excessive_speedup": bool(meta.get("excessive_speedup")),
        "error": "; ".join(f"{k}: {meta[k]}" for k in ERROR_KEYS if k in meta) or None,
    }  # fmt: skip


def _serve(conn, root: str, opts: Options, env: dict) -> None:
    """Worker process: load the eval function once, then evaluate (reference, candidate) jobs until None or EOF.
    Replies one dict per job; {"fatal": ...} if the function cannot be loaded or bound."""
    os.environ.update(env)
    t0 = time.perf_counter()
    try:
        import torch

        fn = getattr(load_eval(Path(root)), ENTRY)
        kwargs, _ = call_kwargs(fn, opts)
    except Exception as exc:  # noqa: BLE001 - sent to the parent, which stops the run with it
        conn.send({"fatal": f"{type(exc).__name__}: {exc}"})
        return
    load_s = round(time.perf_counter() - t0, 2)
    while (job := _recv(conn)) is not None:
        log, t1, result, error = io.StringIO(), time.perf_counter(), None, None
        try:
            with redirect_stdout(log), redirect_stderr(log):
                result = fn(original_model_src=job[0], custom_model_src=job[1], **kwargs)
        except Exception as exc:  # noqa: BLE001 - KernelBench's batch script counts these as failures too
            error = f"raised {type(exc).__name__}: {str(exc)[:300]}"
        row = _record(result, error) | {"eval_s": round(time.perf_counter() - t1, 2), "worker_load_s": load_s}
        if not row["correct"]:
            row["log_tail"] = log.getvalue()[-800:]
        try:  # a candidate that broke the CUDA context would fail every later one in this process
            if torch.cuda.is_initialized():
                torch.cuda.synchronize()
        except Exception as exc:  # noqa: BLE001
            row["restart"] = f"CUDA context broken: {str(exc)[:200]}"
        conn.send(row)
        load_s = None


def _recv(conn):
    try:
        return conn.recv()
    except (EOFError, OSError):  # the other end is gone: EOF, or a reset when it died mid-message
        return None


class Slot:
    """One worker process evaluating candidates one at a time; replaced after a timeout, a crash or a broken
    CUDA context, so a bad candidate costs at most one timeout and never poisons the next one."""

    def __init__(self, root: Path, opts: Options, env: dict) -> None:
        self.root, self.opts, self.env = str(root), opts, env
        self.proc = self.conn = None
        self.starts = 0

    def evaluate(self, cand: Candidate) -> dict:
        if self.proc is None:
            ctx = multiprocessing.get_context("spawn")  # CUDA in the children: never fork
            self.conn, child = ctx.Pipe()
            self.proc = ctx.Process(target=_serve, args=(child, self.root, self.opts, self.env), daemon=True)
            self.proc.start()
            child.close()
            self.starts += 1
        try:
            self.conn.send((cand.reference, cand.source))
        except OSError:  # died while idle: recv below reports it
            pass
        if not self.conn.poll(self.opts.timeout_s):
            self.close()
            return {"compiled": False, "correct": False, "error": f"timeout after {self.opts.timeout_s:g} s"}
        if (row := _recv(self.conn)) is None:
            self.proc.join(5)
            code = self.proc.exitcode
            self.close()
            return {"compiled": False, "correct": False, "error": f"worker process died (exit code {code})"}
        if "fatal" in row:
            self.close()
            raise KernelBenchUnavailable(row["fatal"])
        if row.get("restart"):  # kept in the row: the next candidate gets a fresh process
            self.close()
        return row

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.join()
            self.conn.close()
        self.proc = self.conn = None


def run(root: Path, batch: list[Candidate], procs: int, opts: Options, progress=print) -> dict:
    """Evaluate the batch with `procs` worker processes at once; returns the throughput summary (the shape of
    bench_timing_gpu's `throughput`) with one row per candidate. Each mode gets a fresh Triton cache, so neither
    reuses kernels the other compiled."""
    env = {"TRITON_CACHE_DIR": tempfile.mkdtemp(prefix=f"kb-triton-{procs}p-")}
    slots: SimpleQueue[Slot] = SimpleQueue()
    all_slots = [Slot(root, opts, env) for _ in range(procs)]
    for s in all_slots:
        slots.put(s)
    rows: list[dict | None] = [None] * len(batch)
    fatal: list[str] = []  # the eval function could not be loaded in a worker: every other one would fail alike
    lock, t0 = threading.Lock(), time.perf_counter()

    def one(i: int) -> None:
        if fatal:
            return
        slot = slots.get()
        try:
            rows[i] = {"name": batch[i].name, "good": batch[i].good} | slot.evaluate(batch[i])
        except KernelBenchUnavailable as exc:
            fatal.append(str(exc))
            return
        finally:
            slots.put(slot)
        with lock:
            done = sum(r is not None for r in rows)
            verdict = "correct" if rows[i]["correct"] else (rows[i]["error"] or "incorrect")[:80]
            progress(f"[{time.perf_counter() - t0:6.1f} s] kb {procs}p {done}/{len(batch)} {batch[i].name}: {verdict}")

    try:
        with ThreadPoolExecutor(procs) as pool:
            list(pool.map(one, range(len(batch))))
    finally:
        for s in all_slots:
            s.close()
    if fatal:
        raise KernelBenchUnavailable(fatal[0])
    wall = time.perf_counter() - t0
    return summarise(rows, procs, wall, opts, starts=sum(s.starts for s in all_slots))


def summarise(rows: list[dict], procs: int, wall: float, opts: Options, starts: int) -> dict:
    loads = sorted(r["worker_load_s"] for r in rows if r.get("worker_load_s"))
    return {
        "harness": "kernelbench eval_kernel_against_ref", "procs": procs, "candidates": len(rows),
        "wall_s": round(wall, 1), "per_minute": round(60 * len(rows) / wall, 1),
        "good": sum(r["good"] for r in rows), "accepted_good": sum(r["good"] and r["correct"] for r in rows),
        "bad": sum(not r["good"] for r in rows),
        "accepted_bad": [r["name"] for r in rows if not r["good"] and r["correct"]],
        "rejected_good": [r["name"] for r in rows if r["good"] and not r["correct"]],
        "timeouts": sum((r.get("error") or "").startswith("timeout") for r in rows),
        "worker_starts": starts, "worker_load_s_median": loads[len(loads) // 2] if loads else None,
        "options": {"correct_trials": opts.correct_trials, "perf_trials": opts.perf_trials,
                    "measure_performance": opts.measure_performance, "timeout_s": opts.timeout_s,
                    "backend": opts.backend},
        "errors": [{"name": r["name"], "error": r["error"]} for r in rows if r.get("error")],
        "per_candidate": rows,
    }  # fmt: skip


def dry_run(root: Path, batch: list[Candidate], opts: Options) -> dict:
    """Everything up to the GPU: the batch's sources parse and define what KernelBench looks up, the eval module's
    imports, and the call we would make bound to its signature (the module is imported here; CUDA is not touched)."""
    names = {"reference": ("Model", "get_inputs", "get_init_inputs"), "candidate": ("ModelNew",)}
    lacking = []
    for c in batch:
        for role, src in (("reference", c.reference), ("candidate", c.source)):
            try:
                defined = {n.name for n in ast.parse(src).body if isinstance(n, ast.ClassDef | ast.FunctionDef)}
            except SyntaxError as exc:
                lacking.append(f"{c.name} {role}: SyntaxError {exc.msg}")
                continue
            lacking += [f"{c.name} {role}: no {n}" for n in names[role] if n not in defined]
    plan = {"candidates": len(batch), "good": sum(c.good for c in batch), "bad": sum(not c.good for c in batch),
            "names": [c.name for c in batch], "sources_lacking": lacking, "imports": import_report(root)}  # fmt: skip
    try:
        fn = getattr(load_eval(root), ENTRY)
    except Exception as exc:  # noqa: BLE001 - the dry run reports it
        return plan | {"load_error": f"{type(exc).__name__}: {exc}"}
    kwargs, lacks = call_kwargs(fn, opts)
    plan["signature"] = f"{ENTRY}{inspect.signature(fn)}"
    plan["bound_kwargs"] = {k: str(v) for k, v in kwargs.items()}
    plan["optional_params_absent"] = lacks
    return plan
