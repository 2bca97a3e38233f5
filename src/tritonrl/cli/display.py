"""Rendering for the CLI only (rich tables and progress). Library code never imports this module."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tritonrl.types import Verdict

console = Console(width=None if Console().is_terminal else 160)  # pipes and CI logs get wide tables


def _progress(disable: bool, *extra: object) -> Progress:
    """A transient progress line on stderr (stdout stays clean for --json)."""
    columns = [TextColumn("verifying"), *extra, MofNCompleteColumn(), TextColumn("{task.description}"),
               TimeElapsedColumn()]  # fmt: skip
    return Progress(*columns, console=Console(stderr=True), disable=disable, transient=True)


def print_verdict(v: Verdict) -> None:
    status = "[bold green]PASSED[/]" if v.passed else "[bold red]REJECTED[/]"
    failure = f" [red]{v.failure.value}[/]" if v.failure else ""
    console.print(f"{status}  task={v.task_id} device={v.device} stage={v.stage.value}{failure}")
    console.print(f"  {v.message}", markup=False, highlight=False)
    if v.checks:
        table = Table("case", "sizes", "dist", "ok", "max abs err", "max rel err", "mismatch", box=None)
        for c in v.checks:
            sizes = ",".join(f"{k}={s}" for k, s in c.sizes.items())
            table.add_row(
                c.case,
                sizes,
                c.distribution,
                "[green]yes[/]" if c.passed else "[red]no[/]",
                f"{c.stats.max_abs_err:.2e}",
                f"{c.stats.max_rel_err:.2e}",
                f"{c.stats.n_mismatch}/{c.stats.n_elements}",
            )
        console.print(table)
    if (t := v.timing) is not None and t.speedup is not None:  # the statistics exist once the wall check passed
        lo, hi = t.speedup_ci95
        line = (
            f"  speedup {t.speedup:.3f}x (95% CI {lo:.3f}-{hi:.3f}) over eager: {t.ref_us:.2f} us -> "
            f"{t.cand_us:.2f} us, {t.mode}, CV {t.ref_cv:.1%}/{t.cand_cv:.1%} on {t.gpu}"
        )
        if t.speedup_compile is not None:
            line += f"; {t.speedup_compile:.3f}x over torch.compile"
        console.print(line, highlight=False)
        if roof := t.roofline:
            console.print(f"  roofline: floor {roof.floor_us:.2f} us ({roof.bound}), achieved "
                          f"{roof.bandwidth_fraction:.1%} of bandwidth, {roof.flops_fraction:.1%} of FLOP/s",
                          highlight=False)  # fmt: skip
    if v.provenance and v.provenance.candidate_kernels:
        console.print(f"  kernels: {', '.join(v.provenance.candidate_kernels)} ({v.provenance.n_launches} launches)")
    for w in v.static_warnings:
        console.print(f"  [yellow]warning[/]: {w}", highlight=False)
    if v.extra.get("detail"):
        console.print(v.extra["detail"], markup=False, highlight=False, style="dim")
    times = ", ".join(f"{k} {ms:.0f} ms" for k, ms in v.stage_times_ms.items())
    console.print(f"  [dim]time: {times}[/]")


@contextlib.contextmanager
def demo_progress(disable: bool = False) -> Iterator[Callable]:
    from tritonrl.cli.demo import demo_cases

    total = len(demo_cases())
    with _progress(disable, BarColumn()) as progress:
        bar = progress.add_task("", total=total)
        state = {"ok": 0}

        def advance(row) -> None:  # noqa: ANN001
            state["ok"] += row.as_expected
            progress.update(bar, advance=1, description=f"{state['ok']} as expected")

        yield advance


def print_demo(rows) -> None:  # noqa: ANN001
    device = rows[0].verdict.device if rows else "cpu"
    title = "tritonrl demo" + (" (Triton interpreter)" if device == "cpu" else f" ({device})")
    table = Table(title=title)
    for col in ("candidate", "expected", "verdict"):
        table.add_column(col, no_wrap=True)
    table.add_column("message", no_wrap=True, overflow="ellipsis", max_width=80)
    for r in rows:
        mark = "[green]✓[/]" if r.as_expected else "[red]✗[/]"
        table.add_row(r.name, r.expected, f"{mark} {r.outcome}", r.verdict.message)
    console.print(table)
    n_ok = sum(r.as_expected for r in rows)
    console.print(f"{n_ok}/{len(rows)} verdicts as expected")


@contextlib.contextmanager
def eval_progress(disable: bool = False) -> Iterator[Callable]:
    """A live progress line for `tritonrl eval`: verdicts recorded and how many passed."""
    with _progress(disable) as progress:
        bar = progress.add_task("", total=None)
        state = {"n": 0, "ok": 0}

        def advance(record) -> None:  # noqa: ANN001
            state["n"] += 1
            state["ok"] += record.verdict.passed
            progress.update(bar, completed=state["n"], description=f"{state['ok']} passed")

        yield advance


@contextlib.contextmanager
def stage_progress(disable: bool = False) -> Iterator[Callable[[str, int, int], None]]:
    """A progress line for multi-stage work (`tasks export`, `tasks curate`): call it with (stage, done, total)."""
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=Console(stderr=True), disable=disable, transient=True) as progress:
        bars: dict[str, object] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in bars:
                bars[stage] = progress.add_task(stage, total=total)
            progress.update(bars[stage], completed=done, total=total)

        yield update


def print_curation(results, skipped) -> None:  # noqa: ANN001
    """One row per curated task, then the counts per status and the rows that never became tasks."""
    table = Table(title="curation")
    for col in ("task", "status", "policy", "seconds"):
        table.add_column(col, no_wrap=True)
    table.add_column("reason", overflow="ellipsis", max_width=90)
    for r in results:
        color = {"verified": "green", "partial_port": "yellow"}.get(r.status.value, "red")
        table.add_row(r.task_id, f"[{color}]{r.status.value}[/]", r.policy, f"{r.seconds:.1f}", r.reason)
    console.print(table)
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status.value] = counts.get(r.status.value, 0) + 1
    console.print("  ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "nothing to curate")
    for item, why in skipped:
        console.print(f"[dim]skipped {item}: {why}[/]", highlight=False)
