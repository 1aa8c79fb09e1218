"""Helpers shared by `stats`, `compare`, the charts and the report: one read connection for some runs,
view rows as polars, problem matrices, bootstrap columns.

Pulled from the views with plain SQL (the views do the aggregation; Python adds only what SQL lacks).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import duckdb
import numpy as np
import polars as pl

from analysis.resampling import bootstrap_rates, interval, resample_counts
from warehouse.handle import Run


@contextlib.contextmanager
def reading(*runs: Run | None) -> Iterator[duckdb.DuckDBPyConnection]:
    """One read connection showing every given run (None entries are skipped).

    The runs must come from one warehouse; RunDamaged if a data file of one of them cannot be read
    (the other runs' damaged files are left out of the fact tables, as `stats` and `charts` always did).
    """
    given = [r for r in runs if r is not None]
    if not given:
        raise ValueError("no run given")
    first = given[0]
    for other in given[1:]:
        if other.warehouse is not first.warehouse and other.warehouse.path != first.warehouse.path:
            raise ValueError(
                f"runs {first.run_id} and {other.run_id} are in different warehouses "
                f"({first.warehouse.path}, {other.warehouse.path})"
            )
    ids = tuple(dict.fromkeys(r.run_id for r in given))
    with first.warehouse.reader(exclude_damaged=True, require=ids) as con:
        con.execute("SET enable_progress_bar = false")
        yield con


def fetch(con: duckdb.DuckDBPyConnection, sql: str, params: Any = ()) -> pl.DataFrame:
    return con.sql(sql, params=list(params)).pl()


def group_index(frame: pl.DataFrame, keys: list[str]) -> tuple[pl.DataFrame, np.ndarray, np.ndarray, int]:
    """(distinct groups in key order, group index per row, problem index per row, number of problems)."""
    g = (frame.select(pl.struct(keys).rank("dense")).to_series().to_numpy() - 1).astype(int)
    p = (frame["problem_id"].rank("dense").to_numpy() - 1).astype(int)
    groups = frame.select(keys).with_columns(_g=g).unique("_g").sort("_g").drop("_g")
    return groups, g, p, int(p.max()) + 1 if len(p) else 0


def rate_intervals(
    frame: pl.DataFrame, keys: list[str], n_boot: int, seed: int, prefix: str = "boot"
) -> pl.DataFrame:
    """Bootstrap interval (problems resampled) of each group's pooled rate sum(failures) / sum(trials).

    `frame` has the key columns, problem_id, failures and trials (one or more rows per group and problem).
    """
    names = [f"{prefix}_low", f"{prefix}_high"]
    if frame.is_empty():
        return frame.select(keys).with_columns(*(pl.lit(None, pl.Float64).alias(n) for n in names))
    groups, g, p, n_problems = group_index(frame, keys)
    shape = (groups.height, n_problems)
    failures, trials = np.zeros(shape), np.zeros(shape)
    np.add.at(failures, (g, p), frame["failures"].to_numpy().astype(float))
    np.add.at(trials, (g, p), frame["trials"].to_numpy().astype(float))
    counts = resample_counts(n_problems, n_boot, np.random.default_rng(seed))
    low, high = interval(bootstrap_rates(failures, trials, counts))
    return groups.with_columns(pl.Series(names[0], low), pl.Series(names[1], high))


def problem_matrix(frame: pl.DataFrame, column: str, by: str = "thought") -> np.ndarray:
    """[problems, positions] of `column`, NaN where a problem lacks a position (problems in id order)."""
    p = (frame["problem_id"].rank("dense").to_numpy() - 1).astype(int)
    k = (frame[by].rank("dense").to_numpy() - 1).astype(int)
    out = np.full((p.max() + 1, k.max() + 1), np.nan)
    out[p, k] = frame[column].to_numpy().astype(float)
    return out


def clean(value: Any) -> Any:
    """JSON-safe scalars: NaN and infinities become None, numpy scalars plain Python."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def records(frame: pl.DataFrame) -> list[dict]:
    return [{k: clean(v) for k, v in row.items()} for row in frame.to_dicts()]


def rounded(frame: pl.DataFrame, digits: int = 4) -> pl.DataFrame:
    """Floats rounded for printing (the JSON keeps full precision); p-values to 3 significant figures."""
    p_values = [c for c in frame.columns if c == "p" or c.startswith("p_")]
    floats = pl.col(pl.Float64, pl.Float32).exclude(p_values)
    # A p-value column with no value at all (every test skipped) has the Null dtype: cast it first.
    return frame.with_columns(
        floats.round(digits), *(pl.col(c).cast(pl.Float64).round_sig_figs(3) for c in p_values)
    )


def single_valued(frame: pl.DataFrame, column: str) -> bool:
    return column in frame.columns and frame[column].n_unique() <= 1
