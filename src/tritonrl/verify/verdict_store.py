"""An SQLite backend of `verifier.VerdictStore`, and `open_verdict_store(path)`, which picks the JSONL `VerdictCache`
or this one by the file's suffix.

Keys are `cache.cache_key` (task fingerprint, candidate sha256, `VerifyConfig.config_hash()`), as in `VerdictCache`:
the same (task, code, verifier config) hits in either backend, and any change to one of them misses.

Why a store of its own rather than an adapter over the evaluation's `eval.store.ResultStore`: that store keys a
verdict by task *id* (a task edited under the same id would still hit), per device, and accepts one only for a
sample it already holds; a verifier cache takes any (task, code) pair. And `verify/` sits below `eval/` and `data/`
in the import layers, so curation and export (data/) could not reach an adapter living in eval/.

The file is marked as ours with `PRAGMA application_id`, so a foreign SQLite file (an evaluation's results.sqlite)
or a file that is no database is refused when opened, before anything is written to it. It uses the WAL journal and
a busy timeout: several processes (one `Verifier` each, like the reward client's) read at once and take turns to
write. In one process, one connection serves all threads (the Verifier stores verdicts from its executor's
threads), serialized by a lock: a read or a write takes milliseconds, a verification seconds.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from tritonrl.errors import ConfigError, TritonRLError
from tritonrl.tasks.schema import Task
from tritonrl.types import Verdict
from tritonrl.verify.cache import CountedStore, VerdictCache, cache_key
from tritonrl.verify.config import VerifyConfig

log = logging.getLogger(__name__)

APPLICATION_ID = 0x54524C56  # "TRLV": marks an SQLite file as a tritonrl verdict store
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another process's write lock before failing
SQLITE_SUFFIXES = (".sqlite", ".sqlite3", ".db")

_SCHEMA = """
CREATE TABLE verdict_cache (
    key TEXT PRIMARY KEY NOT NULL,
    task_id TEXT NOT NULL,
    policy TEXT NOT NULL,
    verdict_json TEXT NOT NULL
)
"""


class VerdictStoreError(TritonRLError):
    """The file given as a verdict store is no database, another program's database, or of another schema."""


class SQLiteVerdictStore(CountedStore):
    """Verdicts by `cache_key` in the SQLite file at `path` (created if missing). Thread-safe; several processes
    may open the same file. Use as a context manager or call `close()`.

    `hits` and `misses` count this object's `get` calls, as `VerdictCache` does; `peek` is not counted (curation
    asks it which verdicts are fresh). A `put` replaces an older verdict of the same key: the latest wins, as when
    the JSONL cache is read back.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level="IMMEDIATE": sqlite3 opens each write with BEGIN IMMEDIATE, which takes the write lock up
        # front, so a writer that finds another process writing waits out the busy timeout instead of failing.
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level="IMMEDIATE", check_same_thread=False
        )
        try:
            self._configure(self._conn)
        except sqlite3.DatabaseError as e:
            self.close()
            raise VerdictStoreError(
                f"{self.path}: cannot be opened as an SQLite verdict store ({e}). If it is no database or a damaged "
                "one, give the cache a path of its own (a new .sqlite file), or delete this one."
            ) from e
        except BaseException:
            self.close()
            raise

    def _configure(self, conn: sqlite3.Connection) -> None:
        self._check_owner(conn)  # before the journal mode is set: nothing is written to a foreign file
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise VerdictStoreError(
                f"{self.path}: SQLite refused WAL journaling (got journal_mode={mode!r}); WAL needs a local "
                "filesystem with shared memory. Put the verdict store on a local disk (not NFS or a FUSE mount)."
            )
        with conn:
            # The check again, and the creation, in one write transaction: a second process opening the new file
            # at the same time waits, then finds it created.
            conn.execute("BEGIN IMMEDIATE")
            if self._check_owner(conn) == 0:
                conn.execute(_SCHEMA)
                conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _check_owner(self, conn: sqlite3.Connection) -> int:
        """The file's application_id: ours, or 0 for an empty database; raises for any other database."""
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        if app_id not in (0, APPLICATION_ID) or (app_id == 0 and tables):
            raise VerdictStoreError(
                f"{self.path}: an SQLite database, but not a tritonrl verdict store (application_id={app_id}, "
                f"tables {tables}); an evaluation's results.sqlite, for one, is not a verdict cache. Give the cache "
                "a path of its own (a new .sqlite file)."
            )
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if app_id == APPLICATION_ID and version != SCHEMA_VERSION:
            raise VerdictStoreError(
                f"{self.path}: verdict store schema version {version} is not supported (this tritonrl writes version "
                f"{SCHEMA_VERSION}). Use the tritonrl version that created it, or give the cache a new file."
            )
        return app_id

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise VerdictStoreError(f"{self.path}: the store is closed; open a new SQLiteVerdictStore to use it.")
        return self._conn

    def __len__(self) -> int:
        with self._lock:
            return self._connection().execute("SELECT COUNT(*) FROM verdict_cache").fetchone()[0]

    def peek(self, task: Task, candidate: str, cfg: VerifyConfig) -> Verdict | None:
        """The stored verdict, or None (not counted as a hit or a miss)."""
        key = cache_key(task, candidate, cfg)
        with self._lock:
            row = self._connection().execute("SELECT verdict_json FROM verdict_cache WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        try:
            return Verdict.from_dict(json.loads(row[0]))
        except (KeyError, TypeError, ValueError):
            # e.g. written by a tritonrl whose Verdict had other fields: verify again, and the put replaces it
            log.warning("%s: unreadable verdict for key %s... treated as a miss", self.path, key[:12])
            return None

    def put(self, task: Task, candidate: str, cfg: VerifyConfig, verdict: Verdict) -> None:
        """Commit `verdict` (its own transaction): called by the `Verifier` as each verification finishes."""
        row = (cache_key(task, candidate, cfg), task.task_id, cfg.policy, verdict.to_json())
        with self._lock, self._connection() as conn:  # the connection as context: commit, or roll back on error
            conn.execute("INSERT OR REPLACE INTO verdict_cache VALUES (?, ?, ?, ?)", row)

    def close(self) -> None:
        """Close the connection (idempotent). The last connection to close checkpoints the WAL into the file."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SQLiteVerdictStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def verdict_store_backend(path: str | os.PathLike[str]) -> str:
    """The backend the suffix of `path` picks, "jsonl" or "sqlite" (callers validate a configured path with it).

    Raises:
        ConfigError: any suffix but .jsonl, .sqlite, .sqlite3 and .db.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".jsonl":
        return "jsonl"
    if suffix in SQLITE_SUFFIXES:
        return "sqlite"
    raise ConfigError(
        f"verdict cache {os.fspath(path)!r}: the suffix picks the backend, .jsonl (JSONL) or "
        f"{', '.join(SQLITE_SUFFIXES)} (SQLite), and {suffix or 'no suffix'!r} is neither. Name the file "
        f"e.g. {Path(path).with_suffix('.sqlite')}."
    )


@contextlib.contextmanager
def open_verdict_store(path: str | os.PathLike[str] | None) -> Iterator[VerdictCache | SQLiteVerdictStore]:
    """The verdict cache at `path`, by its suffix (`verdict_store_backend`): `.jsonl` a `VerdictCache`, `.sqlite`,
    `.sqlite3` or `.db` an `SQLiteVerdictStore` (closed on exit); None: a `VerdictCache` in memory."""
    if path is None:
        yield VerdictCache()
    elif verdict_store_backend(path) == "jsonl":
        yield VerdictCache(path)
    else:
        with SQLiteVerdictStore(path) as store:
            yield store
