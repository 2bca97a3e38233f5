"""Candidate files that declare the verdict they must get: the format of our adversarial fixtures and demo examples.

Line 1 of such a file is `# expect: pass` or `# expect: stage=<stage> failure=<kind> [static=off] [policy=P]
[timeout=S] [ghost=off] [metamorphic=on]  -- why`. Users can keep their own suites of known-bad kernels in this
format and check them with `benchmarks/sweep_fixtures.py` or the tests; the options switch defence layers off so one
layer is tested alone (or the optional metamorphic layer on).
"""

from __future__ import annotations

import dataclasses
import re

from tritonrl.types import FailureKind, Stage, Verdict
from tritonrl.verify.config import VerifyConfig

_HEADER = re.compile(r"#\s*expect:\s*(?P<body>.*?)\s*(?:--.*)?$")
OPTIONS = ("static", "policy", "timeout", "ghost", "metamorphic")


@dataclasses.dataclass(frozen=True, slots=True)
class Expectation:
    passed: bool
    stage: Stage | None = None
    failure: FailureKind | None = None
    options: tuple[tuple[str, str], ...] = ()  # (key, value) pairs besides stage/failure

    @property
    def label(self) -> str:
        return "pass" if self.passed else f"{self.stage.value}/{self.failure.value}"  # type: ignore[union-attr]

    def config(self, **overrides: object) -> VerifyConfig:
        """The VerifyConfig this expectation is checked under (`overrides` such as device go on top)."""
        opts = dict(self.options)
        kwargs: dict = {}
        if opts.get("static") == "off":
            kwargs["static_checks"] = False
        if opts.get("ghost") == "off":
            kwargs["ghost_replay"] = False
        if "policy" in opts:
            kwargs["policy"] = opts["policy"]
        if "timeout" in opts:
            kwargs["timeout_s"] = float(opts["timeout"])
        if "metamorphic" in opts:
            kwargs["metamorphic"] = opts["metamorphic"] == "on"
        return VerifyConfig(**{**kwargs, **overrides})

    def met_by(self, verdict: Verdict) -> bool:
        if self.passed:
            return verdict.passed
        return not verdict.passed and (verdict.stage, verdict.failure) == (self.stage, self.failure)


def parse_expectation(text: str) -> Expectation:
    """Parse the header on the first line of `text`. Raises ValueError on a malformed header."""
    line = text.split("\n", 1)[0]
    m = _HEADER.match(line)
    if m is None:
        raise ValueError(f"no `# expect:` header on line 1: {line!r}")
    tokens = m.group("body").split()
    if tokens[:1] == ["pass"]:
        fields = dict(t.split("=", 1) for t in tokens[1:])
        passed, stage, failure = True, None, None
    else:
        fields = dict(t.split("=", 1) for t in tokens)
        try:
            passed, stage, failure = False, Stage(fields.pop("stage")), FailureKind(fields.pop("failure"))
        except (KeyError, ValueError) as exc:
            raise ValueError(f"header needs stage=<stage> failure=<kind> with known values: {line!r}") from exc
    unknown = set(fields) - set(OPTIONS)
    if unknown:
        raise ValueError(f"unknown header options {sorted(unknown)} in {line!r}; known: {OPTIONS}")
    return Expectation(passed, stage, failure, tuple(sorted(fields.items())))
