"""data/curate.py and verify/cache.py: KernelBook ports curated with the real verifier (CPU interpreter).

Each sandboxed verification costs ~3 s, so the default run verifies two rows; `-m slow` curates the whole sample.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonrl.data.curate import Status, curate
from tritonrl.data.suites import load_suite
from tritonrl.verify.cache import VerdictCache
from tritonrl.verify.config import VerifyConfig

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures/kernelbook/sample.jsonl"
CPU = VerifyConfig(device="cpu")


def _entries(*uuids: int):
    entries = {e.task_id.split("/")[1].split("_")[0]: e for e in load_suite(f"kernelbook:{SAMPLE}").entries}
    return [entries[str(u)] for u in uuids]


def test_strict_port_is_verified_and_gemm_port_is_partial(tmp_path):
    cache = VerdictCache(tmp_path / "verdicts.jsonl")
    verified, partial = curate(_entries(101, 104), CPU, cache)
    assert (verified.status, verified.policy, verified.stage) == (Status.VERIFIED, "strict", "done")
    assert (partial.status, partial.policy) == (Status.PARTIAL_PORT, "partial")
    assert "extern_kernels.mm" in partial.reason and partial.usable
    assert cache.misses == 2  # the GEMM port is verified under 'partial' only: strict cannot pass it


def test_a_rerun_reads_the_cache_instead_of_verifying(tmp_path):
    path = tmp_path / "verdicts.jsonl"
    first = curate(_entries(101), CPU, VerdictCache(path))
    again = VerdictCache(path)
    assert len(again) == 1
    second = curate(_entries(101), CPU, again)
    assert (again.hits, again.misses) == (1, 0) and second[0].status == first[0].status
    other = VerdictCache(path)
    curate(_entries(101), VerifyConfig(device="cpu", n_variants=1), other)  # another config: another key
    assert other.misses == 1


def test_libdevice_and_blocked_ports_are_labelled_without_running():
    cache = VerdictCache()
    gelu, norm = curate(_entries(107, 108), CPU, cache)
    assert gelu.status == Status.NEEDS_GPU and "libdevice.erf" in gelu.reason
    assert norm.status == Status.BLOCKED and "welford" in norm.reason
    assert cache.misses == 0 and not gelu.usable


def test_parallel_curation_goes_through_the_warm_pool(tmp_path, monkeypatch):
    """jobs=2: each policy's round is one Verifier batch; results keep input order, each reported once."""
    import tritonrl.data.curate as curate_mod

    batches = []

    class Spy(curate_mod.Verifier):
        def verify_many(self, items, **kw):  # noqa: ANN001, ANN003, ANN202
            items = list(items)
            batches.append((self.cfg.policy, len(items), self._prestart))
            return super().verify_many(items, **kw)

    monkeypatch.setattr(curate_mod, "Verifier", Spy)
    seen = []
    results = curate(_entries(104, 101, 107), CPU, VerdictCache(tmp_path / "v.jsonl"), on_result=seen.append, jobs=2)
    assert [r.status for r in results] == [Status.PARTIAL_PORT, Status.VERIFIED, Status.NEEDS_GPU]
    assert sorted(r.task_id for r in seen) == sorted(r.task_id for r in results)
    assert batches == [("strict", 1, 1), ("partial", 1, 1)]  # never more warm workers than misses
    assert all(r.seconds > 0 for r in results[:2]) and results[2].seconds == 0
    assert len((tmp_path / "v.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
def test_whole_sample_curation():
    results = {r.task_id: r for r in curate(load_suite(f"kernelbook:{SAMPLE}").entries, CPU, VerdictCache())}
    status = {task_id.split("/")[1]: r.status for task_id, r in results.items()}
    assert status == {
        "101_ShiftedReLU": Status.VERIFIED, "102_FeatureScale": Status.VERIFIED, "103_NeighborSum": Status.VERIFIED,
        "104_TinyProjection": Status.PARTIAL_PORT, "105_ClampUnit": Status.REJECTED,
        "107_ErfGELU": Status.NEEDS_GPU, "108_RowNorm": Status.BLOCKED,
    }  # fmt: skip
    clamp = results["kernelbook/105_ClampUnit"]
    assert (clamp.stage, clamp.failure) == ("correctness", "wrong_values")
