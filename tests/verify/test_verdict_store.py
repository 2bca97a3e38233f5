"""verify/verdict_store.py: the SQLite verdict store keys like the JSONL cache, counts hits, survives reopening, takes
writes from threads and processes at once, is shared by two Verifiers, refuses foreign files; `open_verdict_store`
picks the backend by suffix."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import tritonrl.verify.funnel as funnel
from tritonrl.errors import ConfigError
from tritonrl.tasks.loader import builtin_task
from tritonrl.verify.cache import VerdictCache, cache_key
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.verdict_store import SQLiteVerdictStore, VerdictStoreError, open_verdict_store
from tritonrl.verify.verifier import Verifier

RELU = builtin_task("relu")
GOOD = Path(RELU.solution_path).read_text()
SOCKET = (Path(__file__).resolve().parents[1] / "fixtures/candidates/relu/import_socket.py").read_text()
CPU = VerifyConfig(device="cpu", timing=False, compile_baseline=False)
NO_CODE = funnel.screen(RELU, "no code", CPU)  # a verdict made in the parent: extract stage, no worker


def test_round_trip_with_the_jsonl_key_and_what_misses(tmp_path):
    path = tmp_path / "verdicts.sqlite"
    with SQLiteVerdictStore(path) as store:
        assert store.get(RELU, "no code", CPU) is None
        store.put(RELU, "no code", CPU, NO_CODE)
        assert store.get(RELU, "no code", CPU).to_dict() == NO_CODE.to_dict()
        assert store.get(RELU, "other code", CPU) is None  # the code
        assert store.get(RELU, "no code", dataclasses.replace(CPU, policy="partial")) is None  # the config
        assert store.get(builtin_task("vector_add"), "no code", CPU) is None  # another task
        assert store.get(dataclasses.replace(RELU, source=RELU.source + "\n# edited\n"), "no code", CPU) is None
        assert store.peek(RELU, "no code", CPU) is not None  # not counted
        assert (store.hits, store.misses, len(store)) == (1, 5, 1)
    with sqlite3.connect(path) as conn:  # the JSONL cache's key: a row migrates between the backends as it is
        assert conn.execute("SELECT key, task_id, policy FROM verdict_cache").fetchall() == [
            (cache_key(RELU, "no code", CPU), "relu", "strict")
        ]


def test_reopening_keeps_the_verdicts_and_a_put_replaces(tmp_path):
    path = tmp_path / "v.db"
    with SQLiteVerdictStore(path) as store:
        store.put(RELU, "a", CPU, NO_CODE)
        store.put(RELU, "b", CPU, NO_CODE)
        store.put(RELU, "b", CPU, dataclasses.replace(NO_CODE, message="newer"))
    with SQLiteVerdictStore(path) as again:
        assert len(again) == 2 and (again.hits, again.misses) == (0, 0)
        assert again.get(RELU, "b", CPU).message == "newer"
    with pytest.raises(VerdictStoreError, match="closed"):
        len(again)


def test_an_unreadable_verdict_is_a_miss_and_the_next_put_replaces_it(tmp_path, caplog):
    path = tmp_path / "v.sqlite"
    with SQLiteVerdictStore(path) as store:
        store.put(RELU, "a", CPU, NO_CODE)
        with sqlite3.connect(path) as conn:
            conn.execute('UPDATE verdict_cache SET verdict_json = \'{"stage": "no such stage"}\'')
        assert store.get(RELU, "a", CPU) is None and "unreadable verdict" in caplog.text
        store.put(RELU, "a", CPU, NO_CODE)
        assert store.get(RELU, "a", CPU) is not None and (store.hits, store.misses) == (1, 1)


def test_a_verdict_stored_before_the_timing_report_reads_back_into_it(tmp_path):
    # Verdict.from_dict migrates extra["timing"] / extra["speedup_compile"], so neither backend's format changes:
    # the stores keep SCHEMA_VERSION 1 and old rows stay hits.
    old = {**NO_CODE.to_dict(), "extra": {"timing": {"mode": "events", "speedup_ci95": [1.9, 2.1]},
                                          "speedup_compile": 0.9}}  # fmt: skip
    del old["timing"]
    for v in _read_back_old_row(tmp_path, old):
        assert v.timing.speedup_ci95 == (1.9, 2.1) and v.speedup_of("compile") == 0.9 and v.extra == {}


def test_a_verdict_with_flat_checks_reads_back_into_nested_stats(tmp_path):
    # Verdict.from_dict nests checks stored before CheckResult.stats existed, so again neither backend's format
    # changes and old rows stay hits.
    flat = {"case": "base/wide", "sizes": {"N": 64}, "distribution": "wide", "seed": 7, "passed": False,
            "failure": "wrong_values", "message": "3 of 64 differ", "output_index": 0, "n_elements": 64,
            "n_mismatch": 3, "max_abs_err": "inf", "max_rel_err": 0.5, "first_bad_index": [2], "atol": 1e-4,
            "rtol": 1e-4}  # fmt: skip
    for v in _read_back_old_row(tmp_path, {**NO_CODE.to_dict(), "checks": [flat]}):
        (check,) = v.checks
        assert check.stats.first_bad_index == (2,) and check.stats.n_mismatch == 3
        assert check.stats.max_abs_err == float("inf") and check.failure.value == "wrong_values"


def _read_back_old_row(tmp_path, old: dict) -> list:
    """The verdict `old` (a stored dict in an older format) read back through the SQLite store and the JSONL cache."""
    jsonl = tmp_path / "v.jsonl"
    row = {"key": cache_key(RELU, "a", CPU), "task_id": "relu", "policy": "strict", "verdict": old}
    jsonl.write_text(json.dumps(row) + "\n")
    with SQLiteVerdictStore(tmp_path / "v.sqlite") as store:
        store.put(RELU, "a", CPU, NO_CODE)
        with sqlite3.connect(store.path) as conn:
            conn.execute("UPDATE verdict_cache SET verdict_json = ?", (json.dumps(old),))
        return [store.get(RELU, "a", CPU), VerdictCache(jsonl).get(RELU, "a", CPU)]


def test_threads_write_at_once_through_one_store_and_through_two(tmp_path):
    path = tmp_path / "v.sqlite"
    with SQLiteVerdictStore(path) as shared, SQLiteVerdictStore(path) as other:
        stores = [shared, shared, other]
        start = threading.Barrier(len(stores))

        def write(n: int) -> None:
            start.wait()
            for i in range(40):
                stores[n].put(RELU, f"candidate {n} {i}", CPU, NO_CODE)

        with ThreadPoolExecutor(len(stores)) as pool:
            list(pool.map(write, range(len(stores))))
        assert len(shared) == len(other) == 120


def test_another_process_writes_at_the_same_time(tmp_path):
    path = tmp_path / "v.sqlite"
    child = textwrap.dedent("""
        import sys
        from tritonrl.tasks.loader import builtin_task
        from tritonrl.verify import funnel
        from tritonrl.verify.config import VerifyConfig
        from tritonrl.verify.verdict_store import SQLiteVerdictStore

        relu, cfg = builtin_task("relu"), VerifyConfig(device="cpu", timing=False, compile_baseline=False)
        verdict = funnel.screen(relu, "no code", cfg)
        with SQLiteVerdictStore(sys.argv[1]) as store:
            print("ready", flush=True)
            for i in range(300):
                store.put(relu, f"child {i}", cfg, verdict)
    """)
    with SQLiteVerdictStore(path) as store:
        proc = subprocess.Popen([sys.executable, "-c", child, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "ready\n"  # the child has its connection: the writes below overlap its own
        for i in range(300):
            store.put(RELU, f"parent {i}", CPU, NO_CODE)
        assert proc.wait(timeout=120) == 0
        assert len(store) == 600 and store.get(RELU, "child 299", CPU) is not None


def test_two_verifiers_share_one_file(tmp_path, monkeypatch):
    path = tmp_path / "verdicts.sqlite"
    items = [(RELU, GOOD), (RELU, "no code"), (RELU, SOCKET)]  # one real verification, two rejected in the parent
    with SQLiteVerdictStore(path) as first, SQLiteVerdictStore(path) as second:
        with Verifier(CPU, jobs=1, cache=first, keep_warm=False) as verifier:
            verdicts = verifier.verify_many(items)
        assert [v.passed for v in verdicts] == [True, False, False] and first.misses == 3
        monkeypatch.setattr(funnel, "screen", lambda *a, **kw: (_ for _ in ()).throw(AssertionError("verified")))
        with Verifier(CPU, cache=second) as verifier:
            again = verifier.verify_many(items)
        assert [v.to_dict() for v in again] == [v.to_dict() for v in verdicts]
        assert (second.hits, second.misses, verifier.stats.hits) == (3, 0, 3)


def test_a_file_that_is_not_a_verdict_store_is_refused_untouched(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database\n" * 200)
    with pytest.raises(VerdictStoreError, match="cannot be opened as an SQLite verdict store.*a path of its own"):
        SQLiteVerdictStore(junk)
    assert junk.read_bytes() == b"this is not a database\n" * 200

    foreign = tmp_path / "results.sqlite"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE samples (task_id TEXT)")
    with pytest.raises(VerdictStoreError, match=r"not a tritonrl verdict store .*\['samples'\]"):
        SQLiteVerdictStore(foreign)
    with sqlite3.connect(foreign) as conn:  # not switched to WAL, no table added
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == [("samples",)]

    newer = tmp_path / "newer.sqlite"
    SQLiteVerdictStore(newer).close()
    with sqlite3.connect(newer) as conn:
        conn.execute("PRAGMA user_version = 2")
    with pytest.raises(VerdictStoreError, match="schema version 2 is not supported"):
        SQLiteVerdictStore(newer)


def test_open_verdict_store_picks_the_backend_by_suffix(tmp_path):
    with open_verdict_store(None) as memory:
        assert isinstance(memory, VerdictCache) and memory.path is None
    with open_verdict_store(tmp_path / "v.jsonl") as jsonl:
        assert isinstance(jsonl, VerdictCache)
    for name in ("v.sqlite", "v.SQLITE3", "v.db"):
        with open_verdict_store(tmp_path / name) as store:
            assert isinstance(store, SQLiteVerdictStore)
            store.put(RELU, "a", CPU, NO_CODE)
        with pytest.raises(VerdictStoreError, match="closed"):  # closed on exit
            store.peek(RELU, "a", CPU)
    with pytest.raises(ConfigError, match=r"'v\.json'.*\.jsonl \(JSONL\) or \.sqlite.*e\.g\. v\.sqlite"):
        open_verdict_store("v.json").__enter__()
    assert not Path("v.json").exists()
