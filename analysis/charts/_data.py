"""What the charts read: rows of the views for one run or a pair, labelled for legends and panels.

Every aggregate a chart shows is a view's (queries/marts), so what Altair embeds stays far below its
5,000-row limit whatever the run's size, and any SQL client sees the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl

from warehouse import vocab

THOUGHTS = [vocab.NAMES[k] for k in vocab.THOUGHTS]
QUERIES = THOUGHTS + [vocab.NAMES[vocab.EOT]]  # attention rows (dst) in position order
KEYS = [vocab.NAMES[c] for c in vocab.CODES]  # attention keys (src) in position order
STRATA = list(vocab.STRATA)
METHOD_ORDER = list(vocab.METHOD_ORDER)
RUN_COLORS = ["#4c78a8", "#f58518"]
MAX_ROWS = 4800  # below Altair's default limit of 5,000 rows per chart


@dataclass(frozen=True)
class Runs:
    """The run a chart shows (A) and an optional second run (B), with legend labels."""

    ids: tuple[str, ...]
    labels: dict[str, str]
    patch_layers: dict[str, tuple[int, ...]]
    conventions: dict[str, str]

    @property
    def letters(self) -> dict[str, str]:
        return dict(zip(self.ids, "AB", strict=False))  # one run or two: "AB" truncated to the run count

    @property
    def pair(self) -> bool:
        return len(self.ids) == 2

    @property
    def label_order(self) -> list[str]:
        return [self.labels[r] for r in self.ids]

    @property
    def multi_patch(self) -> bool:
        """Some run was patched at several layers: result charts then split by patch layer."""
        return any(len(layers) > 1 for layers in self.patch_layers.values())

    @property
    def legacy(self) -> bool:
        return any(c == "legacy" for c in self.conventions.values())

    def single(self, run_id: str) -> Runs:
        """One of the runs alone, keeping its label (a pair report's chart drawn once for both runs)."""
        return Runs(
            (run_id,),
            {run_id: self.labels[run_id]},
            {run_id: self.patch_layers[run_id]},
            {run_id: self.conventions[run_id]},
        )


def load_runs(con: duckdb.DuckDBPyConnection, run: str, vs: str | None = None) -> Runs:
    """Labels such as `A · gpt2-tiny · patch L3 · 2d323d`, from the stg_runs view."""
    ids = (run,) if vs is None else (run, vs)
    if vs is not None and vs == run:
        raise ValueError(f"--vs names the same run as --run ({run})")
    found = {
        r["run_id"]: r
        for r in con.sql(
            "SELECT run_id, model_name, patch_layers, convention FROM stg_runs "
            "WHERE run_id IN (SELECT unnest(?))",
            params=[list(ids)],
        )
        .pl()
        .to_dicts()
    }
    labels, layers, conventions = {}, {}, {}
    for letter, run_id in zip("AB", ids, strict=False):  # one run or two: "AB" truncated
        row = found.get(run_id)
        if row is None:
            raise KeyError(f"no run {run_id!r} in the warehouse")
        layers[run_id] = tuple(row["patch_layers"] or ())
        conventions[run_id] = row["convention"]
        patch = "patch " + ",".join(f"L{x}" for x in layers[run_id]) if layers[run_id] else "no patch layer"
        parts = ([letter] if vs is not None else []) + [row["model_name"] or "?", patch, run_id[-6:]]
        labels[run_id] = " · ".join(parts)
    return Runs(ids, labels, layers, conventions)


def rows(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    runs: Runs,
    params: Sequence[Any] = (),
    run_column: str = "run_id",
) -> pl.DataFrame:
    """The query's rows for the runs (`{runs}` in the SQL becomes the filter), with a `run` label column."""
    marks = ", ".join("?" for _ in runs.ids)
    frame = con.sql(sql.format(runs=f"{run_column} IN ({marks})"), params=[*runs.ids, *params]).pl()
    return frame.with_columns(
        run=pl.col(run_column).replace_strict(runs.labels, default=None, return_dtype=pl.String)
    )


def with_panel(
    frame: pl.DataFrame,
    runs: Runs,
    by_run: bool = True,
    patch_column: str | None = "patch_layer",
    extra: str | None = None,
    extra_sort: str | None = None,
) -> tuple[pl.DataFrame, list[str]]:
    """Add `panel`: the run's letter (two runs, by_run), `patch Lx` (several patch layers), then `extra`.

    Returns the frame and the panels in order: run A first, then patch layer, then `extra_sort` (default
    `extra`) ascending.
    """
    parts, keys = [], []
    if runs.pair and by_run:
        parts.append(pl.col("run_id").replace_strict(runs.letters, default="?", return_dtype=pl.String))
    if patch_column and runs.multi_patch and patch_column in frame.columns:
        parts.append(pl.format("patch L{}", pl.col(patch_column)))
        keys.append(patch_column)
    if extra:
        parts.append(pl.col(extra).cast(pl.String))
        keys.append(extra_sort or extra)
    if not parts:
        return frame.with_columns(panel=pl.lit("")), [""]
    frame = frame.with_columns(panel=pl.concat_str(parts, separator=" · "))
    run_order = pl.col("run_id").replace_strict(
        {r: i for i, r in enumerate(runs.ids)}, default=99, return_dtype=pl.Int32
    )
    ordered = frame.sort([run_order, *keys], nulls_last=True)
    return frame, ordered["panel"].unique(maintain_order=True).to_list()


def condition_label(method: str, sigma: float | None) -> str:
    return method if sigma is None else f"{method} σ={sigma:g}"


def condition_labels(frame: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """A `condition_label` column (zero, gauss σ=0.5, ...) and the labels in method, then sigma order."""
    if frame.is_empty():
        return frame.with_columns(condition_label=pl.lit(None, pl.String)), []
    labels = [
        condition_label(m, s)
        for m, s in zip(frame["method"].to_list(), frame["sigma"].to_list(), strict=True)
    ]
    frame = frame.with_columns(condition_label=pl.Series(labels, dtype=pl.String))
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    order = sorted(
        {
            (rank.get(m, len(rank)), m, s if s is not None else -1.0, lab)
            for m, s, lab in zip(frame["method"], frame["sigma"], frame["condition_label"], strict=True)
        }
    )
    return frame, [o[-1] for o in order]
