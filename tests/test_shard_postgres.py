"""Shard workers committing straight into a warehouse whose catalog is a real PostgreSQL database
(tests/pg_server.py): workers of different shards commit at once, the last one completes the run,
a second worker of the same shard is refused, and a killed worker's shard runs again to the end."""

from __future__ import annotations

import json

import polars as pl
import pytest
from faults_helpers import (
    PAIRS,
    TINY_HEADS,
    TINY_LAYERS,
    Stall,
    check_run,
    cli,
    fetch,
    spawn_cli,
    user_error,
)
from pg_server import fresh_pg_database, pg_server  # noqa: F401 (fixtures)

import warehouse as wh
from warehouse.bench import sample_batch, sample_problem
from warehouse.errors import WarehouseError

CONDITIONS = 7  # baseline + 6 thoughts x zero
PER_PROBLEM = CONDITIONS * TINY_LAYERS * TINY_HEADS * PAIRS
FLAGS = ["--methods", "zero", "--attention", "all", "--batch-size", 1, "--seed", 3]


def pg_warehouse(tmp_path, dsn):
    db = tmp_path / "w"
    out = cli("init", "--catalog", f"postgres:{dsn}", "--db", db)
    assert out.exit_code == 0, out.stderr
    return db


def summary(out) -> dict:
    assert out.exit_code == 0, out.stderr
    return json.loads(out.stdout)


def results_frame(db, run_id: str) -> pl.DataFrame:
    with wh.open_warehouse(db, read_only=True).reader() as con:
        frame = con.sql("SELECT * EXCLUDE (run_id) FROM results WHERE run_id = ?", params=[run_id]).pl()
    return frame.sort("problem_id", "condition_id")


@pytest.mark.slow
def test_shard_workers_commit_concurrently_and_the_last_one_completes_the_run(tmp_path, fresh_pg_database):  # noqa: F811
    db = pg_warehouse(tmp_path, fresh_pg_database)
    flags = ["--problems", 5, *FLAGS, "--db", db, "--json"]
    workers = [
        spawn_cli("run", "--shard", f"{i}/2", *flags, out_dir=tmp_path / f"worker{i}") for i in range(2)
    ]
    try:
        outs = [summary(w.wait()) for w in workers]
    finally:
        for w in workers:
            w.cleanup()
    run_id = outs[0]["run_id"]
    assert {o["run_id"] for o in outs} == {run_id}
    assert [o["status"] for o in outs] == ["committed", "committed"]
    assert [o["problems"] for o in outs] == [3, 2]  # batches 0, 2, 4 and 1, 3
    assert "complete" in {o["run_status"] for o in outs} and all(o["shard_dir"] is None for o in outs)
    check_run(db, run_id, 5, CONDITIONS, PER_PROBLEM)
    assert not (tmp_path / "w.worker-shards").exists()  # nothing to merge: the rows are in the warehouse

    # the same rows, ordinals and problem order as one process computing the whole run (a child process
    # too: same torch threads, so the same floats)
    single = tmp_path / "single"
    child = spawn_cli(
        "run", "--problems", 5, *FLAGS, "--db", single, "--json", out_dir=tmp_path / "single-out"
    )
    try:
        one = summary(child.wait())
    finally:
        child.cleanup()
    order = "SELECT problem_id, ordinal FROM run_problems WHERE run_id = ? ORDER BY ordinal"
    assert fetch(db, order, [run_id]) == fetch(single, order, [one["run_id"]])
    assert results_frame(db, run_id).equals(results_frame(single, one["run_id"]))

    again = summary(cli("run", "--shard", "0/2", *flags))
    assert (again["status"], again["run_status"], again["problems_committed"]) == ("skipped", "complete", 5)
    check_run(db, run_id, 5, CONDITIONS, PER_PROBLEM)


@pytest.mark.slow
def test_a_shard_runs_once_at_a_time_and_a_killed_worker_runs_again_to_the_end(tmp_path, fresh_pg_database):  # noqa: F811
    db = pg_warehouse(tmp_path, fresh_pg_database)
    flags = ["--problems", 4, *FLAGS, "--db", db, "--json"]
    # shard 0/2 holds batches 0 and 2: stop it inside its second commit, its first one in
    first = spawn_cli(
        "run", "--shard", "0/2", *flags, out_dir=tmp_path / "first", stall=Stall("commit", nth=2)
    )
    try:
        first.wait_stalled()
        run_id = fetch(db, "SELECT run_id FROM runs")[0][0]
        assert fetch(
            db,
            "SELECT status, count(p.problem_id) FROM runs LEFT JOIN run_problems p USING (run_id) "
            "GROUP BY ALL",
        ) == [("running", 1)]
        user_error(cli("run", "--shard", "0/2", *flags), f"shard 0/2 of run {run_id}", "another worker")
        user_error(cli("run", "--resume", run_id, "--problems", 4, *FLAGS, "--db", db), "shard workers")
        user_error(cli("runs", "delete", run_id, "--yes", "--db", db), "being written")
        # a worker of the other shard is not held up by it
        other = summary(cli("run", "--shard", "1/2", *flags))
        assert (other["status"], other["run_status"], other["problems_committed"]) == (
            "committed",
            "running",
            3,
        )
        first.kill()
    finally:
        first.cleanup()
    assert fetch(db, "SELECT status FROM runs") == [("running",)]

    rerun = summary(cli("run", "--shard", "0/2", *flags))  # skips its committed batch, commits the other
    assert (rerun["status"], rerun["run_status"], rerun["problems_committed"]) == ("committed", "complete", 4)
    check_run(db, run_id, 4, CONDITIONS, PER_PROBLEM)


def test_shard_workers_through_the_store_api(tmp_path, fresh_pg_database):  # noqa: F811
    """join_run / append_problems(ordinals) / finish_shard with two workers' batches, and what is refused."""
    store = wh.open_warehouse(tmp_path / "w", catalog=f"postgres:{fresh_pg_database}")
    config, fields = {"seed": 1}, {"run_id": "sharded-x", "n_problems_planned": 3}
    problems = [sample_problem(i, n_layers=1, n_heads=1) for i in range(3)]

    def batch(i: int) -> tuple:
        return sample_batch([i], n_layers=1, n_heads=1)

    with pytest.raises(WarehouseError, match="run id"):
        store.join_run(config, (0, 2))

    run_id, committed, status = store.join_run(config, (0, 2), **fields)  # the first worker creates the run
    assert (run_id, committed, status) == ("sharded-x", set(), "running")
    with pytest.raises(WarehouseError, match="ordinals"):
        store.append_problem(run_id, *problems[0])
    for i in (0, 2):
        store.append_problems(run_id, *batch(i), ordinals=[i])
    assert store.finish_shard(run_id) == {"status": "running", "problems_committed": 2, "problems_planned": 3}

    with pytest.raises(WarehouseError, match="another configuration"):
        store.join_run({"seed": 2}, (1, 2), **fields)
    run_id, committed, status = store.join_run(config, (1, 2), **fields)
    assert status == "running" and committed == {problems[0][0]["problem_id"], problems[2][0]["problem_id"]}
    with pytest.raises(WarehouseError, match="already committed"):
        store.append_problems(run_id, *batch(2), ordinals=[2])
    # a worker that sliced the run another way commits problem 1 after this one joined: the commit's own
    # check in the catalog refuses the second copy
    other = wh.open_warehouse(tmp_path / "w")
    other.join_run(config, (0, 2), **fields)
    other.append_problems(run_id, *batch(1), ordinals=[1])
    with pytest.raises(WarehouseError, match="already committed by another worker"):
        store.append_problems(run_id, *batch(1), ordinals=[1])
    store.leave_run(run_id)
    assert other.finish_shard(run_id) == {
        "status": "complete",
        "problems_committed": 3,
        "problems_planned": 3,
    }

    assert fetch(tmp_path / "w", "SELECT ordinal FROM run_problems ORDER BY problem_id") == sorted(
        [(i,) for i in range(3)], key=lambda o: problems[o[0]][0]["problem_id"]
    )
    assert store.join_run(config, (1, 2), **fields)[2] == "complete"  # nothing to do; locks let go at once
    assert store.delete_run(run_id)["run_problems"] == 3
    assert not list((tmp_path / "w" / "locks").glob("sharded-x*"))
