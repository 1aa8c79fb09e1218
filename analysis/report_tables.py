"""The report's tables: each run's lineage and the key numbers, rows of the views.

The HTML is analysis/templates/tables.html.j2; numbers a reader compares across rows (rates, r) are
formatted the same way in every table (analysis.templating.cell); the charts carry the detail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl

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
    frame = _fetch(con, f"SELECT run_id, {', '.join(CONFIG_FIELDS)} FROM run_config WHERE {{runs}}", ids)
    return {row.pop("run_id"): row for row in frame.iter_rows(named=True)}


@dataclass(frozen=True)
class Table:
    key: str
    title: str
    view: str
    frame: pl.DataFrame
    percent: tuple[str, ...] = ()


def _fetch(con: duckdb.DuckDBPyConnection, sql: str, ids: list[str]) -> pl.DataFrame:
    marks = ", ".join("?" for _ in ids)
    return con.sql(sql.format(runs=f"run_id IN ({marks})"), params=ids).pl()


def _run_letter(frame: pl.DataFrame, ids: list[str]) -> pl.DataFrame:
    """With two runs, the first column says which (A or B); with one it is left out."""
    if len(ids) < 2:
        return frame.drop("run_id")
    letters = dict(zip(ids, "AB", strict=True))
    return frame.with_columns(pl.col("run_id").replace_strict(letters, default="?").alias("run_id")).rename(
        {"run_id": "run"}
    )


def key_tables(con: duckdb.DuckDBPyConnection, ids: list[str]) -> list[Table]:
    """Importance, corruptions, correlation by layer, hubs and the top heads for the runs."""
    specs = [
        (
            "importance",
            "Importance by thought",
            "token_importance",
            (
                "SELECT run_id, patch_layer, thought_name AS thought, problems, n, failures, failure_rate, "
                "ci_low, ci_high, mean_kl, mean_logp_drop FROM token_importance WHERE {runs} "
                "ORDER BY run_id, patch_layer, thought"
            ),
            ("failure_rate", "ci_low", "ci_high"),
        ),
        (
            "methods",
            "Corruptions",
            "method_comparison",
            (
                "SELECT run_id, patch_layer, condition, n, failures, failure_rate, ci_low, ci_high, mean_kl, "
                "mean_logp_drop, mean_disruption FROM method_comparison WHERE {runs} "
                "ORDER BY run_id, patch_layer, "
                "list_position(['zero', 'gauss', 'random', 'shuffle', 'mean', 'clean'], method), sigma"
            ),
            ("failure_rate", "ci_low", "ci_high"),
        ),
        (
            "correlation",
            "Attention-importance correlation by layer",
            "layer_correlation",
            (
                "SELECT run_id, patch_layer, layer, n, problems, r, t, r_within FROM layer_correlation "
                "WHERE {runs} ORDER BY run_id, patch_layer, layer"
            ),
            (),
        ),
        (
            "hubs",
            "Hub scores",
            "hub_scores",
            (
                "SELECT run_id, position_name AS thought, later_thoughts, incoming_raw, incoming_norm, "
                "hub_ratio, hub_ratio_raw FROM hub_scores WHERE {runs} ORDER BY run_id, position"
            ),
            (),
        ),
        (
            "heads",
            "Top 10 heads",
            "head_metrics",
            (
                "SELECT run_id, rank, layer, head, functional_type, composite, flow, hub, skip, self_attn "
                "FROM head_metrics WHERE {runs} AND rank <= 10 ORDER BY run_id, rank"
            ),
            (),
        ),
    ]
    if len(ids) == 2:
        specs.insert(
            0,
            (
                "summary",
                "Runs side by side",
                "model_comparison",
                (
                    "SELECT run_id, model_name, dataset_name, patch_layers, problems, baseline_accuracy, n, "
                    "failures, failure_rate, ci_low, ci_high, mean_kl FROM model_comparison WHERE {runs}"
                ),
                ("baseline_accuracy", "failure_rate", "ci_low", "ci_high"),
            ),
        )
    order = {r: i for i, r in enumerate(ids)}
    tables = []
    for key, title, view, sql, percent in specs:
        frame = _fetch(con, sql, ids)
        frame = frame.sort(
            pl.col("run_id").replace_strict(order, default=9, return_dtype=pl.Int32), maintain_order=True
        )
        tables.append(Table(key, title, view, _run_letter(frame, ids), percent))
    return tables
