"""`upgrade`: a warehouse of the old layout (DuckDB file + Parquet batch directories) copied into a folder.

The old layout is written here by hand, as the earlier program wrote it: schema_version 1, runs and
problems_base in the DuckDB file, `<name>.shards/<run>/<batch>/<table>.parquet` for the rows.
"""

from __future__ import annotations

import duckdb
import pyarrow.parquet as pq
from faults_helpers import cli, user_error

import warehouse as wh
from warehouse.bench import sample_problem
from warehouse.frames import conform
from warehouse.schema import ddl


def _old_warehouse(path, runs: dict[str, int]) -> None:
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version SMALLINT, applied_at TIMESTAMP, note VARCHAR)")
    con.execute("INSERT INTO schema_version VALUES (1, now()::TIMESTAMP, 'created')")
    con.execute(ddl("runs"))
    con.execute(ddl("problems_base"))
    for run_id, problems in runs.items():
        con.execute(
            "INSERT INTO runs (run_id, status, started_at, model_name, n_layers, convention, config_json) "
            "VALUES (?, 'complete', now()::TIMESTAMP, 'gpt2-tiny', 2, 'codi', '{}')",
            [run_id],
        )
        for i in range(problems):
            row, results, attention = sample_problem(i, 2, 2)
            batch = path.with_suffix(".shards") / run_id / f"b{i:07d}-abcdef12"
            batch.mkdir(parents=True)
            pid = row["problem_id"]
            pq.write_table(conform(results, "results", run_id, pid), batch / "results.parquet")
            pq.write_table(conform(attention, "attention", run_id, pid), batch / "attention.parquet")
            pq.write_table(
                conform({"problem_id": pid, "ordinal": i}, "run_problems", run_id),
                batch / "run_problems.parquet",
            )
            pq.write_table(conform(row, "problems", run_id), batch / "problems.parquet")
    con.close()


def test_upgrade_copies_every_run_and_leaves_the_old_files_alone(tmp_path):
    old = tmp_path / "warehouse.duckdb"
    _old_warehouse(old, {"run-a": 2, "run-b": 1})
    before = sorted((p.name, p.stat().st_size) for p in tmp_path.rglob("*") if p.is_file())
    out = cli("upgrade", old, "--to", tmp_path / "new")
    assert out.exit_code == 0, out.stderr
    assert "copied 2 runs (129 results" in out.stdout
    assert (
        sorted((p.name, p.stat().st_size) for p in tmp_path.rglob("*") if p.is_file() if "new" not in p.parts)
        == before
    )
    with wh.open_warehouse(tmp_path / "new", read_only=True).reader() as con:
        assert con.execute("SELECT run_id, count(*) FROM results GROUP BY 1 ORDER BY 1").fetchall() == [
            ("run-a", 86),
            ("run-b", 43),
        ]
        assert con.execute("SELECT count(*) FROM attention").fetchall() == [(3 * 43 * 2 * 2 * 35,)]
        assert con.execute("SELECT count(*) FROM problems").fetchall() == [(2,)]
        assert con.execute("SELECT status FROM runs WHERE run_id = 'run-a'").fetchall() == [("complete",)]
    # The old file given as --db is named as such, with the command that converts it.
    user_error(cli("runs", "--db", old), "old layout", "upgrade")
    user_error(cli("upgrade", old, "--to", tmp_path / "new"), "already exists")
