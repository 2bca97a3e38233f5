"""Leak-free train/val/test splits, assigned per *family*, never per task, in one of two modes.

- `family` (default): a family's split is a seeded hash of its id. Variants of one task (shape scales, dtypes) and
  deduplicated copies share a family id, so no variant of a test task can be trained on. Deterministic (sha256 of
  "<seed>:<family>", mapped to [0, 1)), stable when tasks are added or removed, and independent of order.
- `op-pair`: compositional hold-out. Whole adjacent op pairs of the tasks' op chains (`linear -> gelu`) are held out:
  every test family contains a test pair, every val family a val pair, and no train family contains either, so a
  test task asks for a fusion the model never trained on. Pairs are taken in seeded-hash order and held out while
  their split is below its fraction of the tasks that have pairs (a pair that would overshoot is skipped, unless its
  split is still empty); families without a pair (one op) fall back to the family hash. The held-out pairs go to the
  export's manifest. Deterministic for a given set of tasks; adding tasks can move families.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

from tritonrl.errors import ConfigError

SPLITS = ("train", "val", "test")
SPLIT_MODES = ("family", "op-pair")
Pair = tuple[str, str]


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """How families are split."""

    fractions: tuple[float, float, float] = dataclasses.field(
        default=(0.8, 0.1, 0.1), metadata={"help": "Fractions of families in train, val, test; they must sum to 1."}
    )
    seed: int = dataclasses.field(default=0, metadata={"help": "Seed of the family hash: another seed, other splits."})
    by: str = dataclasses.field(
        default="family",
        metadata={"help": "family: a seeded hash of each family; op-pair: hold out whole adjacent op pairs, so test "
                          "tasks' held-out fusions never occur in train (see the module docstring)."},
    )  # fmt: skip

    def __post_init__(self) -> None:
        if self.by not in SPLIT_MODES:
            raise ConfigError(f"split by={self.by!r}: must be one of {SPLIT_MODES} (e.g. --split-by op-pair).")
        if len(self.fractions) != 3 or any(f < 0 for f in self.fractions) or abs(sum(self.fractions) - 1) > 1e-6:
            raise ConfigError(f"split fractions={self.fractions}: need three non-negative numbers (train, val, test) "
                              "summing to 1, e.g. (0.8, 0.1, 0.1).")  # fmt: skip


def split_of(family: str, cfg: SplitConfig = SplitConfig()) -> str:
    """The split of a family.

    >>> split_of("L1/19_ReLU") == split_of("L1/19_ReLU")
    True
    """
    digest = hashlib.sha256(f"{cfg.seed}:{family}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    train, val, _ = cfg.fractions
    return "train" if u < train else "val" if u < train + val else "test"


def parse_fractions(text: str) -> tuple[float, float, float]:
    """'0.8,0.1,0.1' -> (0.8, 0.1, 0.1)."""
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError as e:
        raise ConfigError(f"split fractions {text!r}: expected three numbers like 0.8,0.1,0.1.") from e
    if len(values) != 3:
        raise ConfigError(f"split fractions {text!r}: expected three numbers (train,val,test) like 0.8,0.1,0.1.")
    return values  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True, slots=True)
class SplitPlan:
    """The splits of a list of items and, in op-pair mode, the pairs held out of train."""

    splits: tuple[str, ...]  # one per item, in input order
    held_out: dict[str, tuple[Pair, ...]]  # "val"/"test" -> the op pairs held out for it (empty in family mode)

    def to_manifest(self) -> dict[str, list[list[str]]]:
        return {split: [list(p) for p in pairs] for split, pairs in self.held_out.items()}


def op_pairs(ops: Sequence[str]) -> set[Pair]:
    """The adjacent pairs of an op chain.

    >>> sorted(op_pairs(["linear", "gelu", "softmax"]))
    [('gelu', 'softmax'), ('linear', 'gelu')]
    """
    return {(a, b) for a, b in zip(ops, ops[1:], strict=False)}


def assign_splits(items: Sequence[tuple[str, Sequence[str]]], cfg: SplitConfig = SplitConfig()) -> SplitPlan:
    """The split of each (family, op chain) item under `cfg.by` (see the module docstring)."""
    if cfg.by == "family":
        return SplitPlan(tuple(split_of(family, cfg) for family, _ in items), {})
    pairs: dict[str, set[Pair]] = {}
    size: dict[str, int] = {}
    for family, ops in items:
        pairs.setdefault(family, set()).update(op_pairs(ops))
        size[family] = size.get(family, 0) + 1
    split = {f: ("train" if ps else split_of(f, cfg)) for f, ps in pairs.items()}
    by_pair: dict[Pair, list[str]] = {}
    for family, ps in sorted(pairs.items()):
        for p in ps:
            by_pair.setdefault(p, []).append(family)
    order = sorted(by_pair, key=lambda p: hashlib.sha256(f"{cfg.seed}:{p[0]}>{p[1]}".encode()).digest())
    with_pairs = sum(size[f] for f, ps in pairs.items() if ps)
    held: dict[str, tuple[Pair, ...]] = {}
    for name, fraction in (("test", cfg.fractions[2]), ("val", cfg.fractions[1])):
        target, count, chosen = fraction * with_pairs, 0, []
        for p in order:
            if count >= target:
                break
            moving = [f for f in by_pair[p] if split[f] == "train"]
            if not moving or (count and count + sum(size[f] for f in moving) > target):
                continue  # a pair that would overshoot the share is left for a smaller one
            chosen.append(p)
            count += sum(size[f] for f in moving)
            split.update(dict.fromkeys(moving, name))
        held[name] = tuple(sorted(chosen))
    return SplitPlan(tuple(split[family] for family, _ in items), held)
