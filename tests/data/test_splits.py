"""tasks/splits.py: deterministic, seeded, per-family splits; variants never leak across splits."""

from __future__ import annotations

from collections import Counter

import pytest

from tritonrl.data.augment import augment
from tritonrl.data.splits import SplitConfig, parse_fractions, split_of
from tritonrl.data.suites import load_suite
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
