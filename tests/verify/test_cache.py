"""verify/cache.py: a batch verifies only its misses, in the warm pool, and stores each verdict as it finishes."""

from __future__ import annotations

from pathlib import Path

import tritonrl.verify.pool as pool
from tritonrl.tasks.loader import builtin_task
from tritonrl.verify.cache import VerdictCache
from tritonrl.verify.config import VerifyConfig

CPU = VerifyConfig(device="cpu")


def test_verify_many_verifies_misses_once_and_keeps_them(tmp_path, monkeypatch):
    relu = builtin_task("relu")
    good = Path(relu.solution_path).read_text()
    items = [(relu, good), (relu, "no code here")]
    path = tmp_path / "verdicts.jsonl"
    cache = VerdictCache(path)
    cache.verify(relu, "no code here", CPU)  # already cached: the batch must not verify it again
    calls, seen = [], []
    real = pool.verify_many

    def spy(batch, cfg, **kw):  # noqa: ANN001, ANN003
        calls.append(len(batch))
        return real(batch, cfg, **kw)

    monkeypatch.setattr(pool, "verify_many", spy)
    verdicts = cache.verify_many(items, CPU, jobs=4, on_verdict=lambda i, v: seen.append(i))
    assert [v.passed for v in verdicts] == [True, False] and calls == [1]
    assert sorted(seen) == [0, 1] and (cache.hits, cache.misses) == (1, 2)
    again = VerdictCache(path)  # every fresh verdict reached the file
    assert len(again) == 2 and again.get(relu, good, CPU).passed
    monkeypatch.setattr(pool, "verify_many", lambda *a, **kw: (_ for _ in ()).throw(AssertionError("verified")))
    assert [v.passed for v in again.verify_many(items, CPU)] == [True, False] and again.hits == 2
