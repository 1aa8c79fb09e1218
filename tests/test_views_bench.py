"""`bench views`: a generated warehouse with real-shaped rows, and a timing for every view of queries/."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli import cli
from warehouse.bench_views import ROWS_PER_PROBLEM, query_views

pytestmark = pytest.mark.slow  # end to end: `python -m pytest -m "not slow"` skips it


def test_bench_views_times_every_view_on_a_small_warehouse(tmp_path):
    out = CliRunner().invoke(
        cli, ["bench", "views", "--rows", "300000", "--repeats", "1", "--json", "--db", str(tmp_path / "b")]
    )
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["attention_rows"] == 2 * ROWS_PER_PROBLEM and len(report["runs"]) == 2
    timed = {t["view"]: t for t in report["views"]}
    assert list(timed) == query_views()
    for name in (
        "token_importance",
        "flow_matrix",
        "head_metrics",
        "layer_correlation",
        "run_comparison",
        "v_rows",
    ):
        assert timed[name]["rows"] > 0 and timed[name]["median_s"] >= 0
    assert timed["v_rows"]["rows"] == 2 * ROWS_PER_PROBLEM
    assert timed["token_importance"]["rows"] == 2 * 6  # two runs x six thoughts
