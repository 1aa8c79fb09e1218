"""report.html in headless Chromium with networking off: every chart renders marks, none fails; screenshots.

The warehouse holds two short real runs of the bundled gpt2-tiny (patch layers 3 and 1), so the page
shows every chart, the comparison ones included, and the readout charts of what the runs hold (decoding,
both runs; question-token attention, run A: `--attention tokens`). Screenshots go to $CODI_SCREENSHOTS
when set (else the test's temporary directory).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from browser import dump_dom, find_chromium, screenshot
from png_pixels import png_size, read_png

from analysis.charts import CHARTS, ChartInfo, charts_for, run_readouts
from analysis.frames import reading
from analysis.report import write_report
from engine.runs.config import RunConfig
from engine.runs.local import execute_run
from warehouse.store import open_warehouse

CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None, reason="no chromium on PATH (Debian package `chromium`; .ci/run installs it)"
    ),
]
WIDTH = 1400


def small_run(db: Path, **kw) -> str:
    kw.setdefault("attention", "baseline")
    request = RunConfig(problems=6, methods="zero,gauss,random", sigmas="1.0", batch_size=6, **kw)
    return execute_run(request, db, progress=False)["run_id"]


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    db = root / "w"
    run_a, run_b = small_run(db, attention="tokens"), small_run(db, layer=1)
    with open_warehouse(db, read_only=True) as wh:
        with reading(wh.run(run_a), wh.run(run_b)) as con:
            assert run_readouts(con, [run_a, run_b]) == {"decoding", "token_attention"}
        written = write_report(wh.run(run_a), root / "charts", vs=wh.run(run_b), formats=("html",))
    assert written[-1] == root / "charts" / "report.html" and len(written) == len(expected_charts()) + 1
    return root / "charts"


def expected_charts() -> list[ChartInfo]:
    """Every chart of a pair, and the readouts' of decoding and question-token attention."""
    return charts_for(True, (), {"decoding", "token_attention"})


@pytest.fixture(scope="module")
def dom(out) -> str:
    return dump_dom(CHROMIUM, out / "report.html")


def figures(dom: str) -> dict[str, str]:
    """Each chart figure's rendered HTML, by chart name."""
    found = re.findall(r'(<figure class="chart" data-chart="(\w+)".*?</figure>)', dom, flags=re.DOTALL)
    return {name: html for html, name in found}


def test_every_chart_renders_marks_offline(dom):
    body = re.search(r'<body data-charts-done="(\d+)" data-charts-failed="(\d+)"', dom)
    assert body, "the page's render script never finished"
    expected = expected_charts()
    assert {info.name for info in CHARTS} < {info.name for info in expected}
    assert body.groups() == (str(len(expected)), "0")
    rendered = figures(dom)
    assert list(rendered) == [info.name for info in expected]
    for name, html in rendered.items():
        assert 'data-status="rendered"' in html, name
        assert "failed to render" not in html and "vega-embed-error" not in html, name
        svg = html[html.index("<svg") :]
        marks = re.findall(r'<g class="mark-(\w+) role-mark', svg)
        drawn = len(re.findall(r"<(path|line|text)\b", svg))
        assert marks and drawn > 20, f"{name}: marks {marks[:5]}, {drawn} drawn elements"
    heads = rendered["top_head_matrices"]
    for label in ("BOT", "EOT", "T0", "T5"):  # the heatmaps name their positions
        assert f">{label}</text>" in heads


def test_a_standalone_chart_page_renders_offline(out):
    dom = dump_dom(CHROMIUM, out / "importance_by_thought.html")
    assert '<body data-status="rendered">' in dom
    assert '<g class="mark-rect role-mark' in dom[dom.index('<div id="vis"') :]


def test_screenshots_of_the_report(out, dom, tmp_path):
    shots = Path(os.environ.get("CODI_SCREENSHOTS") or tmp_path)
    height = int(re.search(r'data-height="(\d+)"', dom).group(1))
    full = screenshot(CHROMIUM, out / "report.html", shots / "report_full.png", WIDTH, height)
    assert png_size(full) == (WIDTH, height) and height > 3000
    pixels = read_png(full, max_rows=1600)[..., :3].reshape(-1, 3)  # the header, the runs table, a chart
    assert (pixels.min(axis=1) < 200).mean() > 0.02  # text, tables and marks: not a blank page
    assert len(np.unique(pixels, axis=0)) > 100
