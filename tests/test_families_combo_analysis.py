"""`stats`, `compare`, the charts and the report for the pairs / triplets and components families, on the
hand-made warehouse of tests/views_combo_data.py (run X and Y hold the families, run Z is classic only)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import views_combo_data as vd
from scipy.stats import binomtest
from statsmodels.stats.multitest import multipletests
from views_combo_data import RUN_X, RUN_Y, RUN_Z

from analysis import charts
from analysis.charts import FAMILY_CHARTS, charts_for
from analysis.combos import bootstrap_p, synergy_bootstrap
from analysis.compare import compare_runs, format_comparison
from analysis.export import chart_spec
from analysis.report import write_report
from analysis.stats import format_stats, run_stats
from warehouse.store import open_warehouse

N_BOOT = 400


@pytest.fixture(scope="module")
def wh(tmp_path_factory):
    return open_warehouse(vd.build(tmp_path_factory.mktemp("combo") / "w"), read_only=True)


@pytest.fixture(scope="module")
def stats_x(wh):
    return run_stats(wh.run(RUN_X), n_boot=N_BOOT, n_perm=50)


@pytest.fixture(scope="module")
def stats_z(wh):
    return run_stats(wh.run(RUN_Z), n_boot=N_BOOT, n_perm=50)


def test_interaction_intervals_contain_the_point_and_p_matches_the_interval(stats_x):
    frame = stats_x.interactions
    assert frame.height == 5
    for row in frame.iter_rows(named=True):
        for point, low, high in (
            ("joint_rate", "joint_boot_low", "joint_boot_high"),
            ("expected", "expected_low", "expected_high"),
            ("synergy", "synergy_low", "synergy_high"),
        ):
            assert row[low] - 1e-12 <= row[point] <= row[high] + 1e-12, (row["combination_name"], point)
        if row["synergy_low"] > 0 or row["synergy_high"] < 0:  # the 95% interval excludes 0
            assert row["p_boot"] <= 0.05 + 2 / N_BOOT
    zero01 = frame.filter((pl.col("condition") == "zero") & (pl.col("combination_name") == "T0+T1")).row(
        0, named=True
    )
    # joint is 5 of 5 in every resample; the singles vary: synergy's interval lies above 0
    assert (zero01["joint_boot_low"], zero01["joint_boot_high"]) == (1.0, 1.0)
    assert zero01["synergy"] == pytest.approx(0.36) and zero01["synergy_low"] > 0
    mean01 = frame.filter(pl.col("condition") == "mean").row(0, named=True)
    # the T1 mean never fails, so joint = T0 alone in every resample: synergy exactly 0, p = 1
    assert (mean01["synergy_low"], mean01["synergy_high"]) == pytest.approx((0.0, 0.0), abs=1e-12)
    assert mean01["p_boot"] == 1.0
    holm = multipletests(frame["p_boot"].to_numpy(), method="holm")[1]
    assert frame["p_holm"].to_numpy() == pytest.approx(holm)
    assert "Holm over the 5 synergy tests" in stats_x.settings["families"]["interactions"]["p_holm"]


def test_synergy_bootstrap_matches_direct_resampling():
    """The vectorized bootstrap against resampling the problems one sample at a time."""
    rng = np.random.default_rng(3)
    n = 12
    frame = pl.DataFrame(
        {
            "k": ["x"] * n,
            "problem_id": [f"p{i:02d}" for i in range(n)],
            "failed": rng.random(n) < 0.6,
            "failed_a": rng.random(n) < 0.3,
            "failed_b": rng.random(n) < 0.4,
            "failed_c": [None] * n,
        },
        schema_overrides={"failed_c": pl.Boolean},
    )
    got = synergy_bootstrap(frame, ["k"], 300, 7).row(0, named=True)
    from analysis.resampling import resample_counts

    counts = resample_counts(n, 300, np.random.default_rng(7))
    syn = []
    for c in counts:
        idx = np.repeat(np.arange(n), c.astype(int))
        j, a, b = (frame[col].to_numpy()[idx].mean() for col in ("failed", "failed_a", "failed_b"))
        syn.append(j - (1 - (1 - a) * (1 - b)))
    syn = np.array(syn)
    assert (got["synergy_low"], got["synergy_high"]) == pytest.approx(tuple(np.percentile(syn, [2.5, 97.5])))
    assert got["p_boot"] == pytest.approx(float(bootstrap_p(syn[:, None])[0]))


def test_bootstrap_p_inverts_the_interval():
    assert bootstrap_p(np.array([[0.1], [0.2], [0.3]]))[0] == pytest.approx(2 * 1 / 4)
    assert bootstrap_p(np.array([[0.0], [0.0]]))[0] == 1.0
    assert bootstrap_p(np.full((99, 1), 5.6e-17))[0] == 1.0  # 0 up to rounding is 0
    assert bootstrap_p(np.full((99, 1), 0.5))[0] == pytest.approx(2 / 100)
    assert np.isnan(bootstrap_p(np.full((5, 1), np.nan))[0])


def test_components_wilson_and_mcnemar(stats_x):
    comp = stats_x.components
    assert comp.height == 6 and set(comp["site"]) == {"attn", "mlp", "block"}
    for row in comp.iter_rows(named=True):
        ci = binomtest(row["failures"], row["n"]).proportion_ci(0.95, method="wilson")
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((ci.low, ci.high), abs=1e-9)
        assert row["ci_low"] <= row["failure_rate"] <= row["ci_high"]
    tests = stats_x.component_tests.sort("thought")
    # T0: 2 problems fail under attn only, none under mlp only: exact binomial p = 2 x 0.5^2 = 0.5
    assert tests["p_mcnemar"].to_list() == pytest.approx([0.5, 0.5])
    assert tests["p_mcnemar"].to_list() == pytest.approx(
        [binomtest(2, 2, 0.5).pvalue, binomtest(0, 2, 0.5).pvalue]
    )
    assert tests["p_holm"].to_list() == pytest.approx([1.0, 1.0])


def test_findings_name_the_top_synergistic_pair(stats_x):
    sentences = stats_x.findings()
    pairs = [s for s in sentences if s.startswith("Pairs:")]
    assert len(pairs) == 1 and "T0+T1" in pairs[0] and "+36.0 points" in pairs[0]
    assert "95% bootstrap interval" in pairs[0] and "Holm p" in pairs[0]
    assert any(s.startswith("Components:") and "McNemar" in s for s in sentences)


def test_family_sections_only_for_runs_with_the_family(stats_x, stats_z):
    text_x, text_z = format_stats(stats_x), format_stats(stats_z)
    for title in ("Interactions (pairs, triplets)", "Components: failure rate", "Attention vs MLP output"):
        assert title in text_x and title not in text_z
    assert {"interactions", "components", "component_tests"} <= set(stats_x.to_dict())
    assert not {"interactions", "components", "component_tests"} & set(stats_z.to_dict())
    assert stats_x.families == ["pairs", "triplets", "components"] and stats_z.families == []
    assert not [s for s in stats_z.findings() if s.startswith(("Pairs:", "Components:"))]
    assert "interactions" not in stats_z.settings["families"]


def test_family_charts_render(wh):
    import vl_convert as vlc

    for chart in (charts.synergy_matrix, charts.component_sites):
        for vs in (None, wh.run(RUN_Y)):
            spec = chart_spec(chart(wh.run(RUN_X), vs))
            svg = vlc.vegalite_to_svg(spec)
            assert "<svg" in svg and "rect" in svg
        placeholder = chart_spec(chart(wh.run(RUN_Z)))
        assert "no " in str(placeholder["datasets"])
    spec = chart_spec(charts.synergy_matrix(wh.run(RUN_X)))
    rows = next(iter(spec["datasets"].values()))
    cells = {(r["row_name"], r["column_name"], r["where"]): r["synergy"] for r in rows}
    assert cells["T0", "T1", "patch L1 · zero"] == cells["T1", "T0", "patch L1 · zero"] == pytest.approx(0.36)
    assert len(cells) == 2 * 4  # four pairs, each in both cells


def test_charts_for_families():
    assert [i.name for i in charts_for(False, {"pairs"}) if i in FAMILY_CHARTS] == ["synergy_matrix"]
    assert [i.name for i in charts_for(False, {"components", "triplets"}) if i in FAMILY_CHARTS] == [
        "component_sites"
    ]
    assert not [i for i in charts_for(True, {"baseline", "thoughts"}) if i in FAMILY_CHARTS]


def test_report_has_family_sections_only_with_the_family(wh, stats_x, stats_z, tmp_path):
    x = write_report(wh.run(RUN_X), tmp_path / "x", formats=("html",), stats=[stats_x])
    page = x[-1].read_text()
    for marker in (
        'data-chart="synergy_matrix"',
        'data-chart="component_sites"',
        'id="table-interactions"',
        'id="table-components"',
        'id="table-component_tests"',
        "Pairs: ",
        "T0+T1 at patch layer 1 (zero)",
    ):
        assert marker in page, marker
    z = write_report(wh.run(RUN_Z), tmp_path / "z", formats=("html",), stats=[stats_z])
    page = z[-1].read_text()
    for marker in ("synergy_matrix", "component_sites", "table-interactions", "table-component", "Pairs:"):
        assert marker not in page, marker


def test_compare_families(wh):
    cmp = compare_runs(wh.run(RUN_X), wh.run(RUN_Y), n_boot=N_BOOT)
    combo = cmp.by_combination.filter(
        (pl.col("condition") == "zero") & (pl.col("combination_name") == "T0+T1")
    ).row(0, named=True)
    assert combo["synergy_difference"] == pytest.approx(-0.6)
    assert combo["diff_low"] <= -0.6 <= combo["diff_high"] and combo["diff_high"] < 0
    same = cmp.by_combination.filter(pl.col("combination_name") == "T1+T2").row(0, named=True)
    # identical in both runs, resampled alike
    assert (same["diff_low"], same["diff_high"]) == pytest.approx((0.0, 0.0), abs=1e-12)
    mlp = cmp.by_component.filter((pl.col("thought") == 0) & (pl.col("site") == "mlp")).row(0, named=True)
    assert mlp["difference"] == pytest.approx(0.4) and mlp["diff_low"] <= 0.4 <= mlp["diff_high"]
    text = format_comparison(cmp)
    assert "Pairs and triplets of thoughts" in text and "Components: failure rate" in text
    assert {"by_combination", "by_component"} <= set(cmp.to_dict())
    classic = compare_runs(wh.run(RUN_X), wh.run(RUN_Z), n_boot=50)
    assert classic.by_combination.is_empty() and classic.by_component.is_empty()
    assert "Pairs and triplets" not in format_comparison(classic)
    assert "by_combination" not in classic.to_dict()
