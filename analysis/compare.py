"""`python cli.py compare RUN_A RUN_B`: two runs side by side, on the problems they share.

The views compute every rate: `run_comparison_by_thought` (corruptions pooled, the clean control left
out) and `run_comparison_by_condition` give, per patch-layer pairing, each run's failure rate among its own
baseline-correct shared problems and the difference B - A. This module adds what SQL lacks: a 95%
bootstrap interval of the difference that resamples shared problems (paired: both runs see the same
resampled problems), from `run_comparison`'s rows. Then the problems whose outcome differs between the
runs: at the baseline, and per condition. `run_pairs` gives the header: each run's problems, the shared
ones, whether patch layers pair up, and the note.

Runs of different models, datasets or patch layers compare wherever they share problems. When both runs
were patched at several layers, rows pair equal patch layers; a single-layer run pairs with each layer of
the other (the views' `compared`). When either run is a legacy run (SPEC 10), `note` and the text carry the
views' sentence on what thought k means (the `pair_note` macro, as in `run_comparison`).

The header first diffs the runs' settings, as the view `run_config_diff` gives them (it reads the runs'
rows and stored configs; nothing here recomputes them). `config`, in `--json` too, maps each setting in
the view's order (model, weights_sha256, dataset, dataset_hash, patch_layers, methods, sigmas,
noise_scale, seed, problem_seed, attention) to `{"a": value, "b": value, "same": bool}`: values as the
view's JSON (lists for patch layers, methods and sigmas; null where a run has none: sigmas and
noise_scale of a run without gauss, problem_seed and attention of a legacy run). `warnings` lists the
differences that change what paired conditions mean, as `{"setting": ..., "message": ...}`: other
weights (weights_sha256), and gauss noise absolute in one run and rms in the other. A different seed
alone is the ordinary seed comparison: it shows in `config`, with no warning. The text prints `same: ...`
(wrapped), each differing setting on its own line with A's and B's values (hashes cut to 12 characters,
`-` for none), then each warning as a `warning: ...` line.

The intervention families beyond the classic one that both runs hold are compared too, where they share
problems: `by_combination` (pairs, triplets at the same patch layer: each run's joint rate, expected rate
and synergy from the view run_comparison_by_combination, and a paired bootstrap interval of the synergy's
B - A) and `by_component` (attn, mlp: each run's failure rate from run_comparison_by_component and the
interval of B - A), both from `combo_differences`; `families` (heads, edges: per condition both runs ran,
same family, method, layer, head, key thought, steps, from run_comparison_families, with the same paired
bootstrap interval of B - A, `head_edge_differences`). Each is empty, and left out of the text and the
JSON, when the runs share no such condition.

    cmp = compare_runs(wh.run("2d32"), wh.run("latest"))   # RunComparison: polars frames
    print(format_comparison(cmp)); cmp.to_dict()
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import polars as pl

from analysis.combos import synergy_difference_intervals
from analysis.frames import fetch, group_index, reading, records, rounded, single_valued
from analysis.resampling import bootstrap_rates, interval, resample_counts
from warehouse.handle import Run
from warehouse.output import render_table

N_BOOT, SEED, SHOWN_FLIPS = 2000, 0, 40
PAIR = "run_a = ? AND run_b = ?"
LAYERS = ["patch_layer_a", "patch_layer_b"]
THOUGHT_KEYS = [*LAYERS, "thought"]
CONDITION_KEYS = [*LAYERS, "thought", "method", "sigma", "condition"]
PER_PROBLEM = """
SELECT {keys}, problem_id,
       count(*) FILTER (WHERE base_correct_a AND failed_a) AS failures_a,
       count(*) FILTER (WHERE base_correct_a) AS trials_a,
       count(*) FILTER (WHERE base_correct_b AND failed_b) AS failures_b,
       count(*) FILTER (WHERE base_correct_b) AS trials_b
FROM run_comparison
WHERE {pair} AND compared AND method <> 'baseline' {extra}
GROUP BY ALL
"""
HEAD_EDGE_KEYS = ["family", "condition"]
HEAD_EDGE_PER_PROBLEM = """
SELECT family, condition, problem_id,
       count(*) FILTER (WHERE base_correct_a AND failed_a) AS failures_a,
       count(*) FILTER (WHERE base_correct_a) AS trials_a,
       count(*) FILTER (WHERE base_correct_b AND failed_b) AS failures_b,
       count(*) FILTER (WHERE base_correct_b) AS trials_b
FROM int_family_pairs
WHERE run_a = ? AND run_b = ?
GROUP BY ALL
"""
HEAD_EDGE_RATES = (
    "problems, n_a, failures_a, failure_rate_a, n_b, failures_b, failure_rate_b, difference, "
    "mean_logp_drop_a, mean_logp_drop_b"
)
RATES = (
    "problems, n_a, failures_a, failure_rate_a, ci_low_a, ci_high_a, n_b, failures_b, failure_rate_b, "
    "ci_low_b, ci_high_b, difference, mean_kl_a, mean_kl_b"
)


def difference_intervals(frame: pl.DataFrame, keys: list[str], n_boot: int, seed: int) -> pl.DataFrame:
    """Per group: a bootstrap interval (diff_low, diff_high) of B - A over shared problems (paired resamples).

    `frame` has the keys, problem_id, and each run's failures and trials per problem.
    """
    names = ["diff_low", "diff_high"]
    if frame.is_empty():
        return frame.select(keys).with_columns(*(pl.lit(None, pl.Float64).alias(n) for n in names))
    groups, g, p, n_problems = group_index(frame, keys)
    sums = {}
    for column in ("failures_a", "trials_a", "failures_b", "trials_b"):
        out = np.zeros((groups.height, n_problems))
        np.add.at(out, (g, p), frame[column].fill_null(0).to_numpy().astype(float))
        sums[column] = out
    counts = resample_counts(n_problems, n_boot, np.random.default_rng(seed))
    diff = bootstrap_rates(sums["failures_b"], sums["trials_b"], counts) - bootstrap_rates(
        sums["failures_a"], sums["trials_a"], counts
    )
    low, high = interval(diff)
    return groups.with_columns(pl.Series(names[0], low), pl.Series(names[1], high)).with_columns(
        pl.col(names).fill_nan(None)
    )


def _with_intervals(
    view: pl.DataFrame, per_problem: pl.DataFrame, keys: list[str], n_boot: int, seed: int
) -> pl.DataFrame:
    boot = difference_intervals(per_problem, keys, n_boot, seed)
    return view.join(boot, on=keys, how="left", nulls_equal=True, maintain_order="left")


@dataclass(frozen=True)
class RunComparison:
    """Two runs on their shared problems, as polars frames (the views' columns plus bootstrap intervals)."""

    run_a: str
    run_b: str
    runs: pl.DataFrame  # model_comparison's rows of A and B
    problems: dict[str, int]  # a, b: each run's problems; shared: both ran (run_pairs)
    same_convention: bool  # thought k means the same in both runs
    note: str | None  # pair_note: what thought k means when a legacy run takes part
    patch_layers_paired: bool  # both runs have several patch layers: equal layers pair
    by_thought: pl.DataFrame  # run_comparison_by_thought + diff_low, diff_high
    by_condition: pl.DataFrame  # run_comparison_by_condition + diff_low, diff_high
    baseline_flips: pl.DataFrame  # problems answered correctly by one run's baseline only
    condition_flips: pl.DataFrame  # (problem, thought, condition) whose outcome differs
    settings: dict[str, Any] = field(default_factory=dict)  # n_boot, seed, level
    config: dict[str, dict[str, Any]] = field(default_factory=dict)  # setting -> {a, b, same}
    warnings: list[dict[str, str]] = field(default_factory=list)  # {setting, message}: meaning differs
    # the intervention families both runs hold (empty when they share none): pairs / triplets, components,
    # heads and edges
    by_combination: pl.DataFrame = field(default_factory=pl.DataFrame)  # + diff_low, diff_high of synergy
    by_component: pl.DataFrame = field(default_factory=pl.DataFrame)  # + diff_low, diff_high
    # run_comparison_families (heads, edges) + diff_low, diff_high
    families: pl.DataFrame = field(default_factory=pl.DataFrame)

    def run(self, side: str) -> dict[str, Any]:
        """Run A's or B's row of model_comparison as a dict (side 'a' or 'b')."""
        run_id = self.run_a if side == "a" else self.run_b
        found = records(self.runs.filter(pl.col("run_id") == run_id))
        return found[0] if found else {"run_id": run_id}

    def tables(self) -> dict[str, pl.DataFrame]:
        """The comparison's tables; the families' (by_combination, by_component, families) only when the
        runs share them."""
        found = {
            name: getattr(self, name)
            for name in ("by_thought", "by_condition", "baseline_flips", "condition_flips")
        }
        found.update(
            {name: getattr(self, name) for name in FAMILY_TABLES if not getattr(self, name).is_empty()}
        )
        return found

    def to_dict(self) -> dict[str, Any]:
        """The JSON payload of `compare --json`."""
        return {
            "run_a": self.run("a"),
            "run_b": self.run("b"),
            "problems": self.problems,
            "same_convention": self.same_convention,
            "note": self.note,
            "config": self.config,
            "warnings": self.warnings,
            "patch_layers_paired": self.patch_layers_paired,
            "settings": self.settings,
            **{name: records(frame) for name, frame in self.tables().items()},
        }


def thought_differences(
    con: duckdb.DuckDBPyConnection, run_a: str, run_b: str, n_boot: int = N_BOOT, seed: int = SEED
) -> pl.DataFrame:
    """run_comparison_by_thought for A and B plus the paired bootstrap interval of B - A (diff_low,
    diff_high): `RunComparison.by_thought`, on an open connection (the run_comparison chart draws it)."""
    pair = [run_a, run_b]
    by_thought = fetch(
        con,
        f"SELECT {', '.join(THOUGHT_KEYS)}, thought_name, {RATES} "
        f"FROM run_comparison_by_thought WHERE {PAIR} ORDER BY {', '.join(THOUGHT_KEYS)}",
        pair,
    )
    thought_problems = fetch(
        con,
        PER_PROBLEM.format(keys=", ".join(THOUGHT_KEYS), pair=PAIR, extra="AND method <> 'clean'"),
        pair,
    )
    return _with_intervals(by_thought, thought_problems, THOUGHT_KEYS, n_boot, seed)


FAMILY_TABLES = ("by_combination", "by_component", "families")
COMBINATION_KEYS = ["patch_layer", "condition", "combination_name"]
COMPONENT_KEYS = ["patch_layer", "thought", "site", "condition"]
NAME = "array_to_string(list_transform(combination, k -> 'T' || k::VARCHAR), '+')"


def combo_differences(
    con: duckdb.DuckDBPyConnection, run_a: str, run_b: str, n_boot: int = N_BOOT, seed: int = SEED
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(run_comparison_by_combination + the paired bootstrap interval of the synergy's B - A,
    run_comparison_by_component + the interval of B - A): the pairs / triplets and components
    families both runs hold."""
    pair = [run_a, run_b]
    combos = fetch(
        con,
        "SELECT * EXCLUDE (run_a, run_b) FROM run_comparison_by_combination "
        f"WHERE {PAIR} ORDER BY patch_layer, size, method, sigma NULLS FIRST, combination",
        pair,
    )
    combo_problems = fetch(
        con,
        f"SELECT patch_layer, condition, {NAME} AS combination_name, problem_id, base_correct_a, failed_a, "
        "singles_a, base_correct_b, failed_b, singles_b FROM int_family_run_pairs "
        f"WHERE {PAIR} AND family IN ('pairs', 'triplets')",
        pair,
    )
    boot = synergy_difference_intervals(combo_problems, COMBINATION_KEYS, n_boot, seed)
    combos = combos.join(boot, on=COMBINATION_KEYS, how="left", nulls_equal=True, maintain_order="left")
    components = fetch(
        con,
        "SELECT * EXCLUDE (run_a, run_b) FROM run_comparison_by_component "
        f"WHERE {PAIR} ORDER BY patch_layer, thought, site, method, sigma NULLS FIRST",
        pair,
    )
    component_problems = fetch(
        con,
        "SELECT patch_layer, thought, site, condition, problem_id, "
        "(base_correct_a AND failed_a)::INTEGER AS failures_a, base_correct_a::INTEGER AS trials_a, "
        "(base_correct_b AND failed_b)::INTEGER AS failures_b, base_correct_b::INTEGER AS trials_b "
        f"FROM int_family_run_pairs WHERE {PAIR} AND family = 'components'",
        pair,
    )
    return combos, _with_intervals(components, component_problems, COMPONENT_KEYS, n_boot, seed)


def head_edge_differences(
    con: duckdb.DuckDBPyConnection, run_a: str, run_b: str, n_boot: int = N_BOOT, seed: int = SEED
) -> pl.DataFrame:
    """run_comparison_families for A and B (the heads and edges conditions both ran) plus the paired
    bootstrap interval of B - A over their shared problems (diff_low, diff_high)."""
    pair = [run_a, run_b]
    view = fetch(
        con,
        f"SELECT {', '.join(HEAD_EDGE_KEYS)}, {HEAD_EDGE_RATES} FROM run_comparison_families WHERE {PAIR} "
        "ORDER BY family, method, layer NULLS FIRST, head NULLS LAST, thought, steps, condition",
        pair,
    )
    if view.is_empty():
        return view.with_columns(
            pl.lit(None, pl.Float64).alias("diff_low"), pl.lit(None, pl.Float64).alias("diff_high")
        )
    return _with_intervals(view, fetch(con, HEAD_EDGE_PER_PROBLEM, pair), HEAD_EDGE_KEYS, n_boot, seed)


def compare_runs(a: Run, b: Run, n_boot: int = N_BOOT, seed: int = SEED) -> RunComparison:
    """The comparison of two runs of one warehouse (B - A)."""
    if a.run_id == b.run_id:
        raise ValueError(f"compare needs two different runs, got {a.run_id} twice")
    pair = [a.run_id, b.run_id]
    with reading(a, b) as con:
        by_thought = thought_differences(con, a.run_id, b.run_id, n_boot, seed)
        by_combination, by_component = combo_differences(con, a.run_id, b.run_id, n_boot, seed)
        by_condition = fetch(
            con,
            f"SELECT {', '.join(CONDITION_KEYS)}, thought_name, {RATES} "
            f"FROM run_comparison_by_condition WHERE {PAIR} ORDER BY patch_layer_a, "
            "patch_layer_b, thought, method, sigma NULLS FIRST, condition",
            pair,
        )
        condition_problems = fetch(
            con, PER_PROBLEM.format(keys=", ".join(CONDITION_KEYS), pair=PAIR, extra=""), pair
        )
        flips = fetch(
            con,
            f"SELECT problem_id, thought, condition, patch_layer_a, patch_layer_b, correct_a, correct_b "
            f"FROM run_comparison WHERE {PAIR} AND compared AND changed "
            "ORDER BY method <> 'baseline', problem_id, thought, condition",
            pair,
        )
        overview = fetch(con, f"SELECT * FROM run_pairs WHERE {PAIR}", pair).row(0, named=True)
        families = head_edge_differences(con, a.run_id, b.run_id, n_boot, seed)
        config = fetch(
            con,
            f"SELECT setting, value_a, value_b, same, warning FROM run_config_diff WHERE {PAIR} "
            "ORDER BY position",
            pair,
        )
        runs = fetch(
            con,
            "SELECT m.run_id, s.name, m.model_name, m.convention, m.status, m.patch_layers, m.problems, "
            "m.baseline_accuracy, m.note FROM model_comparison m JOIN stg_runs s USING (run_id) "
            "WHERE m.run_id IN (?, ?)",
            pair,
        )
    return RunComparison(
        run_a=a.run_id,
        run_b=b.run_id,
        runs=runs,
        problems={
            "a": overview["problems_a"],
            "b": overview["problems_b"],
            "shared": overview["shared_problems"],
        },
        same_convention=overview["same_convention"],
        note=overview["note"],
        patch_layers_paired=overview["patch_layers_paired"],
        by_thought=by_thought,
        by_condition=_with_intervals(by_condition, condition_problems, CONDITION_KEYS, n_boot, seed),
        baseline_flips=flips.filter(pl.col("thought").is_null()).select(
            "problem_id", "correct_a", "correct_b"
        ),
        condition_flips=flips.filter(pl.col("thought").is_not_null()),
        families=families,
        settings={"n_boot": n_boot, "seed": seed, "level": 0.95},
        config={
            row["setting"]: {"a": _json(row["value_a"]), "b": _json(row["value_b"]), "same": row["same"]}
            for row in config.iter_rows(named=True)
        },
        warnings=[
            {"setting": row["setting"], "message": row["warning"]}
            for row in config.iter_rows(named=True)
            if row["warning"] is not None
        ],
        by_combination=by_combination,
        by_component=by_component,
    )


def _named(name: str | None) -> str:
    return f" ({name})" if name else ""


def _json(value: str | None) -> Any:
    return None if value is None else json.loads(value)


HASHES = ("weights_sha256", "dataset_hash")  # shown as their first 12 characters in the text


def _shown(setting: str, value: Any) -> str:
    """A setting's value in the text: lists comma-joined, hashes shortened, no value as '-'."""
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    text = str(value)
    return text[:12] if setting in HASHES else text


def format_config(cmp: RunComparison, width: int = 110) -> list[str]:
    """The settings block: `same: ...` (wrapped between settings), each differing setting with A's and B's
    values, then each warning as a `warning: ...` line."""
    same = [f"{name.replace('_', ' ')} {_shown(name, v['a'])}" for name, v in cmp.config.items() if v["same"]]
    differ = [
        (name.replace("_", " "), _shown(name, v["a"]), _shown(name, v["b"]))
        for name, v in cmp.config.items()
        if not v["same"]
    ]
    lines, line = [], "same:" + ("" if same else " -")
    for i, item in enumerate(same):
        piece = item + (";" if i < len(same) - 1 else "")
        if len(line) + 1 + len(piece) > width and line != "same:":
            lines.append(line)
            line = " "  # continuation lines are indented by two
        line += " " + piece
    lines.append(line)
    if differ:
        label = max(len(name) for name, _, _ in differ)
        a_width = max(len(a) for _, a, _ in differ)
        lines.append("differs:")
        lines += [f"  {name:<{label}}  A {a:<{a_width}}  B {b}" for name, a, b in differ]
    lines += [f"warning: {w['message']}" for w in cmp.warnings]
    return lines


def format_comparison(cmp: RunComparison) -> str:
    """The text `compare` prints: both runs, how their settings differ (and warnings), the shared problems,
    rates by thought and condition, flips."""
    lines = []
    for side in ("a", "b"):
        run = cmp.run(side)
        lines.append(
            f"{side.upper()}: {run['run_id']}{_named(run.get('name'))}  "
            f"{run.get('status')}  convention {run.get('convention')}  "
            f"problems {run.get('problems')}"
        )
    lines += format_config(cmp)
    n = cmp.problems
    lines.append(
        f"shared problems {n['shared']} (A has {n['a']}, B has {n['b']}); rates are among each run's own "
        "baseline-correct shared problems; difference = B - A, 95% bootstrap interval over shared problems"
    )
    if cmp.note:
        lines.append(f"note: {cmp.note}")
    if n["shared"] == 0:
        return "\n".join(lines + ["the runs share no problems: nothing to compare"]) + "\n"
    columns = [
        "problems",
        "n_a",
        "failure_rate_a",
        "n_b",
        "failure_rate_b",
        "difference",
        "diff_low",
        "diff_high",
        "mean_kl_a",
        "mean_kl_b",
    ]
    sections = (
        ("by_thought", "By thought (corruptions pooled, clean control excluded)", ["thought"] + columns),
        ("by_condition", "By thought and condition", ["thought", "condition"] + columns),
    )
    for name, title, cols in sections:
        frame = getattr(cmp, name)
        layers = [c for c in LAYERS if not single_valued(frame, c)]  # shown when the runs pair several layers
        lines += [
            "",
            title,
            render_table(rounded(frame.select(layers + cols)).to_arrow()).rstrip("\n")
            if not frame.is_empty()
            else "(no shared conditions)",
        ]
    family_sections = (
        (
            "by_combination",
            "Pairs and triplets of thoughts: synergy (joint - expected under independence) of each run, "
            "B - A with its interval",
            ["patch_layer", "condition", "combination_name", "problems", "n_a", "joint_rate_a", "synergy_a"]
            + ["n_b", "joint_rate_b", "synergy_b", "synergy_difference", "diff_low", "diff_high"],
        ),
        (
            "by_component",
            "Components: failure rate with the attention or MLP output corrupted",
            ["patch_layer", "thought_name", "site", "condition", "problems", "n_a", "failure_rate_a", "n_b"]
            + ["failure_rate_b", "difference", "diff_low", "diff_high"],
        ),
        (
            "families",
            "Intervention families (heads, edges): conditions both runs ran, mean log p(gold) drop per run",
            ["family", "condition", *columns[:8], "mean_logp_drop_a", "mean_logp_drop_b"],
        ),
    )
    for name, title, cols in family_sections:
        frame = getattr(cmp, name)
        if not frame.is_empty():
            lines += ["", title, render_table(rounded(frame.select(cols)).to_arrow()).rstrip("\n")]
    base = cmp.baseline_flips
    lines += ["", f"Baseline flips between the runs: {base.height}"]
    if base.height:
        lines.append(render_table(base.to_arrow()).rstrip("\n"))
    flips = cmp.condition_flips
    drop = [c for c in LAYERS if single_valued(flips, c)]
    lines += [
        "",
        f"Condition outcomes that differ between the runs: {flips.height}"
        + (f" (first {SHOWN_FLIPS}; all with --json)" if flips.height > SHOWN_FLIPS else ""),
    ]
    if flips.height:
        lines.append(render_table(flips.drop(drop).head(SHOWN_FLIPS).to_arrow()).rstrip("\n"))
    return "\n".join(lines) + "\n"
