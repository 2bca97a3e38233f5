"""Suites: named, versioned sets of tasks, each with a level, an origin, a family, a difficulty and a split.

Specs (`load_suite(spec)` returns a `Suite`; `resolve_suite(spec)` only its tasks):
    builtin                     the bundled tasks (each ships a solution)
    kernelbench:PATH[:1,2]      a KernelBench checkout, KernelBench/level{N}/*.py (levels 1-3 unless given)
    kernelbench-hf:SRC[:1,2]    KernelBench's HF form: rows {code, level, name, problem_id} from a local
                                parquet/JSONL file or folder, or a hub name (ScalingIntelligence/KernelBench, online)
    kernelbook:SRC              KernelBook rows (local parquet/JSONL or a hub name), converted and deduplicated;
                                each task's solution is its ported Inductor code (unverified until curated)
    fusion:N[:SEED]             N generated L2 fusion tasks (`data/fusion/spec.py`), each with a verified solution
    PATH                        a KernelBench checkout, an export folder (manifest.json), or a folder of task files
                                (with solutions/<id>.py where a task ships a solution)
    SPEC@train|@val|@test       only the tasks of one split
Levels: 1 a single op, 2 a fusion of ops, 3 a model. Splits are assigned per family (`splits.py`): leak-free, by
family hash or, with `SplitConfig(by="op-pair")`, holding whole adjacent op pairs out of train.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tritonrl.data.difficulty import infer_level, profile, structural_difficulty
from tritonrl.data.sources.kernelbench import checkout_root, load_checkout, load_hf
from tritonrl.data.splits import SPLITS, SplitConfig, SplitPlan, assign_splits
from tritonrl.errors import TaskError
from tritonrl.tasks.loader import builtin_tasks, load_task_dir
from tritonrl.tasks.schema import Task

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"  # an export folder (data/export.py) has one


@dataclasses.dataclass(frozen=True, slots=True)
class SuiteTask:
    """A task of a suite, with what the suite knows about it."""

    task: Task
    origin: str  # builtin | kernelbench | kernelbench-hf | kernelbook | fusion | folder | export
    family: str  # the original task's id: its variants share it, and splits are assigned per family
    difficulty: str = ""  # easy | medium | hard
    split: str = ""  # train | val | test
    variant: str = ""  # "" for the original; "float16", "x2", ... for augmented copies (data/augment.py)
    solution: str | None = None  # a ModelNew believed correct (bundled, generated, ported); export verifies it
    label: str = ""  # a curation label: "partial_port" (needs policy='partial'), "blocked", ...
    note: str = ""  # why the label (a blocker, a conversion note)
    meta: tuple[tuple[str, str], ...] = ()  # provenance (KernelBook repo, licence, ...), sorted by key
    ops: tuple[str, ...] = ()  # the op chain when the source knows it (fusion: the generator's); see `op_chain`

    @property
    def task_id(self) -> str:
        return self.task.task_id

    @property
    def level(self) -> int:
        return int(self.task.level or 1)

    def op_chain(self) -> tuple[str, ...]:
        """The ops of forward in order: the generator's chain for fusion tasks, else the static profile's."""
        return self.ops or profile(self.task).ops


@dataclasses.dataclass(frozen=True, slots=True)
class Suite:
    """A named, versioned set of tasks."""

    name: str  # from the spec: "builtin", "kernelbench", "kernelbook:sample", "fusion", ...
    version: str  # content digest of the task ids and sources: same version, same tasks
    entries: tuple[SuiteTask, ...]
    seed: int | None = None  # the generator seed (fusion), else None
    skipped: tuple[tuple[str, str], ...] = ()  # (row or task id, why it is not a task): load failures, duplicates

    @property
    def tasks(self) -> list[Task]:
        return [e.task for e in self.entries]

    def only(self, split: str) -> Suite:
        """The entries of one split."""
        if split not in SPLITS:
            raise TaskError(f"split {split!r}: must be one of {list(SPLITS)}.")
        return dataclasses.replace(self, entries=tuple(e for e in self.entries if e.split == split))

    def counts(self, key: str) -> dict[str, int]:
        """Entries per value of `key` (level, origin, split, difficulty, label, variant), keys sorted."""
        found = Counter(str(getattr(e, key)) for e in self.entries)
        return dict(sorted(found.items()))


def resolve_suite(spec: str) -> list[Task]:
    """The tasks of a suite specification (see the module docstring). Raises TaskError with the accepted forms."""
    return load_suite(spec).tasks


def load_suite(spec: str, *, splits: SplitConfig | None = None) -> Suite:
    """Load a suite and assign each family a split (exports keep the splits they were written with)."""
    base, _, split = spec.rpartition("@") if "@" in spec and not Path(spec).exists() else (spec, "", "")
    suite = _load(base)
    if suite.name != "export":
        entries, _ = assign_suite_splits(suite.entries, splits or SplitConfig())
        suite = dataclasses.replace(suite, entries=tuple(entries))
    return suite.only(split) if split else suite


def assign_suite_splits(entries: Sequence[SuiteTask], cfg: SplitConfig) -> tuple[list[SuiteTask], SplitPlan]:
    """The entries with their splits under `cfg` (by family hash, or holding op pairs out), and the plan."""
    plan = assign_splits([(e.family, e.op_chain() if cfg.by == "op-pair" else ()) for e in entries], cfg)
    return [dataclasses.replace(e, split=s) for e, s in zip(entries, plan.splits, strict=True)], plan


def make_suite(name: str, entries: list[SuiteTask], *, seed: int | None = None, skipped=()) -> Suite:  # noqa: ANN001
    """A suite with its content version. Task ids must be unique."""
    ids = Counter(e.task_id for e in entries)
    if dupes := sorted(i for i, n in ids.items() if n > 1):
        raise TaskError(f"suite {name!r}: task ids {dupes[:5]} occur more than once; ids must be unique.")
    digest = hashlib.sha256()
    for e in sorted(entries, key=lambda e: e.task_id):
        digest.update(f"{e.task_id}\0{e.task.source}\0".encode("utf-8", "surrogatepass"))
    return Suite(name, digest.hexdigest()[:12], tuple(entries), seed, tuple(skipped))


def entry(task: Task, origin: str, **fields) -> SuiteTask:  # noqa: ANN003
    """A SuiteTask whose family defaults to the task id and difficulty to the structural label."""
    fields.setdefault("family", task.task_id)
    fields.setdefault("difficulty", structural_difficulty(task))
    return SuiteTask(task=task, origin=origin, **fields)


def _load(spec: str) -> Suite:
    if spec == "builtin":
        return make_suite("builtin", [_with_solution(t, "builtin") for t in builtin_tasks()])
    kind, _, rest = spec.partition(":")
    if kind == "kernelbench" and rest:
        path, levels = _split_levels(rest)
        return make_suite("kernelbench", [entry(t, "kernelbench") for t in load_checkout(path, levels, spec=spec)])
    if kind == "kernelbench-hf" and rest:
        source, levels = _split_levels(rest)
        return make_suite("kernelbench-hf", [entry(t, "kernelbench-hf") for t in load_hf(source, levels)])
    if kind == "kernelbook" and rest:
        return _kernelbook(rest)
    if kind == "fusion" and rest:
        return _fusion(spec, rest)
    path = Path(spec)
    if path.is_dir() and (path / MANIFEST).is_file():
        from tritonrl.data.export import load_export_suite

        return load_export_suite(path)
    if path.is_dir() and checkout_root(path) is not None:
        return make_suite("kernelbench", [entry(t, "kernelbench") for t in load_checkout(path)])
    if path.is_dir():
        return make_suite(f"folder:{path.name}", [_with_solution(t, "folder") for t in load_task_dir(path)])
    raise TaskError(
        f"suite {spec!r}: expected 'builtin', 'kernelbench:PATH[:1,2]', 'kernelbench-hf:SRC[:1,2]', "
        "'kernelbook:SRC', 'fusion:N[:SEED]', an export folder or a folder of task files; add @train/@val/@test "
        "for one split."
    )


def _split_levels(rest: str) -> tuple[str, list[int] | None]:
    """'PATH:1,2' -> (PATH, [1, 2]); a PATH that exists (or has no level list) is taken whole."""
    if Path(rest).exists() or ":" not in rest:
        return rest, None
    path, _, level_text = rest.rpartition(":")
    try:
        levels = [int(x) for x in level_text.split(",") if x.strip()]
    except ValueError as e:
        raise TaskError(f"levels {level_text!r}: expected comma-separated numbers such as 1,2.") from e
    return path, levels or None


def _with_solution(task: Task, origin: str) -> SuiteTask:
    """An entry whose solution is the task's `solutions/<id>.py` file, when it has one."""
    solution = Path(task.solution_path).read_text() if task.solution_path else None
    return entry(task, origin, solution=solution)


def _kernelbook(source: str) -> Suite:
    from tritonrl.data.dedup import dedup
    from tritonrl.data.sources.kernelbook import load_kernelbook

    items = load_kernelbook(source)
    skipped = [(item.task_id, item.error) for item in items if item.task is None]
    entries = []
    for item in (i for i in items if i.task is not None):
        task = dataclasses.replace(item.task, level=infer_level(item.task))
        port = item.port
        label, note = "", item.error
        if port is not None and port.blockers:
            label, note = "blocked", "; ".join(port.blockers)
        elif port is not None and port.extern:
            label, note = "partial_port", f"extern_kernels.{'/'.join(port.extern)} became torch calls"
        entries.append(entry(task, "kernelbook", solution=item.candidate, label=label, note=note, meta=item.meta))
    entries, dropped = dedup(entries, lambda e: e.task.source, lambda e: e.task_id)
    name = f"kernelbook:{Path(source).stem}" if Path(source).exists() else f"kernelbook:{source}"
    return make_suite(name, entries, skipped=[*skipped, *dropped])


def _fusion(spec: str, rest: str) -> Suite:
    n_text, _, seed_text = rest.partition(":")
    try:
        n, seed = int(n_text), int(seed_text or 0)
    except ValueError as e:
        raise TaskError(f"suite {spec!r}: expected fusion:N[:SEED] with integers, e.g. fusion:50:0.") from e
    try:
        from tritonrl.data.fusion.spec import generate_fusion_tasks
    except ImportError as e:
        raise TaskError(f"suite {spec!r}: the fusion generator (tritonrl.data.fusion.spec) is not available.") from e
    entries = []
    for generated in generate_fusion_tasks(n, seed=seed):
        task = generated.task if generated.task.level else dataclasses.replace(generated.task, level=2)
        ops = generated.spec.get("ops") if isinstance(generated.spec, dict) else None
        family = f"fusion/{'-'.join(ops)}" if ops else task.task_id  # dtype/size siblings of one op chain
        entries.append(entry(task, "fusion", family=family, difficulty=generated.difficulty,
                             solution=generated.solution, ops=tuple(ops or ())))  # fmt: skip
    return make_suite("fusion", entries, seed=seed)
