"""Export suites as training data: SFT rows (prompt + verified solution with a plan) and RL rows (prompt + reference
+ metadata), as JSONL per split and, optionally, as Hugging Face DatasetDicts saved to disk, with a manifest.

    OUT/manifest.json         suites (name, version), generator seed, split config (with the op pairs held out of
                              train in op-pair mode), prompt style, counts per level/source/split
    OUT/sft/<split>.jsonl     {task_id, prompt, completion, policy, split, level, source, difficulty, family, variant}
    OUT/rl/<split>.jsonl      {task_id, prompt, reference, roles, split, level, source, difficulty, family, variant,
                               label}
    OUT/hf/{sft,rl}/          DatasetDict (splits train/val/test) with the same columns (--format hf)
    OUT/curation.jsonl        one curation result per task with a solution; OUT/skipped.jsonl what was dropped
    OUT/verdicts.jsonl        the verdict cache (a rerun verifies nothing it has verified before; `cache` may name
                              another file, .jsonl or .sqlite, e.g. one shared by several exports)

Solutions are verified `jobs` at a time in pre-started workers (`verify/pool.py`). Only solutions the verifier
passed go into SFT rows: `verified` (strict), and with `include_partial` also `partial_port` (policy "partial"). An
export folder is itself a suite (`load_export_suite`, `tritonrl ... --suite OUT@train`), and `train/data.py` reads
`sft/<split>.jsonl` as verified pairs.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tritonrl.data.difficulty import pass_rates, profile, relabel_by_pass_rate
from tritonrl.data.hf import rows_dataset
from tritonrl.data.sources.rows import read_rows
from tritonrl.data.splits import SPLITS, SplitConfig, SplitPlan
from tritonrl.data.suites import MANIFEST, Suite, SuiteTask, assign_suite_splits, make_suite
from tritonrl.errors import ConfigError, TaskError
from tritonrl.tasks.loader import load_task
from tritonrl.tasks.prompts import PromptStyle, build_messages, prompt_style
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.verdict_store import open_verdict_store, verdict_store_backend

log = logging.getLogger(__name__)

FORMATS = ("jsonl", "hf")
Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclasses.dataclass
class ExportConfig:
    out: str = dataclasses.field(metadata={"help": "Output folder (created; files in it are replaced)."})
    formats: tuple[str, ...] = dataclasses.field(default=("jsonl",), metadata={"help": f"Any of {FORMATS}."})
    include_partial: bool = dataclasses.field(
        default=False, metadata={"help": "Also put partial ports (pass only under policy='partial') in SFT rows."}
    )
    dtypes: tuple[str, ...] = dataclasses.field(default=(), metadata={"help": "dtype variants: float16, bfloat16."})
    scales: tuple[float, ...] = dataclasses.field(default=(), metadata={"help": "Shape variants: size factors."})
    dedup: bool = dataclasses.field(default=True, metadata={"help": "Drop tasks whose normalized source repeats."})
    splits: SplitConfig = dataclasses.field(default_factory=SplitConfig, metadata={"help": "Family split config."})
    cache: str | None = dataclasses.field(
        default=None, metadata={"help": "Verdict cache: a .jsonl or .sqlite file (default OUT/verdicts.jsonl)."}
    )
    pass_rates: str | None = dataclasses.field(
        default=None, metadata={"help": "Verdict records (JSONL with task_id, passed) to relabel difficulty with."}
    )
    prompt: str = dataclasses.field(
        default=PromptStyle.ONE_SHOT.value,
        metadata={"help": "Prompt style: one-shot (with the worked example) or zero-shot (tasks/prompts.py)."},
    )
    jobs: int = dataclasses.field(
        default=2,
        metadata={
            "help": "Verifications at once per device, each in a pre-started worker (verify/pool.py); on "
            "'cuda' every visible GPU runs this many."
        },
    )

    def __post_init__(self) -> None:
        bad = [f for f in self.formats if f not in FORMATS]
        if bad or not self.formats:
            raise ConfigError(f"formats={list(self.formats)}: each must be one of {FORMATS} (e.g. --format jsonl).")
        prompt_style(self.prompt)  # raises with the accepted styles
        if self.jobs < 1:
            raise ConfigError(f"jobs={self.jobs}: must be >= 1 (the number of verifications at once, e.g. --jobs 2).")
        if self.cache is not None:
            verdict_store_backend(self.cache)  # raises for a suffix that names no backend, before any work


@dataclasses.dataclass(frozen=True, slots=True)
class ExportResult:
    out: Path
    manifest: dict[str, Any]
    n_sft: int
    n_rl: int


def export(
    suites: Sequence[Suite], cfg: ExportConfig, verify_cfg: VerifyConfig | None = None, progress: Progress | None = None
) -> ExportResult:
    """Merge, dedup, augment, split, curate and write (see the module docstring)."""
    from tritonrl.data.augment import augment
    from tritonrl.data.curate import curate
    from tritonrl.data.dedup import dedup

    progress = progress or (lambda stage, done, total: None)
    verify_cfg = verify_cfg or VerifyConfig()
    out = Path(cfg.out)
    entries = [e for s in suites for e in s.entries]
    skipped = [(i, why) for s in suites for i, why in s.skipped]
    make_suite("export", entries)  # raises on duplicate ids across the suites
    if cfg.dedup:
        entries, dropped = dedup(entries, lambda e: e.task.source, lambda e: e.task_id)
        skipped += dropped
    if cfg.dtypes or cfg.scales:
        total, done = len(entries) * (len(cfg.dtypes) + len(cfg.scales)), [0]

        def tick(_: SuiteTask | None) -> None:
            done[0] += 1
            progress("augment", done[0], total)

        variants, dropped = augment(entries, dtypes=cfg.dtypes, scales=cfg.scales, on_variant=tick)
        entries += variants
        skipped += dropped
    entries, plan = assign_suite_splits(entries, cfg.splits)
    if cfg.pass_rates:
        labels = relabel_by_pass_rate({e.task_id: e.difficulty for e in entries}, pass_rates(read_rows(cfg.pass_rates)))
        entries = [dataclasses.replace(e, difficulty=labels[e.task_id]) for e in entries]
    with_solution = [e for e in entries if e.solution is not None or e.label == "blocked"]
    done_curate = [0]

    def curated_tick(_: Any) -> None:
        done_curate[0] += 1
        progress("verify", done_curate[0], len(with_solution))

    with open_verdict_store(cfg.cache or out / "verdicts.jsonl") as cache:
        curated = curate(with_solution, verify_cfg, cache, on_result=curated_tick, jobs=cfg.jobs)
    curation = {c.task_id: c for c in curated}
    sft, rl = [], []
    for e in entries:
        messages = build_messages(e.task, style=cfg.prompt)
        rl.append(_rl_row(e, messages))
        c = curation.get(e.task_id)
        if c is not None and (c.status == "verified" or (cfg.include_partial and c.status == "partial_port")):
            sft.append({**_meta(e), "prompt": messages, "completion": completion(e, c.policy), "policy": c.policy})
    manifest = _manifest(suites, cfg, verify_cfg, sft, rl, curation, skipped, cache, plan)
    _write(out, cfg, sft, rl, curation, skipped, manifest)
    return ExportResult(out, manifest, len(sft), len(rl))


def completion(e: SuiteTask, policy: str) -> str:
    """The assistant answer of an SFT row: a short plan, then the solution in one ```python block."""
    return f"{plan_section(e, policy)}\n\n```python\n{e.solution.strip()}\n```"


def plan_section(e: SuiteTask, policy: str) -> str:
    """A few sentences: what forward computes, which kernels do it, and (partial ports) what torch still does."""
    try:
        tree = ast.parse(e.solution or "")
    except SyntaxError:
        tree = ast.Module(body=[], type_ignores=[])
    kernels = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)
               and any("jit" in ast.unparse(d) or "autotune" in ast.unparse(d) for d in n.decorator_list)]  # fmt: skip
    ops = list(dict.fromkeys(profile(e.task).ops))[:6]
    doc = (ast.get_docstring(tree) or "").strip().split("\n")[0]
    doc = doc.split(":", 1)[1].strip() if ":" in doc else doc  # "Triton solution for `relu`: flat 1-D grid."
    what = doc or f"port `Model.forward` ({', '.join(ops) or 'its computation'}) to Triton."
    names = ", ".join(f"`{k}`" for k in kernels) or "one Triton kernel"
    tiling = "" if doc else " (each program handles one block of elements, tails masked)"  # no docstring: generic
    plan = f"Plan: {what} Kernels: {names}{tiling}, launched from `ModelNew.forward`."
    if policy == "partial":
        return plan + " PyTorch still computes part of forward (e.g. the GEMM/conv): a partial port."
    return plan + " PyTorch only allocates outputs and makes views."


def load_export_suite(path: str | Path) -> Suite:
    """An export folder as a suite: its RL rows become tasks (with their split, level, difficulty, family)."""
    path = Path(path)
    manifest = json.loads((path / MANIFEST).read_text())
    files = sorted((path / "rl").glob("*.jsonl"))
    if not files:
        raise TaskError(f"{path}: an export folder needs rl/<split>.jsonl files; rerun `tritonrl tasks export`.")
    entries = []
    for row in (r for f in files for r in read_rows(f)):
        task = load_task(row["reference"], task_id=row["task_id"], level=int(row["level"]),
                         roles=json.loads(row.get("roles") or "{}"))  # fmt: skip
        fields = {"family": row["family"], "difficulty": row["difficulty"], "split": row["split"]}
        fields |= {"variant": row.get("variant", ""), "label": row.get("label", "")}
        entries.append(SuiteTask(task=task, origin=row["source"], **fields))
    suite = make_suite("export", entries, seed=manifest.get("generator_seed"))
    return dataclasses.replace(suite, version=str(manifest.get("version", suite.version)))


def _meta(e: SuiteTask) -> dict[str, Any]:
    return {"task_id": e.task_id, "split": e.split, "level": e.level, "source": e.origin,
            "difficulty": e.difficulty, "family": e.family, "variant": e.variant}  # fmt: skip


def _rl_row(e: SuiteTask, messages: list[dict[str, str]]) -> dict[str, Any]:
    roles = {c.name: c.role.value for c in e.task.constants if not c.name.startswith("get_inputs:")}
    return {**_meta(e), "prompt": messages, "reference": e.task.source, "roles": json.dumps(roles, sort_keys=True),
            "label": e.label}  # fmt: skip


def _counts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def by(key: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for row in rows:
            out[str(row[key])] = out.get(str(row[key]), 0) + 1
        return dict(sorted(out.items()))

    return {"total": len(rows), **{key: by(key) for key in ("level", "source", "split", "difficulty", "variant")}}


def _manifest(suites, cfg, verify_cfg, sft, rl, curation, skipped, cache, plan: SplitPlan) -> dict[str, Any]:  # noqa: ANN001
    import hashlib

    import tritonrl

    statuses: dict[str, int] = {}
    for c in curation.values():
        statuses[c.status.value] = statuses.get(c.status.value, 0) + 1
    version = hashlib.sha256("".join(f"{r['task_id']}\0{r['reference']}" for r in rl).encode()).hexdigest()[:12]
    seeds = [s.seed for s in suites if s.seed is not None]
    return {
        "tritonrl_version": tritonrl.__version__,
        "version": version,
        "suites": [{"name": s.name, "version": s.version, "seed": s.seed, "n_tasks": len(s.entries)} for s in suites],
        "generator_seed": seeds[0] if len(seeds) == 1 else (seeds or None),
        "splits": {
            "seed": cfg.splits.seed,
            "fractions": list(cfg.splits.fractions),
            "by": cfg.splits.by,
            "held_out_pairs": plan.to_manifest(),
        },
        "prompt": cfg.prompt,
        "augment": {"dtypes": list(cfg.dtypes), "scales": list(cfg.scales)},
        "dedup": cfg.dedup,
        "verify": {
            "device": verify_cfg.device,
            "config_hash": verify_cfg.config_hash(),
            "cache_hits": cache.hits,
            "verified_now": cache.misses,
            "include_partial": cfg.include_partial,
        },  # fmt: skip
        "counts": {
            "rl": _counts(rl),
            "sft": _counts(sft),
            "curation": dict(sorted(statuses.items())),
            "skipped": len(skipped),
        },  # fmt: skip
        "formats": list(cfg.formats),
    }


def _write(out: Path, cfg: ExportConfig, sft, rl, curation, skipped, manifest) -> None:  # noqa: ANN001
    out.mkdir(parents=True, exist_ok=True)
    for kind, rows in (("sft", sft), ("rl", rl)):
        folder = out / kind
        folder.mkdir(exist_ok=True)
        for split in SPLITS:
            _jsonl(folder / f"{split}.jsonl", [r for r in rows if r["split"] == split])
    _jsonl(out / "curation.jsonl", [{**dataclasses.asdict(c), "status": c.status.value} for c in curation.values()])
    _jsonl(out / "skipped.jsonl", [{"id": i, "reason": why} for i, why in skipped])
    if "hf" in cfg.formats:
        _save_hf(out / "hf", sft, rl)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    log.info("exported %d SFT and %d RL rows to %s", len(sft), len(rl), out)


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _save_hf(folder: Path, sft: list, rl: list) -> None:
    try:
        from datasets import DatasetDict
    except ImportError as e:
        raise ConfigError("--format hf needs `datasets` (pip install 'tritonrl[train]'); or use --format jsonl.") from e
    for kind, rows in (("sft", sft), ("rl", rl)):
        parts = {s: rows_dataset([r for r in rows if r["split"] == s]) for s in SPLITS
                 if any(r["split"] == s for r in rows)}  # fmt: skip
        if parts:
            DatasetDict(parts).save_to_disk(str(folder / kind))
