"""`stats` for the pairs / triplets and components families: what SQL lacks on top of their views.

- interactions (the view `interactions`: joint failure rate of thoughts corrupted together, each thought's
  alone, the rate expected under independence 1 - prod(1 - p_i), synergy = joint - expected): a bootstrap
  interval over problems (problems resampled whole, from `int_interaction_problems`) of joint, expected and
  synergy, and a two-sided bootstrap p-value of synergy != 0, the percentile interval inverted:
  p = min(1, 2 min((1 + #{synergy* <= 0}) / (1 + B), (1 + #{synergy* >= 0}) / (1 + B))), so p < 0.05
  exactly when 0 lies outside the 95% interval's tails. Holm-adjusted over every combination of the run
  (stats.ADJUSTMENTS), since the findings pick the most synergistic pair from them.
- components: the view `component_importance` (failure rates with the views' Wilson intervals, attn, mlp and
  the block for reference), and `component_comparison` (attn vs mlp on the same problems) with McNemar's
  exact test of the paired failures (statsmodels), Holm-adjusted over the run's tests.
- findings: the most synergistic pair and the attn-vs-mlp tests in sentences.

A run without the family has no rows in these views; `stats` then shows no section for it.
"""

from __future__ import annotations

from typing import Any, Protocol

import duckdb
import numpy as np
import polars as pl

from analysis.frames import fetch, group_index
from analysis.inference import ALPHA
from analysis.resampling import interval, resample_counts

RUN = "WHERE run_id = ?"
INTERACTION_KEYS = ["patch_layer", "condition", "combination_name"]
TOLERANCE = 1e-12  # rounding of rates built from the same counts: |synergy| below it is 0
BOOT_COLUMNS = (
    "joint_boot_low",
    "joint_boot_high",
    "expected_low",
    "expected_high",
    "synergy_low",
    "synergy_high",
    "p_boot",
)


def _synergy_samples(
    frame: pl.DataFrame,
    g: np.ndarray,
    p: np.ndarray,
    shape: tuple[int, int],
    counts: np.ndarray,
    suffix: str = "",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[B, groups] joint rate, expected rate and synergy of each resample, over the rows whose
    `base_correct{suffix}` holds (all rows without that column), from `failed{suffix}` and the singles'
    failures (`failed_a`, `failed_b`, `failed_c`, or the list `singles{suffix}`)."""
    mask = (
        frame[f"base_correct{suffix}"].fill_null(False).to_numpy() if suffix else np.ones(frame.height, bool)
    )
    present, joint = np.zeros(shape), np.zeros(shape)
    singles = np.zeros((3, *shape))
    np.add.at(present, (g[mask], p[mask]), 1.0)
    np.add.at(
        joint, (g[mask], p[mask]), frame[f"failed{suffix}"].fill_null(False).to_numpy()[mask].astype(float)
    )
    for j in range(3):
        if suffix:
            column = frame[f"singles{suffix}"].list.get(j, null_on_oob=True)
        else:
            column = frame[("failed_a", "failed_b", "failed_c")[j]]
        flags = column.fill_null(False).to_numpy().astype(float)
        np.add.at(singles[j], (g[mask], p[mask]), flags[mask])
    with np.errstate(invalid="ignore", divide="ignore"):
        n = counts @ present.T
        joint_b = (counts @ joint.T) / n
        keep = np.ones_like(joint_b)
        for j in range(3):
            keep *= 1 - (counts @ singles[j].T) / n
    expected_b = 1 - keep
    return joint_b, expected_b, joint_b - expected_b


def bootstrap_p(samples: np.ndarray) -> np.ndarray:
    """Two-sided bootstrap p of each column's statistic != 0, the percentile interval inverted:
    min(1, 2 min(1 + #{s* <= 0}, 1 + #{s* >= 0}) / (1 + B)) over the finite resamples; NaN without any.
    |s*| below TOLERANCE counts as 0 on both sides: a synergy that is 0 up to rounding (joint equal to one
    thought's rate alone, 1 - (1 - a) = a) must not read as significant."""
    finite = np.isfinite(samples)
    total = finite.sum(0)
    below = ((samples <= TOLERANCE) & finite).sum(0)
    above = ((samples >= -TOLERANCE) & finite).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.minimum(1.0, 2 * np.minimum(1 + below, 1 + above) / (1 + total))
    return np.where(total > 0, p, np.nan)


def synergy_bootstrap(frame: pl.DataFrame, keys: list[str], n_boot: int, seed: int) -> pl.DataFrame:
    """Per group of `keys`: bootstrap intervals of joint, expected and synergy, and the bootstrap p of
    synergy != 0 (see the module's docstring).

    `frame`: one row per group and baseline-correct problem with `failed` (joint) and `failed_a`,
    `failed_b`, `failed_c` (each thought alone; failed_c NULL for a pair). Problems are resampled whole,
    the same resamples for every group.
    """
    if frame.is_empty():
        return frame.select(keys).with_columns(*(pl.lit(None, pl.Float64).alias(c) for c in BOOT_COLUMNS))
    groups, g, p, n_problems = group_index(frame, keys)
    counts = resample_counts(n_problems, n_boot, np.random.default_rng(seed))
    joint_b, expected_b, synergy_b = _synergy_samples(frame, g, p, (groups.height, n_problems), counts)
    values = (*interval(joint_b), *interval(expected_b), *interval(synergy_b), bootstrap_p(synergy_b))
    return groups.with_columns(
        *(pl.Series(c, v, pl.Float64) for c, v in zip(BOOT_COLUMNS, values, strict=True))
    ).with_columns(pl.col(BOOT_COLUMNS).fill_nan(None))


def synergy_difference_intervals(
    frame: pl.DataFrame, keys: list[str], n_boot: int, seed: int
) -> pl.DataFrame:
    """Per group: a bootstrap interval (diff_low, diff_high) of synergy B - synergy A over shared problems,
    both runs resampled alike (paired). `frame`: int_family_run_pairs rows (base_correct_a / _b, failed_a /
    _b, singles_a / _b), each run's rates over its own baseline-correct problems."""
    names = ["diff_low", "diff_high"]
    if frame.is_empty():
        return frame.select(keys).with_columns(*(pl.lit(None, pl.Float64).alias(n) for n in names))
    groups, g, p, n_problems = group_index(frame, keys)
    counts = resample_counts(n_problems, n_boot, np.random.default_rng(seed))
    shape = (groups.height, n_problems)
    diff = (
        _synergy_samples(frame, g, p, shape, counts, "_b")[2]
        - _synergy_samples(frame, g, p, shape, counts, "_a")[2]
    )
    low, high = interval(diff)
    return groups.with_columns(pl.Series(names[0], low), pl.Series(names[1], high)).with_columns(
        pl.col(names).fill_nan(None)
    )


def interaction_table(con: duckdb.DuckDBPyConnection, run_id: str, n_boot: int, seed: int) -> pl.DataFrame:
    """`interactions` for the run plus bootstrap intervals of joint, expected and synergy and p_boot."""
    view = fetch(
        con,
        f"SELECT * EXCLUDE (run_id) FROM interactions {RUN} "
        "ORDER BY patch_layer, size, method, sigma NULLS FIRST, combination",
        [run_id],
    )
    per_problem = fetch(
        con,
        "SELECT patch_layer, condition, array_to_string(list_transform(combination, k -> 'T' || k::VARCHAR), "
        "'+') AS combination_name, problem_id, failed, failed_a, failed_b, failed_c "
        f"FROM int_interaction_problems {RUN} AND base_correct AND complete",
        [run_id],
    )
    boot = synergy_bootstrap(per_problem, INTERACTION_KEYS, n_boot, seed)
    return view.join(boot, on=INTERACTION_KEYS, how="left", nulls_equal=True, maintain_order="left")


def mcnemar_p(both: int, attn_only: int, mlp_only: int, neither: int) -> float | None:
    """McNemar's exact p (two-sided binomial test of the discordant pairs, statsmodels) of a paired 2 x 2
    table; None without problems."""
    if both + attn_only + mlp_only + neither == 0:
        return None
    from statsmodels.stats.contingency_tables import mcnemar

    return float(mcnemar([[both, attn_only], [mlp_only, neither]], exact=True).pvalue)


def component_tables(con: duckdb.DuckDBPyConnection, run_id: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(`component_importance` rows of the run: attn, mlp and block per thought and method, Wilson
    intervals; `component_comparison` rows with McNemar's exact p_mcnemar of attn vs mlp)."""
    importance = fetch(
        con,
        f"SELECT * EXCLUDE (run_id) FROM component_importance {RUN} "
        "ORDER BY patch_layer, thought, method, sigma NULLS FIRST, site_rank",
        [run_id],
    )
    tests = fetch(
        con,
        f"SELECT * EXCLUDE (run_id) FROM component_comparison {RUN} "
        "ORDER BY patch_layer, thought, method, sigma NULLS FIRST",
        [run_id],
    )
    p = [
        mcnemar_p(*cells)
        for cells in zip(
            tests["both"].to_list(),
            tests["attn_only"].to_list(),
            tests["mlp_only"].to_list(),
            tests["neither"].to_list(),
            strict=True,
        )
    ]
    at = tests.columns.index("neither") + 1
    tests = tests.with_columns(pl.Series("p_mcnemar", p, pl.Float64))
    columns = [c for c in tests.columns if c != "p_mcnemar"]
    return importance, tests.select([*columns[:at], "p_mcnemar", *columns[at:]])


# --- findings ------------------------------------------------------------------------------------------
def _points(value: float) -> str:
    return f"{100 * value:+.1f} points"


def _where(row: dict[str, Any]) -> str:
    return f"at patch layer {row['patch_layer']} ({row['condition']})"


def interaction_sentences(frame: pl.DataFrame) -> list[str]:
    """The most synergistic pair of thoughts, with its interval and Holm p; whether it stands out."""
    pairs = frame.filter((pl.col("size") == 2) & pl.col("synergy").is_not_null() & (pl.col("n") > 0))
    if pairs.is_empty():
        return []
    top = pairs.sort("synergy", descending=True, nulls_last=True).row(0, named=True)
    low, high, p = top.get("synergy_low"), top.get("synergy_high"), top.get("p_holm")
    interval_text = (
        f"95% bootstrap interval over problems {_points(low)} to {_points(high)}"
        if low is not None and high is not None
        else "no bootstrap interval"
    )
    p_text = f"Holm p = {p:.3g}" if p is not None else "no p-value"
    numbers = (
        f"corrupted together they fail {top['joint_rate']:.1%} of {top['n']} baseline-correct problems "
        f"against {top['expected']:.1%} expected if each acted independently: synergy "
        f"{_points(top['synergy'])} ({interval_text}, {p_text}, {len(pairs)} pairs tested)"
    )
    supported = p is not None and p < ALPHA and low is not None and low > 0
    if supported:
        return [f"Pairs: {top['combination_name']} {_where(top)} interact: {numbers}."]
    return [
        f"Pairs: no pair of thoughts is shown to interact beyond independence; the most synergistic, "
        f"{top['combination_name']} {_where(top)}: {numbers}."
    ]


def component_sentences(frame: pl.DataFrame) -> list[str]:
    """How many (layer, thought, method) tests separate the attention output from the MLP output, and
    the strongest."""
    tests = frame.filter(pl.col("p_mcnemar").is_not_null())
    if tests.is_empty():
        return []
    ordered = tests.sort(["p_holm", "difference"], descending=[False, True], nulls_last=True)
    top = ordered.row(0, named=True)
    significant = tests.filter(pl.col("p_holm") < ALPHA).height
    strongest = (
        f"T{top['thought']} {_where(top)}: attention output {top['failure_rate_attn']:.1%} vs MLP output "
        f"{top['failure_rate_mlp']:.1%} of {top['n']} baseline-correct problems (McNemar exact, Holm p = "
        f"{top['p_holm']:.3g})"
    )
    if significant:
        return [
            f"Components: corrupting the attention output and the MLP output differ in {significant} of "
            f"{tests.height} (layer, thought, method) tests (Holm p < {ALPHA}); the strongest, {strongest}."
        ]
    return [
        f"Components: the attention and MLP outputs do not differ beyond chance in any of the "
        f"{tests.height} (layer, thought, method) tests; the closest, {strongest}."
    ]


class FamilyFrames(Protocol):
    """What the findings read (analysis.stats.RunStats has it; no import back, which would be a cycle)."""

    @property
    def interactions(self) -> pl.DataFrame: ...

    @property
    def component_tests(self) -> pl.DataFrame: ...


def findings_combos(stats: FamilyFrames) -> list[str]:
    """The families' sentences for `RunStats.findings()`: none when the run lacks them."""
    return interaction_sentences(stats.interactions) + component_sentences(stats.component_tests)
