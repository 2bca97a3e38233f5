"""tasks/inductor.py: Inductor glue rewritten to what the verifier accepts; anything else reported as a blocker."""

from __future__ import annotations

import ast
import types

from tritonrl.data.sources.inductor import GRID_HELPER, port_inductor
from tritonrl.verify.static_checks import run_static_checks

GLUE = """import torch
import triton
import triton.language as tl
from torch._inductor.runtime.triton_heuristics import grid
from torch._C import _cuda_getCurrentRawStream as get_raw_stream
from torch._inductor.runtime.triton_helpers import libdevice, math as tl_math
assert_size_stride = torch._C._dynamo.guards.assert_size_stride
empty_strided_cuda = torch._C._dynamo.guards._empty_strided_cuda


@triton.jit
def triton_poi_fused_exp_0(in_ptr0, out_ptr0, xnumel, XBLOCK: tl.constexpr):
    xnumel = 16
    xindex = tl.program_id(0) * XBLOCK + tl.arange(0, XBLOCK)[:]
    xmask = xindex < xnumel
    tl.store(out_ptr0 + xindex, tl_math.exp(tl.load(in_ptr0 + xindex, xmask)), xmask)


def call(args):
    arg0_1, = args
    args.clear()
    assert_size_stride(arg0_1, (16,), (1,))
    with torch.cuda._DeviceGuard(0):
        torch.cuda.set_device(0)
        buf0 = empty_strided_cuda((16,), (1,), torch.float32)
        stream0 = get_raw_stream(0)
        triton_poi_fused_exp_0[grid(16)](arg0_1, buf0, 16, XBLOCK=16, num_warps=1, stream=stream0)
        del arg0_1
    return buf0,


class ModelNew(torch.nn.Module):
    def forward(self, input_0):
        return call([input_0])[0]
"""


def test_glue_is_rewritten_and_the_rest_kept():
    port = port_inductor(GLUE)
    assert port.blockers == () and port.extern == ()
    code = port.code
    assert "torch._inductor" not in code and "torch._C" not in code and "_DeviceGuard" not in code
    assert "from triton.language.extra import libdevice\nfrom triton.language import math as tl_math\n" in code
    assert "    _device = args[0].device\n    arg0_1, = args\n" in code
    assert "    buf0 = torch.empty_strided((16,), (1,), dtype=torch.float32, device=_device)\n" in code
    assert "XBLOCK=16, num_warps=1)" in code and "stream" not in code.split("def call")[1]
    assert "assert_size_stride" not in code and "set_device" not in code
    assert GLUE.split("@triton.jit")[1].split("def call")[0] in code  # the kernel is byte-for-byte the same
    ast.parse(code)


def test_the_port_passes_the_verifiers_static_checks():
    code = port_inductor(GLUE).code
    outcome = run_static_checks(ast.parse(code), code, policy="strict")
    assert outcome.ok, outcome.message


def test_grid_helper_is_inductors_launch_grid():
    namespace = {"triton": types.SimpleNamespace(cdiv=lambda a, b: -(-a // b))}
    exec(GRID_HELPER, namespace)
    assert namespace["grid"](256)({"XBLOCK": 128}) == (2,)
    assert namespace["grid"](10, 7)({"XBLOCK": 4, "YBLOCK": 2}) == (3, 4)
    assert namespace["grid"](5)({"RBLOCK": 8}) == (5,)  # no XBLOCK: one program per element of x


def test_extern_kernels_become_torch_calls_and_are_listed():
    extern = "from torch._inductor.select_algorithm import extern_kernels\n"
    code = GLUE.replace("import triton\n", "import triton\n" + extern)
    addmm = "        extern_kernels.addmm(arg0_1, arg0_1, arg0_1, alpha=1, beta=1, out=buf0)\n"
    code = code.replace("        stream0 = get_raw_stream(0)\n", addmm)
    port = port_inductor(code)
    assert port.extern == ("addmm",) and "torch.addmm(arg0_1" in port.code and "extern_kernels" not in port.code


def test_unknown_helpers_and_imports_are_blockers():
    code = GLUE.replace("tl_math.exp(", "triton_helpers.promote_to_tensor(")
    port = port_inductor(code)
    assert any("promote_to_tensor" in b for b in port.blockers)
    port = port_inductor(GLUE.replace("import grid", "import grid, split_scan_grid"))
    assert any("split_scan_grid" in b for b in port.blockers)
    assert port_inductor("def broken(:\n").blockers[0].startswith("syntax error")


def test_libdevice_use_is_flagged():
    assert not port_inductor(GLUE).uses_libdevice
    assert port_inductor(GLUE.replace("tl_math.exp(", "libdevice.exp(")).uses_libdevice
