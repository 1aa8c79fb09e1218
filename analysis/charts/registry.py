"""The charts in report order: each with its file name, heading, the views it reads and a caption.

`ChartInfo.function` is the public face (Run handles in, an Altair chart out); `ChartInfo.build` draws on
an open connection, which the report uses to draw every chart over one connection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from analysis.charts._base import Builder, Chart
from analysis.charts.agreement import _method_agreement, method_agreement
from analysis.charts.attention import (
    _attention_vs_importance,
    _correlation_by_layer,
    _difficulty_strata,
    attention_vs_importance,
    correlation_by_layer,
    difficulty_strata,
)
from analysis.charts.comparison import _model_comparison, _run_comparison, model_comparison, run_comparison
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
        ("attention_importance", "layer_correlation"),
        "Does the answer-predicting EOT position attend more to the thoughts that matter? One panel per "
        "layer.",
    ),
    ChartInfo(
        "correlation_by_layer",
        "Correlation by layer",
        correlation_by_layer,
        _correlation_by_layer,
        ("layer_correlation",),
        "Attention-importance correlation by layer, pooled and within problems, and per thought.",
    ),
    ChartInfo(
        "difficulty_strata",
        "Difficulty strata",
        difficulty_strata,
        _difficulty_strata,
        ("difficulty_strata",),
        "Accuracy, importance and the attention-importance correlation by number of solution steps.",
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
        "position.",
    ),
    ChartInfo(
        "layer_matrices",
        "Attention matrices by layer",
        layer_matrices,
        _layer_matrices,
        ("flow_matrix_by_layer",),
        "The same matrices averaged over the heads of each layer.",
    ),
    ChartInfo(
        "hub_flow_skip",
        "Hubs, flow and skips",
        hub_flow_skip,
        _hub_flow_skip,
        ("hub_scores", "thought_flow"),
        "Which thoughts later thoughts attend to (hubs), and how much each thought attends to the previous "
        "one, to itself, and from T5 back to T0..T2.",
    ),
    ChartInfo(
        "head_ranking",
        "Head ranking",
        head_ranking,
        _head_ranking,
        ("head_metrics",),
        "Heads ranked by a composite of sequential flow, hub and skip scores, with their functional type.",
    ),
    ChartInfo(
        "run_comparison",
        "Run A vs run B",
        run_comparison,
        _run_comparison,
        ("run_comparison_by_thought", "run_comparison_by_condition"),
        "Run A and run B on the problems both ran: failure rates with intervals, KL, and every "
        "thought x corruption against the diagonal.",
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


def charts_for(pair: bool) -> list[ChartInfo]:
    """The charts that apply to one run (pair False) or to two (every chart)."""
    return [info for info in CHARTS if pair or not info.pair_only]
