"""The heads and edges families in `stats`, the charts, the report and `compare` (tests/families_data.py):
the rank correlation equals scipy's on the view's numbers, the hub tests equal statsmodels' McNemar, and
every family section appears only for a run that has the family."""

from __future__ import annotations

import json
import re

import families_data as fd
import numpy as np
import polars as pl
import pytest
from families_data import RUN_H, RUN_H2
from scipy.stats import binomtest, spearmanr
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from views_data import RUN_A, RUN_B, rows

from analysis import charts
from analysis.compare import compare_runs, format_comparison
from analysis.export import chart_spec, write_chart
from analysis.report import write_report
from analysis.stats import RunStats, format_stats, run_stats
from warehouse.store import open_warehouse

N_BOOT, N_PERM = 300, 200


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return fd.build(tmp_path_factory.mktemp("families") / "w")


@pytest.fixture(scope="module")
def wh(db):
    with open_warehouse(db, read_only=True) as store:
        yield store


@pytest.fixture(scope="module")
def stats(wh) -> dict[str, RunStats]:
    return {r: run_stats(wh.run(r), n_boot=N_BOOT, n_perm=N_PERM) for r in (RUN_H, RUN_A)}


def test_head_correlation_is_scipys_spearman_on_the_views_numbers(db, stats):
    table = {(r["method"], r["steps"]): r for r in stats[RUN_H].head_correlation.iter_rows(named=True)}
    assert set(table) == {("zero", "all"), ("mean", "all"), ("zero", "T2")}  # the clean control left out
    for (method, steps), row in table.items():
        view = rows(
            db,
            "SELECT failure_rate, mean_logp_drop, composite FROM head_effects WHERE run_id = ? "
            "AND method = ? AND steps = ? ORDER BY layer, head",
            [RUN_H, method, steps],
        )
        assert row["heads"] == len(view)
        if len(view) < 3:
            assert row["rho_failure"] is None and row["p_failure"] is None
            continue
        composite = [r["composite"] for r in view]
        for effect, rho, p in (
            ("failure_rate", "rho_failure", "p_failure"),
            ("mean_logp_drop", "rho_logp", "p_logp"),
        ):
            expected = spearmanr([r[effect] for r in view], composite)
            assert row[rho] == pytest.approx(expected.statistic, abs=1e-12)
            assert row[p] == pytest.approx(expected.pvalue, abs=1e-12)
            assert -1 <= row[f"{rho}_low"] <= row[f"{rho}_high"] <= 1
    # by hand: composite ranks L0H0 1, L1H0 2, L1H1 3, L0H1 4; zero fails 3, 2, 0, 1 of four: rho = 0.8
    zero = table["zero", "all"]
    assert zero["rho_failure"] == pytest.approx(0.8)
    assert -1 <= zero["rho_failure_low"] <= zero["rho_failure_high"] <= 1
    frame = stats[RUN_H].head_correlation
    ps = frame["p_failure"].drop_nulls().to_list()
    assert frame["p_failure_holm"].drop_nulls().to_list() == pytest.approx(
        multipletests(ps, method="holm")[1]
    )


def test_head_effects_carry_a_bootstrap_interval_beside_wilson(stats):
    frame = stats[RUN_H].head_effects
    assert frame.height == 10 and {"ci_low", "boot_low", "boot_high", "composite"} <= set(frame.columns)
    l0h0 = frame.filter((pl.col("head_label") == "L0H0") & (pl.col("method") == "zero")).row(0, named=True)
    assert l0h0["boot_low"] <= l0h0["failure_rate"] <= l0h0["boot_high"]
    never = frame.filter(pl.col("failures") == 0)
    assert never["boot_high"].to_list() == [0.0] * never.height  # no failure in any resample


def test_edge_tests_are_mcnemar_exact_on_paired_problems(db, stats):
    frame = stats[RUN_H].edge_tests
    assert frame.height == 10  # two layer scopes x five other thoughts
    per = rows(
        db,
        "SELECT layers, thought, problem_id, failed FROM edge_knockout_problems WHERE run_id = ? "
        "AND base_correct AND method = 'knockout'",
        [RUN_H],
    )
    failed = {(r["layers"], r["thought"], r["problem_id"]): r["failed"] for r in per}
    problems = sorted({r["problem_id"] for r in per})
    for row in frame.iter_rows(named=True):
        assert (row["hub_thought"], row["hub_name"]) == (4, "T4")
        h = np.array([failed[row["layers"], 4, p] for p in problems])
        o = np.array([failed[row["layers"], row["thought"], p] for p in problems])
        b, c = int((h & ~o).sum()), int((~h & o).sum())
        assert (row["hub_only"], row["other_only"], row["problems"]) == (b, c, 4)
        assert row["p_mcnemar"] == pytest.approx(mcnemar([[0, b], [c, 0]], exact=True).pvalue)
        assert row["difference"] == pytest.approx(h.mean() - o.mean())
        assert row["diff_low"] <= row["difference"] <= row["diff_high"]
    t0 = frame.filter((pl.col("layers") == "all") & (pl.col("thought") == 0)).row(0, named=True)
    assert (t0["hub_only"], t0["other_only"]) == (3, 0)  # T4 flips P1, P2, P3, P5; T0 only P1
    assert t0["p_mcnemar"] == pytest.approx(binomtest(3, 3).pvalue) == 0.25
    assert frame["p_holm"].to_list() == pytest.approx(
        multipletests(frame["p_mcnemar"].to_list(), method="holm")[1]
    )
    assert "edge_tests" in stats[RUN_H].settings["families"]


def test_findings_answer_both_questions_with_their_uncertainty(stats):
    found = stats[RUN_H].findings()
    heads = [s for s in found if s.startswith("Heads (zero, all six steps)")]
    assert len(heads) == 1 and "Spearman rho between failure rate and composite = 0.80" in heads[0]
    assert "95% bootstrap interval" in heads[0] and "Holm-adjusted p" in heads[0]
    assert any(s.startswith("Heads ablated together (zero, top-2: L0H0,L1H0") for s in found)
    edges = [s for s in found if s.startswith("Edges:")]
    assert len(edges) == 2  # every layer, and layer 1
    assert "descriptive hub T4 at every layer flips 100% of 4" in edges[0]
    # four problems cannot make any of ten Holm-adjusted McNemar tests significant
    assert "not shown to be causal" in edges[0] and "Holm-adjusted p = 1" in edges[0]
    assert not [s for s in stats[RUN_A].findings() if s.startswith(("Heads", "Edges"))]


def test_family_sections_only_for_a_run_with_the_family(stats):
    with_family, classic = format_stats(stats[RUN_H]), format_stats(stats[RUN_A])
    titles = (
        "Heads (ablated one at a time)",
        "Heads ablated together",
        "Do the heads that look like hubs matter?",
        "Edge knockout:",
        "Is the descriptive hub causal?",
    )
    for title in titles:
        assert title in with_family and title not in classic
    assert stats[RUN_H].families == ["heads", "edges"] and stats[RUN_A].families == []
    payload = stats[RUN_A].to_dict()  # a run without the family: its tables are left out of the JSON
    assert not {"head_effects", "head_topk", "head_correlation", "edges", "edge_tests"} & set(payload)
    assert len(stats[RUN_H].to_dict()["head_effects"]) == 10
    family = ("head_effects", "head_topk", "head_correlation", "edges", "edge_tests")
    json.dumps({name: stats[RUN_H].to_dict()[name] for name in family}, allow_nan=False)  # JSON-safe


def test_charts_put_the_rank_correlation_in_the_title_and_highlight_the_hub(wh, tmp_path):
    spec = chart_spec(charts.head_effects_vs_composite(wh.run(RUN_H)))
    subtitle = " ".join(spec["title"]["subtitle"])
    assert "zero, all steps: Spearman rho = 0.80 (p = 0.2, 4 heads)" in subtitle
    (data,) = spec["datasets"].values()
    assert {d["method"] for d in data} == {"zero", "mean"}  # the clean control is not plotted
    edge = chart_spec(charts.edge_knockout(wh.run(RUN_H)))
    (data,) = edge["datasets"].values()
    assert {d["thought_name"] for d in data if d["role"] == "descriptive hub"} == {"T4"}
    assert {d["scope"] for d in data} == {"every layer", "layer 1"}
    assert "descriptive hub (most attention from later thoughts, hub_scores): T4" in edge["title"]["subtitle"]
    for name, chart in (
        ("heads", charts.head_effects_vs_composite(wh.run(RUN_H), wh.run(RUN_H2))),
        ("edges", charts.edge_knockout(wh.run(RUN_H))),
    ):
        png, svg = write_chart(chart, tmp_path / name, ("png", "svg"))  # vl-convert
        assert png.stat().st_size > 2000 and "<svg" in svg.read_text()
    placeholder = chart_spec(charts.edge_knockout(wh.run(RUN_A)))
    assert "no edge-knockout rows" in json.dumps(placeholder)


def test_report_shows_the_family_sections_only_for_a_run_with_the_family(wh, stats, tmp_path):
    write_report(wh.run(RUN_H), tmp_path / "h", formats=("html",), stats=[stats[RUN_H]])
    page = (tmp_path / "h" / "report.html").read_text()
    for key in ("head_effects", "edge_knockout"):
        assert f'data-chart="{key}"' in page
    for key in ("head_effects", "head_correlation", "head_topk", "edges", "edge_tests"):
        assert f'<section id="table-{key}">' in page
    assert "Is the descriptive hub causal?" in page
    write_report(wh.run(RUN_A), tmp_path / "a", formats=("html",), stats=[stats[RUN_A]])
    classic = (tmp_path / "a" / "report.html").read_text()
    assert not re.search(r'data-chart="(head_effects|edge_knockout)"', classic)
    assert "table-edge_tests" not in classic and "table-head_effects" not in classic
    assert not (tmp_path / "a" / "edge_knockout.html").exists()


def test_compare_puts_the_families_side_by_side(wh):
    cmp = compare_runs(wh.run(RUN_H), wh.run(RUN_H2), n_boot=N_BOOT)
    fam = {r["condition"]: r for r in cmp.families.iter_rows(named=True)}
    assert sorted(fam) == ["L0H0 zero all", "L1H0 zero all", "knockout T4 all layers"]
    assert fam["L0H0 zero all"]["difference"] == pytest.approx(-2 / 3)
    for r in fam.values():
        assert r["diff_low"] <= r["difference"] <= r["diff_high"]
    text = format_comparison(cmp)
    assert "Intervention families (heads, edges)" in text and "knockout T4 all layers" in text
    assert len(cmp.to_dict()["families"]) == 3
    classic = compare_runs(wh.run(RUN_A), wh.run(RUN_B), n_boot=N_BOOT)
    assert classic.families.is_empty() and "Intervention families" not in format_comparison(classic)
