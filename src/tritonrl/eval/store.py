"""The durable result store of an evaluation run: one SQLite file (stdlib sqlite3, WAL journal).

`samples` says which samples exist (pass@k needs n per task, duplicates included); `verdicts` holds one verdict
per (task, candidate hash, config hash, device), so identical candidates are verified once; `meta` holds run
metadata as JSON. Every verdict is its own transaction and inserts are INSERT OR IGNORE, so a run killed at any
point (SIGKILL included) resumes from `pending()` with no committed verdict lost and none duplicated.
It does not verify anything or compute metrics; see `eval.metrics` for those.

Threads: one connection shared by all threads and serialized by a lock (each call is milliseconds; a verdict
takes seconds), so a ResultStore can be shared by a verification thread pool. Several processes may also open
the same file: SQLite's file locks plus a busy timeout serialize their writes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from tritonrl.errors import TritonRLError
from tritonrl.eval.records import Record
from tritonrl.types import Verdict
from tritonrl.types import candidate_sha256 as _sha256

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another process's write lock before failing

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    task_id TEXT NOT NULL,
    sample INTEGER NOT NULL,
    level INTEGER,
    candidate_sha256 TEXT NOT NULL,
    source TEXT NOT NULL,
    PRIMARY KEY (task_id, sample)
);
CREATE INDEX IF NOT EXISTS samples_by_candidate ON samples (task_id, candidate_sha256);
CREATE TABLE IF NOT EXISTS verdicts (
    task_id TEXT NOT NULL,
    candidate_sha256 TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    device TEXT NOT NULL,
    verdict_json TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (task_id, candidate_sha256, config_hash, device)
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
"""


class StoreError(TritonRLError):
    """The result store cannot be opened, or a write would corrupt the meaning of a run."""


class Sample(NamedTuple):
    """One sample of one task: what `add_samples` takes and `pending` returns."""

    task_id: str
    sample: int  # index within the task, 0..n-1
    level: int | None
    candidate_sha256: str  # sha256 of `source` (checked on insert)
    source: str  # the candidate text as verified


def candidate_sha256(source: str) -> str:
    """The hash the funnel records in `Verdict.candidate_sha256`: sha256 of the UTF-8 candidate text."""
    return _sha256(source)


class ResultStore:
    """Open (creating if needed) the SQLite result store at `path`. Use as a context manager or call `close()`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # isolation_level=None: the sqlite3 module opens no implicit transactions; `_transaction` owns them.
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            self._configure(self._conn)
        except BaseException:
            self._conn.close()
            self._conn = None
            raise

    def _configure(self, conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StoreError(
                f"{self.path}: SQLite refused WAL journaling (got journal_mode={mode!r}); WAL needs a local "
                "filesystem with shared memory. Put the run directory on a local disk (not NFS or a FUSE mount)."
            )
        # synchronous=FULL: with WAL, NORMAL already survives SIGKILL (a commit is in the OS page cache), but may
        # lose the last commits on power loss, a kernel panic or a preempted VM. FULL fsyncs the WAL at each
        # commit: ~1-10 ms, against >= 1.5 s of sandboxed verification per verdict, so under 1% of a run.
        conn.execute("PRAGMA synchronous=FULL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise StoreError(
                f"{self.path}: schema version {version} is not supported (this tritonrl writes version "
                f"{SCHEMA_VERSION}). Use the tritonrl version that created it, or start a new run directory."
            )
        with self._transaction() as tx:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    tx.execute(statement)
            tx.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    # --- plumbing -----------------------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: the store is closed; open a new ResultStore to use it again.")
        return self._conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the thread lock. BEGIN IMMEDIATE takes the write lock up front, so a
        concurrent writer waits (busy timeout) instead of failing at COMMIT."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._connection().execute(sql, tuple(params)).fetchall()

    def close(self) -> None:
        """Close the connection (idempotent). The last connection to close checkpoints the WAL into the file."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- samples ------------------------------------------------------------------------------------------------

    def add_samples(self, rows: Iterable[Sample | tuple[str, int, int | None, str, str]]) -> int:
        """Record which samples exist, in one transaction. Idempotent: re-adding an identical sample is a no-op.

        Args:
            rows: (task_id, sample, level, candidate_sha256, source) tuples or `Sample`s.
        Returns:
            How many samples were new.
        Raises:
            StoreError: a hash is not sha256(source), or (task_id, sample) already exists with another candidate
                or level; nothing from this call is written then.
        """
        added = 0
        with self._transaction() as tx:
            for row in rows:
                s = Sample(*row)
                if candidate_sha256(s.source) != s.candidate_sha256:
                    raise StoreError(
                        f"sample ({s.task_id!r}, {s.sample}): candidate_sha256={s.candidate_sha256[:12]}... is not "
                        "sha256(source); pass candidate_sha256(source) so verdicts can be matched to samples."
                    )
                cur = tx.execute("INSERT OR IGNORE INTO samples VALUES (?, ?, ?, ?, ?)", tuple(s))
                if cur.rowcount == 1:
                    added += 1
                    continue
                old_level, old_sha = tx.execute(
                    "SELECT level, candidate_sha256 FROM samples WHERE task_id = ? AND sample = ?",
                    (s.task_id, s.sample),
                ).fetchone()
                if (old_level, old_sha) != (s.level, s.candidate_sha256):
                    raise StoreError(
                        f"sample ({s.task_id!r}, {s.sample}) already exists in {self.path} with candidate "
                        f"{old_sha[:12]}... (level {old_level}), not {s.candidate_sha256[:12]}... (level {s.level}): "
                        "a run directory must hold one candidate set. Use a new run directory for new samples."
                    )
        return added

    def n_samples(self) -> int:
        return self._query("SELECT COUNT(*) FROM samples")[0][0]

    def sampled_tasks(self) -> set[str]:
        """The ids of tasks that have at least one sample (generation resumes with the others)."""
        return {row[0] for row in self._query("SELECT DISTINCT task_id FROM samples")}

    def pending(self, config_hash: str, device: str) -> list[Sample]:
        """Samples whose (task, candidate, config_hash, device) has no verdict yet; each distinct (task, candidate)
        once (its lowest sample index), ordered by task then sample."""
        rows = self._query(
            # SQLite documents that bare columns in an aggregate query with MIN() come from the row holding the min.
            """
            SELECT s.task_id, MIN(s.sample), s.level, s.candidate_sha256, s.source
            FROM samples AS s
            LEFT JOIN verdicts AS v
              ON v.task_id = s.task_id AND v.candidate_sha256 = s.candidate_sha256
             AND v.config_hash = ? AND v.device = ?
            WHERE v.task_id IS NULL
            GROUP BY s.task_id, s.candidate_sha256
            ORDER BY s.task_id, MIN(s.sample)
            """,
            (config_hash, device),
        )
        return [Sample(*row) for row in rows]

    # --- verdicts -----------------------------------------------------------------------------------------------

    def put(self, record: Record) -> bool:
        """Commit one verdict in its own transaction. A verdict that already exists for the same key is kept and
        this one ignored (a re-run after a crash re-verifies nothing it had committed, and never duplicates).

        Returns:
            True if the verdict was inserted, False if one was already stored.
        Raises:
            StoreError: no sample of this (task, candidate) exists in the store.
        """
        verdict_json = record.verdict.to_json()
        json.loads(verdict_json)  # fail here, not at read time, if a verdict is ever not strict JSON
        with self._transaction() as tx:
            known = tx.execute(
                "SELECT 1 FROM samples WHERE task_id = ? AND candidate_sha256 = ? LIMIT 1",
                (record.task_id, record.candidate_sha256),
            ).fetchone()
            if known is None:
                raise StoreError(
                    f"verdict for ({record.task_id!r}, {record.candidate_sha256[:12]}...) matches no sample in "
                    f"{self.path}: call add_samples() with the candidate before storing its verdict."
                )
            cur = tx.execute(
                "INSERT OR IGNORE INTO verdicts VALUES (?, ?, ?, ?, ?, ?)",
                (
                    record.task_id,
                    record.candidate_sha256,
                    record.config_hash,
                    record.device,
                    verdict_json,
                    time.time(),
                ),
            )
            return cur.rowcount == 1

    def n_verdicts(self) -> int:
        return self._query("SELECT COUNT(*) FROM verdicts")[0][0]

    def records(self, config_hash: str | None = None, device: str | None = None) -> list[Record]:
        """One Record per sample that has a verdict (duplicates of a candidate share it), ordered by task, sample.

        Without filters a sample appears once per (config_hash, device) it was verified under; filter both before
        computing metrics (`metrics.summarize` rejects a sample that appears twice).
        """
        rows = self._query(
            """
            SELECT s.task_id, s.sample, s.level, s.candidate_sha256, v.config_hash, v.device, v.verdict_json
            FROM samples AS s
            JOIN verdicts AS v ON v.task_id = s.task_id AND v.candidate_sha256 = s.candidate_sha256
            WHERE (?1 IS NULL OR v.config_hash = ?1) AND (?2 IS NULL OR v.device = ?2)
            ORDER BY s.task_id, s.sample, v.config_hash, v.device
            """,
            (config_hash, device),
        )
        return [
            Record(
                task_id=task_id,
                sample=sample,
                level=level,
                candidate_sha256=sha,
                config_hash=cfg,
                device=dev,
                verdict=Verdict.from_dict(json.loads(verdict_json)),
            )
            for task_id, sample, level, sha, cfg, dev, verdict_json in rows
        ]

    def export_jsonl(
        self, path: str | os.PathLike[str], config_hash: str | None = None, device: str | None = None
    ) -> int:
        """Write `records(config_hash, device)` as JSON lines, atomically (temp file + rename). Returns the count."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        records = self.records(config_hash, device)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for record in records:
                f.write(record.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
        log.info("exported %d records to %s", len(records), out)
        return len(records)

    # --- run metadata -------------------------------------------------------------------------------------------

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON-serializable value under `key` (replacing any previous value)."""
        try:
            text = json.dumps(value, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise StoreError(f"meta {key!r}: value is not strict JSON ({e}); store dicts, lists, str, numbers.") from e
        with self._transaction() as tx:
            tx.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, text))

    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def integrity_check(self) -> str:
        """SQLite's `PRAGMA integrity_check`: "ok", or a description of the damage."""
        return "\n".join(row[0] for row in self._query("PRAGMA integrity_check"))
