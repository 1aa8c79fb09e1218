"""The readouts (decoding, question tokens, probes) in `stats`, the findings, the charts and the report, on
the hand-made warehouse of tests/readouts_data.py plus two runs added here: every number shown is a view's row
(nothing recomputed), and each readout's sections, tables and charts appear only for a run that has it.

Runs: R (decoding, question-token attention, probes), D (decoding that never hits, and a probe set with no
probe above chance; no token attention), P (no readout at all).
"""

from __future__ import annotations

import datetime as dt
import json
import re

import polars as pl
import pytest
import readouts_data as rd
from readouts_data import NAMES, RUN_R
from views_data import rows

from analysis import charts
from analysis.charts import READOUT_CHARTS, charts_for, run_readouts
from analysis.export import chart_spec, write_chart
from analysis.frames import reading
from analysis.readouts import PROBE_NOTE
from analysis.report import write_report
from analysis.stats import RunStats, format_stats, run_stats
from warehouse.store import open_warehouse

RUN_D, RUN_P = "run-d", "run-p"
N_BOOT, N_PERM = 50, 50
# run D's probes: nothing survives Holm (9 tests, the smallest p 0.2)
D_PROBES = [
    ("value", 1, 0, 0, 0.05, 0.0, 0.2),
    ("value", 1, 1, 1, 0.08, 0.0, 0.3),
    ("operation", 1, 0, 1, 0.55, 0.5, 0.4),
]


def add_runs(path) -> None:
    store = open_warehouse(path, durable=False)
    words = {key: {n: rd.WORDS for n in NAMES} for key in rd.TOKENS}  # no value is ever decoded
    run = store.begin_run({"hand": "D"}, run_id=RUN_D, model_name="gpt2-tiny", n_layers=2, n_heads=2)
    store.append_problems(
        run,
        rd.problem_rows(NAMES),
        rd.baseline_rows(NAMES),
        readouts={"decoding": rd.decoding_rows(NAMES, words)},
    )
    store.finish_run(run)
    rd.insert_probes(store, RUN_D, "d", dt.datetime(2024, 2, 1), D_PROBES)
    run = store.begin_run({"hand": "P"}, run_id=RUN_P, model_name="gpt2-tiny", n_layers=2, n_heads=2)
    store.append_problems(run, rd.problem_rows(NAMES), rd.baseline_rows(NAMES))
    store.finish_run(run)
    store.close()


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = rd.build(tmp_path_factory.mktemp("readouts") / "w")
    add_runs(path)
    return path


@pytest.fixture(scope="module")
def wh(db):
    with open_warehouse(db, read_only=True) as store:
        yield store


@pytest.fixture(scope="module")
def stats(wh) -> dict[str, RunStats]:
    return {r: run_stats(wh.run(r), n_boot=N_BOOT, n_perm=N_PERM) for r in (RUN_R, RUN_D, RUN_P)}


def same(frame: pl.DataFrame, view_rows: list[dict], keys: list[str]) -> None:
    """The frame's rows are the view's rows: the same keys, every shared column equal."""
    got = {tuple(r[k] for k in keys): r for r in frame.iter_rows(named=True)}
    want = {tuple(r[k] for k in keys): r for r in view_rows}
    assert got.keys() == want.keys()
    for key, row in want.items():
        for column, value in row.items():
            if column in got[key]:
                assert got[key][column] == (pytest.approx(value) if isinstance(value, float) else value), (
                    key,
                    column,
                )


# --- which readouts -----------------------------------------------------------------------------------
def test_run_readouts_reads_the_staging_views(wh, stats):
    with reading(wh.run(RUN_R), wh.run(RUN_D)) as con:
        assert run_readouts(con, [RUN_R]) == {"decoding", "token_attention", "probes"}
        assert run_readouts(con, [RUN_D]) == {"decoding", "probes"}
        assert run_readouts(con, [RUN_P]) == set()
        assert run_readouts(con, ["run-f"]) == set()  # a failed run's rows are left out
        assert run_readouts(con, [RUN_D, RUN_P]) == {"decoding", "probes"}
    assert stats[RUN_R].readouts == ("decoding", "token_attention", "probes")
    assert stats[RUN_D].readouts == ("decoding", "probes") and stats[RUN_P].readouts == ()


# --- stats: the views' rows ----------------------------------------------------------------------------
def test_decoding_tables_are_the_views_rows(db, stats):
    view = rows(db, "SELECT * FROM thought_decoding WHERE run_id = ? AND target = 'step'", [RUN_R])
    keys = ["layer", "position", "match", "k"]
    same(stats[RUN_R].decoding, view, keys)
    best = stats[RUN_R].decoding_best
    assert best.height == 8  # T0, T1 (EOT has no step) x exact, leading x k 1, 3
    for row in best.iter_rows(named=True):
        cells = [
            r
            for r in view
            if (r["position"], r["match"], r["k"]) == (row["position"], row["match"], row["k"])
        ]
        top = max(cells, key=lambda r: (r["lift"], -r["layer"]))
        assert row["layers"] == len(cells) == 2
        same(pl.DataFrame([row]), [top], keys)
    # by hand (test_views_readouts): T0 at layer 1, exact, top-3: R1 and R2 hit, R2's control (R3's 6) too
    t0 = best.filter((pl.col("position") == 0) & (pl.col("match") == "exact") & (pl.col("k") == 3)).row(
        0, named=True
    )
    assert (t0["layer"], t0["n"], t0["hits"], t0["control_hits"]) == (1, 3, 2, 1)


def test_decoding_p_values_are_mcnemar_on_the_views_discordant_pairs_with_holm_over_the_table(stats):
    """p_mcnemar: the exact binomial test of hit_only against control_only (scipy); p_holm: statsmodels' Holm
    over every row of the decoding table; the best-layer rows carry their cell's p's."""
    from scipy.stats import binomtest
    from statsmodels.stats.multitest import multipletests

    table = stats[RUN_R].decoding
    for row in table.iter_rows(named=True):
        a, b = row["hit_only"], row["control_only"]
        want = 1.0 if a + b == 0 else binomtest(a, a + b, 0.5).pvalue
        assert row["p_mcnemar"] == pytest.approx(want), row
    assert table["p_holm"].to_list() == pytest.approx(
        list(multipletests(table["p_mcnemar"].to_list(), method="holm")[1])
    )
    keys = ["layer", "position", "match", "k"]
    by_cell = {tuple(r[k] for k in keys): r for r in table.iter_rows(named=True)}
    for row in stats[RUN_R].decoding_best.iter_rows(named=True):
        cell = by_cell[tuple(row[k] for k in keys)]
        assert (row["p_mcnemar"], row["p_holm"]) == (cell["p_mcnemar"], cell["p_holm"])


def test_question_token_tables_are_the_views_rows(db, stats):
    last = rows(
        db, "SELECT * FROM question_token_routing WHERE run_id = ? AND layer = 1 AND rank <= 5", [RUN_R]
    )
    same(stats[RUN_R].question_tokens, last, ["dst", "token"])
    every = rows(db, "SELECT * FROM question_token_routing WHERE run_id = ? AND rank <= 5", [RUN_R])
    same(stats[RUN_R].question_tokens_by_layer, every, ["layer", "dst", "token"])
    operands = rows(
        db, "SELECT * FROM thought_operand_reading WHERE run_id = ? AND operands_of = 'step'", [RUN_R]
    )
    same(stats[RUN_R].operand_reading, operands, ["layer", "dst", "m"])
    assert set(stats[RUN_R].operand_reading["m"].to_list()) == {1, 3}
    for row in stats[RUN_R].operand_best.iter_rows(named=True):
        cells = [r for r in operands if (r["dst"], r["m"]) == (row["dst"], row["m"])]
        same(pl.DataFrame([row]), [max(cells, key=lambda r: (r["lift"], -r["layer"]))], ["layer", "dst", "m"])
    roles = rows(db, "SELECT * FROM question_token_roles WHERE run_id = ?", [RUN_R])
    same(stats[RUN_R].token_roles_by_layer, roles, ["layer", "dst", "role"])
    same(stats[RUN_R].token_roles, [r for r in roles if r["layer"] == 1], ["layer", "dst", "role"])


def test_probe_tables_are_the_views_rows(db, stats):
    same(
        stats[RUN_R].probe_best,
        rows(db, "SELECT * FROM probe_best WHERE run_id = ?", [RUN_R]),
        ["target", "step"],
    )
    same(
        stats[RUN_R].probes,
        rows(db, "SELECT * FROM probe_summary WHERE run_id = ?", [RUN_R]),
        ["target", "step", "position", "layer"],
    )
    assert stats[RUN_R].probes.height == len(rd.PROBES)  # the current set only
    family = stats[RUN_R].settings["families"]["probe_best"]["p_holm"]
    assert "Holm over the 9 probes" in family and "(new;" in family


# --- stats: sections only with the readout -------------------------------------------------------------
TITLES = {
    "decoding": ("Decoding (logit lens)",),
    "token_attention": ("Question tokens: the 5 question tokens", "Question tokens: does thought Tk attend"),
    "probes": ("Probes: per target and step",),
}
TABLES = {
    "decoding": {"decoding", "decoding_best"},
    "token_attention": {"question_tokens", "question_tokens_by_layer", "operand_best", "operand_reading"},
    "probes": {"probe_best", "probes"},
}


@pytest.mark.parametrize("run_id", [RUN_R, RUN_D, RUN_P])
def test_sections_and_tables_only_for_a_run_with_the_readout(stats, run_id):
    run = stats[run_id]
    text, payload = format_stats(run), run.to_dict()
    json.dumps(payload, allow_nan=False, default=str)
    assert payload["readouts"] == list(run.readouts)
    for readout in ("decoding", "token_attention", "probes"):
        has = readout in run.readouts
        for title in TITLES[readout]:
            assert (title in text) == has, (readout, title)
        assert (TABLES[readout] <= set(payload)) == has and (TABLES[readout] & set(payload) != set()) == has
    assert (f"note: {PROBE_NOTE}" in text) == ("probes" in run.readouts)


def test_text_prints_the_views_numbers(stats):
    text = format_stats(stats[RUN_R])
    assert "adjusted: p_holm = Holm over the 9 probes" in text
    section = text[text.index("Probes: per target and step") :]
    # operation of step 1: the best probe is (T0, layer 0), score 0.8, Holm p 9 x 0.001
    assert re.search(r"operation\s+┆\s+1\s+┆\s+T0\s+┆\s+0\s+┆\s+accuracy\s+┆\s+0\.8\s+┆", section)
    assert "0.009" in section


# --- findings ----------------------------------------------------------------------------------------------
def test_findings_carry_the_views_numbers(stats, db):
    found = stats[RUN_R].findings()
    decoding = [s for s in found if s.startswith("Decoding:")]
    view = rows(
        db,
        "SELECT * FROM thought_decoding WHERE run_id = ? AND target = 'step' AND match = 'exact' AND k = 3 "
        "ORDER BY lift DESC, layer LIMIT 1",
        [RUN_R],
    )[0]
    assert len(decoding) == 1
    v = view
    assert (
        f"{v['position_name']} at layer {v['layer']} decodes to its step's value in {v['rate']:.1%} of "
        f"{v['n']} problems [{v['ci_low']:.1%}, {v['ci_high']:.1%}] vs {v['control_rate']:.1%} for "
        "another problem's value" in decoding[0]
    )
    operands = [s for s in found if s.startswith("Question tokens:")]
    top = rows(
        db,
        "SELECT * FROM thought_operand_reading WHERE run_id = ? AND operands_of = 'step' AND m = 3 "
        "ORDER BY lift DESC, layer LIMIT 1",
        [RUN_R],
    )[0]
    assert len(operands) == 1 and f"{top['rate']:.1%} of {top['n']} problems" in operands[0]
    assert f"vs {top['chance']:.1%} by chance" in operands[0]
    # no 95% interval lies above chance in this small warehouse: said so
    assert "no thought reads its step's operands clearly above chance" in operands[0]
    (probes,) = [s for s in found if s.startswith("Probes:")]
    assert (
        "the operation of step 1 from T0 at layer 0 (accuracy 0.80 [0.70, 0.90], chance 0.50, "
        "Holm p = 0.009; shuffled labels 0.51)" in probes
    )
    assert "over the 9 probes of the set" in probes and "not shown to be used" in probes
    assert "value of step 1" not in probes  # its best probe's Holm p is 0.15


def test_findings_say_when_nothing_clears_the_baseline(stats):
    found = stats[RUN_D].findings()
    (decoding,) = [s for s in found if s.startswith("Decoding:")]
    assert decoding.startswith("Decoding: no thought decodes its step's value clearly above the control")
    assert "in 0.0% of 3 problems [0.0%, 56.1%] vs 0.0%" in decoding
    (probes,) = [s for s in found if s.startswith("Probes:")]
    assert probes.startswith("Probes: no probe is above chance after Holm's adjustment over the 3 probes")
    assert not [s for s in found if s.startswith("Question tokens:")]
    assert not [s for s in stats[RUN_P].findings() if s.startswith(("Decoding", "Question tokens", "Probes"))]


# --- charts ----------------------------------------------------------------------------------------------
def test_charts_for_gates_on_the_readouts():
    names = {r: [i.name for i in charts_for(False, (), {r}) if i in READOUT_CHARTS] for r in TABLES}
    assert names == {
        "decoding": ["decoding_heatmap"],
        "token_attention": ["question_tokens", "operand_reading"],
        "probes": ["probe_heatmap"],
    }
    assert not [i for i in charts_for(True, {"heads"}) if i in READOUT_CHARTS]


def data(spec: dict) -> list[dict]:
    return [row for rows_ in spec["datasets"].values() for row in rows_]


def test_readout_charts_embed_the_views_rows_and_render(wh, db, tmp_path):
    run = wh.run(RUN_R)
    spec = chart_spec(charts.decoding_heatmap(run))
    view = rows(
        db,
        "SELECT * FROM thought_decoding WHERE run_id = ? AND target = 'step' AND match = 'exact' AND k = 3",
        [RUN_R],
    )
    same(pl.DataFrame(data(spec)), view, ["layer", "position"])
    assert "top-3 tokens (exact match" in " ".join(spec["title"]["subtitle"])
    probes = chart_spec(charts.probe_heatmap(run))
    rows_ = data(probes)
    assert len(rows_) == len(rd.PROBES)
    assert {(r["target"], r["position"], r["layer"]) for r in rows_ if r["mark"] == "*"} == {
        ("operation", 0, 0),
        ("value", 0, 1),  # T0, layer 1: p 0.002 x 9 = 0.018
    }
    tokens = chart_spec(charts.question_tokens(run))
    assert {r["layer"] for r in data(tokens)} == {1} and max(r["rank"] for r in data(tokens)) <= 5
    assert "(space)" in {r["label"] for r in data(tokens)}  # R3's ' ' of ' 10'
    operands = chart_spec(charts.operand_reading(run))
    same(
        pl.DataFrame(data(operands)),
        rows(db, "SELECT * FROM thought_operand_reading WHERE run_id = ? AND operands_of = 'step'", [RUN_R]),
        ["layer", "dst", "m"],
    )
    for name, chart in (
        ("decoding", charts.decoding_heatmap(run, wh.run(RUN_D))),
        ("probes", charts.probe_heatmap(run, wh.run(RUN_D))),
        ("tokens", charts.question_tokens(run)),
        ("operands", charts.operand_reading(run)),
    ):
        png, svg = write_chart(chart, tmp_path / name, ("png", "svg"))  # vl-convert
        assert png.stat().st_size > 2000 and "<svg" in svg.read_text()
    placeholder = chart_spec(charts.question_tokens(wh.run(RUN_D)))
    assert "no attention to question tokens" in json.dumps(placeholder)


# --- report -----------------------------------------------------------------------------------------------
def test_report_shows_the_readouts_only_for_runs_that_have_them(wh, stats, tmp_path):
    write_report(wh.run(RUN_R), tmp_path / "r", formats=("html",), stats=[stats[RUN_R]])
    page = (tmp_path / "r" / "report.html").read_text()
    for info in READOUT_CHARTS:
        assert f'data-chart="{info.name}"' in page
    for key in ("decoding_best", "question_tokens", "operand_best", "probe_best"):
        assert f'<section id="table-{key}">' in page
    assert "linearly present" in page
    write_report(wh.run(RUN_P), tmp_path / "p", formats=("html",), stats=[stats[RUN_P]])
    plain = (tmp_path / "p" / "report.html").read_text()
    assert not re.search(
        r'data-chart="(decoding_heatmap|question_tokens|operand_reading|probe_heatmap)"', plain
    )
    assert not re.search(r"table-(decoding_best|question_tokens|operand_best|probe_best)", plain)
    write_report(
        wh.run(RUN_D),
        tmp_path / "dp",
        vs=wh.run(RUN_P),
        formats=("html",),
        stats=[stats[RUN_D], stats[RUN_P]],
    )
    pair = (tmp_path / "dp" / "report.html").read_text()
    assert 'data-chart="decoding_heatmap"' in pair and 'data-chart="probe_heatmap"' in pair
    assert 'data-chart="question_tokens"' not in pair and "table-operand_best" not in pair
    assert '<section id="table-probe_best">' in pair
