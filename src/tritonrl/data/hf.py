"""Rows -> `datasets.Dataset`, fingerprinted by content instead of by pickling the Arrow table.

`Dataset.from_list` fingerprints a new dataset by pickling its whole state with dill, and that pickling is
environment-dependent: on the GPU image (Python 3.12, dill 0.4.1, pyarrow 25.0.1, datasets 5.2.0; H100,
2026-12-07) it raised `PicklingError: Can't pickle <class 'MonthDayNano'>` before SFT's first step, for the same
rows that pickle fine under Python 3.11. A digest of the rows' JSON is a fingerprint with the same meaning (equal rows,
equal fingerprint), costs one `json.dumps`, and never pickles anything. Later transforms (`map` inside TRL) fall back
to a random fingerprint by themselves when their function cannot be pickled.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def rows_dataset(rows: list[dict[str, Any]]):  # noqa: ANN201 (datasets.Dataset, imported lazily)
    """A `datasets.Dataset` of `rows` (JSON-serialisable dicts with the same keys), features inferred by Arrow as
    `Dataset.from_list` infers them."""
    from datasets import Dataset
    from datasets.table import InMemoryTable

    digest = hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Dataset(InMemoryTable.from_pylist(rows), fingerprint=digest)
