"""The report's tables: each run's lineage, the findings, and the key numbers with their inference.

One source: the key tables and the findings are read from each run's RunStats (analysis.stats.run_stats:
the views' rows plus p-values, adjusted p-values and bootstrap intervals), the same numbers `stats`
prints; nothing is recomputed here. The HTML is analysis/templates/tables.html.j2; numbers a reader
compares across rows (rates, r, p) are formatted the same way in every table (analysis.templating.cell);
the charts carry the detail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import duckdb
import polars as pl

from analysis.readouts import DECODING_NOTE, OPERAND_NOTE, PROBE_NOTE, TOKENS_NOTE
from analysis.stats import FAMILY_TABLES, NOT_MEANINGFUL, READOUT_TABLES, SECTIONS, TOP_HEADS, RunStats

# Lineage rows shown for each run, in order: the runs table via Warehouse.show_run, the settings of
# CONFIG_FIELDS from the view run_config (run_settings).
META_FIELDS = [
    ("run_id", "run"),
    ("name", "name"),
    ("tags", "tags"),
    ("note", "note"),
    ("status", "status"),
    ("model_name", "model"),
    ("weights_sha256", "weights sha256"),
    ("n_layers", "layers"),
    ("n_heads", "heads"),
    ("d_model", "d_model"),
    ("dataset_name", "dataset"),
    ("dataset_hash", "dataset hash"),
    ("n_problems_planned", "problems planned"),
    ("patch_layers", "patch layers"),
    ("methods", "methods"),
    ("sigmas", "sigmas (gauss)"),
    ("noise_scale", "noise scale (gauss)"),
    ("seed", "seed"),
    ("problem_seed", "problem seed"),
    ("attention", "attention capture"),
    ("convention", "convention"),
    ("started_at", "started (UTC)"),
    ("finished_at", "finished (UTC)"),
    ("code_version", "code version"),
    ("device", "device"),
    ("dtype", "dtype"),
    ("config_hash", "config hash"),
    ("parent_run_id", "parent run"),
]


# Read from run_config, not the runs row: sigmas and noise scale only for runs that ran gauss (NULL, shown
# as a dash, otherwise), and the settings that live in the run's config.
CONFIG_FIELDS = ("sigmas", "noise_scale", "problem_seed", "attention")


def run_settings(con: duckdb.DuckDBPyConnection, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each run's CONFIG_FIELDS from the view run_config, by run id (what the lineage table shows)."""
    marks = ", ".join("?" for _ in ids)
    frame = con.sql(
        f"SELECT run_id, {', '.join(CONFIG_FIELDS)} FROM run_config WHERE run_id IN ({marks})", params=ids
    ).pl()
    return {row.pop("run_id"): row for row in frame.iter_rows(named=True)}


@dataclass(frozen=True)
class Table:
    key: str
    title: str
    view: str  # the view(s) the rows come from (the inference columns are `stats`')
    frame: pl.DataFrame
    percent: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # printed under the table: what the intervals and adjusted p's cover


@dataclass(frozen=True)
class Spec:
    """A key table of the report: a RunStats frame, the view its rows come from, what is shown."""

    key: str
    title: str
    view: str
    table: str  # the RunStats frame
    # shown, in order (those the frame has); None: the columns `stats` prints for the table (stats.SECTIONS)
    columns: tuple[str, ...] | None
    percent: tuple[str, ...] = ()
    rename: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def shown(self) -> tuple[str, ...]:
        return tuple(SECTIONS[self.table][1]) if self.columns is None else self.columns


RATES = ("failure_rate", "ci_low", "ci_high", "boot_low", "boot_high")
WILSON_BOOT = (
    "ci_low, ci_high: 95% Wilson interval (the view's; treats a problem's trials as independent); "
    "boot_low, boot_high: 95% bootstrap interval over problems (stats; problems resampled whole)."
)

SPECS = (
    Spec(
        "importance",
        "Importance by thought",
        "token_importance",
        "importance",
        None,
        RATES,
        (("thought_name", "thought"),),
        (WILSON_BOOT,),
    ),
    Spec(
        "methods",
        "Corruptions",
        "method_comparison",
        "methods",
        (
            "patch_layer",
            "condition",
            "n",
            "failures",
            "failure_rate",
            "ci_low",
            "ci_high",
            "boot_low",
            "boot_high",
            "mean_kl",
            "mean_logp_drop",
            "mean_disruption",
        ),
        RATES,
        notes=(WILSON_BOOT,),
    ),
    Spec(
        "method_agreement",
        "Method agreement (RQ2): Kendall's W of the corruption methods' thought profiles",
        "method_thought_profile",
        "method_agreement",
        None,
        notes=(
            "w: Kendall's W over the methods (sigmas pooled, clean left out); p_perm: permutation test "
            "(each method's thought ranking shuffled); mean_rho: mean Spearman rho over pairs of methods.",
        ),
    ),
    Spec(
        "correlation",
        "Attention-importance correlation by layer",
        "layer_correlation",
        "correlation",
        (
            "patch_layer",
            "layer",
            "n",
            "problems",
            "r",
            "r_low",
            "r_high",
            "p",
            "p_holm",
            "r_within",
            "p_within_perm",
            "p_within_holm",
        ),
        notes=(
            "r: pooled over (problem, thought) pairs; r_low, r_high: 95% bootstrap interval over problems; "
            "p: t-test of r (as scipy.stats.pearsonr); p_within_perm: permutation test of the "
            "within-problem r_within (attention vectors shuffled between problems).",
        ),
    ),
    Spec(
        "strata_test",
        "Do difficulty strata differ in r?",
        "difficulty_strata",
        "strata_test",
        None,
        notes=(
            "q: Cochran's Q of the strata's Fisher-z r; p_perm: stratum labels permuted across problems.",
        ),
    ),
    Spec(
        "hubs",
        "Hub scores",
        "hub_scores",
        "hubs",
        None,
        rename=(("position_name", "thought"),),
        notes=("incoming_norm_low, incoming_norm_high: 95% bootstrap interval over problems.",),
    ),
    Spec(
        "heads",
        f"Top {TOP_HEADS} heads",
        "head_metrics",
        "top_heads",
        (
            "rank",
            "layer",
            "head",
            "functional_type",
            "composite",
            "composite_low",
            "composite_high",
            "flow",
            "p_flow",
            "hub",
            "p_hub",
            "skip",
            "p_skip",
            "self_attn",
        ),
        notes=(
            "composite_low, composite_high: 95% bootstrap interval over problems; p_flow, p_hub, p_skip: "
            "Holm-adjusted over every head and score of the run, score above the median head's.",
        ),
    ),
)
# The intervention families' tables: in the report only when a run has one of the table's families
# (stats.FAMILY_TABLES): pairs / triplets and components (analysis/combos.py), heads and edges
# (analysis/families.py).
FAMILY_SPECS = (
    Spec(
        "interactions",
        "Interactions: thoughts corrupted together (pairs, triplets)",
        "interactions",
        "interactions",
        (
            "patch_layer",
            "condition",
            "combination_name",
            "n",
            "joint_rate",
            "joint_boot_low",
            "joint_boot_high",
            "rate_a",
            "rate_b",
            "rate_c",
            "expected",
            "expected_low",
            "expected_high",
            "synergy",
            "synergy_low",
            "synergy_high",
            "p_boot",
            "p_holm",
            "redundancy",
            "mean_logp_drop",
        ),
        (
            "joint_rate",
            "joint_boot_low",
            "joint_boot_high",
            "rate_a",
            "rate_b",
            "rate_c",
            "expected",
            "expected_low",
            "expected_high",
            "synergy",
            "synergy_low",
            "synergy_high",
            "redundancy",
        ),
        (("combination_name", "thoughts"),),
        (
            "Rates among baseline-correct problems with every single thought's row; rate_a, rate_b, "
            "rate_c: each thought corrupted alone at the same layer and method; expected = 1 - prod(1 - "
            "rate): independent "
            "effects; synergy = joint_rate - expected; redundancy = max(expected - joint_rate, 0). *_low, "
            "*_high: 95% bootstrap interval over problems; p_boot: bootstrap p of synergy != 0 (the "
            "percentile interval inverted).",
        ),
    ),
    Spec(
        "components",
        "Components: attention output, MLP output and block output",
        "component_importance",
        "components",
        None,
        ("failure_rate", "ci_low", "ci_high"),
        (("thought_name", "thought"),),
        (
            "site attn / mlp: the attention / MLP output of the patch layer corrupted at the thought; "
            "block: the whole block output (the classic rows), for reference. ci_low, ci_high: 95% Wilson "
            "interval.",
        ),
    ),
    Spec(
        "component_tests",
        "Attention vs MLP output (paired)",
        "component_comparison",
        "component_tests",
        None,
        ("failure_rate_attn", "failure_rate_mlp", "difference", "failure_rate_block"),
        (("thought_name", "thought"),),
        (
            "The same baseline-correct problems under both corruptions; attn_only, mlp_only: problems "
            "only one of them breaks; p_mcnemar: McNemar's exact test of those discordant problems "
            "(statsmodels).",
        ),
    ),
    Spec(
        "head_effects",
        "Heads ablated one at a time",
        "head_effects",
        "head_effects",
        None,
        RATES,
        (("head_label", "head"),),
        (
            WILSON_BOOT,
            "steps: the thought steps ablated ('all' = T0..T5); composite, composite_rank: the head's "
            "descriptive score from attention (head_metrics).",
        ),
    ),
    Spec(
        "head_correlation",
        "Do the heads that look like hubs matter? Causal effect vs descriptive composite",
        "head_effects",
        "head_correlation",
        None,
        notes=(
            "rho_failure, rho_logp: Spearman rho over heads of the failure rate and of the mean log p(gold) "
            "drop against the composite; p: scipy.stats.spearmanr; *_low, *_high: 95% bootstrap interval "
            "over problems (the composite held fixed); the clean control is left out.",
        ),
    ),
    Spec(
        "head_topk",
        "Heads ablated together",
        "head_topk_effects",
        "head_topk",
        None,
        ("failure_rate", "ci_low", "ci_high"),
        notes=("top_ranked: the set is the run's k top-ranked heads by composite.",),
    ),
    Spec(
        "edges",
        "Edge knockout by key thought",
        "edge_knockout",
        "edges",
        None,
        RATES,
        (("thought_name", "thought"),),
        (
            WILSON_BOOT,
            "layers: where attention to the thought is removed ('all' = every layer); is_hub: the thought is "
            "the run's descriptive hub (highest incoming_norm in hub_scores); clean: the control.",
        ),
    ),
    Spec(
        "edge_tests",
        "Is the descriptive hub causal? Its knockout vs each other thought's",
        "edge_knockout_problems",
        "edge_tests",
        None,
        ("failure_rate_hub", "failure_rate_other", "difference", "diff_low", "diff_high"),
        (("hub_name", "hub"), ("thought_name", "thought")),
        (
            "paired per baseline-correct problem; difference = hub - other, diff_low, diff_high: 95% "
            "bootstrap interval over problems; p_mcnemar: McNemar's exact test on the problems where only "
            "one of the two knockouts flips the answer (hub_only, other_only).",
        ),
    ),
)
# The readouts' tables: in the report only when a run has the readout (stats.READOUT_TABLES,
# RunStats.readouts): the compact tables `stats` prints; the charts carry every layer.
READOUT_SPECS = (
    Spec(
        "decoding_best",
        "Decoding (logit lens): thoughts against their step's value, best layer",
        "thought_decoding",
        "decoding_best",
        None,
        ("rate", "ci_low", "ci_high", "control_rate", "lift"),
        (("position_name", "thought"),),
        (DECODING_NOTE,),
    ),
    Spec(
        "question_tokens",
        "Question tokens each thought reads most (last layer)",
        "question_token_routing",
        "question_tokens",
        None,
        ("share_of_question",),
        (("dst_name", "query"),),
        (TOKENS_NOTE,),
    ),
    Spec(
        "operand_best",
        "Do thoughts read their step's operands? Best layer",
        "thought_operand_reading",
        "operand_best",
        None,
        ("rate", "ci_low", "ci_high", "chance", "lift"),
        (("dst_name", "thought"),),
        (OPERAND_NOTE,),
    ),
    Spec(
        "probe_best",
        "Linear probes: the best position and layer per target",
        "probe_best",
        "probe_best",
        None,
        rename=(("position_name", "position"),),
        notes=(PROBE_NOTE,),
    ),
)
SUMMARY = Spec(
    "summary",
    "Runs side by side",
    "model_comparison",
    "header",
    (
        "model_name",
        "dataset_name",
        "patch_layers",
        "problems",
        "baseline_accuracy",
        "n",
        "failures",
        "failure_rate",
        "ci_low",
        "ci_high",
        "mean_kl",
    ),
    ("baseline_accuracy", "failure_rate", "ci_low", "ci_high"),
)
HUB_COLUMNS = ("thought", "ratio", "ratio_low", "ratio_high", "p", "problems", "n_perm", "supported")


def letters(stats: Sequence[RunStats]) -> list[str]:
    """'A' and 'B' for a pair; '' for one run."""
    return ["AB"[i] for i in range(len(stats))] if len(stats) > 1 else [""]


def _placeholder(frame: pl.DataFrame) -> bool:
    """A legacy run's rows of a view that needs our positions: a note and no numbers."""
    if "note" not in frame.columns or frame.is_empty():
        return False
    return all((n or "").startswith(NOT_MEANINGFUL) for n in frame["note"].to_list())


def _notes(frame: pl.DataFrame) -> list[str]:
    if "note" not in frame.columns:
        return []
    return [n for n in frame["note"].unique(maintain_order=True).to_list() if n]


def _table(spec: Spec, stats: Sequence[RunStats]) -> Table:
    """One key table: the spec's columns of each run's frame (runs labelled A and B in a pair), the views'
    notes, what the intervals are and which family each adjusted p covers (settings['families'])."""
    frames, notes = [], list(spec.notes)
    for letter, run in zip(letters(stats), stats, strict=True):
        frame = getattr(run, spec.table)
        prefix = f"run {letter}: " if letter else ""
        notes += [prefix + n for n in _notes(frame)]
        if _placeholder(frame):
            continue
        frame = frame.select([c for c in spec.shown if c in frame.columns])
        if letter:
            frame = frame.select(pl.lit(letter).alias("run"), pl.all())
        frames.append(frame)
        families = run.settings.get("families", {}).get(spec.table, {})
        notes += [
            f"{prefix}{column}: {text}." for column, text in families.items() if column in frame.columns
        ]
    columns = (["run"] if len(stats) > 1 else []) + list(spec.shown)
    frame = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    frame = frame.select([c for c in columns if c in frame.columns]).rename(
        {old: new for old, new in spec.rename if old in frame.columns}
    )
    return Table(spec.key, spec.title, spec.view, frame, spec.percent, tuple(dict.fromkeys(notes)))


def hub_test_table(stats: Sequence[RunStats]) -> Table:
    """The hub test of each run (stats.hub): the most attended thought, hub ratio with its bootstrap
    interval, the permutation p against 'no hub', and whether it stands out; the finding under it."""
    rows, notes = [], []
    for letter, run in zip(letters(stats), stats, strict=True):
        if not run.hub:
            continue
        rows.append({**({"run": letter} if letter else {}), **{c: run.hub.get(c) for c in HUB_COLUMNS}})
        notes.append((f"run {letter}: " if letter else "") + run.hub["finding"] + ".")
    notes.append(
        "ratio: max / mean over T0..T4 of incoming_norm; ratio_low, ratio_high: 95% bootstrap interval "
        "over problems; p: permutation test against 'no hub' (thought labels shuffled within each "
        "problem), which also covers naming the thought (max-T)."
    )
    frame = pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()
    return Table("hub_test", "Hub test", "hub_scores, int_problem_incoming", frame, (), tuple(notes))


def head_rule_notes(stats: Sequence[RunStats]) -> list[str]:
    """The rule that gates the heads' functional_type, once, and each run's count of typed heads."""
    notes = []
    for letter, run in zip(letters(stats), stats, strict=True):
        summary = run.head_types
        if not summary:
            continue
        typed = ", ".join(f"{n} {t}" for t, n in summary["typed"].items()) or "no head"
        notes.append(
            (f"run {letter}: " if letter else "")
            + f"heads with a supported type: {typed} (of {summary['heads']}; the rest 'none')."
        )
    rule = next((run.head_types["rule"] for run in stats if run.head_types), None)
    return ([f"functional_type: {rule}."] if rule else []) + notes


def key_tables(stats: Sequence[RunStats]) -> list[Table]:
    """Importance, corruptions, method agreement, correlation by layer, the strata test, hubs and the hub
    test, and the top heads of the runs (a side-by-side summary first for a pair), then the tables of the
    intervention families a run has (pairs / triplets, components, heads, edges: stats.FAMILY_TABLES), then
    those of the readouts a run has (decoding, token_attention, probes: stats.READOUT_TABLES), from their
    RunStats."""
    families = {family for run in stats for family in run.families}
    readouts = {readout for run in stats for readout in run.readouts}
    specs = ([SUMMARY] if len(stats) > 1 else []) + list(SPECS)
    specs += [spec for spec in FAMILY_SPECS if families & set(FAMILY_TABLES[spec.table])]
    specs += [spec for spec in READOUT_SPECS if readouts & set(READOUT_TABLES[spec.table])]
    tables = []
    for spec in specs:
        table = _table(spec, stats)
        if spec.key == "heads":
            table = replace(table, notes=(*table.notes, *head_rule_notes(stats)))
        tables.append(table)
        if spec.key == "hubs":
            tables.append(hub_test_table(stats))
    return tables


def findings(stats: Sequence[RunStats]) -> list[dict[str, Any]]:
    """Each run's findings (RunStats.findings(): its sentences, as `stats` prints them), labelled A and B
    in a pair."""
    return [
        {"letter": letter, "run_id": run.run_id, "sentences": run.findings()}
        for letter, run in zip(letters(stats), stats, strict=True)
    ]
