"""Charts (SPEC 8): every chart builds from the views for one run, a pair, a legacy run and a run without
attention; labels and orders; Altair's row limit on a GPT-2-shaped run; PNG/SVG exports; the CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import polars as pl
import pytest
import views_data as vd
from click.testing import CliRunner
from png_pixels import png_size, read_png
from views_data import RUN_A, RUN_B, RUN_C

from analysis import charts
from analysis.charts import CHARTS
from analysis.charts import importance as importance_charts
from analysis.charts._base import guard
from analysis.charts._data import KEYS, MAX_ROWS, QUERIES, THOUGHTS
from analysis.charts.offline import offline_html, offline_renderer
from analysis.export import PNG_SCALE, chart_spec, javascript_bundle, parse_formats, write_chart
from cli import cli
from warehouse.bench_views import build_warehouse
from warehouse.store import open_warehouse

CASES = [(RUN_A, None), (RUN_A, RUN_B), (RUN_B, None), (RUN_C, RUN_A)]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return vd.build(tmp_path_factory.mktemp("charts") / "w")


@pytest.fixture(scope="module")
def wh(db):
    with open_warehouse(db, read_only=True) as store:
        yield store


@pytest.fixture(scope="module")
def runs(wh):
    """Run handles by id: what the chart functions take."""
    return {run_id: wh.run(run_id) for run_id in (RUN_A, RUN_B, RUN_C)}


def specs_of(wh, run, vs=None) -> dict[str, dict]:
    a, b = wh.run(run), wh.run(vs) if vs else None
    return {info.name: chart_spec(info.function(a, b)) for info in CHARTS if vs or not info.pair_only}


def walk(node, key: str):
    """Every value stored under `key` anywhere in a spec."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "datasets":
                continue
            if k == key:
                yield v
            yield from walk(v, key)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item, key)


def axis_groups(node, inside_layer: bool = False):
    """Encodings that share axes: each layer's children together, each unlayered unit spec alone."""
    if isinstance(node, dict):
        node = {k: v for k, v in node.items() if k != "datasets"}  # data rows have a `layer` column
        if "layer" in node:
            yield [child.get("encoding", {}) for child in node["layer"]] + [node.get("encoding", {})]
        elif "encoding" in node and not inside_layer:
            yield [node["encoding"]]
        for key, value in node.items():
            yield from axis_groups(value, inside_layer=key == "layer")
    elif isinstance(node, list):
        for item in node:
            yield from axis_groups(item, inside_layer)


def rows_of(spec: dict) -> list[dict]:
    return [row for rows in spec.get("datasets", {}).values() for row in rows]


def title_text(spec: dict) -> str:
    title = spec.get("title")
    return title if isinstance(title, str) else (title or {}).get("text", "")


@pytest.mark.parametrize("run,vs", CASES)
def test_every_chart_builds_with_titles_labelled_axes_and_tooltips(wh, run, vs):
    specs = specs_of(wh, run, vs)
    assert len(specs) == len(CHARTS) - (0 if vs else sum(i.pair_only for i in CHARTS))
    for name, spec in specs.items():
        assert title_text(spec), name
        for group in axis_groups(spec):
            for channel in ("x", "y"):
                fields = [e for e in (g.get(channel) for g in group) if isinstance(e, dict) and "field" in e]
                assert not fields or any("title" in e for e in fields), (
                    f"{name}: {channel} of {fields} untitled"
                )
        if "message" not in json.dumps(spec.get("encoding", {})):  # placeholders explain themselves in text
            assert list(walk(spec, "tooltip")), f"{name} has no tooltips"
        assert all(len(rows) <= MAX_ROWS for rows in spec.get("datasets", {}).values())


def test_importance_by_thought_reads_the_view_and_orders_thoughts(runs):
    spec = chart_spec(charts.importance_by_thought(runs[RUN_A]))
    rows = {r["thought_name"]: r for r in rows_of(spec)}
    assert rows["T0"]["failure_rate"] == pytest.approx(
        4 / 6
    )  # P1 zero+gauss, P2 zero, P3 zero of 3 x 2 trials
    assert rows["T0"]["ci_low"] < 4 / 6 < rows["T0"]["ci_high"]
    assert [s for s in walk(spec, "sort") if s == THOUGHTS]
    assert {r["run"] for r in rows.values()} == {f"gpt2-tiny · patch L1 · {RUN_A[-6:]}"}


def test_pair_charts_label_both_runs(runs, wh):
    spec = chart_spec(charts.importance_by_thought(runs[RUN_A], vs=runs[RUN_B]))
    labels = {r["run"] for r in rows_of(spec)}
    assert labels == {f"A · gpt2-tiny · patch L1 · {RUN_A[-6:]}", f"B · other · patch L0 · {RUN_B[-6:]}"}
    domains = [d for d in walk(spec, "domain") if isinstance(d, list) and d and isinstance(d[0], str)]
    assert sorted(labels) in domains
    comparison = chart_spec(charts.run_comparison(runs[RUN_A], runs[RUN_B]))
    per_thought = [r for r in rows_of(comparison) if "failure_rate" in r and "thought_name" in r]
    p1_t0 = [r for r in per_thought if r["thought_name"] == "T0"]
    assert {r["run_id"] for r in p1_t0} == {RUN_A, RUN_B}
    # the chart shows the view's numbers, row for row: run_comparison_by_thought, each run's side
    view = wh.sql(
        f"SELECT thought_name, n_a, failures_a, failure_rate_a, ci_low_a, n_b, failures_b, failure_rate_b "
        f"FROM run_comparison_by_thought WHERE run_a = '{RUN_A}' AND run_b = '{RUN_B}'"
    )
    for row in view.iter_rows(named=True):
        side = {r["run_id"]: r for r in per_thought if r["thought_name"] == row["thought_name"]}
        assert (side[RUN_A]["n"], side[RUN_A]["failures"]) == (row["n_a"], row["failures_a"])
        assert side[RUN_A]["failure_rate"] == pytest.approx(row["failure_rate_a"])
        assert side[RUN_A]["ci_low"] == pytest.approx(row["ci_low_a"])
        assert (side[RUN_B]["n"], side[RUN_B]["failures"]) == (row["n_b"], row["failures_b"])
    t0 = view.filter(pl.col("thought_name") == "T0").row(0, named=True)
    assert (t0["n_a"], t0["failures_a"], t0["n_b"], t0["failures_b"]) == (4, 3, 2, 1)  # as compare's T0
    scatter = [r for r in rows_of(comparison) if "rate_a" in r]
    assert scatter and all(r["method"] != "clean" for r in scatter)
    assert (
        charts.run_comparison(runs[RUN_A]).to_dict()["mark"]["type"] == "text"
    )  # one run: says what to pass


def test_attention_heatmaps_name_positions_in_order(runs):
    for function in (charts.top_head_matrices, charts.layer_matrices):
        spec = chart_spec(function(runs[RUN_A]))
        sorts = list(walk(spec, "sort"))
        assert KEYS in sorts and QUERIES in sorts, function.__name__
        assert KEYS == ["Q", "BOT", "T0", "T1", "T2", "T3", "T4", "T5", "EOT"]
        names = {r["src_name"] for r in rows_of(spec)} | {r["dst_name"] for r in rows_of(spec)}
        assert names <= set(KEYS) and {"BOT", "EOT", "T0", "T5"} <= names
    head = chart_spec(charts.top_head_matrices(runs[RUN_A]))
    assert any(re.match(r"#1 L\d H\d · ", p) for p in next(walk(head, "facet"))["sort"])


def test_a_run_without_attention_says_so(runs):
    spec = chart_spec(charts.layer_matrices(runs[RUN_B]))
    assert rows_of(spec) == [{"message": charts.NO_ATTENTION}]


def test_legacy_runs_are_flagged(runs):
    spec = chart_spec(charts.importance_by_thought(runs[RUN_C]))
    assert "legacy run" in json.dumps(spec["title"])


def test_problem_heatmap_spreads_a_sample_when_problems_are_many(runs, monkeypatch):
    full = rows_of(chart_spec(charts.problem_thought_heatmap(runs[RUN_A])))
    assert len({r["problem_id"] for r in full}) == 3  # P1..P3 are baseline-correct
    monkeypatch.setattr(importance_charts, "MAX_PROBLEM_CELLS", 12)  # room for 2 problems x 6 thoughts
    spec = chart_spec(charts.problem_thought_heatmap(runs[RUN_A]))
    shown = {r["problem_id"] for r in rows_of(spec)}
    assert len(shown) == 2 and "2 of 3 problems shown" in json.dumps(spec["title"])


@pytest.mark.slow
def test_gpt2_shaped_runs_aggregate_below_the_row_limit(tmp_path):
    """12 layers x 12 heads: flow_matrix alone has 6,048 rows per run, over Altair's 5,000."""
    built = build_warehouse(tmp_path / "gpt2", attention_rows=500_000)
    run_a, run_b = built["runs"]
    store = built["store"]
    with store.reader() as connection:
        assert (
            connection.execute("SELECT count(*) FROM flow_matrix WHERE run_id = ?", [run_a]).fetchall()[0][0]
            > 5000
        )
    for name, spec in specs_of(store, run_a, run_b).items():
        sizes = [len(rows) for rows in spec.get("datasets", {}).values()]
        assert sizes and max(sizes) <= MAX_ROWS, name
    with pytest.raises(ValueError, match="aggregate in SQL"):
        guard(pl.DataFrame({"x": range(MAX_ROWS + 1)}), "too big")


@pytest.mark.slow
def test_png_exports_are_non_blank_and_of_the_expected_size(runs, tmp_path):
    chart = charts.importance_by_thought(runs[RUN_A], runs[RUN_B])
    png, svg = write_chart(chart, tmp_path / "importance", ("png", "svg"))
    width, height = map(
        float, re.search(r'<svg[^>]*width="([\d.]+)"[^>]*height="([\d.]+)"', svg.read_text()).groups()
    )
    assert png_size(png) == (round(width * PNG_SCALE), round(height * PNG_SCALE))
    assert width >= 2 * 340 and height >= 240  # two-run bars: 340 px wide plot, 240 px high, plus axes
    pixels = read_png(png)
    rgb = pixels[..., :3].reshape(-1, 3)
    ink = (rgb.min(axis=1) < 235).mean()
    assert 0.03 < ink < 0.9, f"{ink:.1%} of the pixels are not white"
    assert len(np.unique(rgb, axis=0)) > 50  # bars in two colours, text, anti-aliasing
    blue = np.all(np.abs(rgb.astype(int) - [76, 120, 168]) < 40, axis=1).mean()
    orange = np.all(np.abs(rgb.astype(int) - [245, 133, 24]) < 40, axis=1).mean()
    assert blue > 0.005 and orange > 0.005  # both runs' bars are drawn


def test_parse_formats():
    assert parse_formats("html, PNG,svg,png") == ("html", "png", "svg")
    with pytest.raises(ValueError, match="choose from html, png, svg"):
        parse_formats("html,pdf")


@pytest.mark.slow
def test_cli_charts_writes_files_and_an_offline_report(db, tmp_path):
    out = tmp_path / "charts"
    result = CliRunner().invoke(
        cli, ["charts", "--run", RUN_A, "--vs", RUN_B, "--out", str(out), "--format", "html", "--db", str(db)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out / "report.html")  # stdout: the report's path only
    n = len(CHARTS)  # progress on stderr (not a terminal here: a line per step, in order)
    assert result.stderr.splitlines() == [
        "reading the views ...",
        *(f"chart {i}/{n} {info.name} ..." for i, info in enumerate(CHARTS, start=1)),
        "writing report.html ...",
        f"{n} charts, {n + 1} files in {out}",  # each chart as html, and report.html
    ], result.stderr
    for info in CHARTS:  # standalone pages: the bundle and the spec inline
        standalone = (out / f"{info.name}.html").read_text()
        assert standalone.count("window.vegaEmbed=") == 1 and '"$schema"' in standalone
    assert not list(out.glob("*.png")) and not list(out.glob("*.svg"))
    page = (out / "report.html").read_text()
    assert page.count("window.vegaEmbed=") == 1  # the bundle once, not once per chart
    assert len(re.findall(r'<figure class="chart"', page)) == len(CHARTS)
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=['\"]?https?:", page)  # nothing from the network
    for text in ("gpt2-tiny", "weights sha256", "token_importance", "Top 10 heads", "config of run-a"):
        assert text in page
    bad = CliRunner().invoke(cli, ["charts", "--run", "nope", "--out", str(out), "--db", str(db)])
    assert bad.exit_code != 0 and "no run matches 'nope'" in bad.output
    bad = CliRunner().invoke(cli, ["charts", "--format", "gif", "--out", str(out), "--db", str(db)])
    assert bad.exit_code != 0 and "unknown chart format gif" in bad.output


CDN_HOSTS = ("cdn.jsdelivr.net", "unpkg.com", "cdnjs.cloudflare.com", "esm.sh", "skypack")


def test_the_offline_notebook_renderer_inlines_the_bundle_and_fetches_nothing(runs):
    """`codi_offline`: a text/html mimebundle with the vendored bundle inline and no URL to a CDN."""
    import altair as alt

    assert "codi_offline" in alt.renderers.names()  # registered on import of analysis.charts
    spec = charts.importance_by_thought(runs[RUN_A]).to_dict()
    bundle = offline_renderer(spec)
    assert list(bundle) == ["text/html"]
    page = bundle["text/html"]
    assert page.count("window.vegaEmbed=") == 1 and '"$schema"' in page and "vegaEmbed(target" in page
    assert page.count(javascript_bundle()) == 1
    markup = page.replace(javascript_bundle(), "")  # the bundle's own strings hold '<img src=' templates
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", markup)  # nothing loaded by reference
    assert not any(host in page for host in CDN_HOSTS)
    urls = set(re.findall(r"https?://[A-Za-z0-9.-]+", page))
    assert urls <= {"http://www.w3.org", "https://github.com", "https://vega.github.io"}, (
        urls
    )  # names, not loads
    assert offline_html(spec) != offline_html(spec)  # every output draws into a div of its own
    previous = alt.renderers.active
    try:
        charts.enable_offline()
        assert alt.renderers.active == "codi_offline"
        assert "text/html" in alt.renderers.get()(spec)
    finally:
        alt.renderers.enable(previous)
