"""`tritonrl eval` as a function: register samples, verify what is pending, summarise, write the report.

A run directory holds `results.sqlite` (every sample and verdict), `report.md` and `report.html`. Running the same
command again resumes: samples already registered are kept (generation is not repeated), verdicts already recorded
are not recomputed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path

from tritonrl.errors import ConfigError
from tritonrl.eval.metrics import Summary, summarize
from tritonrl.eval.runner import Progress, RunStats, device_label, register_samples, run_local, run_ray
from tritonrl.eval.store import ResultStore
from tritonrl.generate import Generator, sample_tasks
from tritonrl.tasks.schema import Task
from tritonrl.verify.config import VerifyConfig

log = logging.getLogger(__name__)
CANDIDATE_SUFFIXES = (".py", ".txt", ".md")


def collect_candidates(
    folder: Path, tasks: list[Task], *, skip: frozenset[str] = frozenset()
) -> Iterator[tuple[str, int, int | None, str]]:
    """(task_id, sample, level, text) from `folder/<task_id>/*` (k samples, sorted by file name) and
    `folder/<task_id>.py`. Files of tasks in `skip` (deselected suite tasks) are ignored; a file that belongs to no
    task at all is an error: a typo in a folder name would otherwise silently lose its samples."""
    if not folder.is_dir():
        raise ConfigError(f"--candidates {folder}: not a folder (expected <folder>/<task_id>/*.py or <task_id>.py).")
    by_id = {t.task_id: t for t in tasks}
    grouped: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*")):
        if not (path.is_file() and path.suffix in CANDIDATE_SUFFIXES):
            continue
        rel = path.relative_to(folder)
        task_id = rel.stem if len(rel.parts) == 1 else str(rel.parent)
        if task_id in skip:
            continue
        if task_id not in by_id:
            raise ConfigError(f"candidate {path} belongs to no task of the suite (no task {task_id!r}); expected "
                              "<folder>/<task_id>/<name>.py or <folder>/<task_id>.py.")  # fmt: skip
        grouped.setdefault(task_id, []).append(path)
    for task_id, paths in grouped.items():
        for i, path in enumerate(paths):
            yield task_id, i, by_id[task_id].level, path.read_text(errors="replace")


def generate_samples(store: ResultStore, tasks: list[Task], generator: Generator, k: int) -> int:
    """Sample k completions for every task that has none registered yet; registers them as they come."""
    have = store.sampled_tasks()
    made = 0
    for task, completions in sample_tasks(generator, [t for t in tasks if t.task_id not in have], k):
        register_samples(store, [(task.task_id, i, task.level, c) for i, c in enumerate(completions)])
        made += len(completions)
    return made


def materialise_samples(folder: Path, tasks: list[Task], generator: Generator, k: int) -> Path:
    """Write k sampled completions per task to `folder/<task_id>/<i>.txt` (tasks already there are skipped), so
    several evaluations (an ablation) judge the same samples."""
    todo = [t for t in tasks if not (folder / t.task_id).is_dir() or len(list((folder / t.task_id).glob("*.txt"))) < k]
    for task, completions in sample_tasks(generator, todo, k):
        target = folder / task.task_id
        target.mkdir(parents=True, exist_ok=True)
        for i, text in enumerate(completions):
            (target / f"{i:04d}.txt").write_text(text)
    return folder


@dataclasses.dataclass(frozen=True)
class EvalResult:
    run_dir: Path
    stats: RunStats
    summary: Summary
    report_md: Path
    report_html: Path | None


def evaluate(
    run_dir: Path,
    tasks: list[Task],
    cfg: VerifyConfig,
    *,
    candidates: Path | None = None,
    generator: Generator | None = None,
    k: int = 1,
    jobs: int = 2,
    backend: str = "local",
    meta: dict | None = None,
    progress: Progress | None = None,
    skip_tasks: frozenset[str] = frozenset(),
) -> EvalResult:
    if (candidates is None) == (generator is None):
        raise ConfigError("give exactly one of a candidates folder or a model/endpoint to sample from.")
    if backend not in ("local", "ray"):
        raise ConfigError(f"--backend {backend!r}: choose 'local' or 'ray'.")
    run_dir.mkdir(parents=True, exist_ok=True)
    by_id = {t.task_id: t for t in tasks}
    with ResultStore(run_dir / "results.sqlite") as store:
        info = {
            **(meta or {}),
            "config": dataclasses.asdict(cfg),
            "config_hash": cfg.config_hash(),
            "device": device_label(cfg),
            "k": k,
            "source": str(candidates) if candidates else generator.name,
        }  # type: ignore[union-attr]
        store.set_meta("run", json.loads(json.dumps(info, default=str)))
        if candidates is not None:
            register_samples(store, collect_candidates(candidates, tasks, skip=skip_tasks))
        else:
            generate_samples(store, tasks, generator, k)  # type: ignore[arg-type]
        run = run_ray if backend == "ray" else run_local
        stats = run(store, by_id, cfg, jobs=jobs, progress=progress)
        records = store.records(cfg.config_hash(), device_label(cfg))
    if stats.skipped:  # unscored, so the report must say which tasks it leaves out, and why
        info["skipped tasks (reference cannot run here)"] = "; ".join(
            f"{t}: {why[:200]}" for t, why in sorted(stats.skipped.items())
        )
    summary = summarize(records, run=run_dir.name)
    md, html = write_run_report(run_dir, summary, info)
    return EvalResult(run_dir, stats, summary, md, html)


def write_run_report(run_dir: Path, summary: Summary, meta: dict, other: Summary | None = None):  # noqa: ANN201
    """report.md always; report.html when matplotlib is available (the eval extra)."""
    from tritonrl.eval.report import render_html, render_markdown

    md_path = run_dir / "report.md"
    md_path.write_text(render_markdown(summary, other, meta=meta))
    try:
        html = render_html(summary, other, meta=meta)
    except ImportError as exc:
        log.warning("no HTML report (%s); pip install 'tritonrl[eval]' for plots", exc)
        return md_path, None
    html_path = run_dir / "report.html"
    html_path.write_text(html)
    return md_path, html_path


def load_run(run_dir: Path, *, baseline: str = "eager") -> tuple[Summary, dict]:
    """Summary and metadata of a finished (or partial) run directory."""
    path = run_dir / "results.sqlite"
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no results.sqlite; is it a run directory made by `tritonrl eval`?")
    with ResultStore(path) as store:
        meta = store.get_meta("run", {})
        records = store.records(meta.get("config_hash"), meta.get("device"))
    return summarize(records, run=run_dir.name, baseline=baseline), meta
