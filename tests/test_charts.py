"""Charts (SPEC 8): every chart builds from the views for one run, a pair, a legacy run and a run without
attention; labels and orders; Altair's row limit on a GPT-2-shaped run; PNG/SVG exports; the CLI."""

from __future__ import annotations

import colorsys
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
        "computing the statistics (findings, p-values, intervals) ...",
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
    for text in (
        "gpt2-tiny",
        "weights sha256",
        "token_importance",
        "Top 10 heads",
        "config of run-a",
        "Findings",
    ):
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


# --- issue 17: the charts show what their numbers are computed over ----------------------------------


def svg_of(spec: dict) -> str:
    """The chart rendered by vl-convert, as `charts --format svg` writes it."""
    import vl_convert as vlc

    from analysis.export import VL_VERSION

    return vlc.vegalite_to_svg(spec, vl_version=VL_VERSION)


@pytest.fixture(scope="module")
def correlation_stats(runs):
    """`stats`' correlation table for run A (p, bootstrap intervals of r and r_within), by layer."""
    from analysis.stats import run_stats

    table = run_stats(runs[RUN_A]).correlation
    return {row["layer"]: row for row in table.iter_rows(named=True)}


def test_attention_vs_importance_plots_the_pairs_its_r_is_computed_over(wh, runs, correlation_stats):
    spec = chart_spec(charts.attention_vs_importance(runs[RUN_A]))
    points = [r for r in rows_of(spec) if "importance" in r]
    pairs = wh.sql(
        f"SELECT layer, problem_id, thought, attention, importance FROM int_attention_importance "
        f"WHERE run_id = '{RUN_A}'"
    )
    assert len(points) == pairs.height == 36  # 3 baseline-correct problems x 6 thoughts x 2 layers
    expected = {(r["layer"], r["problem_id"], r["thought"]): r for r in pairs.iter_rows(named=True)}
    for point in points:
        row = expected[point["layer"], point["problem_id"], point["thought"]]
        assert (point["attention"], point["importance"]) == pytest.approx(
            (row["attention"], row["importance"])
        )
    panels = next(walk(spec, "facet"))["sort"]
    assert len(panels) == 2 and spec["columns"] <= 4  # wrapped, never one long row
    for layer, stat in correlation_stats.items():
        # each panel's title: stats' r, its bootstrap interval and p (the numbers, and as printed)
        label = (
            f"layer {layer}\nr = {stat['r']:.2f} [{stat['r_low']:.2f}, {stat['r_high']:.2f}], "
            f"p = {stat['p']:.2g}, n = {stat['n']}"
        )
        assert label in panels
        for point in (p for p in points if p["layer"] == layer):
            assert (point["r"], point["p"], point["r_low"], point["r_high"]) == pytest.approx(
                (stat["r"], stat["p"], stat["r_low"], stat["r_high"])
            )
    svg = svg_of(spec)
    for stat in correlation_stats.values():
        assert f"r = {stat['r']:.2f} [{stat['r_low']:.2f}, {stat['r_high']:.2f}]" in svg  # header drawn


def test_attention_vs_importance_samples_layers_and_problems_to_fit(runs, monkeypatch, correlation_stats):
    from analysis.charts import attention as attention_charts

    monkeypatch.setattr(attention_charts, "MAX_ROWS", 20)  # room for 1 problem x 6 thoughts x 2 layers
    spec = chart_spec(charts.attention_vs_importance(runs[RUN_A]))
    points = [r for r in rows_of(spec) if "importance" in r]
    assert len({p["problem_id"] for p in points}) == 1 and len(points) == 12
    assert "points of 1 of 3 problems shown (r over all)" in json.dumps(spec["title"])
    for point in points:  # r is still the one over every pair
        assert point["r"] == pytest.approx(correlation_stats[point["layer"]]["r"])


def test_correlation_by_layer_fits_its_y_range_and_bands_are_stats_intervals(runs, correlation_stats):
    spec = chart_spec(charts.correlation_by_layer(runs[RUN_A]))
    lines = [r for r in rows_of(spec) if "measure" in r]
    assert len(lines) == 4  # 2 layers x (pooled, within-problem)
    columns = {"pooled r": "r", "within-problem r": "r_within"}
    for row in lines:
        stat = correlation_stats[row["layer"]]
        column = columns[row["measure"]]
        assert (row["value"], row["low"], row["high"]) == pytest.approx(
            (stat[column], stat[f"{column}_low"], stat[f"{column}_high"])
        )
    ys = [y for y in walk(spec, "y") if isinstance(y, dict) and y.get("field") in ("value", "low")]
    assert ys and not [y for y in ys if (y.get("scale") or {}).get("domain") == [-1, 1]]
    assert {"datum": 0} in list(walk(spec, "y"))  # the zero rule
    assert any(m == "area" or (isinstance(m, dict) and m.get("type") == "area") for m in walk(spec, "mark"))
    svg = svg_of(spec)
    # rendered: the axis ends at the data (bands reach -0.78 .. 0.97 here), not at -1
    assert re.search(r">−0\.8</text>", svg) and not re.search(r">−1\.0</text>", svg)
    lowest = min(min(s["r_low"], s["r_within_low"]) for s in correlation_stats.values())
    assert lowest > -0.8


def test_difficulty_strata_are_in_step_order_with_distinct_colours(runs):
    spec = chart_spec(charts.difficulty_strata(runs[RUN_A]))
    colours = [c for c in walk(spec, "color") if isinstance(c, dict) and c.get("field") == "stratum"]
    assert colours
    for colour in colours:
        assert colour["scale"]["domain"] == ["<=2", "3", "5+"]  # P1 2 steps, P2 3, P3 5; never string order
        assert colour["sort"] == colour["scale"]["domain"]
        hues = [
            360 * colorsys.rgb_to_hsv(*(int(c[i : i + 2], 16) / 255 for i in (1, 3, 5)))[0]
            for c in colour["scale"]["range"]
        ]
        assert len(hues) == 3
        for i, a in enumerate(hues):  # clearly different hues, not shades of one
            for b in hues[i + 1 :]:
                assert min(abs(a - b), 360 - abs(a - b)) > 60, (a, b)
    assert ["<=2", "3", "4", "5+", "?"] in list(walk(spec, "sort"))  # the bars' x order
    svg = svg_of(spec)
    legend = svg[: svg.index(">steps</text>")]  # the legend's entries come before its title
    legend = legend[legend.rindex('role-legend"') :]
    assert re.findall(r'role-legend-label".*?>([^<]*)</text>', legend) == ["&lt;=2", "3", "5+"]


@pytest.mark.parametrize("name", ["top_head_matrices", "layer_matrices"])
def test_attention_matrices_give_thought_cells_their_own_colour_scale(runs, name):
    spec = chart_spec(getattr(charts, name)(runs[RUN_A]))
    cells = [r for r in rows_of(spec) if "mean_weight" in r]
    context = [c for c in walk(spec, "color") if isinstance(c, dict) and c.get("field") == "mean_weight"]
    thought = [c for c in walk(spec, "fill") if isinstance(c, dict) and c.get("field") == "mean_weight"]
    assert len(context) == 1 and len(thought) == 1  # two scales: Q/BOT/EOT keys, thought keys
    assert context[0]["scale"]["domain"] == [0, 1] and "Q, BOT, EOT" in " ".join(context[0]["title"])
    top = max(r["mean_weight"] for r in cells if r["src_name"] in THOUGHTS)
    assert thought[0]["scale"]["domain"] == [0, pytest.approx(top)] and top < 0.7  # not 0..1
    assert "T0..T5" in " ".join(thought[0]["title"])
    filters = [f for f in walk(spec, "filter") if isinstance(f, str) and "src_name" in f]
    assert any(">= 0" in f for f in filters) and any("< 0" in f for f in filters)  # cells split by key
    svg = svg_of(spec)
    assert svg.count("<linearGradient") >= 2  # two colour legends drawn
    assert ">T0..T5 (own scale)<" in svg and ">Q, BOT, EOT<" in svg  # the legends say which is which


def test_run_comparison_plots_compare_paired_differences(runs):
    from analysis.compare import compare_runs

    spec = chart_spec(charts.run_comparison(runs[RUN_A], runs[RUN_B]))
    plotted = {
        (r["patch_layer_a"], r["patch_layer_b"], r["thought"]): r for r in rows_of(spec) if "diff_low" in r
    }
    by_thought = compare_runs(runs[RUN_A], runs[RUN_B]).by_thought
    assert len(plotted) == by_thought.height == 6
    for row in by_thought.iter_rows(named=True):
        shown = plotted[row["patch_layer_a"], row["patch_layer_b"], row["thought"]]
        for column in ("difference", "diff_low", "diff_high"):
            assert shown[column] == pytest.approx(row[column]), column
    t0 = plotted[1, 0, 0]
    assert t0["difference"] == pytest.approx(1 / 2 - 3 / 4) and t0["diff_low"] < t0["difference"]
    ys = list(walk(spec, "y"))
    assert {"datum": 0} in ys and any(isinstance(y, dict) and y.get("field") == "diff_low" for y in ys)
    assert "paired difference B − A" in svg_of(spec)


def two_runs_one_attention(path) -> str:
    """Runs same-a and same-b: the same problems and baseline attention (as one model on one problem set),
    different outcomes and patch layers; other-attn: like same-a, with attention captured for P1..P3 only."""
    import warehouse

    store = warehouse.open_warehouse(path, durable=False)
    names = ["P1", "P2", "P3", "P4"]
    runs = {
        "same-a": (1, vd.A_FAILS, names),
        "same-b": (0, {"P1": {(2, "zero")}}, names),
        "other-attn": (1, vd.A_FAILS, names[:3]),
    }
    for run_id, (layer, fails, attended) in runs.items():
        run = store.begin_run(
            {"hand": run_id},
            run_id=run_id,
            model_name="gpt2-tiny",
            n_layers=2,
            n_heads=2,
            patch_layers=[layer],
        )
        results = vd.results_rows(
            names, ["zero", "gauss"], vd.A_BASE_CORRECT, fails, vd.A_FIXED, vd.KL_A, layer
        )
        store.append_problems(run, vd.problem_rows(names), results, vd.attention_rows(attended))
        store.finish_run(run)
    return str(store.path)


def test_a_pair_report_draws_identical_baseline_attention_once(tmp_path):
    from analysis.charts.registry import IDENTICAL
    from analysis.frames import reading
    from analysis.report import build_charts

    db = two_runs_one_attention(tmp_path / "w")
    with open_warehouse(db, read_only=True) as store:
        a, b, other = store.run("same-a"), store.run("same-b"), store.run("other-attn")
        with reading(a, b) as con:
            same = {info.name: chart_spec(chart) for info, chart in build_charts(con, "same-a", "same-b")}
        with reading(a, other) as con:
            apart = {
                info.name: chart_spec(chart) for info, chart in build_charts(con, "same-a", "other-attn")
            }
    for name in ("top_head_matrices", "layer_matrices", "hub_flow_skip", "head_ranking"):
        once, twice = same[name], apart[name]
        assert IDENTICAL in json.dumps(once["title"]), name
        assert {r.get("run_id") for r in rows_of(once)} - {None} == {"same-a"}, name  # drawn once
        assert IDENTICAL not in json.dumps(twice["title"]), name
        assert {r.get("run_id") for r in rows_of(twice)} - {None} == {"same-a", "other-attn"}, name
        svg_of(once)  # renders
    # only charts of baseline attention alone: the ones with outcomes show both runs
    for name in ("importance_by_thought", "attention_vs_importance", "correlation_by_layer"):
        assert IDENTICAL not in json.dumps(same[name]["title"]), name
        assert {r.get("run_id") for r in rows_of(same[name])} - {None} == {"same-a", "same-b"}, name
