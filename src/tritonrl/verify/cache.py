"""A JSONL cache of verdicts for (task, solution, verifier config), so rerunning a curation or an export does not
verify the same solution again.

The key is sha256 of the task fingerprint (id, source, constant roles), the candidate's sha256 and
`VerifyConfig.config_hash()`: any change to the task, the code or a verdict-relevant setting misses the cache.
Each line is {"key", "task_id", "policy", "verdict": Verdict.to_dict()}; the file is appended to, never rewritten.
A `Verifier` given this cache (`Verifier(cfg, cache=...)`) answers hits at once and stores each miss as it finishes,
so an interrupted batch keeps what it verified.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path

from tritonrl.tasks.loader import source_fingerprint
from tritonrl.tasks.schema import Task
from tritonrl.types import Verdict, candidate_sha256
from tritonrl.verify.config import VerifyConfig

log = logging.getLogger(__name__)


def cache_key(task: Task, candidate: str, cfg: VerifyConfig) -> str:
    payload = f"{source_fingerprint(task)}\0{candidate_sha256(candidate)}\0{cfg.config_hash()}"
    return hashlib.sha256(payload.encode()).hexdigest()


class CountedStore:
    """What both verdict stores share: `get` is `peek` counted as a hit or a miss (`verifier.VerdictStore`); the
    backends implement `peek` (not counted: curation asks it which verdicts are fresh) and `put`."""

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()  # the Verifier stores and reads verdicts from its worker threads

    def peek(self, task: Task, candidate: str, cfg: VerifyConfig) -> Verdict | None:
        raise NotImplementedError

    def get(self, task: Task, candidate: str, cfg: VerifyConfig) -> Verdict | None:
        """The stored verdict or None, counted as a hit or a miss."""
        verdict = self.peek(task, candidate, cfg)
        with self._lock:
            self.hits += verdict is not None
            self.misses += verdict is None
        return verdict


class VerdictCache(CountedStore):
    """Verdicts by key, backed by an append-only JSONL file (or memory only when `path` is None)."""

    def __init__(self, path: str | Path | None = None) -> None:
        super().__init__()
        self.path = Path(path) if path else None
        self._verdicts: dict[str, Verdict] = {}
        if self.path and self.path.is_file():
            for n, line in enumerate(self.path.read_text().splitlines(), 1):
                try:
                    row = json.loads(line)
                    self._verdicts[row["key"]] = Verdict.from_dict(row["verdict"])
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    log.warning("%s:%d: unreadable cache line skipped", self.path, n)

    def __len__(self) -> int:
        return len(self._verdicts)

    def peek(self, task: Task, candidate: str, cfg: VerifyConfig) -> Verdict | None:
        """The cached verdict, or None (not counted as a hit or a miss)."""
        return self._verdicts.get(cache_key(task, candidate, cfg))

    def put(self, task: Task, candidate: str, cfg: VerifyConfig, verdict: Verdict) -> None:
        """Keep `verdict` (and append it to the file): called by the `Verifier` as each verification finishes."""
        self._store(cache_key(task, candidate, cfg), task, cfg, verdict)

    def _store(self, key: str, task: Task, cfg: VerifyConfig, verdict: Verdict) -> None:
        with self._lock:
            self._verdicts[key] = verdict
            if self.path:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a") as f:
                    f.write(json.dumps({"key": key, "task_id": task.task_id, "policy": cfg.policy,
                                        "verdict": verdict.to_dict()}) + "\n")  # fmt: skip
