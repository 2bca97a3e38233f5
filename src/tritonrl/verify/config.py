"""VerifyConfig: every knob of the verification funnel, with help text and validation.

Defaults are the hardened settings; the fields exist so ablations (and tests of one defence layer at a time) can
switch a layer off. A disabled layer is really disabled: the funnel checks these flags, nothing else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import field

from tritonrl.errors import ConfigError

# Value distributions (verify/cases.py SCALES says what each catches); the base shape gets all, variants a rotation.
DISTRIBUTIONS = ("native", "normal", "wide", "small", "offset", "negative", "positive", "ties", "zero_rows", "mixed")
POLICIES = ("strict", "partial")


@dataclasses.dataclass(frozen=True)
class VerifyConfig:
    device: str = field(
        default="cpu",
        metadata={
            "help": "'cpu' (Triton interpreter); 'cuda': one candidate on the current GPU, a batch (verify_many, eval, "
            "export, rewards) spread over every visible GPU; 'cuda:N': that one visible GPU only."
        },
    )
    policy: str = field(
        default="strict",
        metadata={
            "help": "Provenance policy. 'strict': outside Triton launches forward may only allocate, view and copy. "
            "'partial': any torch op is allowed, but a candidate kernel must launch and the output must depend on it."
        },
    )
    n_variants: int = field(
        default=3,
        metadata={"help": "Variant shapes checked besides the base shape: the coverage rule's (3 meet it), then more."},
    )
    distributions: tuple[str, ...] = field(
        default=DISTRIBUTIONS,
        metadata={"help": f"Value distributions (all on the base shape, a rotation on variants): {DISTRIBUTIONS}."},
    )
    max_numel: int = field(
        default=8192, metadata={"help": "CPU scaling budget: largest tensor (elements) at the base shape."}
    )
    static_checks: bool = field(default=True, metadata={"help": "Run the AST pre-filter (a layer, not the authority)."})
    ghost_replay: bool = field(
        default=True, metadata={"help": "Re-run one case with candidate kernels made no-ops; output must change."}
    )
    poison_outputs: bool = field(
        default=True, metadata={"help": "Fill fresh allocations with NaN/sentinels so unwritten elements show."}
    )
    environment_profiles: bool = field(
        default=True,
        metadata={
            "help": "Run case 0 again in a second ordinary environment (module name, torch thread count, locale) "
            "and require the same launches and op record: behaviour that depends on where it runs is rejected."
        },
    )
    audit_guard: bool = field(
        default=True, metadata={"help": "Install the in-worker audit hook that blocks file/network/process access."}
    )
    metamorphic: bool = field(
        default=False,
        metadata={
            "help": "Metamorphic relations (verify/metamorphic.py): per shape, re-run the candidate on inputs with "
            "rows permuted, scaled by 2^10 or swapped, wherever the reference satisfies the relation exactly, and "
            "check it against itself and the reference. Off by default: ~30% more forward calls per verification."
        },
    )
    timeout_s: float = field(default=60.0, metadata={"help": "Wall-clock limit for the sandboxed worker."})
    memory_limit_mb: int = field(default=4096, metadata={"help": "Resident-memory limit of the worker (watchdog)."})
    max_output_bytes: int = field(default=64 * 1024, metadata={"help": "Candidate stdout/stderr kept per stream."})
    file_size_limit_mb: int = field(default=256, metadata={"help": "RLIMIT_FSIZE of the worker."})
    tf32: bool | None = field(
        default=None,
        metadata={
            "help": "Use the TF32 tolerance row for fp32 tasks whose reference runs a matmul/conv. None: on cuda only."
        },
    )

    timing: bool = field(
        default=True,
        metadata={"help": "On cuda: time a correct candidate against the reference (eager) and set Verdict.speedup."},
    )
    timing_budget_s: float = field(
        default=0.8, metadata={"help": "Measuring time per candidate, both sides together (warm-up excluded)."}
    )
    timing_target_rel_err: float = field(
        default=0.002, metadata={"help": "Stop adding reps when both medians have this relative standard error."}
    )
    timing_input_sets: int = field(
        default=3,
        metadata={
            "help": "Value sets rotated through timing_input_sets - 1 input slots (a result cached by address is "
            "stale at the slot's next use); as many more feed the check round."
        },
    )
    roofline: bool = field(
        default=True, metadata={"help": "Reject times under the speed-of-light floor from measured device ceilings."}
    )
    compile_baseline: bool = field(
        default=True,
        metadata={
            "help": "Also report the speedup over torch.compile (the reference is compiled once per task and "
            "GPU, in a trusted process; cached on disk)."
        },
    )

    def __post_init__(self) -> None:
        if not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"device={self.device!r}: must be 'cpu', 'cuda' or 'cuda:N' (--device auto in the CLI).")
        if self.policy not in POLICIES:
            raise ConfigError(f"policy={self.policy!r}: must be one of {POLICIES}.")
        bad = [d for d in self.distributions if d not in DISTRIBUTIONS]
        if bad or not self.distributions:
            raise ConfigError(f"distributions={self.distributions!r}: each must be one of {DISTRIBUTIONS}.")
        if self.n_variants < 0:
            raise ConfigError(f"n_variants={self.n_variants}: must be >= 0 (2 or more recommended).")
        if self.timeout_s <= 0:
            raise ConfigError(f"timeout_s={self.timeout_s}: must be positive; try 60.")
        if not 0.05 <= self.timing_budget_s <= 60:
            raise ConfigError(f"timing_budget_s={self.timing_budget_s}: must be in [0.05, 60] seconds; try 0.8.")
        if not 0 < self.timing_target_rel_err < 0.5:
            raise ConfigError(f"timing_target_rel_err={self.timing_target_rel_err}: must be in (0, 0.5); try 0.002.")
        if not 1 <= self.timing_input_sets <= 16:
            raise ConfigError(f"timing_input_sets={self.timing_input_sets}: must be in [1, 16]; 3 is the default.")
        if self.memory_limit_mb < 512:
            raise ConfigError(f"memory_limit_mb={self.memory_limit_mb}: torch alone needs ~400 MB; use >= 512.")

    @classmethod
    def for_rewards(cls, device: str) -> VerifyConfig:
        """The hardened defaults on `device`, without the torch.compile baseline: rewards use the speedup over eager,
        and compiling each task's reference for a reporting number costs seconds to minutes per task on first use
        (`tritonrl eval` keeps it; `tritonrl verify` computes it only with --compile-baseline)."""
        return cls(device=device, compile_baseline=False)

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def gpu_index(self) -> int | None:
        """The visible-GPU index of 'cuda:N' (None for 'cuda' and 'cpu')."""
        return int(self.device.split(":")[1]) if ":" in self.device else None

    @property
    def times(self) -> bool:
        """Whether a correct candidate reaches the timing stage."""
        return self.timing and self.is_cuda

    @property
    def use_tf32_tolerance(self) -> bool:
        return self.is_cuda if self.tf32 is None else self.tf32

    def config_hash(self) -> str:
        """Stable hash of every field that can change a verdict, except which GPU ran it (the result store keys
        on the device kind separately)."""
        fields = dataclasses.asdict(self)
        fields["device"] = "cuda" if self.is_cuda else "cpu"
        payload = json.dumps(fields, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]
