"""VerifierClient's persistent verdict store: the pool processes read an SQLite store before verifying and write it
after, so a completion verified in an earlier run (or by another client) is answered from it."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import pytest

from tritonrl.errors import ConfigError
from tritonrl.rewards.client import STORE_ENV, VerifierClient
from tritonrl.tasks.loader import builtin_task
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.verdict_store import SQLiteVerdictStore

RELU = builtin_task("relu")
NO_CODE = "I would write a kernel here, but this answer has no code block."


def test_verdicts_persist_and_a_later_client_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.sqlite"
    with VerifierClient({"relu": RELU}, workers=1, store=path) as client:
        (first,) = client.verdicts(["relu"], [NO_CODE])
    assert first.stage == "extract" and not first.passed
    with SQLiteVerdictStore(path) as store:
        assert len(store) == 1 and store.peek(RELU, NO_CODE, VerifyConfig()) == first
        # What the store holds is what a new client answers: plant a verdict no verification would give
        store.put(RELU, NO_CODE, VerifyConfig(), dataclasses.replace(first, message="answered by the store"))
    with VerifierClient({"relu": RELU}, workers=1, store=path) as again:
        (second,) = again.verdicts(["relu"], [NO_CODE])
    assert second.message == "answered by the store"


def test_the_store_comes_from_the_environment_and_survives_pickling(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "env.sqlite"))
    client = VerifierClient({"relu": RELU})
    assert client.store == str(tmp_path / "env.sqlite")
    copy = pickle.loads(pickle.dumps(client))
    assert copy.store == client.store
    client.close()
    copy.close()


@pytest.mark.parametrize("name", ["verdicts.jsonl", "verdicts.txt"])
def test_a_store_the_pool_cannot_share_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="sqlite"):
        VerifierClient({"relu": RELU}, store=tmp_path / name)
