"""verify/expect.py: the `# expect:` header format of fixtures and demo examples."""

from __future__ import annotations

import pytest

from tritonrl.types import FailureKind, Stage, Verdict
from tritonrl.verify.expect import parse_expectation


def test_pass_header():
    e = parse_expectation("# expect: pass\nimport torch\n")
    assert e.passed and e.label == "pass" and e.config().static_checks


def test_failure_header_with_options_builds_the_config():
    e = parse_expectation("# expect: stage=provenance failure=network_access static=off timeout=7  -- opens a socket")
    assert (e.stage, e.failure) == (Stage.PROVENANCE, FailureKind.NETWORK_ACCESS)
    cfg = e.config(device="cpu")
    assert cfg.static_checks is False and cfg.timeout_s == 7.0
    assert e.label == "provenance/network_access"


@pytest.mark.parametrize(
    "line",
    ["import torch", "# expect: stage=provenance", "# expect: stage=nowhere failure=wrong_values",
     "# expect: stage=load failure=tampering color=red"],
)  # fmt: skip
def test_malformed_headers_raise(line: str):
    with pytest.raises(ValueError):
        parse_expectation(line)


def test_met_by_compares_stage_and_kind():
    e = parse_expectation("# expect: stage=correctness failure=wrong_values")
    hit = Verdict("t", False, Stage.CORRECTNESS, FailureKind.WRONG_VALUES, "m")
    miss = Verdict("t", False, Stage.CORRECTNESS, FailureKind.UNWRITTEN_OUTPUT, "m")
    assert e.met_by(hit) and not e.met_by(miss)
    assert not parse_expectation("# expect: pass").met_by(hit)
