"""`python cli.py bench views`: how fast every view answers over a warehouse of ~20M attention rows.

The warehouse is generated, not run: GPT-2-shaped problems (43 conditions x 12 layers x 12 heads x
42 visible (query, key) pairs = 260,064 attention rows each, softmax-like weights that sum to 1 per
query row) and result rows whose failures depend on the thought, built with numpy in whole columns
and committed through the store API in one batch per run, then finished like real runs.
Two runs share part of their problems, so `run_comparison` has pairs to join.

Every view of queries/ is timed whole: materialized and fetched as Arrow, except views with a row
per attention row (stg_attention, int_baseline_attention, v_rows: 20M wide rows are not a result
anyone reads), which are timed as a scan that pushes every row through the view (count and sum of
weight). Each query runs `repeats` times on a read-only connection (warm OS cache); the median counts.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from warehouse.store import Warehouse, open_warehouse
from warehouse.views import created_views, view_files
from warehouse.vocab import EOT, N_THOUGHTS

N_LAYERS, N_HEADS, PATCH_LAYER = 12, 12, 6
METHODS = [
    ("zero", None),
    ("gauss", 0.1),
    ("gauss", 0.5),
    ("gauss", 1.0),
    ("gauss", 2.0),
    ("random", None),
    ("shuffle", None),
]
N_CONDITIONS = 1 + N_THOUGHTS * len(METHODS)
DST = np.array([*range(N_THOUGHTS), EOT], dtype=np.int16)  # queries T0..T5, EOT
SRC = np.array([-2, -1, *range(N_THOUGHTS), EOT], dtype=np.int16)  # keys Q, BOT, T0..T5, EOT
VISIBLE = SRC[None, :] <= DST[:, None]  # causal: a query sees the keys up to itself
PAIRS = int(VISIBLE.sum())  # 42
ROWS_PER_PROBLEM = N_CONDITIONS * N_LAYERS * N_HEADS * PAIRS
TARGET_SECONDS = 1.0
ROW_LEVEL = 1_000_000  # views with more rows than this are timed as a scan (count and sum of weight)


def conditions() -> pa.Table:
    """The 43 conditions of one problem: baseline (id 0), then thought x method/sigma."""
    rows = [(0, None, None, "baseline", None)]
    for thought in range(N_THOUGHTS):
        for method, sigma in METHODS:
            rows.append((len(rows), PATCH_LAYER, thought, method, sigma))
    ids, layers, thoughts, methods, sigmas = zip(*rows, strict=True)
    return pa.table(
        {
            "condition_id": pa.array(ids, pa.int16()),
            "layer": pa.array(layers, pa.int16()),
            "thought": pa.array(thoughts, pa.int16()),
            "method": pa.array(methods),
            "sigma": pa.array(sigmas, pa.float64()),
        }
    )


def problem_rows(ids: list[str]) -> list[dict]:
    return [
        {
            "problem_id": pid,
            "question": f"generated question {pid}",
            "gold_answer": float(int(pid[3:])),
            "n_steps": 1 + int(pid[3:]) % 6,
            "source": "generated",
            "source_id": pid,
        }
        for pid in ids
    ]


def results_table(ids: list[str], rng: np.random.Generator) -> pa.Table:
    """Result rows: baseline correct 70% of the time; early thoughts break the answer more often."""
    cond = conditions()
    n, c = len(ids), cond.num_rows
    base = rng.random(n) < 0.7
    thought = np.array([-1 if t is None else t for t in cond.column("thought").to_pylist()])
    fail_p = np.where(thought < 0, 0.0, 0.5 - 0.07 * np.maximum(thought, 0))
    broke = rng.random((n, c)) < fail_p[None, :]
    correct = np.where(base[:, None], ~broke, rng.random((n, c)) < 0.05)
    correct[:, 0] = base
    kl = rng.exponential(1.0, (n, c)) * (thought >= 0)[None, :]
    problem = np.repeat(np.arange(n), c)
    return pa.table(
        {
            "problem_id": pa.DictionaryArray.from_arrays(pa.array(problem.astype(np.int32)), pa.array(ids)),
            **{
                name: pa.concat_arrays([col.combine_chunks()] * n)
                for name, col in zip(cond.column_names, cond.columns, strict=True)
            },
            "correct": correct.reshape(-1),
            "flipped": (base[:, None] & ~correct).reshape(-1),
            "fixed": (~base[:, None] & correct).reshape(-1),
            "kl_first": kl.reshape(-1),
            "kl_answer": (2 * kl).reshape(-1),
            "kl_max": (3 * kl).reshape(-1),
            "logp_gold": (-rng.exponential(1.0, (n, c)) - 3 * kl).reshape(-1),
            "disruption": (rng.random((n, c)) * (thought >= 0)[None, :]).reshape(-1),
        }
    )


def attention_table(ids: list[str], rng: np.random.Generator) -> pa.Table:
    """Every condition's attention rows, each query row normalized to sum to 1 over its visible keys."""
    n_rows = len(ids) * N_CONDITIONS
    raw = rng.random((n_rows, N_LAYERS, N_HEADS, len(DST), len(SRC)), dtype=np.float32) ** 4
    raw *= VISIBLE
    raw /= raw.sum(-1, keepdims=True)
    weights = raw[..., VISIBLE].reshape(-1)  # [rows, layers, heads, 42] flattened
    del raw
    dst = np.broadcast_to(DST[:, None], VISIBLE.shape)[VISIBLE]
    src = np.broadcast_to(SRC[None, :], VISIBLE.shape)[VISIBLE]
    per_condition = N_LAYERS * N_HEADS * PAIRS
    problem = np.repeat(np.arange(len(ids), dtype=np.int32), N_CONDITIONS * per_condition)
    return pa.table(
        {
            "problem_id": pa.DictionaryArray.from_arrays(pa.array(problem), pa.array(ids)),
            "condition_id": np.tile(
                np.repeat(np.arange(N_CONDITIONS, dtype=np.int16), per_condition), len(ids)
            ),
            "layer": np.tile(np.repeat(np.arange(N_LAYERS, dtype=np.int16), N_HEADS * PAIRS), n_rows),
            "head": np.tile(np.repeat(np.arange(N_HEADS, dtype=np.int16), PAIRS), n_rows * N_LAYERS),
            "dst": np.tile(dst, n_rows * N_LAYERS * N_HEADS),
            "src": np.tile(src, n_rows * N_LAYERS * N_HEADS),
            "weight": weights,
        }
    )


def build_warehouse(db: str | Path, attention_rows: int = 20_000_000, seed: int = 0) -> dict:
    """Two finished runs with `attention_rows` attention rows in all; they share a third of their problems."""
    store = open_warehouse(db, durable=False)
    problems = max(2, round(attention_rows / ROWS_PER_PROBLEM))
    half = problems // 2
    shared = max(1, half // 3)
    ids = [f"gen{i:013d}" for i in range(problems)]
    runs = []
    for r, chosen in enumerate([ids[:half], ids[half - shared : problems - shared]]):
        rng = np.random.default_rng([seed, r])
        run = store.begin_run(
            {"bench": "views", "part": r},
            model_name="bench",
            run_id=f"bench-views-{r}",
            n_layers=N_LAYERS,
            n_heads=N_HEADS,
            patch_layers=[PATCH_LAYER],
        )
        store.append_problems(
            run, problem_rows(chosen), results_table(chosen, rng), attention_table(chosen, rng)
        )
        store.finish_run(run)
        runs.append(run)
    with store.reader() as con:
        total = con.execute("SELECT count(*) FROM attention").fetchall()[0][0]
    return {"runs": runs, "problems": problems, "attention_rows": total, "store": store}


def query_views() -> list[str]:
    """The views the query layer defines (queries/<layer>/*.sql), in the order they apply."""
    return [view for path in view_files() for view in created_views(path.read_text())]


def view_query(con: duckdb.DuckDBPyConnection, view: str) -> tuple[str, str]:
    """(SQL, how) to time a view: materialized whole, or scanned when it has a row per attention row."""
    rows = con.execute(f"SELECT count(*) FROM {view}").fetchall()[0][0]
    if rows > ROW_LEVEL:
        return f"SELECT count(*), sum(weight) FROM {view}", "scan"
    return f"SELECT * FROM {view}", "all rows"


def time_views(store: Warehouse, repeats: int = 3) -> list[dict]:
    rows = []
    with store.reader() as con:
        con.execute("SET enable_progress_bar = false")
        for view in query_views():
            sql, how = view_query(con, view)
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                result = con.sql(sql).to_arrow_table()
                seconds.append(time.perf_counter() - start)
            rows.append(
                {
                    "view": view,
                    "timed": how,
                    "rows": result.num_rows if how == "all rows" else result.column(0)[0].as_py(),
                    "median_s": round(statistics.median(seconds), 4),
                    "max_s": round(max(seconds), 4),
                }
            )
    return rows


def run_bench(
    attention_rows: int = 20_000_000, repeats: int = 3, db: str | None = None, seed: int = 0
) -> dict:
    """Build the warehouse (in a temporary directory unless `db` is given), then time every view."""
    with tempfile.TemporaryDirectory(prefix="codi-bench-views-") as tmp:
        start = time.perf_counter()
        built = build_warehouse(db or Path(tmp) / "bench", attention_rows, seed)
        build_s = time.perf_counter() - start
        timings = time_views(built["store"], repeats)
    slowest = max((t["median_s"] for t in timings), default=0.0)
    return {
        "attention_rows": built["attention_rows"],
        "problems": built["problems"],
        "runs": built["runs"],
        "build_seconds": round(build_s, 2),
        "repeats": repeats,
        "views": timings,
        "target_seconds": TARGET_SECONDS,
        "meets_target": slowest < TARGET_SECONDS,
    }


def summary_lines(report: dict) -> list[str]:
    head = (
        f"{report['attention_rows']:,} attention rows, {report['problems']} problems in "
        f"{len(report['runs'])} runs (built in {report['build_seconds']} s); median of {report['repeats']}"
    )
    lines = [head]
    width = max((len(t["view"]) for t in report["views"]), default=4)
    lines.append(f"{'view':<{width}} {'timed':<8} {'rows':>11} {'median s':>9} {'max s':>7}")
    for t in report["views"]:
        lines.append(
            f"{t['view']:<{width}} {t['timed']:<8} {t['rows']:>11,} {t['median_s']:>9.3f} {t['max_s']:>7.3f}"
        )
    verdict = "answers" if report["meets_target"] else "does NOT answer"
    lines.append(f"every view {verdict} in under {report['target_seconds']:g} s")
    return lines
