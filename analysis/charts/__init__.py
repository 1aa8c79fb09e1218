"""The charts of SPEC 8: one function per chart, each reading only from the views.

Every chart function takes a run handle (`warehouse.handle.Run`, from `Warehouse.run`) and an
optional second one (`vs`) and returns an Altair chart:

    wh = open_warehouse("results/warehouse", read_only=True)
    a, b = wh.run("latest"), wh.run("2d32")
    charts.importance_by_thought(a)          # one run
    charts.importance_by_thought(a, vs=b)    # run A and run B side by side

With two runs, run A and run B appear side by side (by colour, or a panel per run); a run patched at
several layers gets a panel per patch layer. The views aggregate, so what a chart embeds stays small
whatever the run's size. `CHARTS` lists them in report order with the views each reads and a caption.

In Jupyter without a network, `charts.enable_offline()` switches Altair to the `codi_offline` renderer
(analysis/charts/offline.py): each chart output carries the vendored Vega bundle instead of loading it
from a CDN.

Modules: `importance` (failure rates), `agreement` (do corruption methods agree), `attention` (attention
vs importance), `heads` (flow, hubs, heads), `comparison` (two runs), `combos` (the pairs / triplets and
components families: synergy matrix, attention vs MLP output), `families` (the heads and edges families:
head ablation vs composite, edge knockout), `readouts` (decoding, question tokens, operand reading, probes),
`registry` (CHARTS, FAMILY_CHARTS, READOUT_CHARTS: a family's or a readout's charts are drawn only for runs
that have it), `offline` (the notebook renderer); `_base` and `_data` are the shared pieces.
"""

from __future__ import annotations

from analysis.charts._base import NO_ATTENTION
from analysis.charts.agreement import method_agreement
from analysis.charts.attention import attention_vs_importance, correlation_by_layer, difficulty_strata
from analysis.charts.combos import component_sites, synergy_matrix
from analysis.charts.comparison import model_comparison, run_comparison
from analysis.charts.families import edge_knockout, head_effects_vs_composite
from analysis.charts.heads import head_ranking, hub_flow_skip, layer_matrices, top_head_matrices
from analysis.charts.importance import (
    importance_by_thought,
    method_effects,
    problem_thought_heatmap,
    thought_method_heatmap,
)
from analysis.charts.offline import enable_offline, offline_renderer, register
from analysis.charts.readouts import decoding_heatmap, operand_reading, probe_heatmap, question_tokens
from analysis.charts.registry import (
    CHARTS,
    FAMILY_CHARTS,
    READOUT_CHARTS,
    ChartInfo,
    charts_for,
    run_families,
    run_readouts,
)

register()

__all__ = [
    "CHARTS",
    "FAMILY_CHARTS",
    "NO_ATTENTION",
    "READOUT_CHARTS",
    "ChartInfo",
    "attention_vs_importance",
    "charts_for",
    "component_sites",
    "correlation_by_layer",
    "decoding_heatmap",
    "difficulty_strata",
    "edge_knockout",
    "enable_offline",
    "head_effects_vs_composite",
    "head_ranking",
    "hub_flow_skip",
    "importance_by_thought",
    "layer_matrices",
    "method_agreement",
    "method_effects",
    "model_comparison",
    "offline_renderer",
    "operand_reading",
    "probe_heatmap",
    "problem_thought_heatmap",
    "question_tokens",
    "run_comparison",
    "run_families",
    "run_readouts",
    "synergy_matrix",
    "thought_method_heatmap",
    "top_head_matrices",
]
