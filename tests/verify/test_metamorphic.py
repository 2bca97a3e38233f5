"""verify/metamorphic.py: which relations are derived from the reference, how the candidate is held to them, and
that VerifyConfig.metamorphic really switches the relation cases on and off.

Relation derivation runs in the parent only (build_cases, no worker); the end-to-end tests run the sandboxed worker
on the CPU (Triton interpreter) like tests/verify/test_funnel_fixtures.py.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

from tritonrl.tasks.loader import builtin_task, builtin_tasks, load_task
from tritonrl.tasks.schema import Task
from tritonrl.types import FailureKind, Stage
from tritonrl.verify.cases import Case, Shape, build_cases
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.correctness import compare_outputs
from tritonrl.verify.expect import parse_expectation
from tritonrl.verify.funnel import plan_for, verify
from tritonrl.verify.messages import CaseFrame, Mode
from tritonrl.verify.metamorphic import SCALE, TOL_SCALE, Relation, RelationChecker

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "candidates" / "relu"
MEMO = FIXTURES / "metamorphic_memo_by_fingerprint.py"
SATURATING = FIXTURES / "metamorphic_fp16_saturation.py"
TASK_IDS = sorted(t.task_id for t in builtin_tasks())
ON = VerifyConfig(metamorphic=True)


@functools.cache
def _task(task_id: str) -> Task:
    return builtin_task(task_id)


def _relations(task: Task, cfg: VerifyConfig = ON) -> dict[str, dict[str, Relation]]:
    """shape name -> relation name -> the relation kept for it (parent side only)."""
    shapes, _, _ = build_cases(task, plan_for(task, cfg), cfg)
    return {s.name: {c.relation.name: c.relation for c in s.cases if c.relation} for s in shapes}


# --- derivation: only what the reference satisfies exactly ----------------------------------------------------


@pytest.mark.parametrize(
    "task_id, kept",
    [
        ("relu", {"permute_rows", "scale_pow2"}),
        ("softmax", {"permute_rows"}),  # not homogeneous
        ("layernorm", {"permute_rows"}),  # eps: f(2x) == f(x) only approximately, so dropped
        ("linear_bias_relu", {"permute_rows"}),  # the bias breaks homogeneity
        ("matmul", {"permute_rows", "scale_pow2"}),
        ("vector_add", {"permute_rows", "scale_pow2", "swap_args"}),
    ],
)
def test_relations_kept_are_those_the_reference_satisfies(task_id, kept):
    task = _task(task_id)
    relations, plan = _relations(task), plan_for(task, ON)
    assert len(relations) == 4  # base + the coverage rule's 3 variants
    sizes = {"base": plan.base} | {f"variant{i + 1}": v for i, v in enumerate(plan.variants)}
    # A shape with a size of 1 may keep fewer laws (one row: nothing to permute) or more (a single relu output that
    # is 0 is homogeneous by chance); every other shape keeps exactly these.
    assert all(set(r) == kept for name, r in relations.items() if min(sizes[name].values()) > 1), relations


def test_matmul_permutes_a_only_and_is_homogeneous_of_degree_two():
    base = _relations(_task("matmul"))["base"]
    assert base["permute_rows"].law.endswith("input(s) 0")  # B's dim 0 is K, not M
    assert base["scale_pow2"].factor == SCALE**2  # (sA)(sB) = s^2 AB


def test_square_operands_fall_back_to_permuting_one_input():
    """With A and B both n x n, permuting the rows of both breaks the law; permuting A's alone keeps it."""
    task = load_task(
        "import torch\nimport torch.nn as nn\n\n\nclass Model(nn.Module):\n    def forward(self, A, B):\n"
        "        return A @ B\n\n\nn = 32\n\n\ndef get_inputs():\n"
        "    return [torch.randn(n, n), torch.randn(n, n)]\n\n\ndef get_init_inputs():\n    return []\n",
        task_id="square",
    )
    law = _relations(task, VerifyConfig(metamorphic=True, n_variants=0))["base"]["permute_rows"].law
    assert law.endswith("input(s) 0")


def test_coupled_rows_keep_no_permutation():
    task = load_task(
        "import torch\nimport torch.nn as nn\n\n\nclass Model(nn.Module):\n    def forward(self, x):\n"
        "        return torch.cumsum(x, dim=0)\n\n\nrows = 16\ncols = 8\n\n\ndef get_inputs():\n"
        "    return [torch.randn(rows, cols)]\n\n\ndef get_init_inputs():\n    return []\n",
        task_id="cumsum_rows",
    )
    relations = _relations(task, VerifyConfig(metamorphic=True, n_variants=0))["base"]
    assert set(relations) == {"scale_pow2"}  # scanning down the rows couples them; a scan is still homogeneous


def test_relation_cases_follow_their_source_and_keep_its_seed():
    shapes, notes, _ = build_cases(_task("relu"), plan_for(_task("relu"), ON), ON)
    for shape in shapes:
        for i, case in enumerate(shape.cases):
            if case.relation is not None:
                source = shape.cases[case.relation.source]
                assert case.relation.source < i and case.name == f"{source.name}~{case.relation.name}"
                assert case.seed == source.seed and case.poison is not None
    scaled = next(c for c in shapes[0].cases if c.relation and c.relation.name == "scale_pow2")
    assert scaled.name == "base/mixed~scale_pow2"  # scaling starts from the largest magnitudes tested (rows x1e3)
    assert any(n.startswith("metamorphic base: kept permute_rows") for n in notes)


def test_flag_off_derives_nothing():
    shapes, notes, _ = build_cases(_task("relu"), plan_for(_task("relu"), VerifyConfig()), VerifyConfig())
    assert not any(c.relation for s in shapes for c in s.cases)
    assert not any("metamorphic" in n for n in notes)


# --- the candidate against itself -------------------------------------------------------------------------------


def _frame(case: int, out: torch.Tensor, mode: Mode = "normal") -> CaseFrame:
    """The worker's frame for `case` of shape 0 returning `out` (the checker reads where it is, and the outputs)."""
    return CaseFrame(
        shape=0,
        case=case,
        mode=mode,
        container="tensor",
        outputs=(out,),
        structure_error=None,
        ops={},
        launches=(),
        mutated=(False,),
        threads=0,
        tamper=(),
        forward_ms=1.0,
    )


def _checker_with(relation: Relation, source_out: torch.Tensor) -> RelationChecker:
    """A checker for one source case and its relation case, fed the candidate's `source_out` on the source."""
    ref = source_out.clone()
    source = Case("base/native", "native", 1, None, [source_out], (ref,), [False])
    derived = Case("base/native~" + relation.name, "native", 1, None, [source_out], tuple(relation.expected([ref])),
                   [False], relation=relation)  # fmt: skip
    checker = RelationChecker([Shape("base", {"n": 8}, [], 0, {}, [source, derived])], tf32=False)
    assert checker.check(_frame(0, source_out)) is None
    return checker


def test_relation_tolerance_is_a_tenth_of_the_table_tolerance():
    """A deviation the ordinary fp32 check (1e-4 x RMS) would accept fails the relation when it exceeds a tenth."""
    out = torch.linspace(1.0, 2.0, 64).reshape(8, 8)
    relation = Relation("scale_pow2", 0, "f(s*x) == s*f(x)", factor=SCALE)
    rms = float((out * SCALE).square().mean().sqrt())
    for rel_err, ok in ((0.2 * TOL_SCALE * 1e-4, True), (5 * TOL_SCALE * 1e-4, False)):
        checker = _checker_with(relation, out)
        got = out * SCALE + rel_err * rms
        assert compare_outputs([got], (out * SCALE,), poison=None, tf32=False).failure is None  # ordinary: fine
        result = checker.check(_frame(1, got))
        assert result is not None and result.passed is ok and result.case == "base/native~scale_pow2:relation"
        if not ok:
            assert result.failure is FailureKind.WRONG_VALUES and "relation scale_pow2 violated" in result.message


def test_repeat_frames_are_not_relation_checks():
    checker = _checker_with(Relation("swap_args", 0, "f(b, a) == f(a, b)"), torch.ones(4))
    assert checker.check(_frame(1, torch.zeros(4), mode="repeat")) is None


def test_only_the_normal_run_of_the_source_is_what_the_relation_compares_with():
    # Case 0 also runs in ghost/repeat/profile modes (other poison, other environment): those outputs are not f(x).
    relation = Relation("swap_args", 0, "f(b, a) == f(a, b)")
    checker = _checker_with(relation, torch.ones(4))
    assert checker.check(_frame(0, torch.full((4,), 7.0), mode="profile")) is None
    assert checker.check(_frame(1, torch.ones(4))).passed


# --- end to end -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [MEMO, SATURATING], ids=lambda p: p.name)
def test_fixture_passes_every_ordinary_check_and_fails_a_relation(path: Path):
    text = path.read_text()
    expect = parse_expectation(text)
    assert dict(expect.options)["metamorphic"] == "on"
    off = verify(_task("relu"), text, VerifyConfig())
    assert off.passed, off.message
    on = verify(_task("relu"), text, expect.config())
    assert (on.stage, on.failure) == (Stage.CORRECTNESS, FailureKind.WRONG_VALUES), on.message
    relation = "permute_rows" if path == MEMO else "scale_pow2"
    assert on.message.startswith(f"metamorphic relation {relation} violated"), on.message
    # The transformed case is also wrong against the reference; the relation check after it is what is reported.
    failed = [c.case for c in on.checks if not c.passed]
    assert failed[-1] == on.checks[-1].case and failed[-1].endswith(f"~{relation}:relation")
    assert all(c.split("~")[1] in (relation, f"{relation}:relation") for c in failed)


def test_flag_off_really_disables_the_relation_cases():
    code = Path(_task("relu").solution_path).read_text()
    off = verify(_task("relu"), code, VerifyConfig())
    on = verify(_task("relu"), code, ON)
    assert off.passed and on.passed
    off_cases, on_cases = [c.case for c in off.checks], [c.case for c in on.checks]
    assert not any("~" in c for c in off_cases)
    assert set(off_cases) < set(on_cases)
    assert {c.split("~", 1)[1] for c in on_cases if "~" in c} == {
        "permute_rows", "permute_rows:relation", "scale_pow2", "scale_pow2:relation"
    }  # fmt: skip


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_reference_solution_satisfies_every_relation(task_id: str):
    task = _task(task_id)
    verdict = verify(task, Path(task.solution_path).read_text(), ON)
    assert verdict.passed, f"{verdict.stage.value}/{verdict.failure}: {verdict.message}"
    relation_checks = [c for c in verdict.checks if c.case.endswith(":relation")]
    assert len(relation_checks) >= 3 and all(c.passed for c in relation_checks)  # >= 1 relation per shape


def test_a_transform_the_reference_rejects_is_dropped_not_an_error():
    """A reference that only accepts its own magnitudes (it raises on scaled inputs) keeps no scaling law."""
    task = load_task(
        "import torch\nimport torch.nn as nn\n\n\nclass Model(nn.Module):\n    def forward(self, x):\n"
        "        if x.abs().max() > 1e3:\n            raise ValueError('out of range')\n        return x * 2\n\n\n"
        "rows = 8\ncols = 8\n\n\ndef get_inputs():\n    return [torch.randn(rows, cols)]\n\n\n"
        "def get_init_inputs():\n    return []\n",
        task_id="range_checked",
    )
    cfg = VerifyConfig(metamorphic=True, n_variants=0, distributions=("native",))
    assert set(_relations(task, cfg)["base"]) == {"permute_rows"}
