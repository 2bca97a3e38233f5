"""eval.store and eval.records: the SQLite result store, including a real SIGKILL-and-resume test."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from tritonrl.eval.records import Record
from tritonrl.eval.store import ResultStore, Sample, StoreError, candidate_sha256
from tritonrl.types import Verdict

CFG, DEV = "cfg0", "cpu"

# Shared by the test and the child process it kills: a deterministic verdict per (task, candidate), with a long
# message so that a torn page would show up as broken JSON or a wrong message.
VERDICT_SRC = """
from tritonrl.types import FailureKind, Stage, Verdict

def make_verdict(task_id, sha):
    passed = int(sha[0], 16) % 2 == 0
    return Verdict(
        task_id=task_id, passed=passed, stage=Stage.DONE if passed else Stage.CORRECTNESS,
        failure=None if passed else FailureKind.WRONG_VALUES, message=(task_id + ":" + sha) * 20,
        candidate_sha256=sha, speedup=1.5 if passed else None,
    )
"""
_ns: dict = {}
exec(VERDICT_SRC, _ns)
make_verdict = _ns["make_verdict"]

CHILD_SRC = (
    VERDICT_SRC
    + f"""
import sys, time
from tritonrl.eval.records import Record
from tritonrl.eval.store import ResultStore

store = ResultStore(sys.argv[1])
pause_s = float(sys.argv[2])
for s in store.pending({CFG!r}, {DEV!r}):
    verdict = make_verdict(s.task_id, s.candidate_sha256)
    store.put(Record(s.task_id, s.sample, s.level, s.candidate_sha256, {CFG!r}, {DEV!r}, verdict))
    print(s.task_id, s.candidate_sha256, flush=True)  # printed only after the commit returned
    time.sleep(pause_s)
print("DONE", flush=True)
"""
)


def samples(n_tasks: int = 3, k: int = 4, n_distinct: int = 3) -> list[Sample]:
    """k samples per task; sample i repeats candidate i % n_distinct (duplicates, as LLM sampling produces)."""
    out = []
    for t in range(n_tasks):
        for i in range(k):
            src = f"# task {t} candidate {i % n_distinct}\n"
            out.append(Sample(f"task{t}", i, 1 + t % 2, candidate_sha256(src), src))
    return out


def record_for(s: Sample, cfg: str = CFG, dev: str = DEV) -> Record:
    return Record(
        s.task_id, s.sample, s.level, s.candidate_sha256, cfg, dev, make_verdict(s.task_id, s.candidate_sha256)
    )


@pytest.fixture
def store(tmp_path):
    with ResultStore(tmp_path / "run" / "results.sqlite") as st:
        yield st


# --- records -------------------------------------------------------------------------------------------------


def test_record_json_round_trip():
    s = samples()[0]
    r = record_for(s)
    assert Record.from_json(r.to_json()) == r


def test_record_rejects_another_candidates_verdict():
    s = samples()[0]
    with pytest.raises(ValueError, match="another candidate"):
        Record(s.task_id, s.sample, s.level, "f" * 64, CFG, DEV, make_verdict(s.task_id, s.candidate_sha256))
    with pytest.raises(ValueError, match="sample=-1"):
        Record(s.task_id, -1, s.level, s.candidate_sha256, CFG, DEV, make_verdict(s.task_id, s.candidate_sha256))


# --- store ---------------------------------------------------------------------------------------------------


def test_opens_in_wal_mode_with_full_sync(store):
    assert store._query("PRAGMA journal_mode")[0][0] == "wal"
    assert store._query("PRAGMA synchronous")[0][0] == 2  # FULL


def test_add_samples_is_idempotent(store):
    assert store.add_samples(samples()) == 12
    assert store.add_samples(samples()) == 0
    assert store.n_samples() == 12
    assert store.sampled_tasks() == {"task0", "task1", "task2"}


def test_add_samples_rejects_a_different_candidate_and_writes_nothing(store):
    store.add_samples(samples())
    other = "# something else\n"
    batch = [Sample("task9", 0, 1, candidate_sha256("x"), "x"), Sample("task0", 1, 1, candidate_sha256(other), other)]
    with pytest.raises(StoreError, match="one candidate set"):
        store.add_samples(batch)
    assert store.n_samples() == 12  # task9 was rolled back with the rest of the batch


def test_add_samples_rejects_a_hash_that_is_not_the_sources(store):
    with pytest.raises(StoreError, match="not sha256"):
        store.add_samples([Sample("t", 0, None, "0" * 64, "print(1)")])


def test_pending_lists_each_distinct_candidate_once(store):
    store.add_samples(samples())
    pending = store.pending(CFG, DEV)
    assert len(pending) == 9  # 3 tasks x 3 distinct candidates; sample 3 duplicates sample 0
    assert [(p.task_id, p.sample) for p in pending[:3]] == [("task0", 0), ("task0", 1), ("task0", 2)]
    assert all(candidate_sha256(p.source) == p.candidate_sha256 for p in pending)


def test_put_is_idempotent_and_pending_shrinks(store):
    store.add_samples(samples())
    first = store.pending(CFG, DEV)[0]
    assert store.put(record_for(first)) is True
    assert store.put(record_for(first)) is False
    assert store.n_verdicts() == 1
    assert len(store.pending(CFG, DEV)) == 8
    assert len(store.pending("other-cfg", DEV)) == 9  # a verdict counts only for its own config and device
    assert len(store.pending(CFG, "NVIDIA H100")) == 9


def test_put_rejects_a_verdict_without_its_sample(store):
    s = samples()[0]
    with pytest.raises(StoreError, match="add_samples"):
        store.put(record_for(s))


def test_records_give_duplicates_the_same_verdict(store):
    store.add_samples(samples())
    for p in store.pending(CFG, DEV):
        store.put(record_for(p))
    records = store.records(CFG, DEV)
    assert len(records) == 12  # one per sample, not per distinct candidate
    by_sample = {(r.task_id, r.sample): r for r in records}
    assert by_sample[("task0", 3)].verdict == by_sample[("task0", 0)].verdict
    assert by_sample[("task0", 3)].sample == 3
    assert store.records("other-cfg") == []


def test_records_without_filters_hold_every_setting(store):
    store.add_samples(samples(n_tasks=1, k=1))
    s = store.pending(CFG, DEV)[0]
    store.put(record_for(s))
    store.put(record_for(s, cfg="cfg1"))
    assert [(r.config_hash, r.device) for r in store.records()] == [("cfg0", "cpu"), ("cfg1", "cpu")]
    assert len(store.records(config_hash="cfg1")) == 1


def test_meta_round_trip(store):
    assert store.get_meta("suite", "none") == "none"
    store.set_meta("config", {"device": "cpu", "n_variants": 2})
    store.set_meta("config", {"device": "cuda"})
    assert store.get_meta("config") == {"device": "cuda"}
    with pytest.raises(StoreError, match="strict JSON"):
        store.set_meta("x", float("nan"))


def test_export_jsonl(store, tmp_path):
    store.add_samples(samples())
    for p in store.pending(CFG, DEV):
        store.put(record_for(p))
    out = tmp_path / "export" / "records.jsonl"
    assert store.export_jsonl(out) == 12
    lines = out.read_text().splitlines()
    assert [Record.from_json(line) for line in lines] == store.records()


def test_closed_store_raises_and_reopen_keeps_data(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultStore(path) as st:
        st.add_samples(samples())
        st.set_meta("model", "m")
    with pytest.raises(StoreError, match="closed"):
        st.n_samples()
    with ResultStore(path) as st:
        assert (st.n_samples(), st.get_meta("model")) == (12, "m")


def test_rejects_a_newer_schema(tmp_path):
    path = tmp_path / "r.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(StoreError, match="schema version 99"):
        ResultStore(path)


def test_concurrent_puts_from_threads(store):
    store.add_samples(samples(n_tasks=20, k=5, n_distinct=5))
    pending = store.pending(CFG, DEV)
    errors: list[BaseException] = []

    def worker(chunk: list[Sample]) -> None:
        try:
            for p in chunk:
                store.put(record_for(p))
                store.pending(CFG, DEV)  # reads interleaved with other threads' writes
        except BaseException as e:  # surfaced by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(pending[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.n_verdicts() == 100 and store.pending(CFG, DEV) == []


# --- durability: SIGKILL mid-run, reopen, resume --------------------------------------------------------------


def _run_and_kill(path, n_commits: int, pause_s: float) -> set[tuple[str, str]]:
    """Start a child that commits verdicts one by one; SIGKILL it once it has reported `n_commits` commits.
    Returns the (task, sha) pairs the child reported as committed."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_SRC, str(path), str(pause_s)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    committed: set[tuple[str, str]] = set()
    try:
        while len(committed) < n_commits:
            line = child.stdout.readline()
            assert line and line != "DONE\n", f"child ended before the kill: {child.stderr.read()[-2000:]}"
            task_id, sha = line.split()
            committed.add((task_id, sha))
        time.sleep(random.uniform(0.0, 0.003))  # land the kill anywhere in the child's put/print/sleep cycle
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL
        for line in child.stdout.read().splitlines():  # commits reported between our last read and the kill
            if line != "DONE":
                task_id, sha = line.split()
                committed.add((task_id, sha))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()
    return committed


def _check_intact(path, committed: set[tuple[str, str]]) -> int:
    """Integrity, no lost committed verdict, no duplicate, every row intact JSON. Returns the verdict count."""
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = conn.execute(
            "SELECT task_id, candidate_sha256, config_hash, device, verdict_json FROM verdicts"
        ).fetchall()
    finally:
        conn.close()
    keys = [(t, sha) for t, sha, _, _, _ in rows]
    assert len(keys) == len(set(keys)), "a verdict was stored twice"
    assert committed <= set(keys), f"lost committed verdicts: {sorted(committed - set(keys))[:3]}"
    for t, sha, cfg, dev, text in rows:
        assert (cfg, dev) == (CFG, DEV)
        assert Verdict.from_dict(json.loads(text)) == make_verdict(t, sha)
    return len(rows)


def test_sigkill_mid_run_loses_nothing_committed_and_resumes_exactly(tmp_path):
    path = tmp_path / "run" / "results.sqlite"
    all_samples = samples(n_tasks=40, k=4, n_distinct=3)
    n_distinct = len({(s.task_id, s.candidate_sha256) for s in all_samples})
    with ResultStore(path) as st:
        st.add_samples(all_samples)
    committed: set[tuple[str, str]] = set()
    stored = 0
    # Rounds with a pause (killed between commits, most likely) and without (killed mid-transaction, most likely).
    for pause_s in (0.005, 0.0, 0.0, 0.002):
        committed |= _run_and_kill(path, n_commits=8, pause_s=pause_s)
        now = _check_intact(path, committed)
        assert now > stored  # each round made progress from where the last one stopped
        stored = now
    assert stored < n_distinct, "the child finished before being killed; the test did not test a kill"
    with ResultStore(path) as st:
        pending = st.pending(CFG, DEV)
        assert len(pending) == n_distinct - stored
        for s in pending:
            assert st.put(record_for(s)) is True
        assert st.pending(CFG, DEV) == []
        assert st.n_verdicts() == n_distinct == 120
        assert len(st.records(CFG, DEV)) == len(all_samples)
        assert st.integrity_check() == "ok"
    _check_intact(path, committed)
