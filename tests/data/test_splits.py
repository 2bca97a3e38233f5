"""data/splits.py: deterministic, seeded, per-family splits; variants never leak across splits; op-pair hold-out."""

from __future__ import annotations

from collections import Counter

import pytest

from tritonrl.data.augment import augment
from tritonrl.data.splits import SplitConfig, assign_splits, op_pairs, parse_fractions, split_of
from tritonrl.data.suites import assign_suite_splits, load_suite
from tritonrl.errors import ConfigError


def test_split_is_a_pure_function_of_family_and_seed():
    assert split_of("L1/19_ReLU") == split_of("L1/19_ReLU")
    seeds = {tuple(split_of(f"f{i}", SplitConfig(seed=s)) for i in range(50)) for s in range(3)}
    assert len(seeds) == 3  # another seed, another assignment


def test_fractions_are_respected_over_many_families():
    counts = Counter(split_of(f"family{i}", SplitConfig(fractions=(0.6, 0.2, 0.2))) for i in range(3000))
    assert abs(counts["train"] / 3000 - 0.6) < 0.03 and abs(counts["test"] / 3000 - 0.2) < 0.03


def test_variants_land_in_their_familys_split():
    entries = load_suite("builtin").entries
    variants, _ = augment(entries, dtypes=("float16",), scales=(2.0,), usable=lambda task: "")
    assert len(variants) > len(entries)
    for cfg in (SplitConfig(seed=0), SplitConfig(seed=1, fractions=(0.34, 0.33, 0.33))):
        by_family = {e.family: split_of(e.family, cfg) for e in entries}
        assert all(split_of(v.family, cfg) == by_family[v.family] for v in variants)
        assert {v.family for v in variants} <= set(by_family)


def test_bad_fractions_say_value_rule_and_fix():
    with pytest.raises(ConfigError, match=r"fractions=\(0.5, 0.5, 0.5\).*summing to 1, e.g. \(0.8, 0.1, 0.1\)"):
        SplitConfig(fractions=(0.5, 0.5, 0.5))
    assert parse_fractions("0.7,0.2,0.1") == (0.7, 0.2, 0.1)
    with pytest.raises(ConfigError, match="three numbers"):
        parse_fractions("0.7,0.3")


@pytest.fixture(scope="module")
def fusion_entries():
    return load_suite("fusion:300:0").entries


def _pairs_by_split(entries, plan):
    found: dict[str, set] = {s: set() for s in ("train", "val", "test")}
    for e, split in zip(entries, plan.splits, strict=True):
        found[split] |= op_pairs(e.op_chain())
    return found


def test_op_pair_split_keeps_held_out_pairs_out_of_train(fusion_entries):
    cfg = SplitConfig(by="op-pair", fractions=(0.7, 0.15, 0.15))
    entries, plan = assign_suite_splits(fusion_entries, cfg)
    found = _pairs_by_split(entries, plan)
    test_pairs, val_pairs = set(plan.held_out["test"]), set(plan.held_out["val"])
    assert test_pairs and val_pairs and not test_pairs & val_pairs
    assert not (test_pairs | val_pairs) & found["train"]  # the property: no held-out pair is ever trained on
    assert not test_pairs & found["val"]
    for e in entries:
        chain = op_pairs(e.op_chain())
        assert (e.split == "test") == bool(chain & test_pairs) or not chain  # a test task asks for a held-out fusion
    counts = Counter(e.split for e in entries)
    assert 0.05 < counts["test"] / len(entries) < 0.3 and counts["train"] > counts["val"] + counts["test"]


def test_op_pair_split_is_deterministic_seeded_and_family_consistent(fusion_entries):
    plans = [assign_splits([(e.family, e.op_chain()) for e in fusion_entries], SplitConfig(by="op-pair", seed=s))
             for s in (0, 0, 1)]  # fmt: skip
    assert plans[0] == plans[1] and plans[0].held_out != plans[2].held_out
    by_family: dict[str, set[str]] = {}
    for e, split in zip(fusion_entries, plans[0].splits, strict=True):
        by_family.setdefault(e.family, set()).add(split)
    assert all(len(s) == 1 for s in by_family.values())


def test_single_op_tasks_fall_back_to_the_family_hash():
    cfg = SplitConfig(by="op-pair")
    plan = assign_splits([(f"f{i}", ["relu"]) for i in range(40)], cfg)
    assert list(plan.splits) == [split_of(f"f{i}", cfg) for i in range(40)]
    assert plan.held_out == {"test": (), "val": ()}


def test_family_mode_is_the_family_hash_and_holds_nothing_out():
    plan = assign_splits([("a", ["linear", "relu"]), ("b", ["x"])])
    assert list(plan.splits) == [split_of("a"), split_of("b")] and plan.held_out == {}


def test_bad_split_mode_names_the_choices():
    with pytest.raises(ConfigError, match=r"by='ops'.*\('family', 'op-pair'\).*--split-by op-pair"):
        SplitConfig(by="ops")
