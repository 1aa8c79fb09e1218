"""`stats`: p-values as scipy.stats.pearsonr computes them, problem bootstrap intervals, the
permutation test."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import polars as pl
import pytest
import views_data as vd
from click.testing import CliRunner
from scipy.stats import friedmanchisquare, pearsonr, spearmanr
from statsmodels.stats.multitest import multipletests
from views_data import RUN_A, rows

from analysis.findings import findings_rq
from analysis.frames import problem_matrix, rate_intervals
from analysis.hubs import findings_hubs
from analysis.inference import kendall_w
from analysis.resampling import bootstrap_r, pearson_p, resample_counts, within_permutation
from analysis.stats import ADJUSTMENTS, RunStats, format_stats, run_stats
from cli import cli
from warehouse.store import open_warehouse


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return vd.build(tmp_path_factory.mktemp("stats") / "w")


@pytest.fixture(scope="module")
def stats(db):
    with open_warehouse(db, read_only=True) as wh:
        return run_stats(wh.run(RUN_A), n_boot=500, n_perm=500)


@pytest.fixture(scope="module")
def report(stats):
    return stats.to_dict()


def test_run_stats_returns_frames_and_formats_them_apart(stats, report):
    assert isinstance(stats, RunStats) and stats.run_id == RUN_A
    for name, frame in stats.tables().items():
        assert isinstance(frame, pl.DataFrame), name
        assert report[name] == [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in frame.to_dicts()
        ], name  # --json is the frames' rows
    assert stats.header["run_id"].to_list() == [RUN_A] and report["run"]["model_name"] == "gpt2-tiny"
    text = format_stats(stats)
    assert text.startswith(f"run {RUN_A}  model gpt2-tiny") and "Importance by thought" in text


def test_p_values_agree_with_scipy_pearsonr(db, report):
    for row in report["correlation"]:
        data = rows(
            db,
            "SELECT attention, importance FROM int_attention_importance WHERE run_id = ? AND layer = ?",
            [RUN_A, row["layer"]],
        )
        want = pearsonr([d["attention"] for d in data], [d["importance"] for d in data])
        assert row["r"] == pytest.approx(want.statistic, rel=1e-9)
        assert row["p"] == pytest.approx(want.pvalue, rel=1e-6)
    for row in report["correlation_by_thought"]:
        data = rows(
            db,
            "SELECT attention, importance FROM int_attention_importance WHERE run_id = ? AND layer = ? "
            "AND thought = ?",
            [RUN_A, row["layer"], row["thought"]],
        )
        if row["r"] is None:  # importance constant over problems: no correlation, no p
            assert row["p"] is None and len({d["importance"] for d in data}) == 1
            continue
        want = pearsonr([d["attention"] for d in data], [d["importance"] for d in data])
        assert row["p"] == pytest.approx(want.pvalue, rel=1e-6, abs=1e-12)
    for row in report["strata"]:
        data = rows(
            db,
            "SELECT attention, importance FROM int_attention_importance WHERE run_id = ? AND layer = ? "
            "AND stratum = ?",
            [RUN_A, row["layer"], row["stratum"]],
        )
        assert row["p"] == pytest.approx(
            pearsonr([d["attention"] for d in data], [d["importance"] for d in data]).pvalue, rel=1e-6
        )


def test_pearson_p_on_random_data_and_edges():
    rng = np.random.default_rng(3)
    for n in (3, 10, 200):
        x, y = rng.normal(size=n), rng.normal(size=n)
        y = y + 0.3 * x
        want = pearsonr(x, y)
        assert pearson_p(float(want.statistic), n) == pytest.approx(want.pvalue, rel=1e-9)
    assert pearson_p(0.5, 2) is None and pearson_p(None, 10) is None and pearson_p(1.0, 10) == 0.0


def test_within_permutation_test():
    rng = np.random.default_rng(0)
    problems, thoughts = 40, 6
    importance = rng.random((problems, thoughts))
    same = np.tile(rng.random(thoughts), (problems, 1))  # every problem attends alike
    r, p, n = within_permutation(same, importance, 300, np.random.default_rng(1))
    assert p == 1.0 and n == problems  # shuffling identical vectors changes nothing
    linked = importance + 0.2 * rng.random((problems, thoughts)) + 5 * rng.random((problems, 1))
    r, p, n = within_permutation(linked, importance, 300, np.random.default_rng(1))
    a = (linked - linked.mean(1, keepdims=True)).ravel()
    b = (importance - importance.mean(1, keepdims=True)).ravel()
    assert r == pytest.approx(np.corrcoef(a, b)[0, 1], rel=1e-12)
    assert p == pytest.approx(1 / 301)  # no shuffle comes close
    unrelated = rng.random((problems, thoughts))
    assert within_permutation(unrelated, importance, 300, np.random.default_rng(1))[1] > 0.01


def test_within_r_and_its_permutation_match_the_view(db, report):
    for row in report["correlation"]:
        frame = pl.DataFrame(
            rows(
                db,
                "SELECT problem_id, thought, attention, importance FROM int_attention_importance "
                "WHERE run_id = ? AND layer = ?",
                [RUN_A, row["layer"]],
            )
        )
        r, p, n = within_permutation(
            problem_matrix(frame, "attention"),
            problem_matrix(frame, "importance"),
            500,
            np.random.default_rng([0, 1]),
        )
        assert r == pytest.approx(row["r_within"], rel=1e-6)  # the SQL centring and numpy's agree
        assert (p, n) == (row["p_within_perm"], row["perm_problems"]) == (p, 3)
        assert row["r_low"] <= row["r"] + 1e-9 and row["r"] - 1e-9 <= row["r_high"]
        assert row["r_within_low"] - 1e-9 <= row["r_within"] <= row["r_within_high"] + 1e-9


def test_bootstrap_resamples_problems():
    same = pl.DataFrame(
        {
            "thought": [0, 0, 0, 1, 1, 1],
            "problem_id": list("abcabc"),
            "failures": [1, 1, 1, 0, 2, 0],
            "trials": [2, 2, 2, 2, 2, 2],
        }
    )
    got = {r["thought"]: r for r in rate_intervals(same, ["thought"], 400, seed=0).to_dicts()}
    assert (got[0]["boot_low"], got[0]["boot_high"]) == (0.5, 0.5)  # every problem fails half: no spread
    assert got[1]["boot_low"] == 0.0 and got[1]["boot_high"] == 1.0  # one problem carries all failures
    again = rate_intervals(same, ["thought"], 400, seed=0)
    assert again.equals(rate_intervals(same, ["thought"], 400, seed=0))
    a = np.tile([1.0, 2.0, 3.0], (5, 1))
    r = bootstrap_r(a, 2 * a, resample_counts(5, 50, np.random.default_rng(0)))
    assert np.allclose(r, 1.0)


def test_importance_intervals_in_report(report):
    t0 = report["importance"][0]
    assert (t0["thought_name"], t0["failures"], t0["n"]) == ("T0", 4, 6)
    # per problem T0 fails 2/2 (P1), 1/2 (P2), 1/2 (P3): resampled rates lie in [1/2, 1]
    assert 0.5 <= t0["boot_low"] <= t0["failure_rate"] <= t0["boot_high"] <= 1.0
    zero = next(m for m in report["methods"] if m["condition"] == "zero")
    assert zero["boot_low"] <= 1 / 3 <= zero["boot_high"]
    assert [h["position_name"] for h in report["hubs"]] == ["T0", "T1", "T2", "T3", "T4", "T5"]
    assert report["top_heads"][0]["rank"] == 1 and len(report["flow"]) == 5 + 6 + 3


def test_stats_cli(db):
    out = CliRunner().invoke(
        cli, ["stats", "--run", "run-a", "--boot", "200", "--perm", "200", "--db", db, "--json"]
    )
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout)
    assert payload["run"]["run_id"] == RUN_A and payload["settings"]["n_boot"] == 200
    assert {"importance", "methods", "correlation", "strata", "hubs", "flow", "top_heads"} <= set(payload)
    text = CliRunner().invoke(cli, ["stats", "--run", "run-c", "--boot", "200", "--perm", "200", "--db", db])
    assert text.exit_code == 0 and "Importance by thought" in text.stdout and "legacy run" in text.stdout
    assert "no rows: the run has no baseline attention" in text.stdout
    for table in ("method_agreement", "method_pairs", "strata_test"):
        assert payload[table], table
    assert {"p_holm", "p_within_holm"} <= set(payload["correlation"][0])
    assert {"p_bh", "r_low", "r_high"} <= set(payload["strata"][0]) and "p_bh" in payload[
        "correlation_by_thought"
    ][0]
    assert payload["settings"]["families"]["method_pairs"]["p_holm"].startswith("Holm over the ")
    rq = [f[:3] for f in payload["findings"]]
    assert rq[:4] == ["RQ1", "RQ2", "RQ3", "RQ3"]  # then the hub and head sentences (analysis.hubs)
    assert payload["findings"][4] == payload["hub"]["finding"] + "."
    bad = CliRunner().invoke(cli, ["stats", "--run", "nope", "--db", db])
    assert bad.exit_code != 0 and "no run matches" in bad.output and "Traceback" not in bad.output


def test_adjusted_p_values_equal_multipletests_on_the_raw_ones(report):
    families = report["settings"]["families"]
    checked = 0
    for table, specs in ADJUSTMENTS.items():
        for raw, method, column, what in specs:
            rows_ = report.get(table, [])  # an intervention family's table is absent for runs without it
            family = [r[raw] for r in rows_ if r.get(raw) is not None]
            if not family:
                continue
            want = iter(multipletests(family, method=method)[1])
            for row in rows_:
                if row.get(raw) is None:
                    assert row[column] is None, (table, column)
                else:
                    assert row[column] == pytest.approx(next(want), rel=1e-12), (table, column)
            assert what in families[table][column], (table, column)
            assert (f" {len(family)} " in families[table][column]) == (len(family) > 1)
            checked += 1
    assert checked >= 5
    by_thought = [r["p"] for r in report["correlation_by_thought"] if r["p"] is not None]
    assert (
        len(by_thought) == 6
        and report["correlation_by_thought"][0]["p_bh"] > report["correlation_by_thought"][0]["p"]
    )


def test_method_agreement_matches_the_views_profiles(db, report):
    profile = pl.DataFrame(
        rows(db, "SELECT method, thought, failure_rate FROM method_thought_profile WHERE run_id = ?", [RUN_A])
    )
    zero = profile.filter(pl.col("method") == "zero").sort("thought")["failure_rate"].to_numpy()
    gauss = profile.filter(pl.col("method") == "gauss").sort("thought")["failure_rate"].to_numpy()
    (row,) = report["method_agreement"]
    assert (row["methods"], row["thoughts"], row["n_methods"]) == ("zero, gauss", 6, 2)
    assert row["w"] == pytest.approx(kendall_w(np.array([zero, gauss])), rel=1e-12)
    friedman = friedmanchisquare(*np.array([zero, gauss]).T).statistic  # = m (n - 1) W, ties corrected
    assert row["w"] == pytest.approx(friedman / (2 * 5), rel=1e-12)
    (pair,) = report["method_pairs"]
    assert (pair["method_a"], pair["method_b"]) == ("zero", "gauss")
    assert pair["rho"] == pytest.approx(spearmanr(zero, gauss).statistic, rel=1e-12)
    assert 0 < pair["p_exact"] <= 1 and pair["p_holm"] == pair["p_exact"]  # a family of one pair
    assert 1 / 501 <= row["p_perm"] <= 1


def test_strata_in_order_with_intervals_and_the_strata_test(report):
    strata = report["strata"]
    assert [r["stratum"] for r in strata] == ["<=2", "<=2", "3", "3", "5+", "5+"]  # not string order
    for row in strata:  # one problem per stratum here: every resample is that problem
        assert row["r_low"] == pytest.approx(row["r"]) == pytest.approx(row["r_high"])
    assert [(t["layer"], t["strata"], t["problems"]) for t in report["strata_test"]] == [(0, 3, 3), (1, 3, 3)]
    assert all(t["p_perm"] == 1.0 for t in report["strata_test"])  # one problem each: relabelling is all


def test_findings_state_the_answers_with_uncertainty(stats):
    found = findings_rq(stats)
    assert found == stats.to_dict()["findings"][: len(found)] and all(isinstance(f, str) for f in found)
    assert stats.to_dict()["findings"][len(found) :] == findings_hubs(stats)  # then the hub and the heads
    assert found[0].startswith("RQ1: no thought clearly stands out: T0") and "50.0% to 100.0%" in found[0]
    assert found[1].startswith("RQ2: the corruption methods' thought rankings do not agree")
    assert "Kendall's W = 0.83" in found[1]
    assert found[2].startswith("RQ3: the EOT position attends more") and "at layer 0" in found[2]
    assert "do not detectably differ" in found[3]
    apart = stats.importance.with_columns(
        boot_low=pl.when(pl.col("thought") == 0).then(0.6).otherwise(pl.col("boot_low")),
    )
    clear = findings_rq(dataclasses.replace(stats, importance=apart))
    assert clear[0].startswith("RQ1: T0 fails most often") and "stands out" in clear[0]
    text = format_stats(stats)
    assert "\nFindings\n- RQ1: " in text and "adjusted: p_holm = Holm over the 2 pooled-r tests" in text
