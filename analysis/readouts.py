"""The readouts of a run's baseline in `stats`, the report and the charts: logit-lens decoding, attention to
each question token, and linear probes (schema 7), each shown only for a run that has it.

One source: every number here is a view's row (queries/marts: thought_decoding, question_token_routing,
thought_operand_reading, probe_summary, probe_best); this module only selects rows (a run's, a target's,
the best layer per thought) and words them. Nothing is recomputed:

- decoding: thought_decoding, target 'step' (thought Tk against the value of step k+1), both match kinds,
  k = 1 and the run's stored top-k; the whole table, and per thought, match and k the layer with the largest
  lift (rate - control_rate, the control being another problem's value), with the view's Wilson interval;
- question tokens: question_token_routing's top-5 tokens (rank <= 5, ties share a rank) per query at the
  run's last layer, and at every layer; thought_operand_reading (operands_of 'step', m = 1 and 3): the whole
  table and per thought and m the layer with the largest lift over chance;
- probes: probe_best (per target and step the best position and layer, optimistic: picked after seeing the
  scores) and probe_summary (every probe), with chance, the shuffled-label baseline and the view's Holm p;
- findings: a sentence or two per readout with its uncertainty in words.

`run_readouts(con, ids)` says which readouts runs have (rows in stg_decoding, stg_token_attention,
stg_probe_results); `stats`, the report's key tables and the charts (analysis/charts/registry.py) gate on it
the way they gate on the intervention families.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import duckdb
import polars as pl

from analysis.families import mcnemar_exact
from analysis.frames import fetch
from analysis.inference import adjust

# The readouts in the order RunStats.readouts lists them, and the staging view whose rows say a run has it.
READOUTS = ("decoding", "token_attention", "probes")
READOUT_VIEWS = {
    "decoding": "stg_decoding",
    "token_attention": "stg_token_attention",
    "probes": "stg_probe_results",
}
RUN = "WHERE run_id = ?"
TOP_TOKENS = 5
# The decoding chart's and findings' default: the run's stored top-k (the largest k of the view), match
# 'exact' (the token's text read as a number equals the value: 'leading' is weak evidence with a tokenizer
# that writes digits one by one, see thought_decoding's header).
DEFAULT_MATCH = "exact"
OPERAND_M = 3  # the findings' and chart's m of thought_operand_reading (its 3 most attended tokens)

DECODING_NOTE = (
    "target 'step': thought Tk against the value of step k+1 (problems with that step); exact: the token "
    "read as a number equals the value; leading: an all-digit token that begins the value (weak evidence "
    "with a digit-by-digit tokenizer); k: the top-1 token, or any of the stored top-k; control_rate: the "
    "same test against another problem's value (the next by ordinal), what chance matches give; lift = "
    "rate - control_rate; ci_low, ci_high: 95% Wilson interval over problems; p_holm: McNemar's exact test "
    "of the problems' hits against the control's (paired per problem), Holm over every thought, layer, match "
    "and k of the run; the best layer of `layers` is picked after seeing them all, so its lift is optimistic."
)
OPERAND_NOTE = (
    "hit: one of the thought's m most attended question tokens (heads averaged) is part of an operand of its "
    "step (step k+1 for Tk, as written in the question); chance: the hit rate of m tokens drawn at random "
    "from the question; lift = rate - chance; ci_low, ci_high: 95% Wilson interval over problems; the best "
    "layer of `layers` is picked after seeing them all, so its lift is optimistic."
)
TOKENS_NOTE = (
    "mean_weight: the head-averaged baseline attention from the query to the token, averaged over the "
    "problems that have it (n_problems); share_of_question: its share of the query's attention to the "
    "question; rank <= 5 (ties share a rank); a rare token read strongly in one problem can rank high."
)
PROBE_NOTE = (
    "a probe shows that the information is linearly present in the state (out-of-fold score over problems), "
    "not that the model uses it: compare with the causal importance of the same thought (importance by "
    "thought). score: R^2 (value) or accuracy (operation, n_steps); chance: R^2 0 or the majority class; "
    "shuffled, shuffled_high: mean and 95th percentile of the same probe fitted on shuffled labels; p_value: "
    "the permutation p (floor 1/(1 + permutations)); p_holm: the analytic p (binomial against chance, or "
    "Pearson r of out-of-fold predictions) Holm-adjusted over every probe of the run's current probe set "
    "(the view's); above_chance also needs the score above shuffled_high; the best (position, layer) is "
    "picked after seeing the scores, so its score is optimistic."
)
ROLES_NOTE = (
    "role of a question token: own_step_operand (part of an operand of the thought's step, k+1 for Tk), "
    "other_step_operand, other_number, word; mean_share: the role's share of the query's question attention "
    "(heads averaged), averaged over problems (for Tk those with step k+1) with a normal 95% interval; "
    "mean_token_share: the role's share of the question's tokens (uniform attention); enrichment = "
    "mean_share / mean_token_share."
)
STEP_TARGETS = {"value": "the value", "operation": "the operation"}


def run_readouts(con: duckdb.DuckDBPyConnection, ids: Collection[str]) -> set[str]:
    """The readouts (READOUTS) the runs have rows of: decoding (stg_decoding), token_attention
    (stg_token_attention) and probes (stg_probe_results); failed and interrupted runs have none (the staging
    views leave them out)."""
    ids = list(ids)
    if not ids:
        return set()
    marks = ", ".join("?" for _ in ids)
    found = set()
    for name, view in READOUT_VIEWS.items():
        hit = con.execute(f"SELECT 1 FROM {view} WHERE run_id IN ({marks}) LIMIT 1", ids).fetchone()
        if hit is not None:
            found.add(name)
    return found


# --- tables -----------------------------------------------------------------------------------------------
def decoding_table(con: duckdb.DuckDBPyConnection, run_id: str) -> pl.DataFrame:
    """thought_decoding's 'step' rows of the run, every layer, match and k, with McNemar's exact p of the
    thought's hits against the control's (p_mcnemar, from the view's discordant pairs hit_only /
    control_only) and Holm over every row of the table (p_holm: one family, every thought, layer, match
    and k, so picking the best layer afterwards is covered)."""
    frame = fetch(
        con,
        f"SELECT * FROM thought_decoding {RUN} AND target = 'step' ORDER BY position, match, k, layer",
        [run_id],
    )
    if frame.is_empty():
        return frame
    p = [
        None if a is None or b is None else mcnemar_exact(int(a), int(b))
        for a, b in zip(frame["hit_only"].to_list(), frame["control_only"].to_list(), strict=True)
    ]
    frame = frame.with_columns(pl.Series("p_mcnemar", p, pl.Float64))
    return adjust(frame, "p_mcnemar", "holm", "p_holm")[0]


def decoding_best_table(
    con: duckdb.DuckDBPyConnection, run_id: str, full: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Per thought, match and k: thought_decoding's 'step' row at the layer with the largest lift (ties:
    the lower layer); layers: how many layers it was picked from; p_mcnemar and p_holm from `full`
    (decoding_table: Holm over every layer, so the pick is accounted for)."""
    best = fetch(
        con,
        "SELECT *, count(*) OVER w AS layers FROM thought_decoding "
        f"{RUN} AND target = 'step' AND lift IS NOT NULL "
        "WINDOW w AS (PARTITION BY position, match, k) "
        "QUALIFY row_number() OVER (PARTITION BY position, match, k ORDER BY lift DESC, layer) = 1 "
        "ORDER BY position, match, k",
        [run_id],
    )
    full = decoding_table(con, run_id) if full is None else full
    if best.is_empty() or full.is_empty():
        return best
    keys = ["layer", "position", "match", "k"]
    return best.join(full.select([*keys, "p_mcnemar", "p_holm"]), on=keys, how="left", maintain_order="left")


def question_tokens_table(con: duckdb.DuckDBPyConnection, run_id: str, last: bool) -> pl.DataFrame:
    """question_token_routing's top tokens (rank <= TOP_TOKENS) per query, at the run's last layer (`last`)
    or at every layer."""
    layer = " AND layer = (SELECT max(layer) FROM question_token_routing WHERE run_id = ?)" if last else ""
    return fetch(
        con,
        f"SELECT * FROM question_token_routing {RUN}{layer} AND rank <= {TOP_TOKENS} "
        "ORDER BY layer, dst, rank, token",
        [run_id, run_id] if last else [run_id],
    )


def operand_table(con: duckdb.DuckDBPyConnection, run_id: str) -> pl.DataFrame:
    """thought_operand_reading's rows for the thought's own step (operands_of 'step'), m = 1 and 3."""
    return fetch(
        con,
        f"SELECT * FROM thought_operand_reading {RUN} AND operands_of = 'step' ORDER BY dst, m, layer",
        [run_id],
    )


def token_roles_table(con: duckdb.DuckDBPyConnection, run_id: str, last: bool) -> pl.DataFrame:
    """question_token_roles of the run, at its last layer (`last`) or every layer."""
    layer = " AND layer = (SELECT max(layer) FROM question_token_roles WHERE run_id = ?)" if last else ""
    order = "CASE role WHEN 'own_step_operand' THEN 0 WHEN 'other_step_operand' THEN 1 WHEN 'other_number' "
    return fetch(
        con,
        f"SELECT * FROM question_token_roles {RUN}{layer} ORDER BY layer, dst, {order}THEN 2 ELSE 3 END",
        [run_id, run_id] if last else [run_id],
    )


def operand_best_table(con: duckdb.DuckDBPyConnection, run_id: str) -> pl.DataFrame:
    """Per thought and m: thought_operand_reading's 'step' row at the layer with the largest lift (ties: the
    lower layer); layers: how many layers it was picked from."""
    return fetch(
        con,
        "SELECT *, count(*) OVER w AS layers FROM thought_operand_reading "
        f"{RUN} AND operands_of = 'step' AND lift IS NOT NULL "
        "WINDOW w AS (PARTITION BY dst, m) "
        "QUALIFY row_number() OVER (PARTITION BY dst, m ORDER BY lift DESC, layer) = 1 ORDER BY dst, m",
        [run_id],
    )


def probe_tables(con: duckdb.DuckDBPyConnection, run_id: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """probe_best and probe_summary of the run's current probe set, targets in value, operation, n_steps
    order."""
    order = "CASE target WHEN 'value' THEN 0 WHEN 'operation' THEN 1 ELSE 2 END, step NULLS LAST"
    best = fetch(con, f"SELECT * FROM probe_best {RUN} ORDER BY {order}", [run_id])
    summary = fetch(con, f"SELECT * FROM probe_summary {RUN} ORDER BY {order}, position, layer", [run_id])
    return best, summary


def readout_tables(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, pl.DataFrame]:
    """Every readout table of RunStats for the run (empty frames for readouts it lacks)."""
    probe_best, probes = probe_tables(con, run_id)
    decoding = decoding_table(con, run_id)
    return {
        "decoding_best": decoding_best_table(con, run_id, decoding),
        "decoding": decoding,
        "question_tokens": question_tokens_table(con, run_id, last=True),
        "question_tokens_by_layer": question_tokens_table(con, run_id, last=False),
        "token_roles": token_roles_table(con, run_id, last=True),
        "token_roles_by_layer": token_roles_table(con, run_id, last=False),
        "operand_best": operand_best_table(con, run_id),
        "operand_reading": operand_table(con, run_id),
        "probe_best": probe_best,
        "probes": probes,
    }


def probe_family(probes: pl.DataFrame) -> dict[str, str]:
    """What the view's p_holm covers, for settings['families'] (empty without probes)."""
    if probes.is_empty() or "n_tests" not in probes.columns:
        return {}
    n_tests = probes["n_tests"].to_list()[0]  # one probe set per run: the same for every row
    return {
        "p_holm": f"Holm over the {n_tests} probes with a p-value of the run's current probe set "
        f"({probes['probe_set'][0]}; the view's, int_probe_tests)"
    }


# --- findings ---------------------------------------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _p(p: float | None) -> str:
    if p is None:
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def default_k(frame: pl.DataFrame) -> int | None:
    """The run's stored top-k: the largest k of thought_decoding's rows."""
    return None if frame.is_empty() else int(frame["k"].max())  # type: ignore[arg-type]


def _interval(row: dict[str, Any]) -> str:
    return f"[{_pct(row['ci_low'])}, {_pct(row['ci_high'])}]"


def findings_decoding(decoding: pl.DataFrame) -> list[str]:
    """Does a thought decode (logit lens) to its own step's value more often than to another problem's?
    The thought x layer cell with the largest lift at the default match and the stored top-k; it counts as
    above the control when McNemar's exact test of its hits against the control's, paired per problem and
    Holm-adjusted over every cell of decoding_table (p_holm), is below 0.05 with a positive lift."""
    k = default_k(decoding)
    if k is None:
        return []
    rows = decoding.filter(
        (pl.col("match") == DEFAULT_MATCH)
        & (pl.col("k") == k)
        & pl.col("lift").is_not_null()
        & (pl.col("position") <= 5)
    )
    if rows.is_empty():
        return [f"Decoding: no thought has a step value to decode ({DEFAULT_MATCH} match, top-{k})."]
    top = rows.sort(["lift", "layer"], descending=[True, False]).row(0, named=True)
    holm = "p_holm" in rows.columns

    def clears(row: dict[str, Any]) -> bool:
        return bool(holm and row["p_holm"] is not None and row["p_holm"] < 0.05 and row["lift"] > 0)

    above = [r for r in rows.iter_rows(named=True) if clears(r)]
    p_text = f", McNemar Holm p = {top['p_holm']:.2g}" if holm and top["p_holm"] is not None else ""
    cell = (
        f"{top['position_name']} at layer {top['layer']} decodes to its step's value in "
        f"{_pct(top['rate'])} of {top['n']} problems {_interval(top)} vs {_pct(top['control_rate'])} for "
        f"another problem's value (lift {top['lift']:+.1%}{p_text}; top-{k}, {DEFAULT_MATCH} match)"
    )
    family = f"Holm over all {decoding.height} thought x layer x match x k cells"
    if clears(top):
        others = sorted({r["position_name"] for r in above} - {top["position_name"]})
        more = f"; {', '.join(others)} also clear the control at some layer" if others else ""
        return [
            f"Decoding: {cell}: above the control ({family}; the largest lift is picked after seeing them, "
            f"so its size is optimistic){more}."
        ]
    return [
        "Decoding: no thought decodes its step's value clearly above the control (no paired McNemar test "
        f"survives {family}); the largest lift: {cell}."
    ]


def findings_operands(operands: pl.DataFrame) -> list[str]:
    """Does a thought attend to its step's operands in the question more than m random tokens would? The
    thought x layer cell with the largest lift at m = OPERAND_M; above chance when its Wilson interval lies
    wholly above chance."""
    rows = operands.filter((pl.col("m") == OPERAND_M) & pl.col("lift").is_not_null())
    if rows.is_empty():
        return []
    top = rows.sort(["lift", "layer"], descending=[True, False]).row(0, named=True)
    cell = (
        f"at layer {top['layer']}, one of {top['dst_name']}'s {OPERAND_M} most attended question tokens is "
        f"an operand of its step in {_pct(top['rate'])} of {top['n']} problems {_interval(top)} vs "
        f"{_pct(top['chance'])} by chance"
    )
    picked = f"the largest lift of {rows.height} thought x layer cells, picked after seeing them"
    if top["ci_low"] is not None and top["ci_low"] > top["chance"]:
        return [f"Question tokens: {cell}: above chance ({picked}, so optimistic)."]
    return [
        "Question tokens: no thought reads its step's operands clearly above chance (no 95% interval lies "
        f"above chance); the largest lift: {cell}."
    ]


def _probe_what(row: dict[str, Any]) -> str:
    if row["target"] in STEP_TARGETS:
        return f"{STEP_TARGETS[row['target']]} of step {row['step']}"
    return "the number of steps" if row["target"] == "n_steps" else str(row["target"])


def _probe_score(row: dict[str, Any]) -> str:
    metric = "R^2" if row["metric"] == "r2" else str(row["metric"])
    return (
        f"{metric} {row['score']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}], chance "
        f"{row['chance']:.2f}, Holm {_p(row['p_holm'])}; shuffled labels {row['shuffled']:.2f}"
    )


def findings_probes(best: pl.DataFrame, probes: pl.DataFrame) -> list[str]:
    """Which targets are linearly decodable above chance after Holm's adjustment (probe_best's rows with
    p_holm < 0.05), or that none is; what a probe does not show."""
    if best.is_empty():
        return []
    n_tests = (
        probes["n_tests"].to_list()[0] if "n_tests" in probes.columns and not probes.is_empty() else None
    )
    over = f" over the {n_tests} probes of the set" if n_tests is not None else ""
    above = [r for r in best.iter_rows(named=True) if r["above_chance"]]  # the view's: p_holm < 0.05
    caveat = "linearly present, not shown to be used: compare with the thought's causal importance"
    if not above:
        top = best.sort("lift", descending=True, nulls_last=True).row(0, named=True)
        return [
            f"Probes: no probe is above chance after Holm's adjustment{over}; the largest lift: "
            f"{_probe_what(top)} from {top['position_name']} at layer {top['layer']} ({_probe_score(top)})."
        ]
    parts = [
        f"{_probe_what(r)} from {r['position_name']} at layer {r['layer']} ({_probe_score(r)})" for r in above
    ]
    return [
        f"Probes: linearly decodable above chance after Holm's adjustment{over} (the best position and "
        f"layer per target, picked after seeing the scores): {'; '.join(parts)}. That is {caveat}."
    ]


def findings_readouts(tables: dict[str, pl.DataFrame], readouts: Collection[str]) -> list[str]:
    """The readouts' sentences, for the readouts a run has."""
    out: list[str] = []
    if "decoding" in readouts:
        out += findings_decoding(tables["decoding"])
    if "token_attention" in readouts:
        out += findings_operands(tables["operand_reading"])
    if "probes" in readouts:
        out += findings_probes(tables["probe_best"], tables["probes"])
    return out
