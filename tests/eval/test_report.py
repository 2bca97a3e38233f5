"""Report rendering: the tables carry the Summary's numbers, n/a where untimed, deltas for two runs; the HTML is
self-contained, parseable and escapes untrusted text. Plot tests skip without matplotlib."""

from __future__ import annotations

import base64
import dataclasses
import html.parser
import re
import subprocess
import sys

import pytest

from tritonrl.eval.metrics import RateTable, Summary
from tritonrl.eval.report import render_html, render_markdown, write_report

HOSTILE = '<script>alert("x")</script>'


def rate_table(*, correct: float = 0.5, timed: bool = True, geomean: float = 1.234) -> RateTable:
    fast = {"0": correct, "1": 0.25, "1.2": 0.125, "2": 0.0} if timed else {"0": correct, "1": None, "1.2": None}
    return RateTable(
        n_tasks=2,
        n_samples=8,
        valid=0.75,
        compiled=0.625,
        correct=correct,
        fast=fast,
        pass_at_k={1: correct, 5: 0.875},
        fast_at_k={"0": {1: correct}, "1": {1: 0.25}} if timed else {"0": {1: correct}},
        geomean_speedup=geomean if timed else None,
        n_timed=4 if timed else 0,
    )


def summary(run: str = "run-a", *, correct: float = 0.5, timed: bool = True, **changes) -> Summary:
    table = rate_table(correct=correct, timed=timed)
    base = Summary(
        run=run,
        baseline="eager",
        overall=table,
        per_level={"L10": table, "unknown": table, "L2": rate_table(correct=0.25, timed=timed), "L1": table},
        stage_counts={"extract": 1, "parse": 1, "load": 2, "correctness": 1, "done": 3},
        failure_counts={"syntax_error": 2, "wrong_values": 1, "runtime_error": 2, "no_code": 3},
        speedups=(0.5, 1.1, 1.6, 2.5) if timed else (),
    )
    return dataclasses.replace(base, **changes)


def md_table(markdown: str, section: str) -> dict[str, list[str]]:
    """First column -> the other cells of the table under `## section` (header row under the key "#header")."""
    block = markdown.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in block.splitlines() if line.startswith("| ")]
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]
    return {"#header": cells[0][1:]} | {c[0]: c[1:] for c in cells[1:]}


# ---------------------------------------------------------------------------------------------------------------
# Markdown


def test_main_table_shows_the_summary_numbers():
    main = md_table(render_markdown(summary()), "Headline metrics")
    expected = {"valid": "75.0%", "compiled": "62.5%", "correct": "50.0%", "fast_0": "50.0%", "fast_1": "25.0%"}
    expected |= {"fast_1.2": "12.5%", "fast_2": "0.0%", "pass@1": "50.0%", "pass@5": "87.5%", "fast_1@1": "25.0%"}
    expected |= {"geomean speedup": "1.23×", "timed samples": "4", "tasks": "2", "samples": "8"}
    assert {k: main[k] for k in expected} == {k: [v] for k, v in expected.items()}


def test_metric_rows_keep_display_order():
    rows = list(md_table(render_markdown(summary()), "Headline metrics"))[1:]
    assert rows.index("valid") < rows.index("compiled") < rows.index("correct") < rows.index("fast_0")
    assert rows.index("fast_2") < rows.index("pass@1") < rows.index("pass@5") < rows.index("geomean speedup")


def test_untimed_metrics_render_na():
    md = render_markdown(summary(timed=False))
    main = md_table(md, "Headline metrics")
    assert main["fast_1"] == main["fast_1.2"] == main["geomean speedup"] == ["n/a (not timed)"]
    assert main["fast_0"] == ["50.0%"]  # fast_0 is the correct rate, timed or not
    level = md_table(md, "Per level")
    assert level["L1"][level["#header"].index("geomean")] == "n/a"
    assert "No timing measured" in md


def test_levels_sorted_numerically_with_unknown_last():
    level = md_table(render_markdown(summary()), "Per level")
    assert list(level)[1:] == ["L1", "L2", "L10", "unknown"]
    assert level["#header"] == ["tasks", "samples", "valid", "compiled", "correct", "fast_1", "pass@1", "geomean"]
    assert level["L2"][level["#header"].index("correct")] == "25.0%"


def test_funnel_reached_stopped_and_survival():
    funnel = md_table(render_markdown(summary()), "Funnel")
    assert funnel["#header"] == ["reached", "stopped here", "past stage"]
    assert funnel["extract"] == ["8", "1", "87.5%"]
    assert funnel["static"] == ["6", "0", "75.0%"]  # a stage nobody stopped at is still shown
    assert funnel["load"] == ["6", "2", "50.0%"]
    assert funnel["correctness"] == ["4", "1", "37.5%"]
    assert funnel["done"] == ["3", "—", "37.5%"]
    assert list(funnel)[1:] == ["extract", "parse", "static", "load", "provenance", "correctness", "timing", "done"]


def test_failure_kinds_sorted_by_count_then_name():
    failures = md_table(render_markdown(summary()), "Failure kinds")
    assert list(failures)[1:] == ["no_code", "runtime_error", "syntax_error", "wrong_values"]
    assert failures["no_code"] == ["3", "37.5%", "37.5%"]  # 3 of 8 samples, 3 of 8 failures


def test_speedup_distribution_statistics():
    speed = md_table(render_markdown(summary()), "Speedups")
    assert speed["min"] == ["0.50×"] and speed["max"] == ["2.50×"] and speed["median"] == ["1.35×"]
    assert speed["faster than baseline"] == ["75.0%"]


def test_two_runs_side_by_side_with_delta():
    md = render_markdown(summary("grpo", correct=0.5), summary("sft", correct=0.375))
    main = md_table(md, "Headline metrics")
    assert main["#header"] == ["grpo", "sft", "Δ"]
    assert main["correct"] == ["50.0%", "37.5%", "+12.5 pp"]
    assert main["valid"] == ["75.0%", "75.0%", "+0.0 pp"]
    level = md_table(md, "Per level")
    assert level["L1"][level["#header"].index("Δ correct")] == "+12.5 pp"
    assert "**run A:** grpo" in md and "**run B:** sft" in md and "A − B" in md


def test_two_runs_delta_is_na_when_one_side_is_untimed():
    main = md_table(render_markdown(summary("a"), summary("b", timed=False)), "Headline metrics")
    assert main["geomean speedup"] == ["1.23×", "n/a (not timed)", "n/a"]
    assert main["fast_1@1"] == ["25.0%", "—", "n/a"]  # b never computed it


def test_two_runs_with_the_same_name_are_told_apart():
    main = md_table(render_markdown(summary("run"), summary("run")), "Headline metrics")
    assert main["#header"] == ["run (A)", "run (B)", "Δ"]


def test_meta_listed_in_the_summary_section():
    meta = {"date": "today", "model": "m", "suite": "kb", "device": "h100", "config": "c.yaml"}
    md = render_markdown(summary(), meta=meta)
    section = md.split("## Summary", 1)[1].split("## Headline", 1)[0]
    keys = re.findall(r"\*\*(\w+):\*\*", section)
    assert keys == ["run", "baseline", "suite", "config", "device", "model", "date", "samples"]


def test_markdown_escapes_hostile_text():
    md = render_markdown(summary(run=HOSTILE + "|", failure_counts={HOSTILE: 1}), meta={"model": HOSTILE})
    assert "<script" not in md.lower()
    assert "&lt;script&gt;" in md
    failures = md_table(md, "Failure kinds")
    assert all(len(cells) == 3 for cells in failures.values())  # "|" did not split a cell


# ---------------------------------------------------------------------------------------------------------------
# HTML


class _Checker(html.parser.HTMLParser):
    """Collects start tags and URLs; fails on a closing tag that does not match the open one."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.urls: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [v or "" for k, v in attrs if k in ("src", "href")]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(document: str) -> _Checker:
    checker = _Checker()
    checker.feed(document)
    checker.close()
    assert checker.stack == [], f"unclosed tags: {checker.stack}"
    return checker


def test_html_parses_and_every_tag_closes():
    parsed = parse(render_html(summary(), summary("b"), meta={"suite": "kb"}))
    assert parsed.tags.count("section") == 6 and parsed.tags.count("table") == 5


def test_html_escapes_hostile_text():
    hostile = summary(run=HOSTILE, failure_counts={HOSTILE + " $x^2$ \\": 2})
    document = render_html(hostile, summary(run=HOSTILE), meta={"model": HOSTILE, HOSTILE: "v"})
    assert "<script" not in document.lower()
    assert "&lt;script&gt;" in document
    parsed = parse(document)
    assert "script" not in parsed.tags
    assert HOSTILE in "".join(parsed.text)  # shown to the reader as text


def test_html_without_matplotlib_has_tables_and_says_why(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)
    document = render_html(summary())
    assert "data:image/png" not in document
    assert "matplotlib is not installed" in document
    assert parse(document).tags.count("table") == 5


def test_package_imports_without_matplotlib():
    code = "import sys; sys.modules['matplotlib'] = None; import tritonrl.eval.report, tritonrl.eval.report_plots"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_html_is_self_contained_with_embedded_plots():
    pytest.importorskip("matplotlib")
    document = render_html(summary(), summary("b"))
    urls = parse(document).urls
    assert urls and all(u.startswith("data:image/png;base64,") for u in urls)
    assert len(urls) == 4  # levels, funnel, failures, speedups
    assert not re.search(r"https?://", document) and "url(" not in document
    for url in urls:
        assert base64.b64decode(url.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")


def test_plots_render_without_timing_or_failures():
    pytest.importorskip("matplotlib")
    bare = summary(timed=False, failure_counts={}, per_level={}, stage_counts={})
    document = render_html(bare, bare)
    assert document.count("data:image/png;base64,") == 4
    assert "No failures." in document and "No timing measured" in document


def test_speedup_histogram_with_one_untimed_run():
    pytest.importorskip("matplotlib")
    from tritonrl.eval.report_plots import speedup_histogram

    uri = speedup_histogram("t", [("a", [0.5, 2.0, 8.0]), ("b", [])])
    assert base64.b64decode(uri.split(",", 1)[1]).startswith(b"\x89PNG")


def test_write_report_writes_both_files(tmp_path):
    run_dir = tmp_path / "runs" / "r1"
    md_path, html_path = write_report(run_dir, summary(), meta={"suite": "kb"})
    assert (md_path.name, html_path.name) == ("report.md", "report.html")
    assert md_path.read_text(encoding="utf-8") == render_markdown(summary(), meta={"suite": "kb"})
    assert html_path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
