"""One evaluation record: a Verdict tied to the sample it judged and the settings that decided it.

`tritonrl eval` produces one Record per sample (duplicates of a candidate share their verdict). Records are what
`eval.metrics` summarizes and what `ResultStore.export_jsonl` writes, one JSON object per line. This module does no
I/O; the store owns persistence.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from tritonrl.types import Verdict


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    """The verdict of one sample of one task under one verification config on one device."""

    task_id: str  # the task the sample answers
    sample: int  # index of the sample within its task, 0..n-1
    level: int | None  # task difficulty level (KernelBench L1..L4); None when the suite has no levels
    candidate_sha256: str  # sha256 of the candidate text; identical candidates share a verdict
    config_hash: str  # VerifyConfig.config_hash() of the settings that produced the verdict
    device: str  # the device the verdict was produced on (part of what decides it)
    verdict: Verdict  # the outcome

    def __post_init__(self) -> None:
        if not isinstance(self.sample, int) or isinstance(self.sample, bool) or self.sample < 0:
            raise ValueError(f"sample={self.sample!r}: must be an int >= 0 (the sample's index within its task).")
        if self.level is not None and (not isinstance(self.level, int) or isinstance(self.level, bool)):
            raise ValueError(f"level={self.level!r}: must be an int or None.")
        for name in ("task_id", "candidate_sha256", "config_hash", "device"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name}={value!r}: must be a non-empty string.")
        if self.verdict.task_id != self.task_id:
            raise ValueError(
                f"verdict.task_id={self.verdict.task_id!r} differs from task_id={self.task_id!r}: "
                "a record must hold the verdict of its own task."
            )
        if self.verdict.candidate_sha256 and self.verdict.candidate_sha256 != self.candidate_sha256:
            raise ValueError(
                f"verdict.candidate_sha256={self.verdict.candidate_sha256[:12]}... differs from "
                f"candidate_sha256={self.candidate_sha256[:12]}...: this record holds another candidate's verdict."
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "sample": self.sample,
            "level": self.level,
            "candidate_sha256": self.candidate_sha256,
            "config_hash": self.config_hash,
            "device": self.device,
            "verdict": self.verdict.to_dict(),
        }

    def to_json(self) -> str:
        """One line of strict JSON (no NaN/Infinity: `Verdict.to_dict` stores those as text)."""
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Record:
        missing = {"task_id", "sample", "level", "candidate_sha256", "config_hash", "device", "verdict"} - d.keys()
        if missing:
            raise ValueError(f"record is missing {sorted(missing)}: expected the output of Record.to_dict().")
        return cls(
            task_id=d["task_id"],
            sample=d["sample"],
            level=d["level"],
            candidate_sha256=d["candidate_sha256"],
            config_hash=d["config_hash"],
            device=d["device"],
            verdict=Verdict.from_dict(d["verdict"]),
        )

    @classmethod
    def from_json(cls, line: str) -> Record:
        return cls.from_dict(json.loads(line))
