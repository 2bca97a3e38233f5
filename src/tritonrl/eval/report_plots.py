"""The report's charts: grouped bars and a log-scale speedup histogram, each returned as a PNG data URI.

matplotlib (the `eval` extra) is imported inside each function, so this module imports without it and a call
raises ImportError instead. Only matplotlib's object API is used (Figure + the Agg canvas): pyplot's global
backend and figure registry are never touched. Labels are drawn literally (`$` would start mathtext).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

COLORS = ("#3b6ea8", "#e07b39", "#8fb3dc")  # run A, run B, a second series of one run
_LABEL_CHARS = 40


def _text(text: object) -> str:
    """A label matplotlib draws literally and that fits beside a bar."""
    text = " ".join(str(text).split())
    text = text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 1] + "…"
    return text.replace("$", r"\$")


def _axes(title: str, height: float = 3.4) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.8, height), dpi=160, layout="constrained")
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(alpha=0.3, linewidth=0.6)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=8)
    ax.set_title(str(title).replace("$", r"\$"), fontsize=10, loc="left")
    return fig, ax


def _png(fig: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _empty(fig: Any, ax: Any, text: str) -> str:
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=12, color="#666666", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])
    return _png(fig)


def bar_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    horizontal: bool = False,
    value_label: str = "",
    fmt: str = "{:g}",
    colors: Sequence[str] = COLORS,
    empty: str = "no data",
) -> str:
    """Grouped bars, one group per label and one bar per series; bars are annotated unless grouped vertically.

    Args:
        title: chart title.
        labels: the categories (stages, levels, failure kinds), drawn top to bottom when horizontal.
        series: (legend name, one value per label); a legend is drawn for more than one series.
        horizontal: horizontal bars (long category names).
        value_label: axis label of the values.
        fmt: format of the bar annotations.
        colors: one per series.
        empty: the text shown instead of bars when there are no labels.

    Returns:
        A `data:image/png;base64,...` URI.
    """
    fig, ax = _axes(title, max(2.4, 0.9 + 0.2 * len(labels) * len(series)) if horizontal else 3.4)
    if not labels:
        return _empty(fig, ax, empty)
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series):
        pos = [j + (i - (len(series) - 1) / 2) * width for j in range(len(labels))]
        draw = ax.barh if horizontal else ax.bar
        bars = draw(pos, values, width * 0.9, label=_text(name), color=colors[i % len(colors)])
        if horizontal or len(series) == 1:
            ax.bar_label(bars, fmt=fmt.format, padding=2, fontsize=7, color="#333333")
    ticks = [_text(label) for label in labels]
    if horizontal:
        ax.set_yticks(range(len(labels)), ticks)
        ax.invert_yaxis()
        ax.margins(x=0.1)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel(_text(value_label), fontsize=9)
    else:
        ax.set_xticks(range(len(labels)), ticks, rotation=30, ha="right", rotation_mode="anchor")
        ax.margins(y=0.1)
        ax.grid(axis="x", visible=False)
        ax.set_ylabel(_text(value_label), fontsize=9)
    if len(series) > 1:
        ax.legend(fontsize=8, frameon=False)
    return _png(fig)


def speedup_histogram(title: str, series: Sequence[tuple[str, Sequence[float]]], *, n_bins: int = 24) -> str:
    """Histogram of speedups on a log x axis with the baseline (1×) marked; runs side by side in each bin.

    Args:
        title: chart title.
        series: (run name, speedups); non-positive values are ignored. With no values at all the chart says
            "no timing measured"; a run without values is labelled "(no timing)".
        n_bins: log-spaced bins over the data (and 1×).

    Returns:
        A `data:image/png;base64,...` URI.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fig, ax = _axes(title)
    timed = [[x for x in xs if x > 0] for _, xs in series]
    values = [x for xs in timed for x in xs]
    if not values:
        return _empty(fig, ax, "no timing measured")
    lo, hi = min(values + [1.0]) / 1.2, max(values + [1.0]) * 1.2
    bins = [lo * (hi / lo) ** (i / n_bins) for i in range(n_bins + 1)]
    names = [_text(name if xs else f"{name} (no timing)") for (name, _), xs in zip(series, timed, strict=True)]
    ax.hist(timed, bins=bins, label=names if len(names) > 1 else None, color=list(COLORS[: len(timed)]), rwidth=0.9)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=2))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}×"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(axis="x", visible=False)
    ax.axvline(1.0, color="#444444", linestyle="--", linewidth=1, label="baseline (1×)")
    ax.set_xlabel("speedup (log scale)", fontsize=9)
    ax.set_ylabel("samples", fontsize=9)
    ax.legend(fontsize=8, frameon=False)
    return _png(fig)
