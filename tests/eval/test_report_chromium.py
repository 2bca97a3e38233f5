"""The HTML report rendered by a real browser: headless Chromium screenshots it, and the screenshot must show
content and the plots' colour (the base64 images decoded and laid out). Skips without chromium or matplotlib."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tritonrl.eval.metrics import RateTable, Summary
from tritonrl.eval.report import write_report

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs a chromium binary on PATH")
BAR_RGB = (0x3B, 0x6E, 0xA8)  # run A's colour in report_plots.COLORS


def rates(correct: float) -> RateTable:
    return RateTable(
        n_tasks=20,
        n_samples=200,
        valid=0.9,
        compiled=0.7,
        correct=correct,
        fast={"0": correct, "1": correct / 2, "1.2": correct / 4, "2": correct / 8},
        pass_at_k={1: correct, 5: min(1.0, 1.5 * correct)},
        fast_at_k={"1": {1: correct / 2}},
        geomean_speedup=1.1,
        n_timed=int(200 * correct),
    )


def report_summary(run: str, correct: float) -> Summary:
    return Summary(
        run=run,
        baseline="eager",
        overall=rates(correct),
        per_level={"L1": rates(correct + 0.1), "L2": rates(correct), "L3": rates(correct - 0.1)},
        stage_counts={"extract": 5, "parse": 15, "static": 10, "load": 30, "provenance": 20, "correctness": 20},
        failure_counts={"wrong_values": 20, "runtime_error": 18, "torch_compute": 20, "syntax_error": 15},
        speedups=tuple(0.3 * 1.05**i for i in range(60)),
    )


def test_chromium_renders_tables_and_plots(tmp_path):
    image = pytest.importorskip("matplotlib.image")
    _, html_path = write_report(tmp_path, report_summary("a", 0.5), report_summary("b", 0.4), {"suite": "demo"})
    png = tmp_path / "report.png"
    flags = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking"
    flags += " --disable-component-update --disable-sync --window-size=1280,2000"
    cmd = [CHROMIUM, *flags.split(), f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}"]
    subprocess.run([*cmd, html_path.as_uri()], capture_output=True, timeout=120, check=False)

    assert png.exists() and png.stat().st_size > 20_000
    pixels = (image.imread(png)[..., :3] * 255).round().astype(int)  # RGB, 0..255
    colours = {tuple(p) for p in pixels[::4, ::4].reshape(-1, 3)}
    assert len(colours) > 50  # not one colour: text, tables and plots
    is_bar = (abs(pixels - BAR_RGB) <= 3).all(axis=-1)
    assert is_bar.sum() > 5_000  # the plots' bars are on screen
