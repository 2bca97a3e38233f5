"""Stage STATIC in both directions: honest kernels pass with no false positives, and every rule, import category and
known obfuscation is caught with the expected (rule, FailureKind)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tritonrl.errors import ConfigError
from tritonrl.types import FailureKind, Stage
from tritonrl.verify.static_checks import MAX_WARNINGS, RULES, run_static_checks

ROOT = Path(__file__).resolve().parents[2]
SOLUTIONS = sorted((ROOT / "src/tritonrl/tasks/builtin/solutions").glob("*.py"))
# Candidate fixtures declare what should reject them: `# expect: stage=<stage> failure=<kind> [static=off] ...`.
_EXPECT = re.compile(r"#\s*expect:\s*stage=(\w+)\s+failure=(\w+)(.*?)(--|$)", re.MULTILINE)


def _fixtures(select) -> list[tuple[Path, str]]:
    found = []
    for path in sorted(
        p
        for r in (ROOT / "tests/fixtures/candidates", ROOT / "src/tritonrl/tasks/builtin/examples")
        for p in r.glob("*/*.py")
    ):
        m = _EXPECT.match(path.read_text())
        if m and select(m.group(1), m.group(3)):
            found.append((path, m.group(2)))
    return found


# Meant to be rejected by STATIC, with this failure kind.
STATIC_FIXTURES = _fixtures(lambda stage, flags: stage == "static")
# Meant to get past STATIC (wrong, slow or cheating at run time, but nothing a static rule should claim).
LATE_FIXTURES = _fixtures(
    lambda stage, flags: stage not in ("extract", "parse", "static") and "static=off" not in flags
)

K = FailureKind

# A minimal honest kernel, prepended to the violation examples so that only the rule under test can fire.
KERNEL = """\
import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.jit
def copy_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=offs < n), mask=offs < n)
"""


def check(code: str, policy: str = "strict"):
    return run_static_checks(ast.parse(code), code, policy=policy)


# --- no false positives -------------------------------------------------------------------------------------------

HONEST = {
    "configs_from_a_helper": """
import torch
import torch.nn as nn
import triton
import triton.language as tl


def get_configs():
    return [triton.Config({"BLOCK": b}) for b in (64, 128)]


@triton.autotune(configs=get_configs(), key=["n"])
@triton.jit
def copy_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=offs < n), mask=offs < n)


class ModelNew(nn.Module):
    def forward(self, x):
        out = torch.empty_like(x)
        copy_kernel[lambda meta: (triton.cdiv(x.numel(), meta["BLOCK"]),)](x, out, x.numel())
        return out
""",
    "autotuned_matmul": """
import torch
import torch.nn as nn
import triton
import triton.language as tl


@triton.autotune(
    configs=[triton.Config({"BM": 64, "BN": 64, "BK": 32}, num_warps=4, num_stages=3)],
    key=["M", "N", "K"],
)
@triton.jit
def mm_kernel(a, b, c, M, N, K, sam, sak, sbk, sbn, scm, scn, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    rm = tl.program_id(0) * BM + tl.arange(0, BM)
    rn = tl.program_id(1) * BN + tl.arange(0, BN)
    acc = tl.zeros((BM, BN), dtype=tl.float32)
    for k in range(0, K, BK):
        rk = k + tl.arange(0, BK)
        x = tl.load(a + rm[:, None] * sam + rk[None, :] * sak, mask=(rm[:, None] < M) & (rk[None, :] < K), other=0.0)
        y = tl.load(b + rk[:, None] * sbk + rn[None, :] * sbn, mask=(rk[:, None] < K) & (rn[None, :] < N), other=0.0)
        acc += tl.dot(x, y)
    tl.store(c + rm[:, None] * scm + rn[None, :] * scn, acc, mask=(rm[:, None] < M) & (rn[None, :] < N))


class ModelNew(nn.Module):
    def __init__(self):
        super(ModelNew, self).__init__()

    def forward(self, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        M, K = A.shape
        N = B.shape[1]
        C = torch.empty((M, N), device=A.device, dtype=A.dtype)
        grid = lambda meta: (triton.cdiv(M, meta["BM"]), triton.cdiv(N, meta["BN"]))  # noqa: E731
        mm_kernel[grid](A, B, C, M, N, K, A.stride(0), A.stride(1), B.stride(0), B.stride(1), C.stride(0), C.stride(1))
        return C
""",
    "softmax_2d_grid_helper_and_libdevice": """
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import triton
import triton.language as tl
from triton.language.extra import libdevice


@triton.jit
def _row_max(x):
    return tl.max(x, axis=0)


@triton.jit
def softmax_kernel(out_ptr, in_ptr, stride_in, stride_out, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.program_id(1) * 0 + tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(in_ptr + row * stride_in + cols, mask=mask, other=-float("inf"))
    num = libdevice.exp(x - _row_max(x))
    num2 = tl.extra.cuda.libdevice.exp(x - _row_max(x))
    tl.store(out_ptr + row * stride_out + cols, num / tl.sum(num2, axis=0), mask=mask)


class ModelNew(nn.Module):
    def __init__(self, dim: int = -1, scale: Optional[float] = None):
        super().__init__()
        self.scale = scale if scale is not None else 1.0 / math.sqrt(64)
        self._cached_block = None

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        x = input.contiguous().view(-1, input.shape[-1])
        out = torch.empty_like(x)
        if self._cached_block is None:
            self._cached_block = triton.next_power_of_2(x.shape[1])
        softmax_kernel[(x.shape[0], 1)](out, x, x.stride(0), out.stride(0), x.shape[1], BLOCK=self._cached_block)
        return out.view(input.shape)
""",
    "from_triton_import_jit": """
import torch
from torch import nn
from triton import jit, cdiv
import triton.language as tl


@jit
def relu_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n)
    tl.store(out_ptr + offs, tl.maximum(x, 0.0), mask=offs < n)


class ModelNew(nn.Module):
    def forward(self, x):
        flat = x.contiguous().view(-1)
        out = torch.empty_like(flat)
        relu_kernel[(cdiv(flat.numel(), 1024),)](flat, out, flat.numel(), BLOCK=1024)
        return out.view_as(x)
""",
    "shadowing_and_local_names": """
import functools
import torch
import torch.nn as nn
import torch.nn.functional as F
import triton
import triton.language as tl
from triton.language.extra.cuda import libdevice as ld


@triton.jit(do_not_specialize=["n"])
def scale_kernel(x_ptr, out_ptr, n, F: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n)
    tl.store(out_ptr + offs, ld.fast_expf(x) * F, mask=offs < n)


@functools.lru_cache(maxsize=None)
def block_for(n: int) -> int:
    return min(triton.next_power_of_2(n), 1024)


class ModelNew(nn.Module):
    def __init__(self, features, eps=1e-5):
        nn.Module.__init__(self)
        self.weight = nn.Parameter(torch.ones(features))
        nn.init.normal_(self.weight)
        self.name = type(self).__name__
        self.eps = getattr(torch, "float32")

    def forward(self, input):
        B, F = input.shape
        out = torch.empty_like(input)
        if triton is None or not torch.cuda.is_available():
            pass
        with torch.no_grad(), torch.cuda.device(input.device):
            scale_kernel[(triton.cdiv(input.numel(), 256),)](input, out, input.numel(), F=F, BLOCK=block_for(F))
        return out
""",
}

HONEST["device_queries_through_the_driver"] = """
import torch
import torch.nn as nn
import triton
import triton.language as tl
from triton.runtime import driver

DEVICE = triton.runtime.driver.active.get_active_torch_device()
NUM_SM = driver.active.utils.get_device_properties(DEVICE.index)["multiprocessor_count"]
TARGET = driver.active.get_current_target()


@triton.jit
def copy_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(y_ptr + offs, tl.load(x_ptr + offs, mask=offs < n), mask=offs < n)


class ModelNew(nn.Module):
    def forward(self, x):
        y = torch.empty_like(x)
        copy_kernel[(min(NUM_SM, triton.cdiv(x.numel(), 256)),)](x, y, x.numel(), BLOCK=256)
        return y
"""

HONEST["import_fallbacks"] = """
import torch
import torch.nn as nn
import triton
import triton.language as tl

try:  # Liger's libdevice fallback: one name, two allowed paths
    from triton.language.extra.libdevice import rsqrt
except ModuleNotFoundError:
    from triton.language.extra.cuda.libdevice import rsqrt
try:
    import numpy as np
except ImportError:
    np = None


@triton.jit
def rsqrt_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(y_ptr + offs, rsqrt(tl.load(x_ptr + offs, mask=offs < n)), mask=offs < n)


class ModelNew(nn.Module):
    def forward(self, x):
        y = torch.empty_like(x)
        rsqrt_kernel[(triton.cdiv(x.numel(), 256),)](x, y, x.numel(), BLOCK=256)
        return y
"""

HONEST["methods_with_private_state_reached_the_ordinary_ways"] = (
    KERNEL
    + """
import functools
from typing import Optional


class Base(nn.Module):
    def __init__(self):
        super(Base, self).__init__()
        self._block = 256
        self._scale = 1.0

    @property
    def scale(self) -> float:
        return self._scale

    @scale.setter
    def scale(self, value: float) -> None:
        self._scale = value

    @functools.lru_cache(maxsize=None)
    def grid(self, n: int) -> tuple:
        return (triton.cdiv(n, self._block),)

    @torch.no_grad()
    def launch(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.empty_like(x)
        copy_kernel[self.grid(x.numel())](x, out, x.numel(), BLOCK=self._block)
        return out

    @classmethod
    def create(cls) -> "Base":
        cls._made = getattr(cls, "made", 0) + 1
        return cls()


class Fast(Base):
    def forward(self, x: torch.Tensor, other: Optional[Base] = None) -> torch.Tensor:
        if other is not None and not isinstance(other, (Base, Fast)) and type(other) is not Fast:
            raise TypeError(type(other).__name__)
        return Base.launch(self, x)


ModelNew = Fast
helper = Base.create()
"""
)


@pytest.mark.parametrize("name", sorted(HONEST))
def test_honest_inline_kernels_pass(name):
    outcome = check(HONEST[name])
    assert outcome.ok, outcome.message
    assert outcome.stage is Stage.STATIC and outcome.failure is None


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_builtin_solutions_pass(path):
    outcome = check(path.read_text())
    assert outcome.ok, f"{path.name}: {outcome.message}"


@pytest.mark.parametrize(("path", "kind"), LATE_FIXTURES, ids=lambda x: _fixture_id(x))
def test_fixtures_for_later_stages_pass(path, kind):
    outcome = check(path.read_text(), policy="partial" if "policy=partial" in path.read_text() else "strict")
    assert outcome.ok, f"{path}: {outcome.message}"


def _fixture_id(x) -> str:
    return f"{x.parent.name}/{x.stem}" if isinstance(x, Path) else ""


# --- no false negatives -------------------------------------------------------------------------------------------

# (id, snippet appended to KERNEL, rule, kind)
# a class whose method `peek` reads a private attribute of its receiver (the receiver rule's cases)
H = "class H:\n    def __init__(self):\n        self._n = 0\n\n    def peek(self, *a):\n        return self._n\n\n"

VIOLATIONS = [
    # kernel-escape
    ("pre_run_hook", "add_kernel.add_pre_run_hook(torch.Tensor.relu_)\n", "kernel-escape", K.TAMPERING),
    (
        "config_pre_hook_c_callable",
        "CFG = triton.Config({}, pre_hook=torch.Tensor.zero_)\n",
        "kernel-escape",
        K.TAMPERING,
    ),
    (
        "jit_body_calls_plain_function",  # runs as host Python on the interpreter's numpy data; no GPU compiles it
        "def host(v):\n    return v\n\n\n@triton.jit\ndef k2(x_ptr):\n    tl.store(x_ptr, host(tl.load(x_ptr)))\n",
        "kernel-escape",
        K.TAMPERING,
    ),
    (
        "jit_body_handle",
        "@triton.jit\ndef peek(x_ptr):\n    v = tl.load(x_ptr)\n    return v.handle.data\n",
        "kernel-escape",
        K.TAMPERING,
    ),
    # import-allowlist: names the resolver cannot follow (helpers' wave 3), each a different scoping trap
    (
        "rebind_in_comprehension",
        "from triton.runtime import driver\n"
        "f = [d.active.utils.load_binary for driver in [driver] for d in [driver]]\n",
        "import-allowlist",
        K.TAMPERING,
    ),
    ("rebind_os_in_comprehension", "import os\nO = [os for os in [os]][0]\n", "import-allowlist", K.TAMPERING),
    (
        "rebind_in_class_body",
        "from triton.runtime import driver\n\n\nclass H:\n    lb = driver.active.launcher_cls\n    driver = None\n",
        "import-allowlist",
        K.TAMPERING,
    ),
    (
        "rebind_by_walrus",
        "from triton.runtime import driver\nF = [(driver := driver) for _ in [0]]\n",
        "import-allowlist",
        K.TAMPERING,
    ),
    ("rebind_by_global", "import os\n\n\ndef f():\n    global os\n    os = 1\n", "import-allowlist", K.TAMPERING),
    ("rebind_at_module_level", "import math\nimport os\nmath = os\n", "import-allowlist", K.TAMPERING),
    (
        "two_imports_one_name",
        "try:\n    from triton.runtime import driver as D\nexcept ImportError:\n"
        "    import math as D\nf = D.active.utils.load_binary\n",
        "import-allowlist",
        K.TAMPERING,
    ),
    (
        "allowed_query_not_called",
        "import operator\nfrom triton.runtime import driver\n"
        "f = operator.attrgetter('__self__')(driver.active.get_current_target)\n",
        "import-allowlist",
        K.TAMPERING,
    ),
    # receiver: a method that reads its self's private attributes, read from a class, takes any object as self
    (
        "unbound_method_call",
        H + "def f(x):\n    return H.peek(x)\n",
        "receiver",
        K.TAMPERING,
    ),
    (
        "unbound_through_type",
        H + "def f(h, x):\n    return type(h).peek(x)\n",
        "receiver",
        K.TAMPERING,
    ),
    (
        "unbound_through_alias",
        H + "K = H\ndef f(x):\n    return K.peek(x)\n",
        "receiver",
        K.TAMPERING,
    ),
    (
        "class_in_a_container",
        H + "def f(x):\n    return [H][0].peek(x)\n",
        "receiver",
        K.TAMPERING,
    ),
    (
        "class_to_getattr",
        H + "def f(x):\n    return getattr(H, 'peek')(x)\n",
        "receiver",
        K.TAMPERING,
    ),
    (
        "method_as_a_value",
        H + "import functools\ng = functools.partial(H.peek, torch.ones(1))\n",
        "receiver",
        K.TAMPERING,
    ),
    (
        "unbound_through_cls",
        H + "    @classmethod\n    def via(cls, x):\n        return cls.peek(x)\n",
        "receiver",
        K.TAMPERING,
    ),
    (
        "unbound_through_super_in_a_classmethod",
        H + "class J(H):\n    @classmethod\n    def via(cls, x):\n        return super().peek(x)\n",
        "receiver",
        K.TAMPERING,
    ),
    (
        "unbound_through_a_classmethods_own_name_for_cls",
        H + "class J(H):\n    @classmethod\n    def via(klass, x):\n        return klass.peek(x)\n",
        "receiver",
        K.TAMPERING,
    ),
    (
        "unbound_through_cls_in_a_decorated_class",
        H
        + "def d(c):\n    return c\n@d\nclass J(H):\n"
        + "    @classmethod\n    def via(cls, x):\n        return cls.peek(x)\n",
        "receiver",
        K.TAMPERING,
    ),
    (
        "unbound_through_a_metaclass_method",
        H + "class Meta(type):\n    def via(self, x):\n        return self.peek(x)\n",
        "receiver",
        K.TAMPERING,
    ),
    ("method_wrapped_in_its_class_body", H + "    speek = staticmethod(peek)\n", "receiver", K.TAMPERING),
    ("method_stored_in_its_class_body", H + "    table = {'p': peek}\n", "receiver", K.TAMPERING),
    (
        "method_as_a_default_in_its_class",
        H + "    def steal(self, t, f=peek):\n        return f(t)\n",
        "receiver",
        K.TAMPERING,
    ),
    (
        "type_of_self_kept_in_a_local",
        H + "    def via(self, x):\n        k = type(self)\n        return k.peek(x)\n",
        "receiver",
        K.TAMPERING,
    ),
    (
        "class_name_also_bound_to_a_foreign_class",
        "class Tensor:\n    pass\nTensor = torch.Tensor\ndef f():\n    return Tensor._make_subclass\n",
        "private-attribute",
        K.TAMPERING,
    ),
    (
        "class_passed_on",
        H + "def g(k, x):\n    return k.peek(x)\ndef f(x):\n    return g(H, x)\n",
        "receiver",
        K.TAMPERING,
    ),
    # private-attribute: no exemption where the receiver may be rebound (staticmethod, the candidate's decorator,
    # a metaclass or a class decorator can each make `obj.m(x)` pass x as self)
    (
        "staticmethod_named_self",
        "class S:\n    @staticmethod\n    def peek(self):\n        return self._n\n",
        "private-attribute",
        K.TAMPERING,
    ),
    (
        "own_decorator_on_a_method",
        "def d(f):\n    return staticmethod(f)\nclass S:\n    @d\n    def peek(self):\n        return self._n\n",
        "private-attribute",
        K.TAMPERING,
    ),
    (
        "partial_of_staticmethod_as_a_decorator",
        "import functools\nclass S:\n    @functools.partial(staticmethod)\n"
        "    def peek(self):\n        return self._n\n",
        "private-attribute",
        K.TAMPERING,
    ),
    (
        "metaclass_method_reads_its_class_private",
        "class Meta(type):\n    def peek(self):\n        return self._make_subclass\n",
        "private-attribute",
        K.TAMPERING,
    ),
    (
        "classmethod_under_its_own_decorator",
        "def d(f):\n    return f\nclass S:\n    @classmethod\n    @d\n    def peek(cls):\n        return cls._x\n",
        "private-attribute",
        K.TAMPERING,
    ),
    (
        "metaclass_controls_the_methods",
        "class Meta(type):\n    pass\nclass S(metaclass=Meta):\n    def peek(self):\n        return self._n\n",
        "private-attribute",
        K.TAMPERING,
    ),
    (
        "class_decorator_controls_the_methods",
        "def d(c):\n    return c\n@d\nclass S:\n    def peek(self):\n        return self._n\n",
        "private-attribute",
        K.TAMPERING,
    ),
    # private-attribute: `self`/`cls` are exempt only as a method's own first parameter (wave 3)
    (
        "self_as_comprehension_variable",
        "x = [self._make_subclass for self in [torch.Tensor]]\n",
        "private-attribute",
        K.TAMPERING,
    ),
    (
        "self_as_a_local",
        "def g():\n    self = torch.Tensor\n    return self._make_subclass\n",
        "private-attribute",
        K.TAMPERING,
    ),
    (
        "self_with_a_default",
        "def f(self=torch.Tensor):\n    return self._make_subclass\n",
        "private-attribute",
        K.TAMPERING,
    ),
    (
        "self_rebound_in_the_method",
        "class M:\n    def forward(self):\n        self = torch.Tensor\n        return self._make_subclass\n",
        "private-attribute",
        K.TAMPERING,
    ),
    (
        "self_rebound_by_import",
        "class M:\n    def forward(self):\n        import triton as self\n        return self._C\n",
        "private-attribute",
        K.TAMPERING,
    ),
    (
        "self_rebound_by_from_import",
        "class M:\n    def forward(self):\n        from torch import nn as self\n        return self._reduction\n",
        "private-attribute",
        K.TAMPERING,
    ),
    (
        "self_rebound_by_def",
        "class M:\n    def forward(self):\n        def self():\n            pass\n        return self._x\n",
        "private-attribute",
        K.TAMPERING,
    ),
    (
        "self_rebound_by_class",
        "class M:\n    def forward(self):\n        class self:\n            pass\n        return self._x\n",
        "private-attribute",
        K.TAMPERING,
    ),
    (
        "self_rebound_by_except",
        "class M:\n    def forward(self):\n        try:\n            pass\n"
        "        except Exception as self:\n            return self._x\n",
        "private-attribute",
        K.TAMPERING,
    ),
    (
        "self_rebound_through_nonlocal",
        "class M:\n    def forward(self):\n        def g():\n            nonlocal self\n"
        "            self = torch.Tensor\n        g()\n        return self._make_subclass\n",
        "private-attribute",
        K.TAMPERING,
    ),
    # import-allowlist, one per category
    # triton.runtime.driver: only the read-only device queries, as whole chains (READ_ONLY_QUERIES)
    ("driver_alias", "from triton.runtime import driver\nd = driver.active\n", "import-allowlist", K.TAMPERING),
    (
        "driver_load_binary",
        "from triton.runtime import driver\nf = driver.active.utils.load_binary\n",
        "import-allowlist",
        K.TAMPERING,
    ),
    (
        "driver_as_value",
        "from triton.runtime import driver\nd = getattr(driver, 'active')\n",
        "import-allowlist",
        K.TAMPERING,
    ),
    ("driver_with_another_name", "from triton.runtime import driver, JITFunction\n", "import-allowlist", K.TAMPERING),
    ("import_driver_module", "import triton.runtime.driver\n", "import-allowlist", K.TAMPERING),
    ("numpy_fromfile", "import numpy as np\na = np.fromfile('/etc/passwd')\n", "import-allowlist", K.FILE_ACCESS),
    ("numpy_memmap", "from numpy import memmap\n", "import-allowlist", K.FILE_ACCESS),
    ("numpy_ctypeslib", "import numpy.ctypeslib\n", "import-allowlist", K.FILE_ACCESS),
    ("import_scipy", "import scipy\n", "import-allowlist", K.FORBIDDEN_IMPORT),
    ("os_open", "import os\nfd = os.open('/etc/passwd', 0)\n", "import-allowlist", K.FILE_ACCESS),
    ("os_system", "import os\nos.system('id')\n", "import-allowlist", K.PROCESS_SPAWN),
    ("os_execv", "from os import execv\n", "import-allowlist", K.PROCESS_SPAWN),
    ("os_putenv", "import os\nos.putenv('A', 'b')\n", "import-allowlist", K.TAMPERING),
    ("torch_os", "n = torch.os.cpu_count()\n", "import-allowlist", K.FILE_ACCESS),
    ("import_pathlib", "from pathlib import Path\n", "import-allowlist", K.FILE_ACCESS),
    ("import_socket", "import socket\n", "import-allowlist", K.NETWORK_ACCESS),
    ("import_urllib", "import urllib.request\n", "import-allowlist", K.NETWORK_ACCESS),
    ("import_subprocess", "import subprocess\n", "import-allowlist", K.PROCESS_SPAWN),
    ("import_threading", "from threading import Thread\n", "import-allowlist", K.PROCESS_SPAWN),
    ("import_concurrent", "import concurrent.futures\n", "import-allowlist", K.PROCESS_SPAWN),
    ("import_sys", "import sys\n", "import-allowlist", K.TAMPERING),
    ("import_ctypes", "import ctypes\n", "import-allowlist", K.TAMPERING),
    ("import_torch_C", "import torch._C\n", "import-allowlist", K.TAMPERING),
    ("import_triton_runtime", "from triton.runtime import autotuner\n", "import-allowlist", K.TAMPERING),
    ("import_triton_testing", "import triton.testing\n", "import-allowlist", K.TAMPERING),
    ("import_relative", "from . import helpers\n", "import-allowlist", K.FORBIDDEN_IMPORT),
    ("import_star", "from torch import *\n", "import-allowlist", K.FORBIDDEN_IMPORT),
    ("import_private_name", "from typing import _SpecialForm\n", "import-allowlist", K.TAMPERING),
    # obfuscated imports and reaching denied modules through allowed ones
    ("alias_import_os", "import os as o\no.remove('x')\n", "import-allowlist", K.FILE_ACCESS),
    ("from_os_import_system", "from os import system\n", "import-allowlist", K.PROCESS_SPAWN),
    ("cpp_extension", "from torch.utils.cpp_extension import load_inline\n", "import-allowlist", K.TAMPERING),
    ("cpp_extension_attr", "f = torch.utils.cpp_extension.load_inline\n", "import-allowlist", K.TAMPERING),
    ("torch_reexports_os", "torch.os.system('id')\n", "import-allowlist", K.FILE_ACCESS),
    ("torch_hub", "m = torch.hub.load('a', 'b')\n", "import-allowlist", K.NETWORK_ACCESS),
    ("torch_load", "w = torch.load('w.pt')\n", "import-allowlist", K.FILE_ACCESS),
    ("knobs_hook", "triton.knobs.runtime.launch_enter_hook = None\n", "import-allowlist", K.TAMPERING),
    ("tf32_switch", "torch.set_float32_matmul_precision('medium')\n", "import-allowlist", K.TAMPERING),
    ("global_module_hook", "nn.modules.module.register_module_forward_hook(print)\n", "import-allowlist", K.TAMPERING),
    # forbidden-builtins
    ("dunder_import", "m = __import__('os')\n", "forbidden-builtins", K.TAMPERING),
    ("eval_reference", "f = eval\n", "forbidden-builtins", K.TAMPERING),
    ("exec_call", "exec('x = 1')\n", "forbidden-builtins", K.TAMPERING),
    ("open_file", "data = open('/etc/passwd').read()\n", "forbidden-builtins", K.FILE_ACCESS),
    ("exit_call", "exit(0)\n", "forbidden-builtins", K.FORBIDDEN_CONSTRUCT),
    ("setattr_call", "setattr(torch, 'allclose', print)\n", "forbidden-builtins", K.TAMPERING),
    ("getattr_concat", "f = getattr(torch, 'ma' + 'tmul')\n", "forbidden-builtins", K.TAMPERING),
    ("getattr_private", "f = getattr(torch, '_C')\n", "forbidden-builtins", K.TAMPERING),
    ("getattr_as_value", "g = getattr\n", "forbidden-builtins", K.TAMPERING),
    ("type_three_args", "T = type('T', (object,), {})\n", "forbidden-builtins", K.TAMPERING),
    ("builtins_dict", "b = __builtins__\n", "forbidden-builtins", K.TAMPERING),
    # private-attribute
    ("torch_dict", "x = torch.__dict__['x']\n", "private-attribute", K.TAMPERING),
    ("lambda_globals", "g = (lambda: 0).__globals__\n", "private-attribute", K.TAMPERING),
    ("class_bases", "def f(x):\n    return x.__class__.__bases__\n", "private-attribute", K.TAMPERING),
    ("tensor_version", "def f(x):\n    return x._version\n", "private-attribute", K.TAMPERING),
    ("torch_C_attr", "s = torch._C._cuda_getCurrentRawStream(0)\n", "import-allowlist", K.TAMPERING),
    ("private_torch_attr", "torch.cuda._lazy_init()\n", "private-attribute", K.TAMPERING),
    ("self_escape", "def f(self):\n    return self.__class__.__subclasses__()\n", "private-attribute", K.TAMPERING),
    # monkeypatch
    ("patch_allclose", "torch.allclose = lambda *a, **k: True\n", "monkeypatch", K.TAMPERING),
    ("patch_tensor_method", "torch.Tensor.add = torch.Tensor.sub\n", "monkeypatch", K.TAMPERING),
    ("patch_functional", "import torch.nn.functional as F\nF.relu = F.gelu\n", "monkeypatch", K.TAMPERING),
    ("patch_math", "import math\nmath.pi = 3\n", "monkeypatch", K.TAMPERING),
    ("patch_via_alias", "def f(x):\n    return x\nt = torch\nt.matmul = f\n", "monkeypatch", K.TAMPERING),
    ("del_module_attr", "del tl.load\n", "monkeypatch", K.TAMPERING),
    ("augassign_module_attr", "triton.x += 1\n", "monkeypatch", K.TAMPERING),
    ("patch_imported_class", "from torch import Tensor\nTensor.add = Tensor.sub\n", "monkeypatch", K.TAMPERING),
    # module-as-value
    ("module_in_list", "mods = [torch]\nmods[0].matmul = print\n", "module-as-value", K.TAMPERING),
    ("module_as_argument", "def patch(m):\n    m.allclose = print\npatch(torch)\n", "module-as-value", K.TAMPERING),
    # stream-graph
    ("side_stream", "s = torch.cuda.Stream()\n", "stream-graph", K.FORBIDDEN_CONSTRUCT),
    ("with_stream", "def f(s):\n    with torch.cuda.stream(s):\n        pass\n", "stream-graph", K.FORBIDDEN_CONSTRUCT),
    ("wait_stream", "def f(a, b):\n    a.wait_stream(b)\n", "stream-graph", K.FORBIDDEN_CONSTRUCT),
    ("record_stream", "def f(x, s):\n    x.record_stream(s)\n", "stream-graph", K.FORBIDDEN_CONSTRUCT),
    ("cuda_graph", "g = torch.cuda.CUDAGraph()\n", "stream-graph", K.FORBIDDEN_CONSTRUCT),
    ("cuda_event", "e = torch.cuda.Event(enable_timing=False)\n", "stream-graph", K.FORBIDDEN_CONSTRUCT),
    ("stream_imported", "from torch import Stream\n", "stream-graph", K.FORBIDDEN_CONSTRUCT),
    # torch-compile
    ("torch_compile", "f = torch.compile(lambda x: x)\n", "torch-compile", K.FORBIDDEN_CONSTRUCT),
    ("torch_jit_script", "@torch.jit.script\ndef f(x):\n    return x\n", "torch-compile", K.FORBIDDEN_CONSTRUCT),
    ("torch_fx", "g = torch.fx.symbolic_trace\n", "torch-compile", K.FORBIDDEN_CONSTRUCT),
    ("from_torch_import_compile", "from torch import compile as c\n", "torch-compile", K.FORBIDDEN_CONSTRUCT),
    # tensor-subclass
    ("tensor_subclass", "class Lazy(torch.Tensor):\n    pass\n", "tensor-subclass", K.TAMPERING),
    ("torch_function", "class W:\n    def __torch_function__(self, *a): ...\n", "tensor-subclass", K.TAMPERING),
    ("torch_dispatch", "class W:\n    __torch_dispatch__ = None\n", "tensor-subclass", K.TAMPERING),
    # inherits-reference
    (
        "inherits_model",
        "class Model(nn.Module): ...\nclass ModelNew(Model): ...\n",
        "inherits-reference",
        K.FORBIDDEN_CONSTRUCT,
    ),
    (
        "inherits_model_indirectly",
        "class Model(nn.Module):\n    pass\nRef = Model\nclass Mid(Ref):\n    pass\nclass ModelNew(Mid):\n    pass\n",
        "inherits-reference",
        K.FORBIDDEN_CONSTRUCT,
    ),
]


@pytest.mark.parametrize(("snippet", "rule", "kind"), [v[1:] for v in VIOLATIONS], ids=[v[0] for v in VIOLATIONS])
def test_violation_is_caught(snippet, rule, kind):
    code = KERNEL + snippet
    outcome = check(code)
    assert not outcome.ok
    assert (outcome.stage, outcome.rule, outcome.failure) == (Stage.STATIC, rule, kind), outcome.message
    assert outcome.line is not None and outcome.line > KERNEL.count("\n")  # points into the snippet


@pytest.mark.parametrize(("path", "kind"), STATIC_FIXTURES, ids=lambda x: _fixture_id(x))
def test_static_fixtures_fail_with_the_declared_kind(path, kind):
    outcome = check(path.read_text())
    assert (outcome.ok, outcome.stage, outcome.failure) == (False, Stage.STATIC, FailureKind(kind)), outcome.message


def test_every_rule_has_a_failing_example():
    covered = {v[2] for v in VIOLATIONS} | {"no-triton-kernel"}
    assert covered == {rule_id for rule_id, _, _ in RULES}


def test_no_triton_kernel():
    code = "import torch\n\n\nclass ModelNew(torch.nn.Module):\n    def forward(self, x):\n        return x\n"
    outcome = check(code)
    assert (outcome.rule, outcome.failure) == ("no-triton-kernel", K.NO_TRITON_KERNEL)


@pytest.mark.parametrize(
    "decorator",
    ["import triton as tr\n@tr.jit", "import triton\n@triton.autotune(configs=[], key=[])\n@triton.jit(debug=True)"],
)
def test_jit_decorator_forms_count(decorator):
    code = f"{decorator}\ndef k(x):\n    pass\n"
    assert check(code).ok


def test_autotune_without_jit_is_no_kernel():
    code = "import triton\n@triton.autotune(configs=[], key=[])\ndef k(x):\n    pass\n"
    assert check(code).rule == "no-triton-kernel"


def test_decoy_jit_name_is_no_kernel():
    code = "def jit(f):\n    return f\n@jit\ndef k(x):\n    pass\n"
    assert check(code).rule == "no-triton-kernel"


def test_message_names_construct_and_line():
    outcome = check(KERNEL + "s = torch.cuda.Stream()\n")
    assert outcome.line == KERNEL.count("\n") + 1
    assert "torch.cuda.Stream" in outcome.message and f"line {outcome.line}" in outcome.message


def test_shadowed_builtin_names_are_not_builtins():
    code = KERNEL + "def f(input, compile=False):\n    vars = input\n    return vars, compile\n"
    assert check(code).ok


# --- warnings and policy ------------------------------------------------------------------------------------------

TORCH_FORWARD = (
    KERNEL
    + """
import torch.nn.functional as F


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3)

    def forward(self, x, w):
        y = torch.matmul(x, w)
        y = F.relu(y) @ w
        out = torch.empty_like(y)
        return self.conv(out) + torch.softmax(y, -1) + x.exp() + torch.exp(y) + torch.tanh(y)
"""
)


def test_torch_compute_in_forward_only_warns():
    outcome = check(TORCH_FORWARD)
    assert outcome.ok
    assert len(outcome.warnings) == MAX_WARNINGS + 1 and outcome.warnings[-1] == "+2 more"
    assert outcome.warnings[0].startswith("forward calls torch.matmul at line")
    assert outcome.warnings[0].endswith("runtime provenance will decide")
    joined = "\n".join(check(TORCH_FORWARD).warnings)
    assert "torch.empty_like" not in joined


def test_partial_policy_keeps_rules_and_drops_warnings():
    assert check(TORCH_FORWARD, policy="partial").warnings == ()
    outcome = check(KERNEL + "import socket\n", policy="partial")
    assert (outcome.rule, outcome.failure) == ("import-allowlist", K.NETWORK_ACCESS)


def test_unknown_policy_is_a_config_error():
    with pytest.raises(ConfigError):
        check(KERNEL, policy="lenient")


def test_rules_table_is_documented():
    for rule_id, kind, rationale in RULES:
        assert re.fullmatch(r"[a-z-]+", rule_id) and isinstance(kind, FailureKind) and rationale
    source = Path(run_static_checks.__code__.co_filename).read_text()
    assert source.count("# Rationale:") >= len(RULES)


@pytest.mark.parametrize(
    "snippet",
    [
        "class M(nn.Module):\n    @torch.compiler.disable\n    def forward(self, x):\n        return x\n",
        "eager = torch.compiler.disable(lambda x: x, recursive=False)\n",
        "tracing = torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling()\n",
    ],
)
def test_keeping_code_out_of_compilation_is_not_compiling_it(snippet):
    assert check(KERNEL + snippet).ok
    compiled = check(KERNEL + snippet.replace("compiler.disable", "compile").replace("jit.is_scripting", "jit.script"))
    assert compiled.rule == "torch-compile"
