"""eval/pipeline.py + eval/runner.py end to end on the CPU: a candidate folder over two built-in tasks, resume,
the Ray backend giving the same verdicts, the CLI, and ablations."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tritonrl.cli.main import main
from tritonrl.errors import ConfigError
from tritonrl.eval.ablation import grid_from_toggles, load_grid, run_ablation
from tritonrl.eval.pipeline import collect_candidates, evaluate, load_run
from tritonrl.eval.store import ResultStore
from tritonrl.tasks.loader import builtin_task
from tritonrl.verify.config import VerifyConfig

ROOT = Path(__file__).resolve().parents[2]
SOL = ROOT / "src/tritonrl/tasks/builtin/solutions"
FIX = ROOT / "tests/fixtures/candidates"
TASKS = [builtin_task("relu"), builtin_task("softmax")]


@pytest.fixture(scope="module")
def candidates(tmp_path_factory) -> Path:
    """relu: correct, torch fallback, correct again (a duplicate); softmax: correct, wrong axis."""
    root = tmp_path_factory.mktemp("cands")
    for task, name, src in [
        ("relu", "0.py", SOL / "relu.py"),
        ("relu", "1.py", ROOT / "src/tritonrl/tasks/builtin/examples/relu/torch_fallback.py"),
        ("relu", "2.py", SOL / "relu.py"),
        ("softmax", "0.py", SOL / "softmax.py"),
        ("softmax", "1.py", FIX / "softmax/wrong_axis.py"),
    ]:
        (root / task).mkdir(exist_ok=True)
        shutil.copy(src, root / task / name)
    return root


@pytest.fixture(scope="module")
def local_run(candidates, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "local"
    return evaluate(run, TASKS, VerifyConfig(), candidates=candidates, jobs=2)


def test_metrics_of_a_candidate_folder(local_run):
    o = local_run.summary.overall
    assert (o.n_tasks, o.n_samples) == (2, 5)
    assert o.correct == pytest.approx(3 / 5)
    assert o.pass_at_k[1] == pytest.approx((2 / 3 + 1 / 2) / 2)  # unbiased pass@1 = mean of c/n per task
    assert local_run.summary.failure_counts == {"torch_compute": 1, "wrong_values": 1}
    assert local_run.report_md.read_text().startswith("# Evaluation report")


def test_duplicate_candidates_are_verified_once(local_run):
    with ResultStore(local_run.run_dir / "results.sqlite") as store:
        assert store.n_samples() == 5 and store.n_verdicts() == 4
    assert local_run.stats.done == 4


def test_rerun_resumes_without_verifying_again(local_run, candidates):
    again = evaluate(local_run.run_dir, TASKS, VerifyConfig(), candidates=candidates, jobs=2)
    assert again.stats.done == 0
    assert again.summary.overall == local_run.summary.overall


def test_ray_backend_gives_the_same_verdicts(local_run, candidates, tmp_path):
    pytest.importorskip("ray")
    import ray

    from tritonrl.verify.expect import parse_expectation

    # the candidate folder plus known-bad fixtures that fail in the parent (parse) and in the worker (correctness)
    mixed = tmp_path / "mixed"
    shutil.copytree(candidates, mixed)
    bad = {"3.py": FIX / "relu/syntax_error.py", "4.py": FIX / "relu/input_mutation.py"}
    for name, src in bad.items():
        shutil.copy(src, mixed / "relu" / name)
    local = tmp_path / "local"
    shutil.copytree(local_run.run_dir, local)  # resumed: only the two fixtures are verified again
    local_mixed = evaluate(local, TASKS, VerifyConfig(), candidates=mixed, jobs=2)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ray_run = evaluate(tmp_path / "ray", TASKS, VerifyConfig(), candidates=mixed, jobs=2, backend="ray")
    finally:
        ray.shutdown()
    assert ray_run.stats.done == 6 and local_mixed.stats.done == 2
    key = lambda r: (r.task_id, r.sample, r.verdict.passed, r.verdict.stage, r.verdict.failure)  # noqa: E731
    with ResultStore(local / "results.sqlite") as a, ResultStore(ray_run.run_dir / "results.sqlite") as b:
        local_keys, ray_keys = sorted(map(key, a.records())), sorted(map(key, b.records()))
        assert {r.device for r in b.records()} == {"cpu"}
    assert local_keys == ray_keys
    for name, src in bad.items():  # and both are the fixtures' expected verdicts
        expected = parse_expectation(src.read_text())
        got = next(k for k in ray_keys if k[:2] == ("relu", int(name[0])))
        assert (got[2], got[3], got[4]) == (False, expected.stage, expected.failure)


def test_load_run_reads_back_the_summary(local_run):
    summary, meta = load_run(local_run.run_dir)
    assert summary.overall == local_run.summary.overall
    assert meta["k"] == 1 and meta["device"] == "cpu"


def test_unknown_task_folder_is_an_error(tmp_path):
    (tmp_path / "not_a_task").mkdir()
    (tmp_path / "not_a_task" / "0.py").write_text("x = 1\n")
    with pytest.raises(ConfigError, match="belongs to no task"):
        list(collect_candidates(tmp_path, TASKS))


def test_flat_layout_is_one_sample_per_task(tmp_path):
    shutil.copy(SOL / "relu.py", tmp_path / "relu.py")
    rows = list(collect_candidates(tmp_path, TASKS))
    assert [(t, i) for t, i, _, _ in rows] == [("relu", 0)]


def test_cli_eval_and_report(candidates, tmp_path, capsys):
    run = tmp_path / "cli"
    code = main(["eval", "--suite", "builtin", "--tasks", "relu", "--candidates", str(candidates), "--run", str(run),
                 "--device", "cpu", "--json"])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["overall"]["n_samples"] == 3
    assert main(["report", str(run), str(run), "--jsonl", str(tmp_path / "records.jsonl")]) == 0
    assert "Evaluation report" in capsys.readouterr().out
    lines = (tmp_path / "records.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["task_id"] == "relu" for line in lines)


def test_toggle_grid_is_the_full_product():
    grid = grid_from_toggles(["multi_input", "ghost_replay"])
    assert len(grid) == 4
    edge = ("wide", "small", "offset", "negative", "positive", "ties", "zero_rows", "mixed")
    assert grid["multi_input=off,ghost_replay=off"] == {"n_variants": 0, "distributions": ("native", *edge),
                                                        "ghost_replay": False}  # fmt: skip
    assert grid["multi_input=on,ghost_replay=on"] == {}


def test_grid_file_rejects_unknown_fields(tmp_path):
    path = tmp_path / "grid.json"
    path.write_text(json.dumps({"a": {"no_such_field": 1}}))
    with pytest.raises(ConfigError, match="unknown fields"):
        load_grid(path)


def test_ablation_shows_what_a_defence_catches(tmp_path):
    """A relu that is the identity passes on its native [0, 1) inputs only: normal values (multi_input) and the
    negative edge values (numerical_stability) each catch it."""
    cands = tmp_path / "c"
    (cands / "relu").mkdir(parents=True)
    shutil.copy(FIX / "relu/identity_on_negatives.py", cands / "relu" / "0.py")
    grid = grid_from_toggles(["multi_input", "numerical_stability"])
    results, path = run_ablation(tmp_path / "abl", [TASKS[0]], VerifyConfig(), grid, candidates=cands, jobs=2)
    correct = {name: s.overall.correct for name, s in results}
    assert correct == {
        "multi_input=on,numerical_stability=on": 0.0,
        "multi_input=on,numerical_stability=off": 0.0,
        "multi_input=off,numerical_stability=on": 0.0,
        "multi_input=off,numerical_stability=off": 1.0,
    }
    assert "multi_input=off,numerical_stability=off" in path.read_text()


BROKEN_REFERENCE = """
import torch
import torch.nn as nn


class Model(nn.Module):
    def forward(self, x):
        return x.view(size, -1) @ torch.ones(3, 3)  # fails for every size: rows of 4 are not 3 wide


size = 64


def get_inputs():
    return [torch.randn(size, 4)]


def get_init_inputs():
    return []
"""


def test_a_task_whose_reference_cannot_run_is_skipped_and_reported(tmp_path):
    """The run goes on without it: its samples stay unscored (neither pass nor fail), the report says why."""
    from tritonrl.tasks.loader import load_task

    broken = load_task(BROKEN_REFERENCE, task_id="broken_reference")
    cands = tmp_path / "cands"
    for task in ("relu", "broken_reference"):
        (cands / task).mkdir(parents=True)
        for i in range(2):
            shutil.copy(SOL / "relu.py", cands / task / f"{i}.py")
    result = evaluate(tmp_path / "run", [builtin_task("relu"), broken], VerifyConfig(), candidates=cands, jobs=2)
    assert list(result.stats.skipped) == ["broken_reference"] and result.stats.done == 1  # duplicates verify once
    assert (result.summary.overall.n_tasks, result.summary.overall.correct) == (1, 1.0)
    assert "broken_reference" in result.report_md.read_text()
