"""verify/layers.py: one table of verifier layers; training presets and `tritonrl ablate` mean the same by a name."""

from __future__ import annotations

import dataclasses

import pytest

from tritonrl.errors import ConfigError
from tritonrl.eval.ablation import configs, grid_from_toggles
from tritonrl.train.config import preset, to_verify_config
from tritonrl.verify.config import DISTRIBUTIONS, VerifyConfig
from tritonrl.verify.layers import EDGE_VALUES, LAYERS, apply_layers

BASE = VerifyConfig()


def test_each_layer_off_changes_only_its_fields():
    assert apply_layers(BASE, {"multi_input": False}).distributions == tuple(d for d in DISTRIBUTIONS if d != "normal")
    assert apply_layers(BASE, {"multi_input": False}).n_variants == 0
    assert apply_layers(BASE, {"numerical_stability": False}).distributions == ("native", "normal")
    assert apply_layers(BASE, {"multi_input": False, "numerical_stability": False}).distributions == ("native",)
    assert set(EDGE_VALUES) | {"native", "normal"} == set(DISTRIBUTIONS)
    for name in ("static_checks", "audit_guard", "ghost_replay", "poison_outputs", "timing"):
        changed = apply_layers(BASE, {name: False})
        assert getattr(changed, name) is False
        assert [f.name for f in dataclasses.fields(BASE) if getattr(BASE, f.name) != getattr(changed, f.name)] == [name]
    assert apply_layers(BASE, {"strict_policy": False}).policy == "partial"
    assert apply_layers(BASE, {"metamorphic": True}).metamorphic and not BASE.metamorphic
    assert apply_layers(BASE, dict.fromkeys(set(LAYERS) - {"metamorphic"}, True)) == BASE  # on keeps the hardened base


def test_an_unknown_layer_is_named_with_the_choices():
    with pytest.raises(ConfigError, match=r"\['gost_replay'\].*ghost_replay"):
        apply_layers(BASE, {"gost_replay": False})
    with pytest.raises(ConfigError, match="choose from"):
        grid_from_toggles(["gost_replay"])


@pytest.mark.parametrize("flag", ["multi_input", "numerical_stability", "metamorphic"])
def test_ablation_and_training_agree_on_a_name(flag):
    on = flag == "metamorphic"  # the hardened preset has it off: the ablation's "on" is then the change
    label = f"{flag}={'on' if on else 'off'}"
    ablated = configs(BASE, grid_from_toggles([flag]))[label]
    assert ablated == to_verify_config(preset("hardened", **{flag: on}), BASE)


def test_presets_go_through_the_table():
    baseline = to_verify_config(preset("baseline"), BASE)
    assert baseline == apply_layers(BASE, {"multi_input": False, "numerical_stability": False, "static_checks": False,
                                           "audit_guard": False, "metamorphic": False, "timing": False})  # fmt: skip
    assert to_verify_config(preset("hardened"), BASE) == BASE
