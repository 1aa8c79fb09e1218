"""scripts/scaling.py (issue 19, part 7): real runs in fresh processes, each counted in its own warehouse."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from faults_helpers import PAIRS, REPO, TINY_HEADS, TINY_LAYERS


@pytest.mark.slow
def test_scaling_table_counts_what_each_run_wrote(tmp_path):
    out = tmp_path / "out"
    command = [
        sys.executable, "scripts/scaling.py", "--sizes", "2,3", "--all-layers", "2",
        "--views", "token_importance,flow_matrix", "--out", str(out), "--work", str(tmp_path / "work"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "scaling.json").read_text())
    per_condition = TINY_LAYERS * TINY_HEADS * PAIRS  # attention rows of one condition of one problem
    for run, (problems, conditions) in zip(report["runs"], [(2, 43), (3, 43), (2, 253)], strict=True):
        assert (run["problems"], run["conditions"]) == (problems, conditions)
        assert run["results_rows"] == problems * conditions
        assert run["attention_rows"] == problems * conditions * per_condition
        assert run["disk_bytes"] > run["attention_rows"]  # at least a byte a row: the Parquet files exist
        assert run["cpu_s"] > 0 and run["wall_s"] > 0
        assert run["peak_rss_bytes"] > 300 * 10**6  # the child's own peak: torch alone is more than this
        assert run["estimated_peak_bytes"] > run["peak_rss_bytes"] * 0.9  # the run's estimate (a bound)
    assert report["runs"][2]["layers"] == "all"
    views = report["views"]
    assert views["problems"] == 3 and set(views["views"]) == {"token_importance", "flow_matrix"}
    assert views["views"]["flow_matrix"]["rows"] == TINY_LAYERS * TINY_HEADS * PAIRS  # one row per pair
    assert views["stats_wall_s"] > 0
    table = (out / "scaling.md").read_text()
    assert table == done.stdout and "| 3 | default | 43 |" in table and "| token_importance |" in table
