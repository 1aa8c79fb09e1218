"""The table `python cli.py run` prints when a run ends: baseline accuracy and importance by thought.

Read from the views, not recomputed: `baseline_accuracy` (accuracy with its 95% Wilson interval) and
`token_importance` (per patch layer and thought: failure rate among baseline-correct trials, every
corruption pooled, the `clean` control left out, with its Wilson interval). So the numbers are the
ones `stats`, the charts and any SQL client show for the run.

    table = closing_table(wh.run("latest"))     # a dataclass of polars frames
    print(format_closing_table(table))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from analysis.frames import fetch, reading, records
from warehouse.handle import Run

IMPORTANCE_COLUMNS = [
    "patch_layer",
    "thought",
    "thought_name",
    "problems",
    "n",
    "failures",
    "failure_rate",
    "ci_low",
    "ci_high",
    "mean_kl",
]
BASELINE_COLUMNS = ["problems", "n", "correct", "baseline_accuracy", "ci_low", "ci_high"]


@dataclass(frozen=True)
class ClosingTable:
    """`baseline`: one row of the baseline_accuracy view (none when the run has no baseline);
    `importance`: token_importance's rows, one per patch layer and thought, in that order."""

    run_id: str
    baseline: pl.DataFrame
    importance: pl.DataFrame

    @property
    def baseline_accuracy(self) -> float | None:
        return None if self.baseline.is_empty() else self.baseline["baseline_accuracy"][0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: `baseline` (a dict or None) and `importance` rows (thought as its name, T0..T5)."""
        rows = self.importance.select(pl.exclude("thought")).rename(
            {"thought_name": "thought", "mean_kl": "mean_kl_answer"}
        )
        base = records(self.baseline)
        return {
            "run_id": self.run_id,
            "baseline_accuracy": self.baseline_accuracy,
            "baseline": base[0] if base else None,
            "importance": records(rows),
        }


def closing_table(run: Run) -> ClosingTable:
    """Baseline accuracy and importance by patch layer and thought, from the views."""
    with reading(run) as con:
        baseline = fetch(
            con, f"SELECT {', '.join(BASELINE_COLUMNS)} FROM baseline_accuracy WHERE run_id = ?", [run.run_id]
        )
        importance = fetch(
            con,
            f"SELECT {', '.join(IMPORTANCE_COLUMNS)} FROM token_importance WHERE run_id = ? "
            "AND thought IS NOT NULL ORDER BY patch_layer, thought",
            [run.run_id],
        )
    return ClosingTable(run.run_id, baseline, importance)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def format_closing_table(table: ClosingTable) -> str:
    """The table as text: the accuracy line, then one line per patch layer and thought."""
    if table.baseline.is_empty():
        lines = ["baseline accuracy: n/a"]
    else:
        b = table.baseline.row(0, named=True)
        lines = [
            (
                f"baseline accuracy: {_pct(b['baseline_accuracy'])} ({b['correct']} of {b['n']} problems; "
                f"95% CI {_pct(b['ci_low'])}-{_pct(b['ci_high'])})"
            )
        ]
    lines.append(
        "importance: failure rate among baseline-correct trials, corruptions pooled, clean control "
        "left out (view token_importance)"
    )
    lines.append(
        f"{'patch layer':>11} {'thought':>7} {'n':>6} {'failures':>8} {'rate':>7} {'95% CI':>15} "
        f"{'KL@answer':>9}"
    )
    for row in table.importance.iter_rows(named=True):
        kl = "n/a" if row["mean_kl"] is None else f"{row['mean_kl']:.3f}"
        ci = f"{_pct(row['ci_low'])}-{_pct(row['ci_high'])}" if row["ci_low"] is not None else "n/a"
        layer = "n/a" if row["patch_layer"] is None else str(row["patch_layer"])
        lines.append(
            f"{layer:>11} {row['thought_name']:>7} {row['n']:>6} {row['failures']:>8} "
            f"{_pct(row['failure_rate']):>7} {ci:>15} {kl:>9}"
        )
    if table.importance.is_empty():
        lines.append("(no corrupted trials on baseline-correct problems)")
    return "\n".join(lines)
