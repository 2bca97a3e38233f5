"""Render evaluation `Summary`s as a Markdown report and as one self-contained HTML file with plots.

`render_markdown` and `render_html` are pure (one run, or two side by side with deltas A − B) and share one
table model, so both files show the same numbers; `write_report` writes them into a run directory. Plots need
matplotlib (the `eval` extra), imported lazily; without it the HTML says so instead. Run names, meta values and
failure kinds may come from candidate output, so all text is escaped (HTML entities in both formats, `$` for
matplotlib). Nothing here computes metrics: that is `eval.metrics`.
"""

from __future__ import annotations

import dataclasses
import html
import logging
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tritonrl.types import Stage

if TYPE_CHECKING:
    from tritonrl.eval.metrics import RateTable, Summary

log = logging.getLogger(__name__)

NA_TIMED = "n/a (not timed)"  # a timing metric that was not measured
NA = "n/a"  # a value or delta that cannot be computed
MISSING = "—"  # a metric or level the run does not have
_PCT, _X, _INT, _ABSENT_KIND = "pct", "x", "int", "absent"
_META_FIRST = ("suite", "config", "device", "model")
_MAX_FAILURE_BARS = 15

Value = tuple[float | int | None, str]  # (value, kind)
_ABSENT: Value = (None, _ABSENT_KIND)


@dataclasses.dataclass(frozen=True, slots=True)
class _Table:
    """A table of formatted, not yet escaped cells (each output format escapes once)."""

    title: str  # section heading
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""  # shown under the table, or alone when there are no rows
    higher_is_better: bool = True  # colours the "Δ" columns in HTML


def _fmt(value: float | int | None, kind: str, na: str = NA_TIMED) -> str:
    if kind == _ABSENT_KIND:
        return MISSING
    if value is None:
        return na
    if kind == _PCT:
        return f"{100 * value:.1f}%"
    return f"{value:.2f}×" if kind == _X else str(int(value))


def _delta(a: float | int | None, b: float | int | None, kind: str) -> str:
    """A − B; rounded first so that a tiny negative difference does not print as "-0.0"."""
    if a is None or b is None:
        return NA
    if kind == _PCT:
        return f"{round(100 * (a - b), 1) + 0.0:+.1f} pp"
    return f"{round(a - b, 2) + 0.0:+.2f}×" if kind == _X else f"{int(a) - int(b):+d}"


def _metric_values(t: RateTable) -> dict[str, Value]:
    """Every headline metric of a rate table, in display order."""
    out: dict[str, Value] = {"tasks": (t.n_tasks, _INT), "samples": (t.n_samples, _INT)}
    out |= {"valid": (t.valid, _PCT), "compiled": (t.compiled, _PCT), "correct": (t.correct, _PCT)}
    if t.inconclusive:  # the CPU interpreter's share of "not correct", shown only when there is one
        out["inconclusive on CPU"] = (t.inconclusive, _PCT)
    out |= {f"fast_{p}": (v, _PCT) for p, v in t.fast.items()}
    out |= {f"pass@{k}": (v, _PCT) for k, v in sorted(t.pass_at_k.items())}
    out |= {f"fast_{p}@{k}": (v, _PCT) for p, by_k in t.fast_at_k.items() for k, v in sorted(by_k.items())}
    out |= {"geomean speedup": (t.geomean_speedup, _X), "timed samples": (t.n_timed, _INT)}
    return out


def _speedup_values(speedups: Sequence[float]) -> dict[str, Value]:
    """Distribution of the speedups of correct, timed samples ({} when nothing was timed)."""
    xs = sorted(x for x in speedups if x > 0)
    if not xs:
        return {}

    def quantile(q: float) -> float:  # linear interpolation between closest ranks
        pos = q * (len(xs) - 1)
        lo = math.floor(pos)
        return xs[lo] + (xs[min(lo + 1, len(xs) - 1)] - xs[lo]) * (pos - lo)

    out: dict[str, Value] = {"samples (correct, timed)": (len(xs), _INT), "min": (xs[0], _X)}
    out |= {"p25": (quantile(0.25), _X), "median": (quantile(0.5), _X), "p75": (quantile(0.75), _X)}
    out |= {"max": (xs[-1], _X), "geomean": (math.exp(math.fsum(map(math.log, xs)) / len(xs)), _X)}
    return out | {"faster than baseline": (sum(x > 1 for x in xs) / len(xs), _PCT)}


def _level_key(level: str) -> tuple[int, int, str]:
    match = re.fullmatch(r"L(\d+)", level)
    return (0, int(match[1]), "") if match else (1, 0, level)


def _stage_order(*counts: dict[str, int]) -> list[str]:
    """The funnel's stages in order, then stages this version does not know, then "done"."""
    known = [s.value for s in Stage if s is not Stage.DONE]
    extra = [s for c in counts for s in c if s not in known and s != Stage.DONE.value]
    return known + list(dict.fromkeys(extra)) + [Stage.DONE.value]


def _funnel(counts: dict[str, int], order: Sequence[str]) -> dict[str, tuple[Value, Value, Value]]:
    """stage -> (samples reaching it, samples stopped at it, fraction of all samples past it)."""
    total = sum(counts.values())
    if not total:
        return {}
    reached, out = total, {}
    for stage in order:
        stopped = counts.get(stage, 0) if stage != Stage.DONE.value else None
        past = reached - (stopped or 0)
        out[stage] = ((reached, _INT), (stopped, _INT) if stopped is not None else _ABSENT, (past / total, _PCT))
        reached = past
    return out


# ---------------------------------------------------------------------------------------------------------------
# Summaries -> tables. `runs` holds one summary, or two (A and B) to compare.


def _names(runs: Sequence[Summary]) -> list[str]:
    names = [s.run or f"run {'AB'[i]}" for i, s in enumerate(runs)]
    return [f"{n} ({'AB'[i]})" for i, n in enumerate(names)] if len(set(names)) < len(names) else names


def _group(col: str, values: Sequence[Value], na: str, delta: bool) -> tuple[list[str], list[str]]:
    """Header and cells of one column: `col` for one run; `col A`, `col B` and optionally `Δ col` for two."""
    cells = [_fmt(v, kind, na) for v, kind in values]
    if len(values) == 1:
        return [col], cells
    kind = next((k for _, k in values if k != _ABSENT_KIND), _INT)
    heads = [f"{col} A", f"{col} B"]
    return (heads + [f"Δ {col}"], cells + [_delta(values[0][0], values[1][0], kind)]) if delta else (heads, cells)


def _grid(title: str, first: str, rows: list[tuple[str, list[tuple]]], note: str = "", good: bool = True) -> _Table:
    """rows: (label, [(column, values per run, na text, show delta), ...])."""
    header, body = [first], []
    for label, groups in rows:
        header, cells = [first], [label]
        for col, values, na, delta in groups:
            h, c = _group(col, values, na, delta)
            header, cells = header + h, cells + c
        body.append(tuple(cells))
    return _Table(title, tuple(header), tuple(body), note, good)


def _kv_table(title: str, first: str, per_run: list[dict[str, Value]], names: list[str], note: str) -> _Table:
    labels = list(dict.fromkeys(k for d in per_run for k in d))
    rows = [(k, [("value", [d.get(k, _ABSENT) for d in per_run], NA_TIMED, True)]) for k in labels]
    table = _grid(title, first, rows, note)
    return dataclasses.replace(table, header=(first, *names, "Δ") if len(names) > 1 else (first, "value"))


def _level_table(runs: Sequence[Summary]) -> _Table:
    overall = runs[0].overall
    fast = next((f"fast_{p}" for p in sorted(overall.fast, key=lambda p: p != "1") if p != "0"), None)
    pass_k = next((f"pass@{k}" for k in sorted(overall.pass_at_k)), None)
    if len(runs) == 1:
        cols = ["tasks", "samples", "valid", "compiled", "correct", fast, pass_k, "geomean speedup"]
    else:
        cols = ["samples", "correct", fast, "geomean speedup"]
    levels = sorted({lv for s in runs for lv in s.per_level}, key=_level_key)
    rows = []
    for level in levels:
        values = [_metric_values(s.per_level[level]) if level in s.per_level else {} for s in runs]
        groups = [(c, [v.get(c, _ABSENT) for v in values], NA, c != "samples") for c in cols if c]
        rows.append((level, groups))
    note = "n/a: not timed." + (" Δ = A − B." if len(runs) > 1 else "")
    table = _grid("Per level", "level", rows, note)
    return dataclasses.replace(table, header=tuple(h.replace("geomean speedup", "geomean") for h in table.header))


def _funnel_table(runs: Sequence[Summary]) -> _Table:
    order = _stage_order(*(s.stage_counts for s in runs))
    funnels = [_funnel(s.stage_counts, order) for s in runs]
    rows = []
    for stage in order:
        cells = [f.get(stage, (_ABSENT,) * 3) for f in funnels]
        cols = ("reached", "stopped here", "past stage")
        rows.append((stage, [(col, [c[i] for c in cells], NA, col == "past stage") for i, col in enumerate(cols)]))
    note = "Reached: samples entering the stage; past stage: fraction of all samples that got through it."
    return _grid("Funnel", "stage", rows, note)


def _failure_kinds(runs: Sequence[Summary]) -> list[str]:
    """Failure kinds, most frequent (over the runs) first."""
    counts = [s.failure_counts for s in runs]
    return sorted({k for c in counts for k in c}, key=lambda k: (-sum(c.get(k, 0) for c in counts), k))


def _failure_table(runs: Sequence[Summary]) -> _Table:
    rows = []
    for kind in _failure_kinds(runs):
        n = [s.failure_counts.get(kind, 0) for s in runs]
        share = [(k / s.overall.n_samples if s.overall.n_samples else None, _PCT) for k, s in zip(n, runs, strict=True)]
        groups = [("samples", [(k, _INT) for k in n], NA, False), ("% of samples", share, NA, True)]
        if len(runs) == 1:
            groups.append(("% of failures", [(n[0] / sum(runs[0].failure_counts.values()), _PCT)], NA, False))
        rows.append((kind, groups))
    return _grid("Failure kinds", "kind", rows, "" if rows else "No failures.", good=False)


def _tables(runs: Sequence[Summary]) -> list[_Table]:
    names = _names(runs)
    main = _kv_table("Headline metrics", "metric", [_metric_values(s.overall) for s in runs], names, "")
    speed = [_speedup_values(s.speedups) for s in runs]
    note = f"Speedup over {runs[0].baseline}." if any(speed) else "No timing measured: no correct sample was timed."
    speed_table = _kv_table("Speedups", "statistic", speed, names, note)
    return [main, _level_table(runs), _funnel_table(runs), _failure_table(runs), speed_table]


def _overview(runs: Sequence[Summary], meta: dict | None) -> list[tuple[str, str]]:
    """(key, value) lines of the summary section."""
    names = _names(runs)
    lines = [("run", names[0])] if len(runs) == 1 else [("run A", names[0]), ("run B", names[1]), ("Δ", "A − B")]
    lines.append(("baseline", " / ".join(dict.fromkeys(s.baseline for s in runs))))
    meta = meta or {}
    keys = [k for k in _META_FIRST if k in meta] + [k for k in meta if k not in _META_FIRST]
    lines += [(str(k), str(meta[k])) for k in keys]
    for name, s in zip(names, runs, strict=True):
        key, o = f"samples ({name})" if len(runs) > 1 else "samples", s.overall
        lines.append((key, f"{o.n_samples} over {o.n_tasks} tasks, {o.n_timed} timed"))
    return lines


# ---------------------------------------------------------------------------------------------------------------
# Markdown


def _md(text: object) -> str:
    """Text for a Markdown line or table cell: no raw HTML, no column breaks, one line."""
    text = str(text).replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
    return " ".join(text.split())


def _md_table(t: _Table) -> list[str]:
    lines = [f"## {t.title}", ""]
    if t.rows:
        lines.append("| " + " | ".join(map(_md, t.header)) + " |")
        lines.append("|---|" + "---:|" * (len(t.header) - 1))
        lines += ["| " + " | ".join(map(_md, row)) + " |" for row in t.rows] + [""]
    return lines + ([_md(t.note), ""] if t.note else [])


def _runs(summary: Summary, other: Summary | None) -> list[Summary]:
    return [summary] if other is None else [summary, other]


def render_markdown(summary: Summary, other: Summary | None = None, *, meta: dict | None = None) -> str:
    """Render one run, or two side by side with deltas (A − B), as Markdown.

    Args:
        summary: the run (A).
        other: an optional run (B) to compare with.
        meta: optional run facts (suite, config, device, model, ...) for the summary section.

    Returns:
        The report; metrics that were not timed read "n/a (not timed)".
    """
    runs = _runs(summary, other)
    lines = [f"# Evaluation report: {_md(' vs '.join(_names(runs)))}", "", "## Summary", ""]
    lines += [f"- **{_md(k)}:** {_md(v)}" for k, v in _overview(runs, meta)] + [""]
    for table in _tables(runs):
        lines += _md_table(table)
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Plots: the data here, the drawing in `report_plots`


def _level_series(runs: Sequence[Summary], names: Sequence[str], levels: Sequence[str]) -> list[tuple[str, list]]:
    """Percent correct per level for each run; with one timed run, fast_1 per level as a second series."""

    def pct(s: Summary, level: str, fast: bool) -> float:
        t = s.per_level.get(level)
        return 0.0 if t is None else 100 * ((t.fast.get("1") if fast else t.correct) or 0.0)

    if len(runs) == 1 and runs[0].overall.fast.get("1") is not None:
        return [(m, [pct(runs[0], lv, m == "fast_1") for lv in levels]) for m in ("correct", "fast_1")]
    return [(f"correct: {n}", [pct(s, lv, False) for lv in levels]) for n, s in zip(names, runs, strict=True)]


def _plots(runs: Sequence[Summary]) -> dict[str, str]:
    """Section title -> PNG data URI. Raises ImportError without matplotlib."""
    from tritonrl.eval import report_plots as rp

    names = _names(runs)
    levels = sorted({lv for s in runs for lv in s.per_level}, key=_level_key)
    by_level = _level_series(runs, names, levels)
    with_fast = len(by_level) == 2 and by_level[1][0] == "fast_1"
    level_colors = (rp.COLORS[0], rp.COLORS[2]) if with_fast else rp.COLORS
    order = _stage_order(*(s.stage_counts for s in runs))
    funnels = [_funnel(s.stage_counts, order) for s in runs]
    reached = [(n, [f[st][0][0] if f else 0 for st in order]) for n, f in zip(names, funnels, strict=True)]
    kinds = _failure_kinds(runs)[:_MAX_FAILURE_BARS]
    failures = [(n, [s.failure_counts.get(k, 0) for k in kinds]) for n, s in zip(names, runs, strict=True)]
    speedups = [(n, s.speedups) for n, s in zip(names, runs, strict=True)]
    title = f"Speedup over {runs[0].baseline} (correct, timed samples)"
    return {
        "Headline metrics": rp.bar_chart(
            "Correct and fast_1 by level" if with_fast else "Correct by level",
            levels,
            by_level,
            value_label="% of samples",
            fmt="{:.0f}%",
            colors=level_colors,
            empty="no levels",
        ),
        "Funnel": rp.bar_chart(
            "Samples reaching each stage",
            order if any(funnels) else [],
            reached,
            value_label="samples",
            empty="no samples",
        ),
        "Failure kinds": rp.bar_chart(
            "Failure kinds", kinds, failures, horizontal=True, value_label="samples", empty="no failures"
        ),
        "Speedups": rp.speedup_histogram(title, speedups),
    }


# ---------------------------------------------------------------------------------------------------------------
# HTML

_CSS = """
body{margin:0;background:#f3f4f6;color:#1f2328;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1200px;margin:0 auto;padding:28px 32px 48px}
h1{font-size:24px;margin:0 0 2px}h2{font-size:16px;margin:0 0 12px}
.sub{color:#57606a;margin:0 0 20px}
section{background:#fff;border:1px solid #d8dee4;border-radius:8px;padding:18px 20px;margin:0 0 18px}
.pair{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:24px;align-items:start}
.stack img{max-width:640px;margin:16px auto 0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 20px;margin:0}
dt{color:#57606a}dd{margin:0;font-weight:500;overflow-wrap:anywhere}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:13px}
th,td{padding:5px 10px;border-bottom:1px solid #eaeef2;text-align:right;white-space:nowrap}
th{background:#f6f8fa;font-weight:600;border-bottom:2px solid #d0d7de}
th:first-child,td:first-child{text-align:left;max-width:300px;overflow:hidden;text-overflow:ellipsis}
td.good{color:#1a7f37}td.bad{color:#cf222e}
img{width:100%;height:auto;display:block}
.note{color:#57606a;font-size:12px;margin:8px 0 0}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _html_cell(cell: str, is_delta: bool, higher_is_better: bool) -> str:
    sign = (cell[:1] == "+") - (cell[:1] == "-") if is_delta and cell.strip("+-0.×p %") else 0
    cls = {1: "good", -1: "bad"}.get(sign if higher_is_better else -sign)
    return f'<td class="{cls}">{_e(cell)}</td>' if cls else f"<td>{_e(cell)}</td>"


def _html_table(t: _Table) -> str:
    note = f'<p class="note">{_e(t.note)}</p>' if t.note else ""
    if not t.rows:
        return note
    deltas = [h.startswith("Δ") for h in t.header]
    head = "".join(f"<th>{_e(h)}</th>" for h in t.header)
    body = "".join(
        "<tr>" + "".join(_html_cell(c, d, t.higher_is_better) for c, d in zip(row, deltas, strict=True)) + "</tr>"
        for row in t.rows
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>{note}'


def _html_section(t: _Table, plot: str | None) -> str:
    table = _html_table(t)
    if plot is None:
        return f"<section><h2>{_e(t.title)}</h2>{table}</section>"
    img = f'<img src="{plot}" alt="{_e(t.title)} plot">'
    layout = "pair" if len(t.header) <= 5 else "stack"  # wide tables get the full width, the plot below
    return f'<section><h2>{_e(t.title)}</h2><div class="{layout}"><div>{table}</div><div>{img}</div></div></section>'


def render_html(summary: Summary, other: Summary | None = None, *, meta: dict | None = None) -> str:
    """Render the report of `render_markdown` as one self-contained HTML page (inline CSS, base64 PNG plots).

    Args:
        summary: the run (A).
        other: an optional run (B); plots then show both runs side by side.
        meta: optional run facts for the summary section.

    Returns:
        The HTML document: no external references, no JavaScript.
    """
    runs = _runs(summary, other)
    try:
        plots, missing = _plots(runs), ""
    except ImportError:
        log.warning("matplotlib is not installed: the HTML report has no plots (pip install 'tritonrl[eval]')")
        plots, missing = (
            {},
            "<p class=\"note\">No plots: matplotlib is not installed (pip install 'tritonrl[eval]').</p>",
        )
    title = _e(" vs ".join(_names(runs)))
    overview = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in _overview(runs, meta))
    sections = "".join(_html_section(t, plots.get(t.title)) for t in _tables(runs))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Evaluation report: {title}</title><style>{_CSS}</style></head>\n"
        f'<body><main><h1>Evaluation report</h1><p class="sub">{title}</p>{missing}'
        f"<section><h2>Summary</h2><dl>{overview}</dl></section>{sections}</main></body></html>\n"
    )


def write_report(
    run_dir: str | os.PathLike[str], summary: Summary, other: Summary | None = None, meta: dict | None = None
) -> tuple[Path, Path]:
    """Write `report.md` and `report.html` into `run_dir` (created if needed); returns their paths."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    md_path, html_path = run_dir / "report.md", run_dir / "report.html"
    md_path.write_text(render_markdown(summary, other, meta=meta), encoding="utf-8")
    html_path.write_text(render_html(summary, other, meta=meta), encoding="utf-8")
    return md_path, html_path
