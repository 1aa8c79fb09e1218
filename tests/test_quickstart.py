"""The Python API, as a notebook user meets it: docs/quickstart.py run top to bottom on gpt2-tiny.

The quickstart is executed as it is written (4 problems instead of 20), then what it produced is
checked against the warehouse: the objects are the documented types, and every number it shows comes
from the views (run_stats, compare_runs and the chart read token_importance, never a recount).
"""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import altair as alt
import polars as pl
import pytest

pytestmark = pytest.mark.slow  # end to end: `python -m pytest -m "not slow"` skips it

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "docs" / "quickstart.py"


@pytest.fixture(scope="module")
def notebook(tmp_path_factory, monkeypatch_module):
    out = tmp_path_factory.mktemp("quickstart")
    monkeypatch_module.setenv("QUICKSTART_OUT", str(out))
    monkeypatch_module.setenv("QUICKSTART_PROBLEMS", "4")
    return runpy.run_path(str(QUICKSTART), run_name="__main__")


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_runs_are_handles_on_the_warehouse(notebook):
    from warehouse import Run, Warehouse

    wh, run, other = notebook["wh"], notebook["run"], notebook["other"]
    assert isinstance(wh, Warehouse) and isinstance(run, Run) and isinstance(other, Run)
    assert run.run_id != other.run_id
    assert wh.run("latest").run_id == other.run_id
    assert run.lineage["status"] == "complete"
    assert run.lineage["rows"]["results"] == 4 * 43  # baseline + 6 thoughts x 7 corruptions, per problem
    assert set(wh.runs()["run_id"]) == {run.run_id, other.run_id}
    assert run.problems().height == 4


def test_reads_are_polars_and_filtered_on_this_run(notebook):
    run, wh = notebook["run"], notebook["wh"]
    zero = run.results(method="zero")
    assert isinstance(zero, pl.DataFrame) and zero.height == 4 * 6
    assert set(zero["run_id"]) == {run.run_id}
    layer3 = run.attention(layer=3)
    assert layer3.height > 0 and set(layer3["layer"]) == {3}
    counts = wh.sql("SELECT count(*) AS n FROM results")
    assert counts["n"][0] == run.lineage["rows"]["results"] + notebook["other"].lineage["rows"]["results"]


def test_statistics_and_comparison_read_the_views(notebook):
    run, stats, comparison = notebook["run"], notebook["stats"], notebook["comparison"]
    view = notebook["importance"].sort("patch_layer", "thought")
    mine = stats.importance.sort("patch_layer", "thought")
    assert mine["n"].to_list() == view["n"].to_list()
    assert mine["failures"].to_list() == view["failures"].to_list()
    assert isinstance(comparison.by_thought, pl.DataFrame) and comparison.by_thought.height == 6
    assert comparison.problems["shared"] == 4
    assert view.height == 6  # one patch layer x T0..T5
    correct = run.results(method="baseline")["correct"].sum()
    assert view["n"].to_list() == [7 * correct] * 6  # baseline-correct problems x 7 corruptions per thought


def test_chart_and_report(notebook):
    chart = notebook["chart"]
    assert isinstance(chart, alt.TopLevelMixin)
    spec = chart.to_dict()
    assert json.dumps(spec)  # serialisable as Vega-Lite
    out = Path(notebook["OUT"]) / "charts"
    assert (out / "report.html").is_file()
    assert all(Path(p).is_file() for p in notebook["written"])


def test_the_engine_alone(notebook):
    out = notebook["out"]
    assert out.results.height == 4 * (1 + 6 * 6)  # baseline + 6 thoughts x (zero, 4 gauss, shuffle)
    assert set(out.results["method"]) == {"baseline", "zero", "gauss", "shuffle"}


def test_importing_the_engine_face_is_cheap():
    """`import engine` (and the other faces) loads no torch: it is imported when a name needs it."""
    code = "import sys, engine, warehouse, ingest, analysis; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
