"""Fusion-centric task generator: seeded op compositions as KernelBench Level-2 tasks, each with a Triton solution.

`generate_fusion_tasks(n, seed)` samples `FusionSpec`s, writes each as a task file (`class Model`, module constants,
`get_inputs`, `get_init_inputs`; loadable by `load_task`) and a `ModelNew` solution from `fusion_templates.py`, and
drops duplicates by normalised source. Generation runs nothing; `benchmarks/fusion_verify.py` proves the solutions.
Families: linear -> [BatchNorm(eval)] -> elementwise chain -> [row op -> chain]; conv2d -> [BatchNorm2d(eval)] ->
chain; LayerNorm/RMSNorm/BatchNorm1d(eval) -> chain; GroupNorm -> chain; chain -> softmax/log-softmax/reduction.
Solutions accumulate in fp32 and round to the task dtype wherever PyTorch materialises an intermediate.

Precision policy: fp32, fp16 and bf16 tasks (weights 2:1:1). Every op is allowed in half precision, except:
- `sum` in fp16: a row of >= 512 elements at the verifier's "+100 offset" inputs sums past fp16's 65504 (inf);
- nothing follows `log_softmax` in half precision: torch's CPU kernel rounds an intermediate for half inputs (up
  to 0.8 ulp, torch 2.13), and its outputs all sit near -10, where GELU/SiLU/sigmoid amplify that past 1e-2.
RMSNorm is written LLaMA-style for half inputs (statistics in fp32), since x*x overflows fp16 at |x| > 256.
Saturating ops (tanh, sigmoid, clamp, softmax) never follow a GEMM or conv through elementwise ops only, except
tanh/sigmoid/clamp after an fp32 GEMM. The verifier's x100 inputs give GEMM/conv outputs of rms ~60 and its
tolerance scales with the output's rms: a bounded op keeps the absolute error of its input but shrinks the rms to
~1, which exposes the reference's own error: on a GPU PyTorch runs fp32 convolutions in TF32 (cudnn.allow_tf32 is
True by default: ~5e-4 x 60) and may reduce half-precision GEMMs in split-K partials of the output dtype
(allow_fp16/bf16_reduced_precision_reduction default to True); for softmax even two exact fp32 GEMMs differ by
~1e-4 on logits near 60, more than fp32's 1e-4 tolerance for near-tied probabilities. Norms, log-softmax and
reductions after a GEMM are well conditioned and allowed.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import logging
import random
from collections.abc import Sequence

from tritonrl.data.fusion.ops import ACTIVATIONS, HALF_DTYPES, ROW_OPS
from tritonrl.data.fusion.source import task_source
from tritonrl.data.fusion.templates import solution_source
from tritonrl.errors import TaskError
from tritonrl.tasks.loader import load_task
from tritonrl.tasks.schema import Task

log = logging.getLogger(__name__)

FAMILIES = ("gemm", "conv", "norm", "groupnorm", "row")
FAMILY_WEIGHTS = (4, 2, 2, 1, 2)
DTYPES = ("float32", "float16", "bfloat16")
DTYPE_WEIGHTS = (2, 1, 1)
DTYPE_TAG = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}
EXTRAS = ("scale", "clamp", "bias", "gain", "residual")  # non-activation chain ops, each at most once per task
SATURATING = ("tanh", "sigmoid", "clamp")  # bounded outputs: see the module docstring for where they may not go
NORMALIZING_TAILS = ("softmax", "log_softmax", "layernorm", "rmsnorm")
REDUCING_TAILS = ("sum", "mean", "amax", "logsumexp")
GEMM_OPS, CONV_OPS = frozenset({"linear"}), frozenset({"conv2d"})
REDUCTION_OPS = frozenset(ROW_OPS) | {"groupnorm"}
MAX_ATTEMPTS_PER_TASK = 50

# Default sizes: realistic GPU problems (timing on a GPU uses them; the CPU verifier scales them down itself).
_SIZES = {
    "gemm": {"batch_size": (64, 128, 256), "in_features": (512, 1024, 2048, 4096),
             "out_features": (512, 1024, 2048, 4096)},
    "norm": {"batch_size": (64, 128, 256), "features": (512, 1024, 2048, 4096, 8192)},
    "row": {"batch_size": (64, 128, 256), "features": (512, 1024, 2048, 4096, 8192)},
    # length is the largest default, so the verifier's long-axis variant stretches the groups instead of leaving
    # 3-element groups, whose variance is too ill-conditioned at the offset inputs for fp32's 1e-4 tolerance
    "groupnorm": {"batch_size": (8, 16, 32, 64), "channels": (32, 64, 128, 256), "length": (512, 1024, 2048)},
    "conv": {"batch_size": (8, 16, 32, 64), "in_channels": (3, 8, 16, 32), "out_channels": (16, 32, 64, 128),
             "height": (16, 24, 32, 48, 64), "width": (16, 24, 32, 48, 64)},
}  # fmt: skip
_SCALES = (0.5, 2.0, 0.125, 1.5, 0.1, 3.0)
_CLAMPS = ((-1.0, 1.0), (0.0, 6.0), (-0.5, 0.5), (-2.0, 2.0), (0.0, 1.0))
_SLOPES = (0.01, 0.1, 0.2)
_EPS = (1e-5, 1e-6)


@dataclasses.dataclass(frozen=True, slots=True)
class FusionSpec:
    """One generated task, fully determined: its source and solution are pure functions of it."""

    family: str  # one of FAMILIES
    dtype: str  # "float32" | "float16" | "bfloat16"
    main: str | None  # "linear" | "conv2d" | "groupnorm" | None
    pre: tuple[str, ...]  # elementwise ops after `main` (before `tail`)
    tail: str | None = None  # a ROW_OPS name
    post: tuple[str, ...] = ()  # elementwise ops after a normalising tail
    sizes: tuple[tuple[str, int], ...] = ()  # int module constants, in declaration order
    consts: tuple[tuple[str, float], ...] = ()  # float module constants (eps, scale_factor, ...)
    main_bias: bool = True  # nn.Linear / nn.Conv2d bias
    keepdim: bool = False  # for reducing tails

    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(o for o in (self.main, *self.pre, self.tail, *self.post) if o is not None)

    def to_dict(self) -> dict:
        return {
            "family": self.family,
            "dtype": self.dtype,
            "ops": list(self.ops),
            "main": self.main,
            "pre": list(self.pre),
            "tail": self.tail,
            "post": list(self.post),
            "sizes": dict(self.sizes),
            "consts": dict(self.consts),
            "main_bias": self.main_bias,
            "keepdim": self.keepdim,
        }

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:8]

    def task_id(self) -> str:
        return f"fusion/{'-'.join(self.ops)}_{DTYPE_TAG[self.dtype]}_{self.digest()}"


@dataclasses.dataclass(frozen=True, slots=True)
class GeneratedTask:
    """A generated Level-2 task with its template Triton solution."""

    task: Task  # loaded from `source` with level=2 and task_id `fusion/<ops>_<dtype>_<hash>`
    source: str  # the task file's text (KernelBench format)
    solution: str  # a `ModelNew` candidate file built from templates (proven by benchmarks/fusion_verify.py)
    spec: dict = dataclasses.field(hash=False)  # FusionSpec.to_dict() plus "features" (difficulty inputs)
    difficulty: str  # "easy" | "medium" | "hard", from `difficulty(ops)`


def difficulty_features(ops: Sequence[str]) -> dict[str, int | bool]:
    """The structural facts the difficulty label is computed from."""
    reduction_at = next((i for i, o in enumerate(ops) if o in REDUCTION_OPS), None)
    heavy_at = next((i for i, o in enumerate(ops) if o in GEMM_OPS | CONV_OPS), None)
    return {
        "n_ops": len(ops),
        "gemm": any(o in GEMM_OPS for o in ops),
        "conv": any(o in CONV_OPS for o in ops),
        "reduction": reduction_at is not None,
        "reduction_after_gemm_or_conv": reduction_at is not None and heavy_at is not None and heavy_at < reduction_at,
    }


def difficulty(ops: Sequence[str]) -> str:
    """Label a fused op chain "easy", "medium" or "hard" from its structure alone.

    score = number of ops + 2 for a GEMM + 3 for a convolution + 1 for a row reduction or normalisation (softmax,
    norms, sum/mean/max) + 1 more when that reduction follows the GEMM/conv (a second kernel over an intermediate).
    easy: score <= 3 (a norm or softmax with one elementwise op); medium: <= 6 (a GEMM with a short epilogue,
    Conv->BN->ReLU); hard: above (a GEMM with a softmax/norm tail, long chains after a conv).

    >>> difficulty(["layernorm", "relu"]), difficulty(["linear", "relu"]), difficulty(["linear", "gelu", "softmax"])
    ('easy', 'medium', 'hard')
    """
    f = difficulty_features(ops)
    score = f["n_ops"] + 2 * f["gemm"] + 3 * f["conv"] + f["reduction"] + f["reduction_after_gemm_or_conv"]
    return "easy" if score <= 3 else "medium" if score <= 6 else "hard"


def sample_spec(rng: random.Random) -> FusionSpec:
    """Draw one spec; every draw is a valid task (the rules in the module docstring hold by construction)."""
    family = rng.choices(FAMILIES, FAMILY_WEIGHTS)[0]
    dtype = rng.choices(DTYPES, DTYPE_WEIGHTS)[0]
    sizes = {name: rng.choice(values) for name, values in _SIZES[family].items()}
    used: set[str] = set()
    main: str | None = None
    pre: list[str] = []
    tail: str | None = None
    post: list[str] = []
    main_bias, keepdim = True, False
    if family == "gemm":
        main, main_bias = "linear", rng.random() < 0.8
        avoid = () if dtype == "float32" else SATURATING
        pre = (["bn"] if rng.random() < 0.25 else []) + _chain(rng, used, max_extra=2, avoid=avoid)
        if rng.random() < 0.45:
            tail = _tail(rng, dtype, pre, allow_softmax=False)
    elif family == "conv":
        main, main_bias = "conv2d", rng.random() < 0.7
        k = rng.choices((1, 3, 5), (1, 4, 1))[0]
        sizes |= {"kernel_size": k, "stride": rng.choices((1, 2), (3, 1))[0], "padding": rng.choice((0, k // 2))}
        pre = (["bn"] if rng.random() < 0.7 else []) + _chain(rng, used, max_extra=2, p_act=0.9, avoid=SATURATING)
    elif family == "norm":
        if rng.random() < 0.3:
            pre = ["bn"] + _chain(rng, used, max_extra=2, p_act=1.0)
        else:
            tail = rng.choice(("layernorm", "rmsnorm"))
    elif family == "groupnorm":
        main = "groupnorm"
        sizes["num_groups"] = rng.choice((4, 8))
        pre = _chain(rng, used, max_extra=2, p_act=1.0)
    else:  # row: an elementwise prologue, then a row op
        pre = _chain(rng, used, max_extra=1, p_act=0.7) or ["scale"]
        used.update(pre)
        tail = _tail(rng, dtype, pre, allow_softmax=True)
    if tail in NORMALIZING_TAILS and not (tail == "log_softmax" and dtype in HALF_DTYPES):
        post = _chain(rng, used, max_extra=1, p_act=0.8 if family == "norm" else 0.4)
        post = post if (family != "norm" or post) else [rng.choice(sorted(ACTIVATIONS))]
    keepdim = tail in REDUCING_TAILS and rng.random() < 0.5
    consts = _consts(rng, [main, *pre, tail, *post])
    return FusionSpec(family, dtype, main, tuple(pre), tail, tuple(post), tuple(sizes.items()), consts,
                      main_bias, keepdim)  # fmt: skip


def _chain(
    rng: random.Random, used: set[str], *, max_extra: int, p_act: float = 0.85, avoid: tuple[str, ...] = ()
) -> list[str]:
    """An activation (with probability p_act), then up to `max_extra` other ops not used yet, in random order; a
    second activation may join the extras but never repeats the one before it. Ops in `avoid` are never drawn."""
    acts = [a for a in sorted(ACTIVATIONS) if a not in avoid]
    ops = [rng.choice(acts)] if rng.random() < p_act else []
    pool = [e for e in EXTRAS if e not in used and e not in avoid] + ["act"]
    for extra in rng.sample(pool, rng.randint(0, min(max_extra, len(pool)))):
        if extra == "act":
            extra = rng.choice([a for a in acts if not ops or a != ops[-1]])
        ops.append(extra)
    used.update(o for o in ops if o not in ACTIVATIONS)
    return ops


def _tail(rng: random.Random, dtype: str, pre: list[str], *, allow_softmax: bool) -> str:
    choices = [t for t in ROW_OPS if allow_softmax or t != "softmax"]
    if dtype == "float16":
        choices.remove("sum")
    if pre and pre[-1] == "scale":  # norms are scale-invariant: a kernel that skipped the scale would pass
        choices = [t for t in choices if t not in ("layernorm", "rmsnorm")]
    return rng.choice(choices)


def _consts(rng: random.Random, ops: list[str | None]) -> tuple[tuple[str, float], ...]:
    out: list[tuple[str, float]] = []
    if any(o in ("layernorm", "rmsnorm", "groupnorm") for o in ops):
        out.append(("eps", rng.choice(_EPS)))
    for op in ops:
        if op == "leaky_relu" and all(n != "negative_slope" for n, _ in out):
            out.append(("negative_slope", rng.choice(_SLOPES)))
        elif op == "scale":
            out.append(("scale_factor", rng.choice(_SCALES)))
        elif op == "clamp":
            low, high = rng.choice(_CLAMPS)
            out += [("clamp_min", low), ("clamp_max", high)]
    return tuple(out)


def normalized_source(source: str) -> str:
    """The source without docstrings and formatting: what makes two tasks the same task."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and _is_docstring(body[0]):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def build_task(spec: FusionSpec) -> GeneratedTask:
    """Write and load one spec's task, and write its solution."""
    source = task_source(spec)
    task = load_task(source, task_id=spec.task_id(), level=2)
    info = spec.to_dict() | {"features": difficulty_features(spec.ops)}
    return GeneratedTask(task, source, solution_source(spec), info, difficulty(spec.ops))


def generate_fusion_tasks(n: int, seed: int = 0) -> list[GeneratedTask]:
    """`n` distinct generated tasks, deterministic for (n, seed); a smaller n gives a prefix of a larger one.

    Raises:
        TaskError: `n` is negative, or `n` distinct tasks were not found in `MAX_ATTEMPTS_PER_TASK * n` draws.
    """
    if n < 0:
        raise TaskError(f"n={n}: the number of fusion tasks must be >= 0.")
    rng = random.Random(f"tritonrl-fusion-{seed}")
    seen: set[str] = set()
    out: list[GeneratedTask] = []
    for draws in range(MAX_ATTEMPTS_PER_TASK * max(n, 1)):
        if len(out) == n:
            log.debug("fusion generator: %d distinct tasks from %d draws (seed %d)", n, draws, seed)
            return out
        spec = sample_spec(rng)
        key = normalized_source(task_source(spec))
        if key in seen:
            continue
        seen.add(key)
        out.append(build_task(spec))
    if len(out) < n:
        raise TaskError(f"only {len(out)} distinct fusion tasks in {MAX_ATTEMPTS_PER_TASK * n} draws; ask for fewer.")
    return out
