"""The charts in report order: each with its file name, heading, the views it reads and a caption.

`ChartInfo.function` is the public face (Run handles in, an Altair chart out); `ChartInfo.build` draws on
an open connection, which the report uses to draw every chart over one connection (`build_chart`). A chart
of baseline attention alone (`baseline_attention`) whose data are the same for both runs of a pair (same
model, same problems) is drawn once there, with a note, instead of twice.

`CHARTS` are the charts of every run; `FAMILY_CHARTS` those of an intervention family beyond the classic one
(`ChartInfo.families`), drawn only for runs that have it (`run_families`, `charts_for(pair, families)`);
`READOUT_CHARTS` those of a readout of the baseline (`ChartInfo.readouts`: decoding, token_attention,
probes), drawn only for runs that have it (`run_readouts`, `charts_for(pair, families, readouts)`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import duckdb

from analysis.charts._base import Builder, Chart, with_note
from analysis.charts._data import Runs
from analysis.charts.agreement import _method_agreement, method_agreement
from analysis.charts.attention import (
    _attention_vs_importance,
    _correlation_by_layer,
    _difficulty_strata,
    attention_vs_importance,
    correlation_by_layer,
    difficulty_strata,
)
from analysis.charts.combos import _component_sites, _synergy_matrix, component_sites, synergy_matrix
from analysis.charts.comparison import _model_comparison, _run_comparison, model_comparison, run_comparison
from analysis.charts.families import (
    _edge_knockout,
    _head_effects_vs_composite,
    edge_knockout,
    head_effects_vs_composite,
)
from analysis.charts.heads import (
    _head_ranking,
    _hub_flow_skip,
    _layer_matrices,
    _top_head_matrices,
    head_ranking,
    hub_flow_skip,
    layer_matrices,
    top_head_matrices,
)
from analysis.charts.importance import (
    _importance_by_thought,
    _method_effects,
    _problem_thought_heatmap,
    _thought_method_heatmap,
    importance_by_thought,
    method_effects,
    problem_thought_heatmap,
    thought_method_heatmap,
)
from analysis.charts.readouts import (
    _decoding_heatmap,
    _operand_reading,
    _probe_heatmap,
    _question_tokens,
    decoding_heatmap,
    operand_reading,
    probe_heatmap,
    question_tokens,
)
from analysis.readouts import run_readouts as run_readouts  # re-exported: analysis.charts
from warehouse.handle import Run


@dataclass(frozen=True)
class ChartInfo:
    name: str  # file stem and anchor
    heading: str
    function: Callable[[Run, Run | None], Chart]  # the public face
    build: Builder  # the same chart on an open connection (the report draws them all over one)
    views: tuple[str, ...]
    caption: str
    pair_only: bool = False
    baseline_attention: bool = False  # draws baseline attention alone: drawn once when the same for A and B
    # an intervention family's chart: drawn only for runs with one of these families (results.family)
    families: tuple[str, ...] = ()
    # a readout's chart: drawn only for runs with one of these readouts (analysis.readouts.run_readouts)
    readouts: tuple[str, ...] = ()


CHARTS: list[ChartInfo] = [
    ChartInfo(
        "importance_by_thought",
        "Importance by thought",
        importance_by_thought,
        _importance_by_thought,
        ("token_importance",),
        "How often corrupting each continuous thought flips a correct answer, with 95% Wilson intervals.",
    ),
    ChartInfo(
        "thought_method_heatmap",
        "Thought x corruption",
        thought_method_heatmap,
        _thought_method_heatmap,
        ("importance_matrix",),
        "The same failure rate split by corruption method and noise level: which thoughts break under "
        "which corruption.",
    ),
    ChartInfo(
        "problem_thought_heatmap",
        "Problem x thought",
        problem_thought_heatmap,
        _problem_thought_heatmap,
        ("int_problem_importance", "stg_problems"),
        "Importance per problem: whether a few problems or all of them drive a thought's failure rate, "
        "grouped by difficulty.",
    ),
    ChartInfo(
        "attention_vs_importance",
        "Attention vs importance",
        attention_vs_importance,
        _attention_vs_importance,
        ("int_attention_importance", "layer_correlation"),
        "Does the answer-predicting EOT position attend more to the thoughts that matter? One point per "
        "(problem, thought), one panel per layer, titled with the pooled r over those points, its 95% "
        "bootstrap interval over problems and its p, as `stats` gives them.",
    ),
    ChartInfo(
        "correlation_by_layer",
        "Correlation by layer",
        correlation_by_layer,
        _correlation_by_layer,
        ("layer_correlation", "int_attention_importance"),
        "Attention-importance correlation by layer, pooled and within problems with 95% bootstrap bands "
        "(as `stats` gives them), and per thought.",
    ),
    ChartInfo(
        "difficulty_strata",
        "Difficulty strata",
        difficulty_strata,
        _difficulty_strata,
        ("difficulty_strata",),
        "Accuracy, importance and the attention-importance correlation by number of solution steps "
        "(<=2, 3, 4, 5+).",
    ),
    ChartInfo(
        "method_effects",
        "KL and disruption by corruption",
        method_effects,
        _method_effects,
        ("method_comparison",),
        "Failure rate, KL divergence at the answer and attention disruption for every corruption.",
    ),
    ChartInfo(
        "method_agreement",
        "Method agreement",
        method_agreement,
        _method_agreement,
        ("method_thought_profile",),
        "Do the corruption methods rank the thoughts alike? Spearman rho between every pair of methods' "
        "failure rates per thought, with Kendall's W over the methods and its permutation p.",
    ),
    ChartInfo(
        "top_head_matrices",
        "Top heads' attention matrices",
        top_head_matrices,
        _top_head_matrices,
        ("flow_matrix", "head_metrics"),
        "Where the top-ranked heads look: mean attention from each thought (and EOT) to each earlier "
        "position; the question, BOT and EOT keys on one colour scale (0-1), the thought keys on their own.",
        baseline_attention=True,
    ),
    ChartInfo(
        "layer_matrices",
        "Attention matrices by layer",
        layer_matrices,
        _layer_matrices,
        ("flow_matrix_by_layer",),
        "The same matrices averaged over the heads of each layer, with the same two colour scales.",
        baseline_attention=True,
    ),
    ChartInfo(
        "hub_flow_skip",
        "Hubs, flow and skips",
        hub_flow_skip,
        _hub_flow_skip,
        ("hub_scores", "thought_flow"),
        "Which thoughts later thoughts attend to (hubs), and how much each thought attends to the previous "
        "one, to itself, and from T5 back to T0..T2.",
        baseline_attention=True,
    ),
    ChartInfo(
        "head_ranking",
        "Head ranking",
        head_ranking,
        _head_ranking,
        ("head_metrics",),
        "Heads ranked by a composite of sequential flow, hub and skip scores, with their functional type.",
        baseline_attention=True,
    ),
    ChartInfo(
        "run_comparison",
        "Run A vs run B",
        run_comparison,
        _run_comparison,
        ("run_comparison_by_thought", "run_comparison_by_condition", "run_comparison"),
        "Run A and run B on the problems both ran: the paired difference B - A per thought with its 95% "
        "bootstrap interval over shared problems (as `compare` gives it), each run's failure rate with "
        "Wilson intervals, KL, and every thought x corruption against the diagonal.",
        pair_only=True,
    ),
    ChartInfo(
        "model_comparison",
        "Runs side by side",
        model_comparison,
        _model_comparison,
        ("model_comparison",),
        "Each run's own summary side by side, whatever problems they ran.",
        pair_only=True,
    ),
]


# The intervention families' charts (results.family): in the report only when run A or B has one of
# the chart's families.
FAMILY_CHARTS: list[ChartInfo] = [
    ChartInfo(
        "synergy_matrix",
        "Synergy of thought pairs",
        synergy_matrix,
        _synergy_matrix,
        ("interactions",),
        "Do two thoughts corrupted together break more answers than each alone predicts? Each cell is a "
        "pair's joint failure rate minus 1 - (1 - p_a)(1 - p_b), the rate independent effects give; red: "
        "synergy, blue: redundancy; a panel per patch layer and corruption.",
        families=("pairs",),
    ),
    ChartInfo(
        "component_sites",
        "Attention vs MLP output",
        component_sites,
        _component_sites,
        ("component_importance",),
        "Corrupting only the attention output or only the MLP output of the patch layer at each thought, "
        "beside the whole block output, with 95% Wilson intervals.",
        families=("components",),
    ),
    ChartInfo(
        "head_effects",
        "Head ablation vs composite",
        head_effects_vs_composite,
        _head_effects_vs_composite,
        ("head_effects",),
        "Do the heads that look like hubs matter? Each ablated head's failure rate (95% Wilson interval) "
        "against its descriptive composite from attention, one panel per method and step scope, titled "
        "with the Spearman rho over heads and its p (as `stats` computes it on the same rows).",
        families=("heads",),
    ),
    ChartInfo(
        "edge_knockout",
        "Edge knockout",
        edge_knockout,
        _edge_knockout,
        ("edge_knockout",),
        "Is the descriptive hub causal? The failure rate when attention from later thoughts and EOT to each "
        "thought is removed (at every layer, or at one), with 95% Wilson intervals; the thought later "
        "thoughts attend to most is highlighted.",
        families=("edges",),
    ),
]


# The readouts' charts (analysis/charts/readouts.py): in the report only when run A or B has the readout.
READOUT_CHARTS: list[ChartInfo] = [
    ChartInfo(
        "decoding_heatmap",
        "Decoding: thoughts against their step's value",
        decoding_heatmap,
        _decoding_heatmap,
        ("thought_decoding",),
        "Does the logit lens of thought Tk read the value of step k+1? The share of problems where it is "
        "among the stored top-k tokens (exact match), per thought and layer; the tooltip gives the 95% "
        "Wilson interval and the control: the same test against another problem's value.",
        readouts=("decoding",),
    ),
    ChartInfo(
        "question_tokens",
        "Question tokens each thought reads",
        question_tokens,
        _question_tokens,
        ("question_token_routing",),
        "The question tokens each thought (and EOT) attends to most at the last layer, heads averaged, "
        "numbers highlighted.",
        readouts=("token_attention",),
    ),
    ChartInfo(
        "operand_reading",
        "Operand reading by layer",
        operand_reading,
        _operand_reading,
        ("thought_operand_reading",),
        "Does each thought attend to its own step's operands in the question? The hit rate of its top-1 and "
        "top-3 question tokens by layer, with 95% Wilson intervals, against the rate random tokens give.",
        readouts=("token_attention",),
    ),
    ChartInfo(
        "probe_heatmap",
        "Linear probes",
        probe_heatmap,
        _probe_heatmap,
        ("probe_summary",),
        "Where is each step's value, operation and the number of steps linearly decodable? Out-of-fold score "
        "per position and layer; * marks probes above chance after Holm's adjustment; chance and the "
        "shuffled-label baseline in the tooltip.",
        readouts=("probes",),
    ),
]


IDENTICAL = (
    "identical for both runs: A and B give this chart the same data (baseline attention), so it is drawn once"
)


def chart_data(chart: Chart) -> list[list[dict[str, Any]]]:
    """The rows a chart embeds, without the run's id and label, floats to 12 significant digits, in a
    canonical order: what decides whether two runs' charts are the same."""

    def value(v: Any) -> Any:
        return float(f"{v:.12g}") if isinstance(v, float) else v

    found = []
    for rows in chart.to_dict().get("datasets", {}).values():
        kept = [{k: value(v) for k, v in row.items() if k not in ("run", "run_id")} for row in rows]
        found.append(sorted(kept, key=lambda row: json.dumps(row, sort_keys=True, default=str)))
    return sorted(found, key=lambda rows: json.dumps(rows, sort_keys=True, default=str))


def build_chart(info: ChartInfo, con: duckdb.DuckDBPyConnection, runs: Runs) -> Chart:
    """`info.build`, except for a pair and a chart of baseline attention whose data are the same for both
    runs (same model, same problems): then run A's chart alone, noted as identical for both runs."""
    if not (runs.pair and info.baseline_attention):
        return info.build(con, runs)
    a, b = (info.build(con, runs.single(run_id)) for run_id in runs.ids)
    data = chart_data(a)
    placeholder = any("message" in row for rows in data for row in rows)  # e.g. no attention captured
    if placeholder or data != chart_data(b):
        return info.build(con, runs)
    return with_note(a, IDENTICAL)


def charts_for(pair: bool, families: Collection[str] = (), readouts: Collection[str] = ()) -> list[ChartInfo]:
    """The charts that apply to one run (pair False) or to two (every chart), in report order: the run
    charts, then those of the intervention `families` the runs have (FAMILY_CHARTS), then those of the
    `readouts` they have (READOUT_CHARTS), then the pair charts."""
    extra = [info for info in FAMILY_CHARTS if set(info.families) & set(families)]
    extra += [info for info in READOUT_CHARTS if set(info.readouts) & set(readouts)]
    single = [info for info in CHARTS if not info.pair_only]
    return single + extra + [info for info in CHARTS if pair and info.pair_only]


def run_families(con: duckdb.DuckDBPyConnection, ids: Collection[str]) -> set[str]:
    """The intervention families (stg_interventions.family) the runs have rows of."""
    marks = ", ".join("?" for _ in ids)
    found = con.execute(
        f"SELECT DISTINCT family FROM stg_interventions WHERE run_id IN ({marks})", list(ids)
    ).fetchall()
    return {row[0] for row in found}
