"""The report carries the inference (issue 17 item 10): its findings section is RunStats.findings(), word
for word, and its key tables show `stats`' p-values, adjusted p-values (with the family each covers) and
bootstrap intervals, and the heads' gated functional type, not the view's.

The warehouse is tests/views_data.py's hand-made one (run A with attention, run B without).
"""

from __future__ import annotations

import html
import re
from dataclasses import replace

import polars as pl
import pytest
import views_data as vd
from views_data import RUN_A, RUN_B

from analysis.report import render_report, write_report
from analysis.stats import RunStats, run_stats
from analysis.templating import cell
from warehouse.store import open_warehouse


@pytest.fixture(scope="module")
def wh(tmp_path_factory):
    with open_warehouse(vd.build(tmp_path_factory.mktemp("report") / "w"), read_only=True) as store:
        yield store


@pytest.fixture(scope="module")
def stats(wh) -> dict[str, RunStats]:
    """`stats`' RunStats of runs A and B, with its default bootstrap and permutation sizes and seed."""
    return {run_id: run_stats(wh.run(run_id)) for run_id in (RUN_A, RUN_B)}


@pytest.fixture(scope="module")
def single(wh, tmp_path_factory) -> str:
    """report.html of run A, its statistics computed by write_report itself."""
    out = tmp_path_factory.mktemp("single")
    write_report(wh.run(RUN_A), out, formats=("html",))
    return (out / "report.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def pair(wh, stats, tmp_path_factory) -> str:
    """report.html of run A vs run B, given the RunStats computed once."""
    out = tmp_path_factory.mktemp("pair")
    write_report(wh.run(RUN_A), out, vs=wh.run(RUN_B), formats=("html",), stats=[stats[RUN_A], stats[RUN_B]])
    return (out / "report.html").read_text(encoding="utf-8")


def text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment)).strip()


def section(page: str, key: str) -> str:
    found = re.search(rf'<section id="{key}">(.*?)</section>', page, flags=re.DOTALL)
    assert found, f"no section {key}"
    return found.group(1)


def findings_of(page: str) -> dict[str, list[str]]:
    """The findings section's sentences, by run id."""
    lists = re.findall(
        r'<ul class="findings" data-run="([^"]+)">(.*?)</ul>', section(page, "findings"), re.DOTALL
    )
    return {
        run_id: [text(li) for li in re.findall(r"<li>(.*?)</li>", items, re.DOTALL)]
        for run_id, items in lists
    }


def table(page: str, key: str) -> list[dict[str, str]]:
    """A key table's rows as {column: the cell's text}."""
    body = section(page, f"table-{key}")
    columns = [text(th) for th in re.findall(r"<th>(.*?)</th>", body)]
    rows = re.findall(r"<tr>(<td.*?)</tr>", body, flags=re.DOTALL)
    return [
        dict(zip(columns, [text(td) for td in re.findall(r"<td[^>]*>(.*?)</td>", row)], strict=True))
        for row in rows
    ]


def notes(page: str, key: str) -> list[str]:
    return [text(li) for li in re.findall(r"<li>(.*?)</li>", section(page, f"table-{key}"), re.DOTALL)]


def shown(value, column: str, percent: tuple[str, ...] = ()) -> str:
    return cell(value, column, percent)[1]


@pytest.mark.slow
def test_the_findings_open_the_report_word_for_word(single, stats):
    sentences = stats[RUN_A].findings()
    assert len(sentences) >= 5 and any(s.startswith("RQ3") for s in sentences)
    assert findings_of(single) == {RUN_A: sentences}
    assert single.index('<section id="findings">') < single.index('<section id="runs">')
    assert single.index('<section id="findings">') < single.index('<figure class="chart"')
    assert "Run A" not in text(section(single, "findings"))  # one run: no labels


@pytest.mark.slow
def test_a_pair_report_gives_each_runs_findings_labelled(pair, stats):
    assert findings_of(pair) == {RUN_A: stats[RUN_A].findings(), RUN_B: stats[RUN_B].findings()}
    headings = [text(h) for h in re.findall(r"<h3>(.*?)</h3>", section(pair, "findings"), re.DOTALL)]
    assert headings == [f"Run A ({RUN_A})", f"Run B ({RUN_B})"]
    assert stats[RUN_B].findings()[-1].startswith("RQ3: no answer")  # run B has no attention


@pytest.mark.slow
def test_the_correlation_table_shows_p_adjusted_p_and_the_interval_of_r(single, pair, stats):
    columns = ("r", "r_low", "r_high", "p", "p_holm", "r_within", "p_within_perm", "p_within_holm")
    expected = stats[RUN_A].correlation.to_dicts()
    assert len(expected) == 2
    for page, label in ((single, None), (pair, "A")):
        rows = table(page, "correlation")
        if label:
            assert {r["run"] for r in rows} == {"A"}  # run B has no attention
        assert [r["layer"] for r in rows] == [str(e["layer"]) for e in expected]
        for row, want in zip(rows, expected, strict=True):
            for column in columns:
                assert row[column] == shown(want[column], column), column
    # the p-values differ from the adjusted ones (so the test tells them apart) and one is in e-notation
    assert any(e["p"] != e["p_holm"] for e in expected)
    assert any("e-" in r["p"] for r in table(single, "correlation"))


@pytest.mark.slow
def test_tables_say_which_family_each_adjusted_p_covers(single, pair, stats):
    families = stats[RUN_A].settings["families"]
    for key in ("correlation", "method_agreement", "strata_test"):
        assert families[key]
        for column, family in families[key].items():
            assert f"{column}: {family}." in notes(single, key), (key, column)
            assert f"run A: {column}: {family}." in notes(pair, key), (key, column)
    assert "Holm over the 2 pooled-r tests of this run" in families["correlation"]["p_holm"]
    for column, family in stats[RUN_B].settings["families"]["method_agreement"].items():
        assert f"run B: {column}: {family}." in notes(pair, "method_agreement")


@pytest.mark.slow
def test_importance_agreement_and_hub_tables_carry_stats_numbers(single, pair, stats):
    a = stats[RUN_A]
    rates = ("failure_rate", "ci_low", "ci_high", "boot_low", "boot_high")
    for row, want in zip(table(single, "importance"), a.importance.to_dicts(), strict=True):
        assert row["thought"] == want["thought_name"]
        for column in rates:
            assert row[column] == shown(want[column], column, rates), column
    assert [r["boot_low"] for r in table(single, "importance")][:2] == ["50.0%", "0.0%"]  # T0, T1 by hand
    agreement = [r for r in table(pair, "method_agreement")]
    assert [r["run"] for r in agreement] == ["A", "B"]
    for row, run in zip(agreement, (a, stats[RUN_B]), strict=True):
        want = run.method_agreement.to_dicts()[0]
        for column in ("w", "p_perm", "p_holm", "mean_rho"):
            assert row[column] == shown(want[column], column), column
    (hub,) = table(single, "hub_test")
    for column in ("ratio", "ratio_low", "ratio_high", "p"):
        assert hub[column] == shown(a.hub[column], column), column
    assert hub["thought"] == a.hub["thought"] == "T4"
    assert a.hub["finding"] + "." in notes(single, "hub_test")
    (hub,) = table(pair, "hub_test")  # run B has no hub test
    assert hub["run"] == "A"


@pytest.mark.slow
def test_top_heads_show_the_gated_type(single, stats):
    heads = stats[RUN_A].top_heads
    rows = table(single, "heads")
    assert [r["functional_type"] for r in rows] == heads["functional_type"].to_list()
    assert "functional_type_view" not in rows[0]
    for row, want in zip(rows, heads.to_dicts(), strict=True):
        for column in ("composite_low", "composite_high", "p_flow", "p_hub", "p_skip"):
            assert row[column] == shown(want[column], column), column
    assert any(
        note.startswith("functional_type: a head gets the view's functional type only")
        for note in notes(single, "heads")
    )


def test_a_head_the_test_does_not_support_reads_none_whatever_the_view_says(stats):
    a = stats[RUN_A]
    heads = a.top_heads.with_columns(functional_type_view=pl.lit("Hub"), functional_type=pl.lit("none"))
    page = render_report([], [{"run_id": RUN_A, "config_json": None}], [replace(a, top_heads=heads)])
    rows = table(page, "heads")
    assert len(rows) == heads.height and {r["functional_type"] for r in rows} == {"none"}
    assert "Hub" not in {c for r in rows for c in r.values()}
    # and the other way round: the gated type is shown, not the view's
    heads = a.top_heads.with_columns(functional_type_view=pl.lit("Skip"), functional_type=pl.lit("Hub"))
    page = render_report([], [{"run_id": RUN_A, "config_json": None}], [replace(a, top_heads=heads)])
    assert {r["functional_type"] for r in table(page, "heads")} == {"Hub"}


def test_write_report_refuses_stats_of_other_runs(wh, stats, tmp_path):
    with pytest.raises(ValueError, match="stats are for"):
        write_report(wh.run(RUN_A), tmp_path, formats=("html",), stats=[stats[RUN_B]])
