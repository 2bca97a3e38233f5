"""verify/cache.py through the Verifier: a batch verifies only its misses and stores each verdict as it finishes."""

from __future__ import annotations

from pathlib import Path

import tritonrl.verify.funnel as funnel
from tritonrl.tasks.loader import builtin_task
from tritonrl.verify.cache import VerdictCache
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.verifier import Verifier

CPU = VerifyConfig(device="cpu")


def test_a_batch_verifies_misses_once_and_keeps_them(tmp_path, monkeypatch):
    relu = builtin_task("relu")
    good = Path(relu.solution_path).read_text()
    items = [(relu, good), (relu, "no code here")]
    path = tmp_path / "verdicts.jsonl"
    cache = VerdictCache(path)
    with Verifier(CPU, cache=cache, prestart=0) as verifier:
        verifier.verify(relu, "no code here")  # now cached: the batch must not verify it again
    calls, seen = [], []
    real = funnel.screen

    def spy(task, code, cfg):  # noqa: ANN001, ANN202
        calls.append(code)
        return real(task, code, cfg)

    monkeypatch.setattr(funnel, "screen", spy)
    with Verifier(CPU, jobs=4, cache=cache) as verifier:
        verdicts = verifier.verify_many(items, on_verdict=lambda i, v: seen.append(i))
    assert [v.passed for v in verdicts] == [True, False] and calls == [good]
    assert sorted(seen) == [0, 1] and (cache.hits, cache.misses) == (1, 2)
    assert (verifier.stats.hits, verifier.stats.verified) == (1, 1)
    again = VerdictCache(path)  # every fresh verdict reached the file
    assert len(again) == 2 and again.peek(relu, good, CPU).passed and (again.hits, again.misses) == (0, 0)
    monkeypatch.setattr(funnel, "screen", lambda *a, **kw: (_ for _ in ()).throw(AssertionError("verified")))
    with Verifier(CPU, cache=again) as verifier:
        assert [v.passed for v in verifier.verify_many(items)] == [True, False] and again.hits == 2
