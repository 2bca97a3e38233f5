"""Read dataset rows (dicts) from a local JSONL or parquet export, a folder of them, or a Hugging Face dataset name.

Used by the KernelBench (HF form) and KernelBook loaders. Local files never need the network; a hub name is loaded
with `datasets.load_dataset(name)` (all splits, each row tagged with `_split`) and needs `datasets` and a connection.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from tritonrl.errors import TaskError

log = logging.getLogger(__name__)

ROW_SUFFIXES = (".jsonl", ".json", ".parquet")
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def read_rows(source: str | Path, *, required: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """All rows of `source`, in file order (files of a folder sorted by path, searched recursively).

    Args:
        source: a .jsonl/.json/.parquet file, a folder holding such files, or a hub dataset name ("org/name").
        required: field names every row must have (checked on the first row; a TaskError names the missing ones).

    Raises:
        TaskError: nothing readable at `source`, a malformed line, or missing fields.
    """
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in ROW_SUFFIXES and p.is_file())
        if not files:
            raise TaskError(f"{path}: no {'/'.join(ROW_SUFFIXES)} files in this folder; pass a dataset export.")
        rows = [row for f in files for row in _read_file(f)]
    elif path.is_file():
        rows = _read_file(path)
    elif _HUB_NAME.fullmatch(str(source)):
        rows = _read_hub(str(source))
    else:
        raise TaskError(f"{source}: not a file, a folder or a hub dataset name; pass a local .jsonl/.parquet export "
                        "or a name like org/dataset.")  # fmt: skip
    if rows and required:
        missing = [name for name in required if name not in rows[0]]
        if missing:
            raise TaskError(f"{source}: rows lack the fields {missing} (they have {sorted(rows[0])}); "
                            f"expected {list(required)}.")  # fmt: skip
    return rows


def _read_file(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise TaskError(f"{path}: reading parquet needs pyarrow (pip install pyarrow); or pass JSONL.") from e
        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        return list(json.loads(text))
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise TaskError(f"{path}:{n}: not a JSON object ({e.msg}); each line of a JSONL file is one row.") from e
    return rows


def _read_hub(name: str) -> list[dict[str, Any]]:
    try:
        from datasets import load_dataset
    except ImportError as e:
        raise TaskError(f"{name}: loading a hub dataset needs `datasets` (pip install 'tritonrl[train]'); or "
                        "download its parquet files and pass the folder.") from e  # fmt: skip
    try:
        loaded = load_dataset(name)
    except Exception as e:  # noqa: BLE001 - offline, unknown name, auth: all one actionable message
        raise TaskError(f"{name}: datasets.load_dataset failed ({type(e).__name__}: {e}); when offline, pass a "
                        "local parquet/JSONL export instead.") from e  # fmt: skip
    rows = []
    for split, dataset in loaded.items():
        rows.extend({**row, "_split": split} for row in dataset)
    log.info("loaded %d rows from %s (%s)", len(rows), name, ", ".join(loaded))
    return rows
