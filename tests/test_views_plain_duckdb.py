"""Any DuckDB client can read the views (SPEC 7): a bare `duckdb` in a separate, isolated Python process
(no project code importable) opens the warehouse file and selects from every view."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import views_data as vd

from warehouse.views import QUERIES_DIR, created_views, view_files

BARE = """
import json, sys
import duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
names = [r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal AND NOT temporary "
                                   "AND schema_name = 'main' ORDER BY view_name").fetchall()]
counts = {name: con.execute(f"SELECT count(*) FROM (SELECT * FROM {name})").fetchone()[0] for name in names}
top = con.execute("SELECT layer, head, functional_type FROM head_metrics WHERE rank = 1 AND run_id = 'run-a'").fetchall()
print(json.dumps({"counts": counts, "top": top}))
"""


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return vd.build(tmp_path_factory.mktemp("plain") / "w.duckdb")


def test_bare_duckdb_selects_from_every_view(db):
    done = subprocess.run([sys.executable, "-I", "-c", BARE, db], capture_output=True, text=True, timeout=60,
                          cwd="/", check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    defined = {v for path in view_files() for v in created_views(path.read_text())}
    assert len(defined) >= 20 and defined <= set(out["counts"])
    for name in defined:
        assert out["counts"][name] == vd.rows(db, f"SELECT count(*) AS n FROM {name}")[0]["n"], name
    for name in ("token_importance", "method_comparison", "importance_matrix", "attention_importance",
                 "layer_correlation", "difficulty_strata", "flow_matrix", "hub_scores", "sequential_flow",
                 "self_attention", "skip_connections", "head_metrics", "run_comparison", "model_comparison", "v_rows"):
        assert out["counts"][name] > 0, name
    assert out["top"] == [[0, 0, "Multi-Purpose"]]


def test_every_query_file_describes_itself_and_creates_views_in_layers():
    files = view_files(QUERIES_DIR)
    layers = {"10": "stg_", "20": "int_"}
    for path in files:
        sql = path.read_text()
        assert sql.startswith("-- "), path.name
        for view in created_views(sql):
            prefix = layers.get(path.name[:2])
            assert prefix is None or view.startswith(prefix), (path.name, view)
            if path.name[:2] == "30":
                assert path.stem == f"30_{view}", "one analysis view per file, named after it"
