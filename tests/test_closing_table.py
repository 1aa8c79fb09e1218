"""The table `run` prints at its end is the views' (token_importance, baseline_accuracy), row for row.

A real run of the bundled gpt2-tiny with the `clean` control beside `zero`, patched at every layer: the
table must neither count the control nor pool the patch layers (it once printed T3 = 38.9% with n = 108
where token_importance said 77.8%, 42 of 54).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from analysis.closing import ClosingTable, closing_table, format_closing_table
from warehouse.store import open_warehouse

pytestmark = pytest.mark.slow  # end to end: `python -m pytest -m "not slow"` skips it

REPO = Path(__file__).resolve().parent.parent
ROW = re.compile(r"^\s*(\d+)\s+(T\d)\s+(\d+)\s+(\d+)\s+([\d.]+)%\s+([\d.]+)%-([\d.]+)%\s+([\d.]+|n/a)\s*$")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, str]:
    """(warehouse folder, what `run` printed) for 6 problems x zero, clean x every layer of gpt2-tiny."""
    db = tmp_path_factory.mktemp("closing") / "w"
    out = subprocess.run(
        [
            sys.executable,
            "cli.py",
            "run",
            "--problems",
            "6",
            "--methods",
            "zero,clean",
            "--layers",
            "all",
            "--attention",
            "none",
            "--batch-size",
            "6",
            "--db",
            str(db),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return db, out.stdout


def printed_rows(text: str) -> dict[tuple[int, str], tuple[int, int, float]]:
    """(patch layer, thought) -> (n, failures, rate in %) as printed."""
    rows = {}
    for line in text.splitlines():
        found = ROW.match(line)
        if found:
            layer, thought, n, failures, rate = found.groups()[:5]
            rows[int(layer), thought] = (int(n), int(failures), float(rate))
    return rows


def test_the_closing_table_is_token_importance_row_for_row(finished):
    db, printed = finished
    with open_warehouse(db, read_only=True) as wh:
        run = wh.run("latest")
        view = run.view("token_importance").sort("patch_layer", "thought")
        table = closing_table(run)
        with wh.reader() as con:  # the same numbers counted straight from the fact table
            direct = con.execute(
                """
                WITH base AS (
                    SELECT problem_id FROM results WHERE run_id = ? AND method = 'baseline' AND correct
                )
                SELECT r.layer, r.thought, count(*) AS n, count(*) FILTER (WHERE r.flipped) AS failures
                FROM results r JOIN base USING (problem_id)
                WHERE r.run_id = ? AND r.method = 'zero' GROUP BY ALL ORDER BY ALL""",
                [run.run_id, run.run_id],
            ).fetchall()
            base = con.execute(
                "SELECT count(*) FILTER (WHERE correct), count(*) FROM results WHERE run_id = ? "
                "AND method = 'baseline'",
                [run.run_id],
            ).fetchone()
    assert isinstance(table, ClosingTable) and isinstance(table.importance, pl.DataFrame)
    layers = sorted(set(view["patch_layer"].to_list()))
    assert len(layers) == 6 and view.height == 6 * 6  # every patch layer of gpt2-tiny x T0..T5
    keys = ["patch_layer", "thought", "n", "failures", "failure_rate", "ci_low", "ci_high"]
    assert table.importance.select(keys).equals(view.select(keys))  # the view's rows, in its order
    # the clean control is left out and the layers are kept apart: n = baseline-correct problems, zero only
    assert [tuple(r) for r in view.select("patch_layer", "thought", "n", "failures").iter_rows()] == direct
    assert set(view["n"].to_list()) == {base[0]}
    assert table.baseline_accuracy == pytest.approx(base[0] / base[1])
    b = table.baseline.row(0, named=True)
    assert (b["correct"], b["n"]) == base and b["ci_low"] < b["baseline_accuracy"] <= b["ci_high"]

    # what `run` printed: the accuracy line and one line per patch layer and thought, with the view's numbers
    assert printed.startswith(
        f"baseline accuracy: {base[0] / base[1]:.1%} ({base[0]} of {base[1]} problems; "
        f"95% CI {b['ci_low']:.1%}-{b['ci_high']:.1%})"
    )
    shown = printed_rows(printed)
    assert len(shown) == view.height
    for row in view.iter_rows(named=True):
        n, failures, rate = shown[row["patch_layer"], f"T{row['thought']}"]
        assert (n, failures) == (row["n"], row["failures"])
        assert rate == pytest.approx(100 * row["failure_rate"], abs=0.05)
    assert printed.startswith(format_closing_table(table) + "\n")  # cli.py only prints the library's text
    assert printed.rstrip("\n").splitlines()[-1].startswith(f"run {table.run_id}: 6 problems x 73 conditions")

    data = table.to_dict()
    assert [r["thought"] for r in data["importance"][:6]] == [f"T{k}" for k in range(6)]
    assert [(r["patch_layer"], r["n"], r["failures"]) for r in data["importance"]] == [
        (r["patch_layer"], r["n"], r["failures"]) for r in view.iter_rows(named=True)
    ]
