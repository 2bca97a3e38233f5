"""The verifier's layers as switches: one table, read by training presets (`train/config.py`), `tritonrl ablate`
(`eval/ablation.py`) and `weakened_defences`, so a name means the same thing everywhere.

Each layer says what switching it OFF changes in a `VerifyConfig`; ON keeps the base's setting (the hardened
defaults), except `metamorphic`, which the hardened base leaves off and ON turns on. Switching layers off composes:
the changes are applied in table order to the same config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from tritonrl.errors import ConfigError
from tritonrl.verify.config import VerifyConfig

# The edge-value distributions (verify/draws.py says what each catches): the numerical-stability layer.
EDGE_VALUES = ("wide", "small", "offset", "negative", "positive", "ties", "zero_rows", "mixed")


def _without(cfg: VerifyConfig, dropped: set[str]) -> tuple[str, ...]:
    return tuple(d for d in cfg.distributions if d not in dropped) or ("native",)


@dataclasses.dataclass(frozen=True)
class Layer:
    name: str
    help: str
    off: Callable[[VerifyConfig], dict]  # the VerifyConfig fields that switching the layer off sets
    on: Callable[[VerifyConfig], dict] = lambda cfg: {}  # noqa: E731 - the fields ON sets (usually none)


LAYERS: dict[str, Layer] = {
    layer.name: layer
    for layer in (
        Layer("multi_input", "shape-family variants and normally distributed values (off: the base shape only; "
              "native and edge values stay)",
              lambda c: {"n_variants": 0, "distributions": _without(c, {"normal"})}),
        Layer("numerical_stability", f"edge-value distributions {', '.join(EDGE_VALUES)} (off: none of them)",
              lambda c: {"distributions": _without(c, set(EDGE_VALUES))}),
        Layer("static_checks", "the AST pre-filter (imports, exec/eval, private attributes, monkeypatching)",
              lambda c: {"static_checks": False}),
        Layer("audit_guard", "the audit hook refusing files, sockets and processes in the worker",
              lambda c: {"audit_guard": False}),
        Layer("ghost_replay", "the re-run with the candidate's kernels turned into no-ops (outputs must change)",
              lambda c: {"ghost_replay": False}),
        Layer("poison_outputs", "fresh allocations filled with NaN / sentinels (an unwritten output shows)",
              lambda c: {"poison_outputs": False}),
        Layer("strict_policy", "only Triton kernels may compute in forward (off: policy 'partial', torch ops allowed)",
              lambda c: {"policy": "partial"}),
        Layer("metamorphic", "metamorphic relations (batch slicing, permutation, scaling) checked on extra cases",
              lambda c: {"metamorphic": False}, lambda c: {"metamorphic": True}),
        Layer("timing", "the GPU timing stage (speedups, implausible-speed checks)", lambda c: {"timing": False}),
    )
}  # fmt: skip


def apply_layers(base: VerifyConfig, switches: Mapping[str, bool]) -> VerifyConfig:
    """`base` with each named layer switched on or off (layers not named keep the base's setting)."""
    unknown = sorted(set(switches) - set(LAYERS))
    if unknown:
        raise ConfigError(f"verifier layer(s) {unknown}: not a layer; choose from {sorted(LAYERS)}.")
    cfg = base
    for name, layer in LAYERS.items():
        if name in switches:
            changes = (layer.on if switches[name] else layer.off)(cfg)
            cfg = dataclasses.replace(cfg, **changes) if changes else cfg
    return cfg
