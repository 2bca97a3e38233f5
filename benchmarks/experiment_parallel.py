"""`train_experiment.py --parallel`: the whole experiment in one device call, as processes that share the machine.

SFT trains once, in `--out/base`. The parts then run side by side, each a `--resume` of a copy of `base` (its `init`
and `sft` models linked, its results.json copied):
  grpo      GRPO from the SFT model, then the GRPO model's evaluation (the longest part: it starts first)
  control   the SFT model's evaluation, then the control's SFT steps and its evaluation
  floor     the untrained model's evaluation (unless --skip-untrained): it writes no code, so it needs 1 worker
Their results are joined into `--out/results.json` (`train_experiment.join`). One process at a time would need
~1,000 s on an H100 at section 7e's sizes (docs/benchmarks.md); side by side the parts take ~400 s after SFT.

`--deadline-s` ends the parts still running that many seconds after the command started (a device call has a hard
limit, and a part cut there by the machine's end loses everything: section 7f). Each part saves its results after
every phase, so a cut part keeps the phases it finished, and the join says which part was cut. Rerunning the same
command keeps what the folders hold (every part runs with `--resume`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("train_experiment")

# Flags the orchestrator sets for each part itself: dropped from the command line the parts inherit.
OWN_VALUE_FLAGS = ("--out", "--jobs", "--stop-after", "--deadline-s", "--control-steps")
OWN_SWITCHES = ("--parallel", "--resume", "--skip-grpo", "--skip-sft-eval")
# A part cut by the deadline gets this long after SIGTERM to end before SIGKILL.
TERM_GRACE_S = 10.0
POLL_S = 2.0
# How often the parts still running are reported (elapsed time and the last line of each log): a part's phases take
# minutes on a GPU, and its output goes to its own log, not to the terminal.
PROGRESS_S = 60.0


@dataclass(frozen=True)
class Part:
    """One process of the run: its folder under --out and the flags it adds to the inherited command line."""

    name: str
    folder: Path
    flags: tuple[str, ...]


@dataclass(frozen=True)
class PartEnd:
    """How a part ended: its exit status (None when the deadline cut it), its wall time and its log."""

    name: str
    returncode: int | None
    seconds: float
    log_path: Path

    @property
    def cut(self) -> bool:
        return self.returncode is None


def inherited(argv: list[str]) -> list[str]:
    """The command line without the flags the orchestrator sets per part (both `--flag value` and `--flag=value`)."""
    out: list[str] = []
    skip_next = False
    for arg in argv:
        if skip_next:
            skip_next = False
            continue
        name = arg.split("=", 1)[0]
        if name in OWN_SWITCHES or (name in OWN_VALUE_FLAGS and "=" in arg):
            continue
        if name in OWN_VALUE_FLAGS:
            skip_next = True
            continue
        out.append(arg)
    return out


def split_jobs(jobs: int) -> tuple[int, int]:
    """Verifier workers for the GRPO part and the control part. GRPO verifies a whole generation round at once
    (64 completions in section 7e), the control part only greedy answers, one per task: GRPO gets 60%."""
    grpo = max(1, round(jobs * 0.6))
    return grpo, max(1, jobs - grpo)


def fork_folder(base: Path, folder: Path) -> None:
    """A part's folder: base's `init` and `sft` models linked, base's results.json copied unless the folder already
    has its own (an earlier, cut run of this part: `--resume` keeps what it finished)."""
    folder.mkdir(parents=True, exist_ok=True)
    for model in ("init", "sft"):
        link = folder / model
        if not link.exists():
            link.symlink_to((base / model).resolve(), target_is_directory=True)
    if not (folder / "results.json").exists():
        shutil.copy(base / "results.json", folder / "results.json")


def run_parts(script: Path, argv: list[str], parts: list[Part], deadline: float | None) -> list[PartEnd]:
    """Start every part (each in its own session, its output in FOLDER/part.log), wait for all of them, and end the
    ones still running at `deadline` (a time.monotonic() value): SIGTERM to the part's process group, SIGKILL after
    TERM_GRACE_S."""
    running: dict[str, tuple[subprocess.Popen, float, Path]] = {}
    for part in parts:
        part.folder.mkdir(parents=True, exist_ok=True)
        log_path = part.folder / "part.log"
        cmd = [sys.executable, str(script), *argv, "--out", str(part.folder), *part.flags]
        log.info("part %s: %s", part.name, " ".join(cmd))
        with log_path.open("ab") as sink:
            proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        running[part.name] = (proc, time.monotonic(), log_path)
    ends: dict[str, PartEnd] = {}
    reported = time.monotonic()
    while len(ends) < len(running):
        if time.monotonic() - reported >= PROGRESS_S:
            reported = time.monotonic()
            for name, (_, t0, log_path) in running.items():
                if name not in ends:
                    log.info("part %s running, %.0f s: %s", name, reported - t0, _last_line(log_path))
        for name, (proc, t0, log_path) in running.items():
            if name not in ends and proc.poll() is not None:
                ends[name] = PartEnd(name, proc.returncode, round(time.monotonic() - t0, 1), log_path)
                log.info("part %s ended: exit %d after %.0f s", name, proc.returncode, ends[name].seconds)
        if deadline is not None and time.monotonic() >= deadline:
            for name, (proc, t0, log_path) in running.items():
                if name not in ends:
                    _end(proc)
                    ends[name] = PartEnd(name, None, round(time.monotonic() - t0, 1), log_path)
                    seconds = ends[name].seconds
                    log.warning("part %s cut by --deadline-s after %.0f s (see %s)", name, seconds, log_path)
            break
        time.sleep(POLL_S)
    return [ends[p.name] for p in parts]


def _last_line(path: Path, width: int = 160) -> str:
    """The last non-empty line of a part's log (progress bars rewrite one line with carriage returns: their last
    state), cut to `width`."""
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - 4096))
        tail = f.read().decode("utf-8", "replace")
    lines = [line.rsplit("\r", 1)[-1].strip() for line in tail.splitlines()]
    lines = [line for line in lines if line]
    return lines[-1][:width] if lines else "(no output yet)"


def _end(proc: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGTERM, TERM_GRACE_S), (signal.SIGKILL, TERM_GRACE_S)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def run(args: Any, argv: list[str], script: Path, join: Any) -> dict[str, Any]:
    """The experiment as parts (module docstring); returns the joined results, also written to --out/results.json,
    with a `parallel` record of how each part ended."""
    t0 = time.monotonic()
    deadline = t0 + args.deadline_s if args.deadline_s else None
    out = Path(args.out).resolve()
    common = inherited(argv)
    base = out / "base"
    # SFT alone: it is the one phase every part needs, and a machine shared with it would slow it for all of them.
    sft = Part("base", base, _flags(args.jobs, "--skip-untrained", "--stop-after", "sft-train"))
    ends = run_parts(script, common, [sft], deadline)
    if ends[0].returncode != 0 or not (base / "sft" / "config.json").exists():
        raise SystemExit(f"--parallel: SFT did not finish ({_how(ends[0])}); its log: {ends[0].log_path}")
    grpo_jobs, control_jobs = split_jobs(args.jobs)
    grpo = _flags(grpo_jobs, "--skip-untrained", "--skip-sft-eval", "--stop-after", "grpo")
    control = _flags(control_jobs, "--skip-untrained", "--skip-grpo", "--control-steps", str(args.control_steps))
    arms = [Part("grpo", out / "grpo-part", grpo), Part("control", out / "control-part", control)]
    if not args.skip_untrained:
        arms.append(Part("floor", out / "floor-part", _flags(1, "--skip-sft-eval", "--stop-after", "sft")))
    for part in arms:
        fork_folder(base, part.folder)
    ends += run_parts(script, common, arms, deadline)
    # The join's order of rows is the table's (train_experiment.MODEL_ORDER), whichever part scored which model.
    files = [p.folder / "results.json" for p in arms]
    results = join([json.loads(f.read_text()) for f in files])
    record = {
        e.name: {
            "exit": e.returncode,
            "cut_by_deadline": e.cut,
            "seconds": e.seconds,
            "log": str(e.log_path.relative_to(out)),
        }
        for e in ends
    }
    results["parallel"] = {"argv": argv, "parts": record}
    results["total_s"] = round(time.monotonic() - t0, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    for e in ends:
        if e.returncode:
            log.warning("part %s failed (%s): its log is %s", e.name, _how(e), e.log_path)
    return results


def _flags(jobs: int, *flags: str) -> tuple[str, ...]:
    """A part's own flags: its verifier workers, --resume (keep what base or an earlier cut run finished), `flags`."""
    return ("--jobs", str(jobs), "--resume", *flags)


def _how(end: PartEnd) -> str:
    return "cut by --deadline-s" if end.cut else f"exit {end.returncode}"
