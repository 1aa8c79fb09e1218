"""Legacy runs in the views (SPEC 10): each view says what a legacy run's numbers mean, or that it has none.

The warehouse holds the hand-built runs of tests/views_data.py (codi runs A and B, a small legacy run C)
plus four real legacy imports (tests/test_ingest_legacy.py's files): ccta and token-ablation results,
head-mean EOT attention (head -1) and 6x6 patterns. Views that stay meaningful keep legacy rows, name
positions 'token k' and carry a note; position-based attention views show a legacy run as one row with
NULL metrics and a 'not meaningful for legacy runs' note. The codi runs' rows are those of a warehouse
without the legacy imports.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest
import views_data as vd
from test_ingest_legacy import file_failure_rates, write_legacy_files
from views_data import RUN_A, RUN_B, RUN_C, rows

import warehouse as wh
from analysis.compare import compare_runs as compare_handles
from analysis.compare import format_comparison
from analysis.stats import format_stats
from analysis.stats import run_stats as stats_of_handle
from ingest.legacy import ingest_legacy

NOT_MEANINGFUL = "not meaningful for legacy runs: "
# views that depend on our positions: a legacy run with attention is one row, metrics NULL
POSITION_VIEWS = [
    "flow_matrix",
    "sequential_flow",
    "self_attention",
    "skip_connections",
    "hub_scores",
    "hub_scores_by_layer",
    "head_metrics",
    "attention_importance",
    "layer_correlation",
]
ANALYSIS_VIEWS = POSITION_VIEWS + [
    "token_importance",
    "method_comparison",
    "importance_matrix",
    "difficulty_strata",
    "model_comparison",
    "v_rows",
]
KEYS = {"run_id", "convention", "note"}


def run_stats(db, run: str, **kw) -> tuple[dict, str]:
    """`stats` of a run of the warehouse at `db`: (its --json payload, its text)."""
    with wh.open_warehouse(db, read_only=True) as store:
        stats = stats_of_handle(store.run(run), **kw)
    return stats.to_dict(), format_stats(stats)


def compare_runs(db, a: str, b: str, **kw) -> tuple[dict, str]:
    """`compare` of two runs of the warehouse at `db`: (its --json payload, its text)."""
    with wh.open_warehouse(db, read_only=True) as store:
        comparison = compare_handles(store.run(a), store.run(b), **kw)
    return comparison.to_dict(), format_comparison(comparison)


@pytest.fixture(scope="module")
def legacy_files(tmp_path_factory):
    return write_legacy_files(tmp_path_factory.mktemp("legacy_files"))


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return vd.build(tmp_path_factory.mktemp("plain") / "w")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, legacy_files):
    """views_data's runs plus one legacy import of each format with rows: (db, {format: run id})."""
    db = vd.build(tmp_path_factory.mktemp("mixed") / "w")
    files = [legacy_files[k] for k in ("ccta", "ablation", "weights", "npy")]
    report = ingest_legacy(db, files, dataset=legacy_files["dataset"])
    return db, {r["format"]: r["run_id"] for r in report["runs"]}


def runs_of(mixed, *formats):
    return [mixed[1][f] for f in formats]


def comparable(records: list[dict]) -> list[tuple]:
    """Rows as sorted tuples, floats rounded (the same sums may differ in the last bits), timestamps left
    out."""

    def value(v):
        return round(v, 9) if isinstance(v, float) and math.isfinite(v) else v

    return sorted(
        (tuple((k, value(v)) for k, v in sorted(r.items()) if k != "started_at") for r in records), key=repr
    )


def test_codi_runs_are_unaffected_by_legacy_runs_in_the_same_warehouse(plain, mixed):
    db, _ = mixed
    for view in ANALYSIS_VIEWS + [
        "int_flow",
        "int_head_incoming",
        "int_attention_importance",
        "int_problem_importance",
    ]:
        sql = f"SELECT * FROM {view} WHERE run_id IN (?, ?)"
        before, after = rows(plain, sql, [RUN_A, RUN_B]), rows(db, sql, [RUN_A, RUN_B])
        assert before and comparable(before) == comparable(after), view
        if view in ANALYSIS_VIEWS:
            assert {r["note"] for r in after} == {None} and {r["convention"] for r in after} == {"codi"}, view
    sql = "SELECT * FROM run_comparison WHERE run_a IN (?, ?) AND run_b IN (?, ?)"
    assert comparable(rows(plain, sql, [RUN_A, RUN_B] * 2)) == comparable(rows(db, sql, [RUN_A, RUN_B] * 2))
    assert {r["note"] for r in rows(db, sql, [RUN_A, RUN_B] * 2)} == {None}


def test_outcome_views_keep_legacy_rows_named_token_k_with_a_note(mixed, legacy_files):
    db, _ = mixed
    ccta, ablation = runs_of(mixed, "ccta_full_results", "token_ablation_results")
    got = {r["thought"]: r for r in rows(db, "SELECT * FROM token_importance WHERE run_id = ?", [ccta])}
    want = file_failure_rates(json.loads(legacy_files["ccta"].read_text()))
    assert sorted(got) == list(range(6))
    for k, row in got.items():
        assert (row["convention"], row["thought_name"]) == ("legacy", f"token {k}")  # never T0..T5
        assert row["note"].startswith("legacy run: ") and "not Tk" in row["note"]
        assert row["failure_rate"] == pytest.approx(want[k])  # the numbers stay: they are their own tokens'
    codi = rows(
        db, "SELECT thought_name, note FROM token_importance WHERE run_id = ? ORDER BY thought", [RUN_A]
    )
    assert [(r["thought_name"], r["note"]) for r in codi] == [(f"T{k}", None) for k in range(6)]
    cells = rows(
        db, "SELECT DISTINCT thought, thought_name, note FROM importance_matrix WHERE run_id = ?", [ablation]
    )
    assert sorted((r["thought"], r["thought_name"]) for r in cells) == [(k, f"token {k}") for k in range(6)]
    assert {r["note"] for r in cells} == {got[0]["note"]}
    methods = rows(db, "SELECT convention, note FROM method_comparison WHERE run_id = ?", [ccta])
    assert len(methods) == 7 and {(r["convention"], r["note"]) for r in methods} == {
        ("legacy", got[0]["note"])
    }
    models = {
        r["run_id"]: r
        for r in rows(db, "SELECT run_id, convention, note, failure_rate_t0 FROM model_comparison")
    }
    for run_id, row in models.items():
        assert (row["note"] is None) == (row["convention"] == "codi") == (run_id in (RUN_A, RUN_B)), run_id
    assert models[ccta]["failure_rate_t0"] == pytest.approx(want[0])  # their token 0, as the note says


def test_run_comparison_says_what_thought_k_means(mixed):
    db, _ = mixed
    ccta, ablation = runs_of(mixed, "ccta_full_results", "token_ablation_results")
    sql = "SELECT DISTINCT same_convention, note FROM run_comparison WHERE run_a = ? AND run_b = ?"
    (mixed_pair,) = rows(db, sql, [RUN_A, RUN_C])  # the hand-built legacy run shares P1 with run A
    assert mixed_pair["same_convention"] is False and mixed_pair["note"].startswith(
        "different position conventions"
    )
    (both,) = rows(db, sql, [ccta, ablation])  # imports of the same dataset share problems
    assert both["same_convention"] is True and both["note"].startswith("both legacy runs")
    assert rows(db, sql, [RUN_A, RUN_B]) == [{"same_convention": True, "note": None}]


def test_position_views_show_a_legacy_run_as_one_row_with_a_note(mixed):
    db, _ = mixed
    weights, patterns, ccta = runs_of(
        mixed, "attention_weights", "attention_patterns_raw", "ccta_full_results"
    )
    # the 6x6 patterns hold numbers where sequential_flow would look (src = dst - 1: their self-attention)
    assert (
        rows(db, "SELECT count(*) AS n FROM attention WHERE run_id = ? AND src = dst - 1", [patterns])[0]["n"]
        > 0
    )
    for view in POSITION_VIEWS:
        got = rows(db, f"SELECT * FROM {view} WHERE convention = 'legacy'")
        assert sorted(r["run_id"] for r in got) == sorted([weights, patterns]), view  # ccta has no attention
        for row in got:
            assert row["note"].startswith(NOT_MEANINGFUL) and len(row["note"]) > len(NOT_MEANINGFUL), view
            assert {k: v for k, v in row.items() if k not in KEYS and v is not None} == {}, view
        assert (
            rows(db, f"SELECT count(*) AS n FROM {view} WHERE note IS NULL AND run_id = ?", [RUN_A])[0]["n"]
            > 0
        )
        assert not rows(db, f"SELECT * FROM {view} WHERE run_id = ?", [ccta]), view
        assert not rows(db, f"SELECT * FROM {view} WHERE run_id = ?", [RUN_C]), view  # no attention: no row
    for view in ("int_baseline_attention", "int_flow", "int_head_incoming", "int_attention_importance"):
        assert not rows(db, f"SELECT * FROM {view} WHERE run_id IN (?, ?)", [weights, patterns]), view
    assert {r["run_id"] for r in rows(db, "SELECT * FROM int_legacy_attention")} == {weights, patterns}


def test_head_mean_rows_are_never_a_head(mixed, tmp_path):
    db, _ = mixed
    (weights,) = runs_of(mixed, "attention_weights")
    assert rows(db, "SELECT DISTINCT head FROM v_rows WHERE run_id = ?", [weights]) == [{"head": -1}]
    for view in ("flow_matrix", "sequential_flow", "self_attention", "skip_connections", "head_metrics"):
        assert not rows(db, f"SELECT * FROM {view} WHERE head < 0"), view
    # a codi run that also stored a head-mean row: per-head views and head means read the real heads only
    store = wh.open_warehouse(tmp_path / "w", durable=False)
    run = store.begin_run({"hand": "head mean"}, run_id="codi-mean", n_layers=1, n_heads=1, patch_layers=[0])
    results = vd.results_rows(["P1"], ["zero"], {"P1": True}, {"P1": {(0, "zero")}}, {}, vd.KL_B, 0)
    attention = pa.table(
        {
            "problem_id": [vd.PID["P1"]] * 2,
            "condition_id": [0, 0],
            "layer": [0, 0],
            "head": [0, -1],
            "dst": [6, 6],
            "src": [0, 0],
            "weight": [0.25, 0.75],
        }
    )
    store.append_problems(run, vd.problem_rows(["P1"]), results, attention)
    assert [r["head"] for r in rows(store.path, "SELECT head FROM flow_matrix")] == [0]
    assert rows(store.path, "SELECT mean_attention FROM attention_importance WHERE thought = 0") == [
        {"mean_attention": 0.25}
    ]


def test_difficulty_strata_and_v_rows_carry_the_convention(mixed, legacy_files):
    db, _ = mixed
    ccta, weights = runs_of(mixed, "ccta_full_results", "attention_weights")
    strata = {r["stratum"]: r for r in rows(db, "SELECT * FROM difficulty_strata WHERE run_id = ?", [ccta])}
    assert sorted(strata) == [
        "3",
        "4",
        "<=2",
    ]  # train_1 (2 steps), test_2 (3), train_4 (4); test_3 baseline-wrong
    record = json.loads(legacy_files["ccta"].read_text())[1]  # test_2, alone in stratum 3
    importance = np.mean([m["importance"] for t in record["corruptions"].values() for m in t.values()])
    assert strata["3"]["mean_importance"] == pytest.approx(importance)
    for row in strata.values():
        assert row["convention"] == "legacy" and row["note"].startswith("legacy run: ")
        assert "r not meaningful for legacy runs" in row["note"]
        assert (row["layer"], row["n"], row["r"], row["t"], row["r_within"]) == (None,) * 5
    assert {r["note"] for r in rows(db, "SELECT note FROM difficulty_strata WHERE run_id = ?", [RUN_A])} == {
        None
    }
    legacy_rows = rows(db, "SELECT DISTINCT convention, note FROM v_rows WHERE run_id = ?", [weights])
    assert len(legacy_rows) == 1 and legacy_rows[0]["convention"] == "legacy"
    assert "research-script token indices" in legacy_rows[0]["note"] and "head -1" in legacy_rows[0]["note"]
    assert rows(db, "SELECT DISTINCT convention, note FROM v_rows WHERE run_id = ?", [RUN_A]) == [
        {"convention": "codi", "note": None}
    ]


def test_stats_prints_and_returns_the_notes(mixed):
    db, _ = mixed
    ccta, weights = runs_of(mixed, "ccta_full_results", "attention_weights")
    payload, text = run_stats(db, weights, n_boot=50, n_perm=50)
    for section in ("correlation", "correlation_by_thought", "hubs", "flow", "top_heads"):
        assert payload[section] and all(r["note"].startswith(NOT_MEANINGFUL) for r in payload[section]), (
            section
        )
    assert text.count("note: " + NOT_MEANINGFUL) >= 5 and "note: legacy run: " in text
    hubs = text.split("Hub scores")[1].split("\n\n")[0]
    assert "incoming_raw" not in hubs  # the note in place of a table of NULLs
    payload, text = run_stats(db, ccta, n_boot=50, n_perm=50)
    assert [r["thought_name"] for r in payload["importance"]] == [f"token {k}" for k in range(6)]
    assert "token 0" in text and "T0" not in text.split("Importance by thought")[1].split("\n\n")[0]
    assert "attention-importance r not meaningful for legacy runs" in text  # the strata note
    assert "no rows: the run has no baseline attention" in text  # ccta has no attention at all
    codi, text = run_stats(db, RUN_A, n_boot=50, n_perm=50)
    assert "note:" not in text and all(r["note"] is None for r in codi["hubs"])


def test_compare_returns_the_pair_note(mixed, legacy_files):
    db, _ = mixed
    ccta, ablation = runs_of(mixed, "ccta_full_results", "token_ablation_results")
    payload, text = compare_runs(db, RUN_A, ccta, n_boot=50)
    assert payload["problems"]["shared"] == 0  # hand-built and imported problems differ: the note still comes
    assert payload["note"].startswith("different position conventions") and f"note: {payload['note']}" in text
    assert payload["run_b"]["note"].startswith("legacy run: ") and payload["run_a"]["note"] is None
    payload, text = compare_runs(db, ccta, ablation, n_boot=50)
    assert payload["problems"]["shared"] == 3 and payload["same_convention"]
    assert payload["note"].startswith("both legacy runs") and f"note: {payload['note']}" in text
    zero = {r["thought"]: r for r in payload["by_condition"] if r["condition"] == "zero"}
    records = [
        r
        for r in json.loads(legacy_files["ccta"].read_text())
        if r.get("problem_id") in ("train_1", "test_2")
    ]
    assert zero[0]["failures_a"] == sum(r["corruptions"]["token_0"]["zero"]["importance"] for r in records)
    payload, text = compare_runs(db, RUN_A, RUN_B, n_boot=50)
    assert payload["note"] is None and "note:" not in text


def test_run_config_of_legacy_and_hand_written_runs(mixed):
    """A legacy CCTA import ran gauss with absolute sigmas (ingest/legacy.py); a zero-only import has no
    gauss settings; neither stored a problem seed or attention mode, nor did the hand-written runs."""
    db, _ = mixed
    ccta, ablation = runs_of(mixed, "ccta_full_results", "token_ablation_results")
    columns = "methods, sigmas, noise_scale, seed, problem_seed, attention, note"
    got = {
        r.pop("run_id"): r
        for r in rows(
            db, f"SELECT run_id, {columns} FROM run_config WHERE run_id IN (?, ?, ?)", [ccta, ablation, RUN_A]
        )
    }
    blank = {"seed": None, "problem_seed": None, "attention": None}
    assert {k: v for k, v in got[ccta].items() if k != "note"} == {
        "methods": ["gauss", "random", "shuffle", "zero"],
        "sigmas": [0.1, 0.5, 1.0, 2.0],
        "noise_scale": "absolute",
        **blank,
    }
    assert got[ccta]["note"].startswith("legacy run: ")
    assert {k: v for k, v in got[ablation].items() if k != "note"} == {
        "methods": ["zero"],
        "sigmas": None,
        "noise_scale": None,
        **blank,
    }
    assert got[RUN_A] == {"methods": None, "sigmas": None, "noise_scale": None, **blank, "note": None}
    payload, text = compare_runs(db, ccta, ablation, n_boot=50)
    assert payload["config"]["noise_scale"] == {"a": "absolute", "b": None, "same": False}
    assert payload["warnings"] == [] and "warning:" not in text
