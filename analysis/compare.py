"""`python cli.py compare RUN_A RUN_B`: two runs side by side, on the problems they share.

Rows come from the `run_comparison` view (the runs joined on problem id, thought, method and sigma),
so runs of different models, datasets or patch layers compare wherever they share problems. Per
thought (corruptions pooled, the clean control left out) and per condition: each run's failure rate
among its own baseline-correct shared problems, the difference B - A, and a 95% bootstrap interval of
the difference that resamples shared problems (paired: both runs see the same resampled problems).
Then the problems whose outcome differs between the runs: at the baseline, and per condition.

When both runs were patched at several layers, rows pair equal patch layers; a single-layer run
pairs with each layer of the other. When either run is a legacy run (SPEC 10), the payload's `note` and the
text carry the views' sentence on what thought k means (the `pair_note` macro, as in `run_comparison`).
"""
from __future__ import annotations

import numpy as np
import polars as pl

from analysis.frames import fetch, group_index, records, rounded, single_valued
from analysis.resampling import bootstrap_rates, interval, resample_counts
from warehouse.output import render_table
from warehouse.store import open_warehouse

N_BOOT, SEED, SHOWN_FLIPS = 2000, 0, 40
PAIR = "run_a = ? AND run_b = ?"
PER_PROBLEM = """
SELECT {keys}, problem_id,
       count(*) FILTER (WHERE failed_a) AS failures_a, count(*) FILTER (WHERE base_correct_a) AS trials_a,
       count(*) FILTER (WHERE failed_b) AS failures_b, count(*) FILTER (WHERE base_correct_b) AS trials_b,
       sum(kl_a) AS kl_sum_a, count(kl_a) AS kl_n_a, sum(kl_b) AS kl_sum_b, count(kl_b) AS kl_n_b
FROM run_comparison
WHERE {pair} AND {layers} AND method <> 'baseline' {extra}
GROUP BY ALL
"""


def paired_differences(frame: pl.DataFrame, keys: list[str], n_boot: int, seed: int) -> pl.DataFrame:
    """Per group: both runs' pooled failure rates, B - A and its bootstrap interval over shared problems."""
    if frame.is_empty():
        return pl.DataFrame()
    groups, g, p, n_problems = group_index(frame, keys)
    sums = {}
    for column in ("failures_a", "trials_a", "failures_b", "trials_b", "kl_sum_a", "kl_n_a", "kl_sum_b", "kl_n_b"):
        out = np.zeros((groups.height, n_problems))
        np.add.at(out, (g, p), frame[column].fill_null(0).to_numpy().astype(float))
        sums[column] = out
    counts = resample_counts(n_problems, n_boot, np.random.default_rng(seed))
    diff = (bootstrap_rates(sums["failures_b"], sums["trials_b"], counts)
            - bootstrap_rates(sums["failures_a"], sums["trials_a"], counts))
    low, high = interval(diff)
    total = {k: v.sum(1) for k, v in sums.items()}
    with np.errstate(invalid="ignore", divide="ignore"):
        rate_a, rate_b = total["failures_a"] / total["trials_a"], total["failures_b"] / total["trials_b"]
        kl_a, kl_b = total["kl_sum_a"] / total["kl_n_a"], total["kl_sum_b"] / total["kl_n_b"]
    problems = np.zeros(groups.height)
    np.add.at(problems, g, 1)
    return groups.with_columns(
        pl.Series("problems", problems.astype(int)),
        pl.Series("n_a", total["trials_a"].astype(int)), pl.Series("failures_a", total["failures_a"].astype(int)),
        pl.Series("failure_rate_a", rate_a),
        pl.Series("n_b", total["trials_b"].astype(int)), pl.Series("failures_b", total["failures_b"].astype(int)),
        pl.Series("failure_rate_b", rate_b),
        pl.Series("difference", rate_b - rate_a), pl.Series("diff_low", low), pl.Series("diff_high", high),
        pl.Series("mean_kl_a", kl_a), pl.Series("mean_kl_b", kl_b),
    ).with_columns(pl.col(pl.Float64).fill_nan(None))


def _layer_rule(con, a: str, b: str) -> tuple[str, bool]:
    """Pair equal patch layers when both runs have several; otherwise every pairing is the comparison."""
    counts = dict(con.execute("SELECT run_id, count(DISTINCT patch_layer) FROM stg_results WHERE run_id IN (?, ?) "
                              "GROUP BY run_id", [a, b]).fetchall())
    matched = counts.get(a, 0) > 1 and counts.get(b, 0) > 1
    return ("patch_layer_a IS NOT DISTINCT FROM patch_layer_b" if matched else "true"), matched


def compare_runs(db, run_a: str, run_b: str, n_boot: int = N_BOOT, seed: int = SEED) -> tuple[dict, str]:
    """The comparison of two runs: (JSON payload, text)."""
    store = open_warehouse(db, read_only=True)
    a, b = store.resolve_run(run_a), store.resolve_run(run_b)
    if a == b:
        raise ValueError(f"compare needs two different runs, got {a} twice")
    with store.reader(exclude_damaged=True, require=(a, b)) as con:
        con.execute("SET enable_progress_bar = false")
        layers, matched = _layer_rule(con, a, b)
        query = {"pair": PAIR, "layers": layers}
        by_thought = fetch(con, PER_PROBLEM.format(keys="thought", extra="AND method <> 'clean'", **query), [a, b])
        by_condition = fetch(con, PER_PROBLEM.format(keys="thought, method, sigma, condition", extra="", **query),
                             [a, b])
        flips = fetch(con, f"SELECT problem_id, thought, condition, patch_layer_a, patch_layer_b, correct_a, correct_b "
                           f"FROM run_comparison WHERE {PAIR} AND {layers} AND changed "
                           "ORDER BY method <> 'baseline', problem_id, thought, condition", [a, b])
        problems = dict(con.execute("SELECT run_id, count(DISTINCT problem_id) FROM results WHERE run_id IN (?, ?) "
                                    "GROUP BY run_id", [a, b]).fetchall())
        shared = con.execute(f"SELECT count(DISTINCT problem_id) FROM run_comparison WHERE {PAIR} "
                             "AND method = 'baseline'", [a, b]).fetchall()[0][0]
        runs = {r["run_id"]: r for r in records(fetch(con, "SELECT run_id, model_name, convention, status, "
                                                           "patch_layers, problems, baseline_accuracy, note FROM "
                                                           "model_comparison WHERE run_id IN (?, ?)", [a, b]))}
        note = con.execute("SELECT pair_note(ra.convention, rb.convention) FROM stg_runs ra, stg_runs rb "
                           "WHERE ra.run_id = ? AND rb.run_id = ?", [a, b]).fetchall()[0][0]
    tables = {
        "by_thought": paired_differences(by_thought, ["thought"], n_boot, seed),
        "by_condition": paired_differences(by_condition, ["thought", "method", "sigma", "condition"], n_boot, seed),
        "baseline_flips": flips.filter(pl.col("thought").is_null()).select("problem_id", "correct_a", "correct_b"),
        "condition_flips": flips.filter(pl.col("thought").is_not_null()),
    }
    same = runs.get(a, {}).get("convention") == runs.get(b, {}).get("convention")
    payload = {"run_a": runs.get(a, {"run_id": a}), "run_b": runs.get(b, {"run_id": b}),
               "problems": {"a": problems.get(a, 0), "b": problems.get(b, 0), "shared": shared},
               "same_convention": same, "note": note, "patch_layers_paired": matched,
               "settings": {"n_boot": n_boot, "seed": seed, "level": 0.95},
               **{name: records(frame) for name, frame in tables.items()}}
    return payload, compare_text(payload, tables)


def compare_text(payload: dict, tables: dict[str, pl.DataFrame]) -> str:
    lines = []
    for side in ("a", "b"):
        run = payload[f"run_{side}"]
        lines.append(f"{side.upper()}: {run['run_id']}  model {run.get('model_name')}  convention "
                     f"{run.get('convention')}  patch layers {run.get('patch_layers')}  problems {run.get('problems')}")
    n = payload["problems"]
    lines.append(f"shared problems {n['shared']} (A has {n['a']}, B has {n['b']}); rates are among each run's own "
                 "baseline-correct shared problems; difference = B - A, 95% bootstrap interval over shared problems")
    if payload["note"]:
        lines.append(f"note: {payload['note']}")
    if n["shared"] == 0:
        return "\n".join(lines + ["the runs share no problems: nothing to compare"]) + "\n"
    columns = ["problems", "n_a", "failure_rate_a", "n_b", "failure_rate_b", "difference", "diff_low", "diff_high",
               "mean_kl_a", "mean_kl_b"]
    sections = (("by_thought", "By thought (corruptions pooled, clean control excluded)", ["thought"] + columns),
                ("by_condition", "By thought and condition", ["thought", "condition"] + columns))
    for name, title, cols in sections:
        frame = tables[name]
        lines += ["", title, render_table(rounded(frame.select(cols)).to_arrow()).rstrip("\n") if not frame.is_empty()
                  else "(no shared conditions)"]
    base = tables["baseline_flips"]
    lines += ["", f"Baseline flips between the runs: {base.height}"]
    if base.height:
        lines.append(render_table(base.to_arrow()).rstrip("\n"))
    flips = tables["condition_flips"]
    drop = [c for c in ("patch_layer_a", "patch_layer_b") if single_valued(flips, c)]
    lines += ["", f"Condition outcomes that differ between the runs: {flips.height}"
              + (f" (first {SHOWN_FLIPS}; all with --json)" if flips.height > SHOWN_FLIPS else "")]
    if flips.height:
        lines.append(render_table(flips.drop(drop).head(SHOWN_FLIPS).to_arrow()).rstrip("\n"))
    return "\n".join(lines) + "\n"
