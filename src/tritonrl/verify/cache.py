"""A JSONL cache of verdicts for (task, solution, verifier config), so rerunning a curation or an export does not
verify the same solution again.

The key is sha256 of the task fingerprint (id, source, constant roles), the candidate's sha256 and
`VerifyConfig.config_hash()`: any change to the task, the code or a verdict-relevant setting misses the cache.
Each line is {"key", "task_id", "policy", "verdict": Verdict.to_dict()}; the file is appended to, never rewritten.
`verify_many` verifies a batch's misses in pre-started workers (`pool.verify_many`) and stores each as it finishes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from tritonrl.tasks.loader import source_fingerprint
from tritonrl.tasks.schema import Task
from tritonrl.types import Verdict, candidate_sha256
from tritonrl.verify.config import VerifyConfig

log = logging.getLogger(__name__)


def cache_key(task: Task, candidate: str, cfg: VerifyConfig) -> str:
    payload = f"{source_fingerprint(task)}\0{candidate_sha256(candidate)}\0{cfg.config_hash()}"
    return hashlib.sha256(payload.encode()).hexdigest()


class VerdictCache:
    """Verdicts by key, backed by an append-only JSONL file (or memory only when `path` is None)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else None
        self._verdicts: dict[str, Verdict] = {}
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()  # verify_many stores verdicts from its worker threads
        if self.path and self.path.is_file():
            for n, line in enumerate(self.path.read_text().splitlines(), 1):
                try:
                    row = json.loads(line)
                    self._verdicts[row["key"]] = Verdict.from_dict(row["verdict"])
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    log.warning("%s:%d: unreadable cache line skipped", self.path, n)

    def __len__(self) -> int:
        return len(self._verdicts)

    def get(self, task: Task, candidate: str, cfg: VerifyConfig) -> Verdict | None:
        """The cached verdict, or None (not counted as a hit or a miss)."""
        return self._verdicts.get(cache_key(task, candidate, cfg))

    def verify(self, task: Task, candidate: str, cfg: VerifyConfig) -> Verdict:
        """The cached verdict, or a fresh `verify(...)` (stored before returning)."""
        key = cache_key(task, candidate, cfg)
        if key in self._verdicts:
            self.hits += 1
            return self._verdicts[key]
        from tritonrl.verify.funnel import verify

        self.misses += 1
        verdict = verify(task, candidate, cfg)
        self._store(key, task, cfg, verdict)
        return verdict

    def verify_many(
        self,
        items: Sequence[tuple[Task, str]],
        cfg: VerifyConfig,
        *,
        jobs: int = 2,
        on_verdict: Callable[[int, Verdict], None] | None = None,
    ) -> list[Verdict]:
        """`verify` for a batch: cached verdicts at once, the misses `jobs` at a time in pre-started workers, each
        stored as it finishes (an interrupted batch keeps what it verified). `on_verdict(index, verdict)` is called
        for every item, hits first, then misses as they finish (from the verification threads)."""
        from tritonrl.verify.pool import verify_many

        keys = [cache_key(task, candidate, cfg) for task, candidate in items]
        out: list[Verdict | None] = [self._verdicts.get(k) for k in keys]
        misses = [i for i, v in enumerate(out) if v is None]
        self.hits += len(items) - len(misses)
        self.misses += len(misses)
        for i, verdict in enumerate(out):
            if verdict is not None and on_verdict is not None:
                on_verdict(i, verdict)

        def done(j: int, verdict: Verdict) -> None:
            i = misses[j]
            out[i] = verdict
            self._store(keys[i], items[i][0], cfg, verdict)
            if on_verdict is not None:
                on_verdict(i, verdict)

        if misses:
            workers = min(jobs, len(misses))  # a worker pre-started beyond the batch would only be killed unused
            verify_many([items[i] for i in misses], cfg, jobs=workers, on_verdict=done)
        return [v for v in out if v is not None]

    def _store(self, key: str, task: Task, cfg: VerifyConfig, verdict: Verdict) -> None:
        with self._lock:
            self._verdicts[key] = verdict
            if self.path:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a") as f:
                    f.write(json.dumps({"key": key, "task_id": task.task_id, "policy": cfg.policy,
                                        "verdict": verdict.to_dict()}) + "\n")  # fmt: skip
