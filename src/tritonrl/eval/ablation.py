"""Ablations: evaluate one candidate set under a grid of verifier configurations and compare them.

The seed design wanted "2^4 = 16 configurations" and never ran one. Here a grid is either the full product of named
verifier layers (`--toggle multi_input --toggle ghost_replay` gives 4 configurations; the layers are the table in
`verify/layers.py` that training presets use too) or an explicit YAML/JSON mapping
`{name: {VerifyConfig field: value}}`. Every configuration gets its own run directory (resumable like any eval) and
`ablation.md` puts them side by side. With a model, samples are drawn once and shared by every configuration.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

from tritonrl.errors import ConfigError
from tritonrl.eval.metrics import Summary
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.layers import LAYERS, apply_layers


def grid_from_toggles(names: list[str], base: VerifyConfig | None = None) -> dict[str, dict[str, Any]]:
    """The 2^n configurations of the named verifier layers (`verify/layers.py`, the table training presets use),
    as field overrides of `base`, e.g. {'multi_input=on,ghost_replay=off': {'ghost_replay': False}}."""
    base = base or VerifyConfig()
    unknown = [n for n in names if n not in LAYERS]
    if unknown or not names:
        raise ConfigError(f"--toggle {unknown or names}: choose from {sorted(LAYERS)}.")
    grid = {}
    for states in itertools.product((True, False), repeat=len(names)):
        cfg = apply_layers(base, dict(zip(names, states, strict=True)))
        overrides = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
                     if getattr(cfg, f.name) != getattr(base, f.name)}  # fmt: skip
        grid[",".join(f"{n}={'on' if on else 'off'}" for n, on in zip(names, states, strict=True))] = overrides
    return grid


def load_grid(path: Path) -> dict[str, dict[str, Any]]:
    """A YAML or JSON mapping {name: {field: value}}; fields are VerifyConfig fields."""
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    fields = {f.name for f in dataclasses.fields(VerifyConfig)}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"{path}: expected a mapping of configuration name -> {{field: value}}.")
    for name, overrides in data.items():
        bad = sorted(set(overrides) - fields)
        if bad:
            raise ConfigError(f"{path}: configuration {name!r} sets unknown fields {bad}; fields: {sorted(fields)}.")
        if "distributions" in overrides:
            overrides["distributions"] = tuple(overrides["distributions"])
    return data


def configs(base: VerifyConfig, grid: dict[str, dict[str, Any]]) -> dict[str, VerifyConfig]:
    return {name: dataclasses.replace(base, **overrides) for name, overrides in grid.items()}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def render_comparison(results: list[tuple[str, Summary]]) -> str:
    """Markdown: one row per configuration."""
    ks = sorted({k for _, s in results for k in s.overall.pass_at_k})
    head = ["configuration", "samples", "valid", "compiled", "correct", "fast_1", *[f"pass@{k}" for k in ks]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in results:
        o = s.overall
        fast1 = o.fast.get("1")
        row = [name, str(o.n_samples), f"{o.valid:.3f}", f"{o.compiled:.3f}", f"{o.correct:.3f}",
               "n/a" if fast1 is None else f"{fast1:.3f}",
               *[f"{o.pass_at_k[k]:.3f}" if k in o.pass_at_k else "n/a" for k in ks]]  # fmt: skip
        lines.append("| " + " | ".join(row) + " |")
    return "# Ablation\n\n" + "\n".join(lines) + "\n"


def run_ablation(
    out_dir: Path,
    tasks: list,
    base: VerifyConfig,
    grid: dict[str, dict[str, Any]],
    *,
    candidates: Path | None = None,
    generator: Any | None = None,
    k: int = 1,
    jobs: int = 2,
    backend: str = "local",
    progress: Any | None = None,
    skip_tasks: frozenset[str] = frozenset(),
) -> tuple[list[tuple[str, Summary]], Path]:
    """Evaluate every configuration of `grid` into `out_dir/<name>/`; returns the summaries and ablation.md."""
    from tritonrl.eval.pipeline import evaluate, materialise_samples

    out_dir.mkdir(parents=True, exist_ok=True)
    if generator is not None:  # draw the samples once; every configuration judges the same candidates
        candidates = materialise_samples(out_dir / "samples", tasks, generator, k)
    results = []
    for name, cfg in configs(base, grid).items():
        result = evaluate(out_dir / slug(name), tasks, cfg, candidates=candidates, k=k, jobs=jobs, backend=backend,
                          meta={"ablation": name}, progress=progress, skip_tasks=skip_tasks)  # fmt: skip
        results.append((name, result.summary))
    path = out_dir / "ablation.md"
    path.write_text(render_comparison(results))
    return results, path
