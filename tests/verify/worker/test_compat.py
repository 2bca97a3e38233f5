"""verify/worker/compat.py: the Triton-interpreter shims, in a fresh interpreter process (they patch triton globally,
as the worker does before any candidate code)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("triton")
SRC = Path(__file__).resolve().parents[3] / "src"

PROBE = textwrap.dedent(
    """
    import json, sys
    from tritonrl.verify.worker.compat import interpreter_limitation, patch_triton_interpreter
    applied = patch_triton_interpreter()
    import torch, triton, triton.language as tl
    from triton.language.extra import libdevice

    @triton.autotune(configs=[triton.Config({"BLOCK": 128}), triton.Config({"BLOCK": 64}),
                              triton.Config({"BLOCK": 32})], key=["n"])
    @triton.jit
    def k(x, y, n, BLOCK: tl.constexpr):
        tl.static_assert(BLOCK <= 64)  # the first config cannot build: a GPU autotuner would skip it
        o = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = o < n
        v = tl.load(x + o, mask=m)
        out = libdevice.tanh(v) + libdevice.pow(v, 2.0) + tl.where(libdevice.isnan(v), 1.0, 0.0)
        tl.store(y + o, out, mask=m)

    x = torch.randn(1000)
    y = torch.empty_like(x)
    k[lambda meta: (triton.cdiv(1000, meta["BLOCK"]),)](x, y, 1000)
    err = float((y - (torch.tanh(x) + x**2)).abs().max())

    @triton.jit
    def uses_missing(x, BLOCK: tl.constexpr):
        o = tl.arange(0, BLOCK)
        tl.store(x + o, libdevice.j0(tl.load(x + o)) * 2.0)  # a libdevice function numpy has no ufunc for

    try:
        uses_missing[(1,)](torch.ones(16), BLOCK=16)
        limitation = None
    except Exception as exc:
        limitation = interpreter_limitation(exc)
    print(json.dumps({"applied": applied, "err": err, "block": k.best_config.kwargs["BLOCK"],
                      "limitation": limitation}))
    """
)


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> dict:
    script = tmp_path_factory.mktemp("compat") / "probe.py"  # a real file, as candidates are: lines can be read
    script.write_text(PROBE)
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(SRC)}
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_autotune_skips_a_config_that_does_not_build_and_takes_the_first_that_runs(probe):
    assert probe["block"] == 64


def test_libdevice_functions_run_in_numpy(probe):
    assert any(a.startswith("libdevice") for a in probe["applied"])
    assert probe["err"] < 1e-5


def test_a_libdevice_function_without_a_shim_is_an_interpreter_limitation(probe):
    assert probe["limitation"] and "libdevice" in probe["limitation"]


def test_a_candidates_own_exception_is_never_an_interpreter_limitation():
    from tritonrl.verify.worker.compat import interpreter_limitation

    try:
        raise RuntimeError("Did you forget to add @triton.jit ? 0 active drivers")  # raised in this (test) file
    except RuntimeError as exc:
        assert interpreter_limitation(exc) is None
