"""Leak-free train/val/test splits: a task's split is a seeded hash of its *family*, never of the task itself.

Variants of one task (shape scales, dtypes) and deduplicated copies share a family id, so they always land in the
same split: no variant of a test task can be trained on. The assignment is deterministic (sha256 of
"<seed>:<family>", mapped to [0, 1)), stable when tasks are added or removed, and independent of order.
"""

from __future__ import annotations

import dataclasses
import hashlib

from tritonrl.errors import ConfigError

SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """How families are split."""

    fractions: tuple[float, float, float] = dataclasses.field(
        default=(0.8, 0.1, 0.1), metadata={"help": "Fractions of families in train, val, test; they must sum to 1."}
    )
    seed: int = dataclasses.field(default=0, metadata={"help": "Seed of the family hash: another seed, other splits."})

    def __post_init__(self) -> None:
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
