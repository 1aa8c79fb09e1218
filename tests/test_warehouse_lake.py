"""The warehouse is one folder with an identity, and nothing but `runs delete` ever removes data.

Each test here reproduces a way the earlier layer (a DuckDB file plus home-made Parquet batch
directories) lost or mixed up runs, on real files: a corrupt footer, a truncated or missing data file,
two warehouses side by side, a folder without its catalog, a copied folder, duplicate keys.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from faults_helpers import cli, user_error

import warehouse as wh
from warehouse.bench import sample_problem
from warehouse.store import duplicate_key

LAYERS, HEADS = 2, 2


def _fill(db, name: str, problems: int = 2, finish: bool = True) -> str:
    store = wh.open_warehouse(db, durable=False)
    run = store.begin_run({"name": name}, run_id=name, model_name="m", n_layers=LAYERS, n_heads=HEADS)
    for i in range(problems):
        row, results, attention = sample_problem(i, LAYERS, HEADS, seed=hash(name) % 1000)
        store.append_problem(run, row, results, attention)
    if finish:
        store.finish_run(run)
    store.close()
    return run


def _attention_file(db, run_id: str) -> Path:
    store = wh.open_warehouse(db, read_only=True)
    files = [
        Path(p) for table, p, _s, r in store._data_files([run_id]) if table == "attention" and r == run_id
    ]
    store.close()
    return files[0]


def _counts(db, run_id: str) -> tuple:
    with wh.open_warehouse(db, read_only=True).reader() as con:
        return con.execute(
            "SELECT (SELECT count(*) FROM results WHERE run_id = $1), "
            "(SELECT count(*) FROM run_problems WHERE run_id = $1)",
            [run_id],
        ).fetchall()[0]


@pytest.mark.parametrize("damage", ["footer", "truncated", "missing"])
def test_a_damaged_file_is_reported_never_deleted(tmp_path, damage):
    db = tmp_path / "w"
    bad, good = _fill(db, "run-bad"), _fill(db, "run-good")
    target = _attention_file(db, bad)
    original = target.read_bytes()
    if damage == "footer":  # 8 bytes of the footer: bit rot, a bad copy
        target.write_bytes(original[:-16] + b"\xff" * 8 + original[-8:])
    elif damage == "truncated":
        target.write_bytes(original[: len(original) // 2])
    else:
        target.unlink()
    files_before = sorted(p.name for p in (db / "data").rglob("*.parquet"))

    for args in (
        ["views"],
        ["runs"],
        ["runs", "show", bad],
        ["stats", "--run", good, "--boot", 100, "--perm", 100],
    ):
        cli(*args, "--db", db)  # commands that open for writing or read: none may delete anything
    assert sorted(p.name for p in (db / "data").rglob("*.parquet")) == files_before

    runs = {r["run_id"]: r for r in wh.open_warehouse(db, read_only=True).list_runs()}
    assert runs[bad]["status"] == "damaged" and runs[bad]["damaged_files"] == 1
    assert runs[good]["status"] == "complete" and runs[good]["damaged_files"] == 0
    shown = cli("runs", "show", bad, "--db", db)
    assert shown.exit_code == 0 and "damaged" in shown.stdout and target.name in shown.stdout

    line = user_error(cli("stats", "--run", bad, "--db", db), f"run {bad}", target.name, "runs delete")
    assert "other runs are unaffected" in line
    user_error(cli("charts", "--run", bad, "--out", tmp_path / "charts", "--db", db), f"run {bad}")
    assert cli("stats", "--run", good, "--boot", 100, "--perm", 100, "--db", db).exit_code == 0
    assert _counts(db, good) == (2 * 43, 2)

    # A query that touches the bad file names it and its run, in one line.
    line = user_error(cli("query", "SELECT sum(weight) FROM attention", "--db", db), f"run {bad}")
    assert target.name in line

    # Restoring the file restores the run; deleting the run is the way to drop it.
    target.write_bytes(original)
    assert {r["run_id"]: r["status"] for r in wh.open_warehouse(db, read_only=True).list_runs()}[
        bad
    ] == "complete"


def test_runs_delete_is_the_only_thing_that_removes_rows(tmp_path):
    db = tmp_path / "w"
    keep, drop = _fill(db, "keep"), _fill(db, "drop")
    out = cli("runs", "delete", drop, "--yes", "--db", db)
    assert out.exit_code == 0, out.stderr
    assert _counts(db, drop) == (0, 0) and _counts(db, keep) == (86, 2)
    done = wh.open_warehouse(db).vacuum(older_than_days=0)  # reclaims the deleted run's files
    assert done["files_removed"] >= 3
    assert _counts(db, keep) == (86, 2)
    assert wh.open_warehouse(db, read_only=True).damaged_files() == {}


def test_a_folder_has_an_identity_and_never_adopts_foreign_files(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _fill(a, "run-a")
    _fill(b, "run-b")
    ida = json.loads((a / "codi-warehouse.json").read_text())["warehouse_id"]
    idb = json.loads((b / "codi-warehouse.json").read_text())["warehouse_id"]
    assert ida != idb
    # A data file of A dropped into B's folder is not read by B: only catalog-listed files are.
    shutil.copy(_attention_file(a, "run-a"), b / "data" / "main" / "attention" / "stray.parquet")
    with wh.open_warehouse(b, read_only=True).reader() as con:
        assert con.execute("SELECT DISTINCT run_id FROM attention").fetchall() == [("run-b",)]

    # A's catalog under B's identity: refused, in one line, and nothing is changed.
    mixed = tmp_path / "mixed"
    shutil.copytree(b, mixed)
    shutil.copy(a / "catalog.sqlite", mixed / "catalog.sqlite")
    user_error(cli("runs", "--db", mixed), "belongs to another warehouse")
    user_error(cli("views", "--db", mixed), "belongs to another warehouse")

    # Files without their catalog, or without the identity file, are refused, never adopted.
    lost = tmp_path / "lost"
    shutil.copytree(a, lost)
    (lost / "catalog.sqlite").unlink()
    user_error(cli("views", "--db", lost), "lost its catalog")
    (lost / "codi-warehouse.json").unlink()
    before = sorted(str(p.relative_to(lost)) for p in lost.rglob("*"))
    user_error(cli("run", "--problems", 1, "--methods", "zero", "--db", lost), "not a codi warehouse")
    assert sorted(str(p.relative_to(lost)) for p in lost.rglob("*")) == before  # nothing created or removed
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    user_error(cli("views", "--db", stranger), "not a codi warehouse")
    assert [p.name for p in stranger.iterdir()] == ["notes.txt"]


def test_a_file_or_an_old_single_file_warehouse_is_refused(tmp_path):
    plain = tmp_path / "w.csv"
    plain.write_text("a,b\n1,2\n")
    user_error(cli("runs", "--db", plain), "not a warehouse folder")
    assert plain.read_text() == "a,b\n1,2\n"
    old = tmp_path / "old.duckdb"
    duckdb.connect(str(old)).close()
    user_error(cli("runs", "--db", old), "old layout", "upgrade")


def test_a_moved_folder_works_from_any_directory(tmp_path, monkeypatch):
    db = tmp_path / "w"
    _fill(db, "run-a")
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    shutil.move(db, moved)
    monkeypatch.chdir(moved.parent)
    assert _counts("renamed", "run-a") == (86, 2)  # a relative path, from another directory
    out = cli("query", "SELECT count(*) AS n FROM attention", "--format", "csv", "--db", "renamed")
    assert out.exit_code == 0 and out.stdout.split() == ["n", str(2 * 43 * LAYERS * HEADS * 35)]
    _fill("renamed", "run-b")  # and it takes new runs where it now is
    assert not (tmp_path / "w").exists()


def test_duplicate_keys_are_refused_at_commit(tmp_path):
    db = tmp_path / "w"
    store = wh.open_warehouse(db, durable=False)
    run = store.begin_run({}, run_id="dups", model_name="m")
    row, results, attention = sample_problem(0, LAYERS, HEADS)
    doubled = pa.concat_tables([attention, attention.slice(3, 1)])
    with pytest.raises(wh.WarehouseError, match="repeats the key .*condition_id=.*layer="):
        store.append_problem(run, row, results, doubled)
    with pytest.raises(wh.WarehouseError, match="repeats the key"):
        store.append_problem(run, row, pa.concat_tables([results, results.slice(0, 1)]), attention)
    store.append_problem(run, row, results, attention)
    with pytest.raises(wh.WarehouseError, match="already committed"):
        store.append_problem(run, row, results, attention)
    fresh = wh.open_warehouse(db, durable=False)  # another handle on the same run, same process
    with pytest.raises(wh.WarehouseError, match="already committed"):
        fresh.append_problem(run, row, results, attention)
    assert _counts(db, run) == (43, 1)


def test_duplicate_key_check_agrees_with_a_plain_count():
    _row, results, attention = sample_problem(0, 3, 4)
    results = results.append_column("problem_id", pa.array(["p"] * results.num_rows))
    assert (
        duplicate_key(
            attention.append_column("problem_id", pa.array(["p"] * attention.num_rows)), "attention"
        )
        is None
    )
    assert duplicate_key(results, "results") is None
    assert (
        duplicate_key(pa.concat_tables([results, results.slice(5, 1)]), "results")
        == "problem_id=p, condition_id=5"
    )
    for i in (0, 17, attention.num_rows - 1):
        doubled = pa.concat_tables([attention, attention.slice(i, 1)])
        found = duplicate_key(
            doubled.append_column("problem_id", pa.array(["p"] * doubled.num_rows)), "attention"
        )
        want = attention.slice(i, 1).to_pylist()[0]
        assert (
            found == f"problem_id=p, condition_id={want['condition_id']}, layer={want['layer']}, "
            f"head={want['head']}, dst={want['dst']}, src={want['src']}"
        )


def test_repeated_methods_and_sigmas_are_one_condition(tmp_path):
    db = tmp_path / "w"
    out = cli(
        "run",
        "--problems",
        1,
        "--methods",
        "zero,zero,gauss",
        "--sigmas",
        "0.5,0.50,5e-1",
        "--attention",
        "none",
        "--db",
        db,
    )
    assert out.exit_code == 0, out.stderr
    assert "note: --methods: zero repeat" in out.stderr and "note: --sigmas: 0.50, 5e-1 repeat" in out.stderr
    with wh.open_warehouse(db, read_only=True).reader() as con:
        assert con.execute(
            "SELECT count(*), count(DISTINCT (method, thought, sigma)) FROM results "
            "WHERE method <> 'baseline'"
        ).fetchall() == [(12, 12)]
        assert con.execute("SELECT methods, sigmas FROM runs").fetchall() == [(["zero", "gauss"], [0.5])]
