"""`python cli.py stats`: the research questions' tables for one run, with p-values and intervals.

The views compute every estimate; this module adds what SQL lacks (SPEC 7), with scipy/numpy on
polars frames pulled from them:
- importance by thought and method comparison: a bootstrap interval over problems beside the
  views' Wilson interval (which treats a problem's trials as independent; the bootstrap does not);
- correlation by layer: the p-value of every r (as scipy.stats.pearsonr), a bootstrap interval of r,
  and a permutation test of the within-problem r (attention vectors shuffled between problems,
  positions kept); per-thought r with p-values; difficulty strata r with p-values, a bootstrap interval of
  each stratum's r over its problems, and a permutation test of whether r differs between strata;
- method agreement (RQ2): Kendall's W of the corruption methods' thought profiles (method_thought_profile)
  with a permutation p, and Spearman's rho of every pair of methods with an exact permutation p;
- adjusted p-values beside the raw ones (Holm or Benjamini-Hochberg, statsmodels); `settings["families"]`
  says, per table and column, which correction covers which family of tests;
- hubs: a bootstrap interval of each thought's incoming_norm and of the hub ratio, a permutation test
  against "no hub" and its finding; the top heads with intervals of their scores and a functional type only
  where a Holm-adjusted test supports it (analysis/hubs.py); flow as the view gives it;
- the intervention families beyond the classic one, each only for a run that has it: pairs / triplets
  and components (analysis/combos.py: synergy of thoughts corrupted together with bootstrap intervals and a
  bootstrap p, Holm-adjusted; attention vs MLP output failure rates with McNemar's exact test,
  Holm-adjusted), heads and edges (analysis/families.py: each ablated head's failure rate with intervals;
  the rank correlation of causal effect with the descriptive composite, scipy's Spearman p and a bootstrap
  interval; the descriptive hub's knockout against every other thought's, paired per problem, McNemar
  exact, Holm-adjusted);
- the readouts of the baseline, each only for a run that has it (analysis/readouts.py): logit-lens
  decoding of each thought to its step's value against another problem's (thought_decoding), the question
  tokens each thought reads and whether they are its step's operands (question_token_routing,
  thought_operand_reading), and linear probes with chance, the shuffled baseline and the view's Holm p
  (probe_best, probe_summary); the views' rows as they are, nothing recomputed;
- findings: each research question answered in sentences with its uncertainty (analysis/findings.py,
  analysis/hubs.py, analysis/combos.py, analysis/families.py), the report's first section.
A legacy run (SPEC 10) gets the views' notes: its importance rows name positions 'token k', and the
views that need our positions (correlations, hubs, flow, heads) give one row whose note says why they are
not meaningful for it; the text prints that note in place of the table.

    stats = run_stats(wh.run("latest"))     # RunStats: polars frames, one per table
    print(format_stats(stats)); stats.to_dict()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import polars as pl

from analysis.combos import component_tables, findings_combos, interaction_table
from analysis.families import (
    edge_table,
    edge_test_table,
    findings_edges,
    findings_heads,
    head_correlation_table,
    head_effects_table,
    head_topk_table,
)
from analysis.frames import fetch, problem_matrix, rate_intervals, reading, records, rounded, single_valued
from analysis.hubs import findings_hubs, head_sentences, head_table, hub_sentences, hub_table
from analysis.inference import ALPHA, adjust, agreement, family, strata_inference
from analysis.readouts import (
    DECODING_NOTE,
    OPERAND_NOTE,
    PROBE_NOTE,
    READOUTS,
    ROLES_NOTE,
    TOKENS_NOTE,
    TOP_TOKENS,
    findings_readouts,
    probe_family,
    readout_tables,
    run_readouts,
)
from analysis.resampling import bootstrap_r, centred, interval, pearson_p, resample_counts, within_permutation
from warehouse.handle import Run
from warehouse.output import render_table

N_BOOT, N_PERM, SEED, TOP_HEADS = 2000, 2000, 0, 10
NOT_MEANINGFUL = "not meaningful for legacy runs"  # how the views' notes for legacy placeholder rows begin
RUN = "WHERE run_id = ?"


def _with_p(frame: pl.DataFrame, r: str = "r", n: str = "n", p: str = "p") -> pl.DataFrame:
    values = [pearson_p(ri, ni) for ri, ni in zip(frame[r].to_list(), frame[n].to_list(), strict=True)]
    return frame.with_columns(pl.Series(p, values, pl.Float64))


def importance_table(con: duckdb.DuckDBPyConnection, run_id: str, n_boot: int, seed: int) -> pl.DataFrame:
    view = fetch(con, f"SELECT * FROM token_importance {RUN} ORDER BY patch_layer, thought", [run_id])
    per_problem = fetch(
        con,
        f"SELECT patch_layer, thought, problem_id, failures, trials FROM int_problem_importance {RUN}",
        [run_id],
    )
    boot = rate_intervals(per_problem, ["patch_layer", "thought"], n_boot, seed)
    return view.join(boot, on=["patch_layer", "thought"], how="left", nulls_equal=True)


def method_table(con: duckdb.DuckDBPyConnection, run_id: str, n_boot: int, seed: int) -> pl.DataFrame:
    view = fetch(con, f"SELECT * FROM method_comparison {RUN} ORDER BY patch_layer, method, sigma", [run_id])
    per_problem = fetch(
        con,
        "SELECT patch_layer, condition, problem_id, count(*) FILTER (WHERE failed) AS failures, "
        f"count(*) AS trials FROM int_outcomes {RUN} AND base_correct AND NOT is_baseline "
        "GROUP BY ALL",
        [run_id],
    )
    boot = rate_intervals(per_problem, ["patch_layer", "condition"], n_boot, seed)
    return view.join(boot, on=["patch_layer", "condition"], how="left", nulls_equal=True)


def correlation_table(
    con: duckdb.DuckDBPyConnection, run_id: str, n_boot: int, n_perm: int, seed: int
) -> pl.DataFrame:
    """layer_correlation plus p, bootstrap intervals of r and r_within, and the permutation p of r_within."""
    view = _with_p(fetch(con, f"SELECT * FROM layer_correlation {RUN} ORDER BY patch_layer, layer", [run_id]))
    pairs = fetch(
        con,
        f"SELECT patch_layer, layer, problem_id, thought, attention, importance "
        f"FROM int_attention_importance {RUN}",
        [run_id],
    )
    extra = []
    for (patch_layer, layer), group in pairs.group_by(["patch_layer", "layer"], maintain_order=True):
        a, b = problem_matrix(group, "attention"), problem_matrix(group, "importance")
        counts = resample_counts(a.shape[0], n_boot, np.random.default_rng(seed))
        r_low, r_high = interval(bootstrap_r(a, b, counts))
        w_low, w_high = interval(bootstrap_r(centred(a), centred(b), counts))
        _, p_perm, complete = within_permutation(a, b, n_perm, np.random.default_rng([seed, 1]))
        extra.append(
            {
                "patch_layer": patch_layer,
                "layer": layer,
                "r_low": float(r_low),
                "r_high": float(r_high),
                "r_within_low": float(w_low),
                "r_within_high": float(w_high),
                "p_within_perm": p_perm,
                "perm_problems": complete,
            }
        )
    if not extra:
        return view
    return view.join(
        pl.DataFrame(extra, infer_schema_length=None),
        on=["patch_layer", "layer"],
        how="left",
        nulls_equal=True,
    )


def thought_correlation_table(con: duckdb.DuckDBPyConnection, run_id: str) -> pl.DataFrame:
    view = fetch(
        con,
        f"SELECT patch_layer, layer, thought, thought_name, problems, mean_attention, mean_importance, r, "
        f"note FROM attention_importance {RUN} ORDER BY patch_layer, layer, thought",
        [run_id],
    )
    return _with_p(view, n="problems")


def strata_tables(
    con: duckdb.DuckDBPyConnection, run_id: str, n_boot: int, n_perm: int, seed: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """difficulty_strata plus p and a bootstrap interval of r over the stratum's problems, strata in the
    order <=2, 3, 4, 5+; and per patch layer and layer the permutation test of whether r differs between
    strata (analysis.inference.strata_inference)."""
    view = _with_p(
        fetch(
            con,
            f"SELECT * FROM difficulty_strata {RUN} ORDER BY patch_layer, stratum_rank NULLS LAST, layer",
            [run_id],
        )
    )
    pairs = fetch(
        con,
        "SELECT patch_layer, layer, stratum, problem_id, thought, attention, importance "
        f"FROM int_attention_importance {RUN} ORDER BY patch_layer, layer",
        [run_id],
    )
    intervals, tests = strata_inference(pairs, n_boot, n_perm, seed)
    keys = ["patch_layer", "layer", "stratum"]
    table = view.join(intervals, on=keys, how="left", nulls_equal=True, maintain_order="left")
    columns = table.columns
    at = columns.index("r") + 1
    order = [*columns[:at], "r_low", "r_high", *[c for c in columns[at:] if c not in ("r_low", "r_high")]]
    return table.select(order), tests


def method_agreement_tables(
    con: duckdb.DuckDBPyConnection, run_id: str, n_perm: int, seed: int
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Kendall's W of the methods' thought profiles and Spearman's rho per pair (RQ2), per patch layer."""
    profile = fetch(
        con,
        "SELECT patch_layer, method, thought, thought_name, n, failure_rate "
        f"FROM method_thought_profile {RUN} ORDER BY patch_layer, method, thought",
        [run_id],
    )
    return agreement(profile, n_perm, seed)


# table -> [(p column, method, adjusted column, what the family is)]; each family: every row of the table
ADJUSTMENTS = {
    "correlation": [
        ("p", "holm", "p_holm", "pooled-r tests of this run (one per patch layer x layer)"),
        (
            "p_within_perm",
            "holm",
            "p_within_holm",
            "within-problem permutation tests of this run (one per patch layer x layer)",
        ),
    ],
    "correlation_by_thought": [
        ("p", "fdr_bh", "p_bh", "per-thought r tests of this run (one per patch layer x layer x thought)"),
    ],
    "strata": [
        ("p", "fdr_bh", "p_bh", "per-stratum r tests of this run (one per patch layer x stratum x layer)"),
    ],
    "strata_test": [
        ("p_perm", "holm", "p_holm", "strata-differ tests of this run (one per patch layer x layer)"),
    ],
    "method_agreement": [
        ("p_perm", "holm", "p_holm", "Kendall's W tests of this run (one per patch layer)"),
    ],
    "method_pairs": [
        (
            "p_exact",
            "holm",
            "p_holm",
            "method-pair Spearman tests of this run (every pair, every patch layer)",
        ),
    ],
    "interactions": [
        (
            "p_boot",
            "holm",
            "p_holm",
            "synergy tests of this run (one per patch layer x method x combination of thoughts)",
        ),
    ],
    "component_tests": [
        (
            "p_mcnemar",
            "holm",
            "p_holm",
            "attn-vs-mlp McNemar tests of this run (one per patch layer x thought x method)",
        ),
    ],
    "head_correlation": [
        (
            "p_failure",
            "holm",
            "p_failure_holm",
            "head failure-rate vs composite Spearman tests of this run (one per method x step scope)",
        ),
        (
            "p_logp",
            "holm",
            "p_logp_holm",
            "head log p(gold) drop vs composite Spearman tests of this run (one per method x step scope)",
        ),
    ],
    "edge_tests": [
        (
            "p_mcnemar",
            "holm",
            "p_holm",
            "hub-vs-thought knockout McNemar tests of this run (every other thought, every layer scope)",
        ),
    ],
}


def adjusted_tables(tables: dict[str, pl.DataFrame]) -> tuple[dict[str, pl.DataFrame], dict[str, dict]]:
    """Every table of ADJUSTMENTS with its adjusted p columns (placed after the raw p), and the families:
    {table: {adjusted column: 'Holm over the 24 pooled-r tests of this run (...)'}}."""
    families: dict[str, dict[str, str]] = {}
    out = dict(tables)
    for name, specs in ADJUSTMENTS.items():
        frame = out[name]
        for p, method, column, what in specs:
            if p not in frame.columns:
                continue
            frame, size = adjust(frame, p, method, column)
            columns = [c for c in frame.columns if c != column]
            at = columns.index(p) + 1
            frame = frame.select([*columns[:at], column, *columns[at:]])
            if size:
                families.setdefault(name, {})[column] = family(method, size, what)
        out[name] = frame
    return out, families


def flow_table(con: duckdb.DuckDBPyConnection, run_id: str) -> pl.DataFrame:
    """Previous-thought, self and skip attention per thought pair, averaged over layers and heads
    (thought_flow)."""
    return fetch(
        con,
        f"SELECT kind, dst, src, pair, mean_weight, min_head, max_head, note FROM thought_flow {RUN} "
        "AND layer IS NULL ORDER BY kind, dst, src",
        [run_id],
    )


def run_header(con: duckdb.DuckDBPyConnection, run_id: str) -> pl.DataFrame:
    """The run's row of model_comparison (model, convention, status, patch layers, problems, accuracy)."""
    return fetch(con, f"SELECT * FROM model_comparison {RUN}", [run_id])


# The intervention families beyond the classic one, in the order `RunStats.families` lists them, and each
# family table with the families it covers: `stats` (text, JSON) and the report show a family's tables only
# for a run that has one of those families (analysis/combos.py: pairs / triplets, components;
# analysis/families.py: heads, edges).
FAMILIES = ("pairs", "triplets", "components", "heads", "edges")
FAMILY_TABLES: dict[str, tuple[str, ...]] = {
    "interactions": ("pairs", "triplets"),
    "components": ("components",),
    "component_tests": ("components",),
    "head_effects": ("heads",),
    "head_topk": ("heads",),
    "head_correlation": ("heads",),
    "edges": ("edges",),
    "edge_tests": ("edges",),
}
# The readouts of the baseline (analysis/readouts.py), and each readout table with the readout it shows:
# `stats` (text, JSON) and the report show a readout's tables only for a run that has it (RunStats.readouts,
# from analysis.readouts.run_readouts). Text prints the compact ones (SECTIONS); JSON and the report's
# tables carry the whole ones too (decoding, question_tokens_by_layer, operand_reading, probes).
READOUT_TABLES: dict[str, tuple[str, ...]] = {
    "decoding_best": ("decoding",),
    "decoding": ("decoding",),
    "question_tokens": ("token_attention",),
    "question_tokens_by_layer": ("token_attention",),
    "token_roles": ("token_attention",),
    "token_roles_by_layer": ("token_attention",),
    "operand_best": ("token_attention",),
    "operand_reading": ("token_attention",),
    "probe_best": ("probes",),
    "probes": ("probes",),
}
TABLES = (
    "importance",
    "methods",
    "method_agreement",
    "method_pairs",
    "correlation",
    "correlation_by_thought",
    "strata",
    "strata_test",
    "hubs",
    "flow",
    "top_heads",
    *FAMILY_TABLES,
    *READOUT_TABLES,
)


@dataclass(frozen=True)
class RunStats:
    """Every table of `stats` for one run, as polars frames (the views' columns plus p-values and
    intervals)."""

    run_id: str
    header: pl.DataFrame  # the run's row of model_comparison
    importance: pl.DataFrame  # token_importance + bootstrap interval over problems
    methods: pl.DataFrame  # method_comparison + bootstrap interval
    method_agreement: (
        pl.DataFrame
    )  # per patch layer: Kendall's W of the methods' thought profiles, p_perm, p_holm
    method_pairs: pl.DataFrame  # per pair of methods: Spearman rho, exact permutation p_exact, p_holm
    correlation: pl.DataFrame  # layer_correlation + p, p_holm, bootstrap intervals, permutation p of r_within
    correlation_by_thought: pl.DataFrame  # attention_importance + p, p_bh
    strata: pl.DataFrame  # difficulty_strata (order <=2, 3, 4, 5+) + bootstrap r_low/r_high, p, p_bh
    strata_test: pl.DataFrame  # per patch layer and layer: does r differ between strata (q, p_perm, p_holm)
    hubs: pl.DataFrame  # hub_scores + incoming_norm_low/high (bootstrap)
    flow: pl.DataFrame  # sequential, self and skip attention over layers and heads
    top_heads: pl.DataFrame  # head_metrics, the top ranks + intervals, Holm p, gated functional_type
    # n_boot, n_perm, seed, level, alpha, families ({table: {adjusted column: the family it covers}})
    settings: dict[str, Any] = field(default_factory=dict)
    hub: dict[str, Any] = field(default_factory=dict)  # hub ratio, interval, permutation p, finding
    head_types: dict[str, Any] = field(default_factory=dict)  # heads typed per type, the rule
    # the pairs / triplets and components families (analysis/combos.py): empty when the run lacks them
    interactions: pl.DataFrame = field(
        default_factory=pl.DataFrame
    )  # interactions + bootstrap, p_boot, p_holm
    components: pl.DataFrame = field(default_factory=pl.DataFrame)  # component_importance (Wilson)
    component_tests: pl.DataFrame = field(default_factory=pl.DataFrame)  # component_comparison + McNemar p
    # the families (empty for a run without them): head_effects + bootstrap interval; head_topk_effects;
    # per method and step scope Spearman rho of effect vs composite (p, interval, Holm); edge_knockout +
    # bootstrap interval; the hub's knockout vs each other thought's (McNemar exact, interval, Holm)
    head_effects: pl.DataFrame = field(default_factory=pl.DataFrame)
    head_topk: pl.DataFrame = field(default_factory=pl.DataFrame)
    head_correlation: pl.DataFrame = field(default_factory=pl.DataFrame)
    edges: pl.DataFrame = field(default_factory=pl.DataFrame)
    edge_tests: pl.DataFrame = field(default_factory=pl.DataFrame)
    # the readouts this run has (READOUTS order: decoding, token_attention, probes), and their tables
    # (empty frames for a readout the run lacks): thought_decoding's 'step' rows (all, and the best layer
    # per thought, match and k); question_token_routing's top tokens (last layer, and every layer);
    # thought_operand_reading's 'step' rows (all, and the best layer per thought and m); probe_best and
    # probe_summary
    readouts: tuple[str, ...] = ()
    decoding_best: pl.DataFrame = field(default_factory=pl.DataFrame)
    decoding: pl.DataFrame = field(default_factory=pl.DataFrame)
    question_tokens: pl.DataFrame = field(default_factory=pl.DataFrame)
    question_tokens_by_layer: pl.DataFrame = field(default_factory=pl.DataFrame)
    token_roles: pl.DataFrame = field(default_factory=pl.DataFrame)  # question_token_roles, last layer
    token_roles_by_layer: pl.DataFrame = field(default_factory=pl.DataFrame)
    operand_best: pl.DataFrame = field(default_factory=pl.DataFrame)
    operand_reading: pl.DataFrame = field(default_factory=pl.DataFrame)
    probe_best: pl.DataFrame = field(default_factory=pl.DataFrame)
    probes: pl.DataFrame = field(default_factory=pl.DataFrame)

    @property
    def run(self) -> dict[str, Any]:
        """The header as a dict ({"run_id": ...} alone when the view has no row for the run)."""
        found = records(self.header)
        return found[0] if found else {"run_id": self.run_id}

    def tables(self) -> dict[str, pl.DataFrame]:
        """Every table, in order; a family's tables (FAMILY_TABLES) only when the run has the family, a
        readout's (READOUT_TABLES) only when it has the readout."""
        found = set(self.families) | set(self.readouts)
        gated = {**FAMILY_TABLES, **READOUT_TABLES}
        return {name: getattr(self, name) for name in TABLES if name not in gated or found & set(gated[name])}

    @property
    def families(self) -> list[str]:
        """The intervention families beyond the classic one this run has rows of, in FAMILIES order (pairs,
        triplets, components, heads, edges), read off its family tables: interactions' rows of size 2 are
        pairs, of size 3 triplets. Not settings["families"], which are the families of tests an adjusted p
        covers."""
        found: set[str] = set()
        for name, covered in FAMILY_TABLES.items():
            frame = getattr(self, name)
            if frame.is_empty():
                continue
            if name == "interactions" and "size" in frame.columns:
                found |= {{2: "pairs", 3: "triplets"}.get(size, "pairs") for size in frame["size"].to_list()}
            else:
                found |= set(covered)
        return [f for f in FAMILIES if f in found]

    def to_dict(self) -> dict[str, Any]:
        """The JSON payload of `stats --json`: run, settings (with the adjustment families), the readouts the
        run has, every table as a list of rows, and `findings` (a list of sentences)."""
        return {
            "run": self.run,
            "settings": self.settings,
            "readouts": list(self.readouts),
            "hub": self.hub,
            "head_types": self.head_types,
            **{name: records(frame) for name, frame in self.tables().items()},
            "findings": self.findings(),
        }

    def findings(self) -> list[str]:
        """Each research question answered in plain sentences with its uncertainty: RQ1-RQ3
        (analysis.findings.findings_rq), then the hub and the head types (analysis.hubs.findings_hubs), then
        the intervention families where the run has them: pairs / triplets and components
        (analysis.combos), heads and edges (analysis.families)."""
        from analysis.findings import findings_rq

        return (
            findings_rq(self)
            + findings_hubs(self)
            + findings_combos(self)
            + findings_heads(self.head_effects, self.head_correlation, self.head_topk)
            + findings_edges(self.edges, self.edge_tests)
            + findings_readouts(self.tables(), self.readouts)
        )


def run_stats(run: Run, n_boot: int = N_BOOT, n_perm: int = N_PERM, seed: int = SEED) -> RunStats:
    """Every table of the report for one run."""
    run_id = run.run_id
    with reading(run) as con:
        strata, strata_test = strata_tables(con, run_id, n_boot, n_perm, seed)
        agreement_w, agreement_pairs = method_agreement_tables(con, run_id, n_perm, seed)
        hubs, hub = hub_table(con, run_id, n_boot, n_perm, seed)
        components, component_tests = component_tables(con, run_id)
        heads, head_types = head_table(con, run_id, n_boot, seed)
        head_effects = head_effects_table(con, run_id, n_boot, seed)
        tables = {
            "importance": importance_table(con, run_id, n_boot, seed),
            "methods": method_table(con, run_id, n_boot, seed),
            "correlation": correlation_table(con, run_id, n_boot, n_perm, seed),
            "correlation_by_thought": thought_correlation_table(con, run_id),
            "strata": strata,
            "strata_test": strata_test,
            "method_agreement": agreement_w,
            "method_pairs": agreement_pairs,
            "hubs": hubs,
            "flow": flow_table(con, run_id),
            "top_heads": heads.filter((pl.col("rank") <= TOP_HEADS) | pl.col("note").is_not_null()),
            "interactions": interaction_table(con, run_id, n_boot, seed),
            "components": components,
            "component_tests": component_tests,
            "head_effects": head_effects,
            "head_topk": head_topk_table(con, run_id),
            "head_correlation": head_correlation_table(con, run_id, head_effects, n_boot, seed),
            "edges": edge_table(con, run_id, n_boot, seed),
            "edge_tests": edge_test_table(con, run_id, n_boot, seed),
        }
        found = run_readouts(con, [run_id])
        readouts = tuple(r for r in READOUTS if r in found)
        tables.update(readout_tables(con, run_id))
        header = run_header(con, run_id)
    tables, families = adjusted_tables(tables)
    if probes := probe_family(tables["probes"]):
        families["probe_best"] = families["probes"] = probes
    settings = {
        "n_boot": n_boot,
        "n_perm": n_perm,
        "seed": seed,
        "level": 0.95,
        "alpha": ALPHA,
        "families": families,
    }
    return RunStats(
        run_id, header, settings=settings, hub=hub, head_types=head_types, readouts=readouts, **tables
    )


# --- text ---------------------------------------------------------------------------------------------
SECTIONS = {
    "importance": (
        "Importance by thought: failure rate among baseline-correct problems (clean control excluded)",
        [
            "patch_layer",
            "thought_name",
            "problems",
            "n",
            "failures",
            "failure_rate",
            "ci_low",
            "ci_high",
            "boot_low",
            "boot_high",
            "mean_kl",
            "mean_logp_drop",
        ],
    ),
    "methods": (
        "Method comparison (all thoughts)",
        [
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
            "mean_disruption",
        ],
    ),
    "method_agreement": (
        "Method agreement (RQ2): do corruption methods rank the thoughts alike? Kendall's W over methods "
        "(sigmas pooled, clean left out), permutation p",
        ["patch_layer", "n_methods", "methods", "thoughts", "w", "p_perm", "p_holm", "mean_rho", "left_out"],
    ),
    "method_pairs": (
        "Method pairs: Spearman rho of two methods' thought profiles, exact permutation p (every ordering)",
        ["patch_layer", "method_a", "method_b", "thoughts", "rho", "p_exact", "p_holm"],
    ),
    "correlation": (
        "Correlation by layer: EOT -> Tk attention vs Tk importance (pooled; within-problem, permutation p)",
        [
            "patch_layer",
            "layer",
            "n",
            "r",
            "p",
            "p_holm",
            "r_low",
            "r_high",
            "r_within",
            "p_within_perm",
            "p_within_holm",
            "r_within_low",
            "r_within_high",
        ],
    ),
    "correlation_by_thought": (
        "Correlation across problems, per thought",
        ["patch_layer", "layer", "thought_name", "problems", "r", "p", "p_bh"],
    ),
    "strata": (
        "Difficulty strata (r: bootstrap interval over the stratum's problems)",
        [
            "patch_layer",
            "stratum",
            "problems",
            "problems_all",
            "baseline_accuracy",
            "mean_importance",
            "layer",
            "n",
            "r",
            "r_low",
            "r_high",
            "p",
            "p_bh",
            "r_within",
        ],
    ),
    "strata_test": (
        "Do strata differ in r? Cochran's Q of Fisher-z r's; p: stratum labels permuted across problems",
        ["patch_layer", "layer", "strata", "problems", "q", "p_perm", "p_holm"],
    ),
    "hubs": (
        "Hub scores (heads and layers averaged): raw column sums vs per later thought",
        [
            "position_name",
            "later_thoughts",
            "incoming_raw",
            "incoming_norm",
            "incoming_norm_low",
            "incoming_norm_high",
            "hub_ratio",
            "hub_ratio_raw",
        ],
    ),
    "flow": (
        "Flow: previous-thought, self and skip attention (mean over layers and heads; head range)",
        ["kind", "pair", "mean_weight", "min_head", "max_head"],
    ),
    "top_heads": (
        f"Top {TOP_HEADS} heads by composite (0.4 flow + 0.4 hub + 0.2 skip, min-max scaled; bootstrap "
        "interval); p: Holm-adjusted, score above the median head's; type 'none' unless its scores' p < 0.05",
        [
            "rank",
            "layer",
            "head",
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
            "functional_type_view",
            "functional_type",
        ],
    ),
    "interactions": (
        "Interactions (pairs, triplets): thoughts corrupted together vs alone, among baseline-correct "
        "problems; expected = 1 - prod(1 - rate) (independence), synergy = joint - expected (bootstrap "
        "interval over problems; p_boot: bootstrap, the percentile interval inverted)",
        [
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
            "logp_drop_additive",
        ],
    ),
    "components": (
        "Components: failure rate when the attention output (attn), the MLP output (mlp) or the whole block "
        "output (block, the classic rows) of the patch layer is corrupted at a thought (Wilson interval)",
        [
            "patch_layer",
            "thought_name",
            "condition",
            "site",
            "n",
            "failures",
            "failure_rate",
            "ci_low",
            "ci_high",
            "mean_logp_drop",
            "mean_kl",
        ],
    ),
    "component_tests": (
        "Attention vs MLP output on the same problems: McNemar's exact test of the paired failures",
        [
            "patch_layer",
            "thought_name",
            "condition",
            "n",
            "failure_rate_attn",
            "failure_rate_mlp",
            "difference",
            "attn_only",
            "mlp_only",
            "p_mcnemar",
            "p_holm",
            "failure_rate_block",
        ],
    ),
    "head_effects": (
        "Heads (ablated one at a time): failure rate among baseline-correct problems (Wilson and bootstrap "
        "95%), mean log p(gold) drop, and the head's descriptive composite and rank",
        [
            "method",
            "steps",
            "head_label",
            "n",
            "failures",
            "failure_rate",
            "ci_low",
            "ci_high",
            "boot_low",
            "boot_high",
            "mean_logp_drop",
            "composite",
            "composite_rank",
            "functional_type",
        ],
    ),
    "head_topk": (
        "Heads ablated together (top-k): failure rate (Wilson 95%), mean log p(gold) drop; top_ranked: the "
        "run's k top-ranked heads by composite",
        [
            "method",
            "steps",
            "k",
            "heads",
            "n",
            "failures",
            "failure_rate",
            "ci_low",
            "ci_high",
            "mean_logp_drop",
            "mean_composite",
            "top_ranked",
        ],
    ),
    "head_correlation": (
        "Do the heads that look like hubs matter? Spearman rho of causal effect vs descriptive composite "
        "over heads (scipy p; bootstrap interval over problems; clean control left out)",
        [
            "method",
            "steps",
            "heads",
            "rho_failure",
            "rho_failure_low",
            "rho_failure_high",
            "p_failure",
            "p_failure_holm",
            "rho_logp",
            "rho_logp_low",
            "rho_logp_high",
            "p_logp",
            "p_logp_holm",
        ],
    ),
    "edges": (
        "Edge knockout: attention from later thoughts and EOT to Tj removed; failure rate (Wilson and "
        "bootstrap 95%), mean log p(gold) drop; is_hub: Tj is the run's descriptive hub",
        [
            "layers",
            "method",
            "thought_name",
            "n",
            "failures",
            "failure_rate",
            "ci_low",
            "ci_high",
            "boot_low",
            "boot_high",
            "mean_logp_drop",
            "incoming_norm",
            "is_hub",
        ],
    ),
    "edge_tests": (
        "Is the descriptive hub causal? Its knockout vs each other thought's, paired per problem "
        "(difference hub - other, bootstrap 95%; McNemar exact p)",
        [
            "layers",
            "hub_name",
            "thought_name",
            "problems",
            "failure_rate_hub",
            "failure_rate_other",
            "difference",
            "diff_low",
            "diff_high",
            "hub_only",
            "other_only",
            "p_mcnemar",
            "p_holm",
        ],
    ),
    "decoding_best": (
        "Decoding (logit lens): does thought Tk decode to its step's value (step k+1)? Per thought, match "
        "kind and k, the layer with the largest lift over another problem's value (thought_decoding; every "
        "layer in --json)",
        [
            "position_name",
            "match",
            "k",
            "layer",
            "layers",
            "n",
            "hits",
            "rate",
            "ci_low",
            "ci_high",
            "control_rate",
            "lift",
            "p_holm",
        ],
    ),
    "question_tokens": (
        f"Question tokens: the {TOP_TOKENS} question tokens each thought (and EOT) attends to most at the "
        "last layer, heads averaged (question_token_routing; every layer in --json)",
        [
            "layer",
            "dst_name",
            "rank",
            "token",
            "mean_weight",
            "share_of_question",
            "n_problems",
            "is_number",
        ],
    ),
    "token_roles": (
        "Question tokens by role: how each thought's attention to the question splits between its own step's "
        "operands, other steps' operands, other numbers and words, at the last layer (question_token_roles; "
        "every layer in --json)",
        [
            "layer",
            "dst_name",
            "role",
            "n",
            "mean_share",
            "ci_low",
            "ci_high",
            "mean_token_share",
            "enrichment",
        ],
    ),
    "operand_best": (
        "Question tokens: does thought Tk attend to its step's operands? Per thought and m, the layer with "
        "the largest lift over m tokens drawn at random (thought_operand_reading, operands_of 'step'; every "
        "layer in --json)",
        ["dst_name", "m", "layer", "layers", "n", "hits", "rate", "ci_low", "ci_high", "chance", "lift"],
    ),
    "probe_best": (
        "Probes: per target and step, the best position and layer of the run's current probe set "
        "(probe_best; every probe in --json)",
        [
            "target",
            "step",
            "position_name",
            "layer",
            "metric",
            "score",
            "ci_low",
            "ci_high",
            "chance",
            "shuffled",
            "shuffled_high",
            "p_value",
            "p_holm",
            "above_chance",
            "n",
        ],
    ),
}


EMPTY = {
    **dict.fromkeys(
        ("correlation", "correlation_by_thought"),
        "(no rows: needs baseline attention and baseline-correct problems)",
    ),
    **dict.fromkeys(("hubs", "flow", "top_heads"), "(no rows: the run has no baseline attention)"),
    **dict.fromkeys(("importance", "methods"), "(no rows: the run has no corrupted conditions)"),
    "strata": "(no rows: no baseline-correct problems)",
    "strata_test": "(no rows: needs baseline attention and baseline-correct problems)",
    "method_agreement": "(no rows: the run has no corrupted conditions)",
    "method_pairs": "(no rows: needs two methods whose thought profiles vary)",
    "decoding_best": "(no rows: no problem of the run has an annotated step for a thought)",
    "question_tokens": "(no rows: no question-token attention)",
    "operand_best": "(no rows: no problem has a step whose operands are written in the question)",
    "token_roles": "(no rows: no question-token attention)",
    "probe_best": "(no rows)",
}


FINDINGS = {  # sentences printed under a table
    "hubs": hub_sentences,
    "top_heads": head_sentences,
    "decoding_best": lambda _: [f"note: {DECODING_NOTE}"],
    "question_tokens": lambda _: [f"note: {TOKENS_NOTE}"],
    "operand_best": lambda _: [f"note: {OPERAND_NOTE}"],
    "token_roles": lambda _: [f"note: {ROLES_NOTE}"],
    "probe_best": lambda _: [f"note: {PROBE_NOTE}"],
}


def format_stats(stats: RunStats) -> str:
    """The text `stats` prints: the run's header line, then every table (or why it has no rows)."""
    header, tables = stats.run, stats.tables()
    acc = header.get("baseline_accuracy")
    lines = [
        f"run {header['run_id']}  model {header.get('model_name')}  convention {header.get('convention')}  "
        f"status {header.get('status')}  patch layers {header.get('patch_layers')}  "
        f"problems {header.get('problems')}  baseline accuracy "
        + (f"{acc:.1%}" if acc is not None else "n/a")
    ]
    if header.get("note"):  # model_comparison's note: a legacy run's positions are the research scripts'
        lines.append(f"note: {header['note']}")
    for name, (title, columns) in SECTIONS.items():
        if name not in tables:  # a family the run does not have
            continue
        frame = tables[name]
        lines += ["", title]
        if frame.is_empty():
            lines.append(EMPTY.get(name, "(no rows)"))
            continue
        notes = view_notes(frame)
        if notes and all(n.startswith(NOT_MEANINGFUL) for n in frame["note"].to_list()):
            lines += [f"note: {n}" for n in notes]  # a legacy run's placeholder row: no numbers to show
            continue
        keep = [
            c for c in columns if c in frame.columns and not (c == "patch_layer" and single_valued(frame, c))
        ]
        shown = rounded(frame.select(keep))
        lines.append(render_table(shown.to_arrow()).rstrip("\n"))
        lines += [f"note: {n}" for n in notes if n != header.get("note")]
        families = stats.settings.get("families", {}).get(name, {})
        lines += [f"adjusted: {column} = {text}" for column, text in families.items() if column in keep]
        lines += FINDINGS.get(name, lambda _: [])(stats)
    lines += ["", "Findings", *(f"- {sentence}" for sentence in stats.findings())]
    return "\n".join(lines) + "\n"


def view_notes(frame: pl.DataFrame) -> list[str]:
    """The distinct non-null notes of a view's rows, in order (none for codi runs)."""
    if "note" not in frame.columns:
        return []
    return [n for n in frame["note"].unique(maintain_order=True).to_list() if n]
