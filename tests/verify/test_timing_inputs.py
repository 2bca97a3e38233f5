"""The CPU-testable parts of the timing stage's inputs: the parent's timing sets (seeds, reference outputs, counted
work), the worker's rotation of value sets through input slots, and the calibration cache."""

from __future__ import annotations

import json

import torch

from tritonrl.tasks.loader import builtin_task
from tritonrl.tasks.reference import ReferenceProgram
from tritonrl.verify import calibration
from tritonrl.verify.cases import draw_cases
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.funnel import plan_for
from tritonrl.verify.timing_cases import draw_timing, run_timing, timing_slots
from tritonrl.verify.worker.timing_phase import TimingContext, _Slots


def test_timing_sets_count_the_work_and_match_a_redraw_from_their_seeds():
    cfg = VerifyConfig(timing_input_sets=3)
    task = builtin_task("matmul")
    base = draw_cases(task, plan_for(task, cfg), cfg)[0]
    sets = run_timing(draw_timing(base, cfg), cfg)
    assert len(sets.seeds) == cfg.timing_input_sets + timing_slots(cfg) == 5
    m, k, n = base.sizes["M"], base.sizes["K"], base.sizes["N"]
    assert sets.work.flops == 2 * m * n * k
    assert sets.work.set_bytes == 4 * (m * k + k * n) == sets.work.bytes_read  # no parameters
    assert sets.work.bytes_written == 4 * m * n
    # what the worker does with a seed alone (worker_timing.prepare) gives inputs whose reference is what we hold
    prog = ReferenceProgram(task, base.sizes)
    a, b = prog.inputs(sets.seeds[2])
    torch.testing.assert_close(a @ b, sets.ref_outputs[2][0])


def test_timing_model_has_the_parameters_the_candidate_gets():
    """The timing sets' reference is a copy of the drawn base model: the state dict sent to the worker, exactly."""
    cfg = VerifyConfig()
    task = builtin_task("linear_bias_relu")
    base = draw_cases(task, plan_for(task, cfg), cfg)[0]
    timing = draw_timing(base, cfg)
    assert timing.model is not base.model
    state = timing.model.state_dict()
    assert state.keys() == base.state_dict.keys()
    assert all(torch.equal(state[k], v) for k, v in base.state_dict.items())
    fresh = ReferenceProgram(task, base.sizes).make_model(0)  # another seed: other parameters, to show it matters
    assert not torch.equal(fresh.state_dict()["linear.weight"], state["linear.weight"])


def _ctx(n_values: int, n_slots: int) -> TimingContext:
    values = [[torch.full((4,), float(v))] for v in range(n_values)]
    return TimingContext(reference=None, values=values, n_slots=n_slots, params=None)


def test_each_use_of_a_slot_sees_other_values_than_its_last_use():
    slots = _Slots(torch, _ctx(n_values=5, n_slots=2))  # 3 rotating value sets, 2 fresh ones
    seen: dict[int, list[float]] = {0: [], 1: []}
    for i in range(12):
        slots.rotate(1, i, replay=False)
        slot = i % 2
        seen[slot].append(float(slots.slots[1][slot][0][0]))
    for values in seen.values():
        assert all(a != b for a, b in zip(values, values[1:], strict=False))
        assert set(values) <= {0.0, 1.0, 2.0}
    slots.rotate(1, -1, replay=False)  # the check round: never-seen values in every slot
    assert [float(s[0][0]) for s in slots.slots[1]] == [3.0, 4.0]
    assert [float(s[0][0]) for s in slots.slots[0]] == [0.0, 1.0]  # the other side's buffers are its own


def test_graph_replays_shift_every_slot():
    slots = _Slots(torch, _ctx(n_values=5, n_slots=2))
    before = None
    for r in range(6):
        slots.rotate(0, r, replay=True)
        now = [float(s[0][0]) for s in slots.slots[0]]
        assert now != before
        before = now


def test_calibration_cache_serves_stored_values_and_records_failures(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITONRL_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("TRITONRL_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setattr(calibration, "_memo", {})
    calibration.cache_path().write_text(json.dumps({"stored": {"bandwidth_gbs": 1.0}}))
    cfg = VerifyConfig(device="cuda")
    assert calibration._cached("stored", {}, cfg, "ceilings") == {"bandwidth_gbs": 1.0}
    # a measurement that fails (no GPU here) is recorded as None, never guessed, and not retried
    assert calibration._cached("missing", {"ceilings": True}, cfg, "ceilings") is None
    assert json.loads(calibration.cache_path().read_text())["missing"] is None


def test_unreadable_calibration_cache_starts_over(tmp_path, monkeypatch):
    monkeypatch.setenv("TRITONRL_CACHE_DIR", str(tmp_path))
    calibration.cache_path().write_text("{not json")
    with calibration._cache_locked() as data:
        assert data == {}
        data["k"] = 1
    assert json.loads(calibration.cache_path().read_text()) == {"k": 1}
