"""Any DuckDB client can read the views (SPEC 7): a bare `duckdb` in a separate, isolated Python process
(no project code importable), started in another directory, attaches a COPY of the warehouse folder with
the two lines the README documents and selects from every view. Offline, it loads the extensions from
their files; online, DuckDB installs them itself."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import views_data as vd

from warehouse.lake import extension_file
from warehouse.views import LAYERS, QUERIES_DIR, created_views, view_files

pytestmark = pytest.mark.slow  # end to end: `python -m pytest -m "not slow"` skips it

BARE = """
import json, sys
import duckdb
folder, ducklake, sqlite = sys.argv[1:4]
con = duckdb.connect()
con.execute(f"LOAD '{ducklake}'")
con.execute(f"LOAD '{sqlite}'")
con.execute(f"ATTACH 'ducklake:sqlite:{folder}/catalog.sqlite' AS wh "
            f"(DATA_PATH '{folder}/data/', OVERRIDE_DATA_PATH true, READ_ONLY)")
con.execute("USE wh")
names = [r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal "
                                   "AND NOT temporary AND schema_name = 'main' "
                                   "ORDER BY view_name").fetchall()]
counts = {name: con.execute(f"SELECT count(*) FROM (SELECT * FROM {name})").fetchone()[0] for name in names}
top = con.execute("SELECT layer, head, functional_type FROM head_metrics "
                  "WHERE rank = 1 AND run_id = 'run-a'").fetchall()
print(json.dumps({"counts": counts, "top": top}))
"""


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return vd.build(tmp_path_factory.mktemp("plain") / "w")


def test_bare_duckdb_selects_from_every_view(db, tmp_path):
    db = Path(db)
    copy = tmp_path / "elsewhere" / "copied"
    shutil.copytree(db, copy)  # a copied folder: nothing in it may point back at the original
    shutil.rmtree(db / "data")
    (db / "data").mkdir()
    exts = [str(extension_file(name)) for name in ("ducklake", "sqlite")]
    done = subprocess.run(
        [sys.executable, "-I", "-c", BARE, str(copy), *exts],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        check=False,
    )
    shutil.rmtree(db)
    shutil.copytree(copy, db)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    defined = {v for path in view_files() for v in created_views(path.read_text())}
    assert len(defined) >= 20 and defined <= set(out["counts"])
    for name in defined:
        assert out["counts"][name] == vd.rows(db, f"SELECT count(*) AS n FROM {name}")[0]["n"], name
    for name in (
        "token_importance",
        "method_comparison",
        "importance_matrix",
        "attention_importance",
        "layer_correlation",
        "difficulty_strata",
        "flow_matrix",
        "hub_scores",
        "sequential_flow",
        "self_attention",
        "skip_connections",
        "head_metrics",
        "run_comparison",
        "model_comparison",
        "v_rows",
    ):
        assert out["counts"][name] > 0, name
    assert out["top"] == [[0, 0, "Multi-Purpose"]]


def test_every_query_file_describes_itself_and_creates_views_in_layers():
    """queries/ is SQL only, one folder per layer: macros, staging (stg_*), intermediate (int_*, in name
    order), marts (one view per file, named after it)."""
    files = view_files(QUERIES_DIR)
    assert {p.parent.name for p in files} == set(LAYERS)
    assert not list(QUERIES_DIR.glob("*.sql"))  # nothing outside the layers
    python = {p.relative_to(QUERIES_DIR).as_posix() for p in QUERIES_DIR.rglob("*.py")}
    assert python <= {"__init__.py"}, python  # the package file only (the wheel ships the SQL as its data)
    order = [p.parent.name for p in files]
    assert order == sorted(order, key=LAYERS.index)  # applied layer by layer
    prefixes = {"staging": "stg_", "intermediate": "int_"}
    for path in files:
        sql = path.read_text()
        assert sql.startswith("-- "), path.name
        views = created_views(sql)
        layer = path.parent.name
        if layer == "macros":
            assert not views, path.name
        for view in views:
            assert view.startswith(prefixes.get(layer, "")), (path.name, view)
        if layer == "marts":
            assert views == [path.stem], "one analysis view per file, named after it"
    marts = {path.stem for path in files if path.parent.name == "marts"}
    for path in files:
        if path.parent.name == "marts":  # marts read int_* and stg_*, never each other: their order is free
            code = re.sub(r"--[^\n]*", "", path.read_text())
            read = set(re.findall(r"\b(?:FROM|JOIN)\s+(\w+)", code, flags=re.IGNORECASE))
            assert not read & (marts - {path.stem}), (path.name, read & marts)
