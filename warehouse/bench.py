"""`python cli.py bench warehouse`: how fast attention rows go in, and come back out.

Rows have GPT-2's shape (SPEC 5): 43 conditions x 12 layers x 12 heads x 35 (query, key) pairs =
216,720 attention rows per problem, plus 43 result rows. Frames are built before the clock starts,
as the engine hands over finished batches; the clock covers conforming, writing and committing.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from warehouse.frames import constant
from warehouse.store import open_warehouse

TARGET_ROWS_PER_S = 5_000_000
N_CONDITIONS, N_LAYERS, N_HEADS = 43, 12, 12


def query_key_pairs() -> list[tuple[int, int]]:
    """(dst, src) for queries T0..T5 and EOT over causally visible earlier keys: 35 pairs."""
    pairs = []
    for dst in range(7):
        pairs += [(dst, src) for src in range(-2, dst)]
    return pairs


def attention_table(rng: np.random.Generator, n_layers: int = N_LAYERS, n_heads: int = N_HEADS) -> pa.Table:
    """One problem's attention rows of the real schema, with random weights."""
    pairs = np.array(query_key_pairs(), dtype=np.int16)
    n_pairs = len(pairs)
    grid = np.indices((N_CONDITIONS, n_layers, n_heads, n_pairs), dtype=np.int16).reshape(4, -1)
    return pa.table(
        {
            "condition_id": grid[0],
            "layer": grid[1],
            "head": grid[2],
            "dst": pairs[grid[3], 0],
            "src": pairs[grid[3], 1],
            "weight": rng.random(grid.shape[1], dtype=np.float32),
        }
    )


def results_table(rng: np.random.Generator | None = None) -> pa.Table:
    """One problem's 43 result rows: the baseline, then thought x method conditions."""
    rng = rng or np.random.default_rng(0)
    methods = ["zero", "gauss", "gauss", "gauss", "gauss", "random", "shuffle"]
    sigmas = [None, 0.1, 0.5, 1.0, 2.0, None, None]
    n = N_CONDITIONS - 1
    return pa.table(
        {
            "condition_id": np.arange(N_CONDITIONS, dtype=np.int16),
            "layer": pa.array([None] + [6] * n, pa.int16()),
            "thought": pa.array([None] + [k // 7 for k in range(n)], pa.int16()),
            "method": ["baseline"] + [methods[k % 7] for k in range(n)],
            "sigma": pa.array([None] + [sigmas[k % 7] for k in range(n)], pa.float64()),
            "correct": rng.random(N_CONDITIONS) < 0.7,
            "kl_first": np.concatenate([[0.0], rng.random(n)]),
        }
    )


def sample_problem(index: int, n_layers: int = N_LAYERS, n_heads: int = N_HEADS, seed: int = 0):
    """(problem row, results, attention) of one generated problem, for tests and benchmarks."""
    rng = np.random.default_rng([seed, index])
    row = {
        "problem_id": f"gen{index:013d}",
        "question": f"generated question {index}",
        "gold_answer": float(index),
        "n_steps": 1 + index % 6,
        "source": "generated",
        "source_id": str(index),
    }
    return row, results_table(rng), attention_table(rng, n_layers, n_heads)


def sample_batch(indices, n_layers: int = N_LAYERS, n_heads: int = N_HEADS, seed: int = 0):
    """(problem rows, results, attention) of several generated problems as one batch for
    `append_problems` or a shard part: the fact tables carry their problem_id column."""
    problems, results, attention = [], [], []
    for i in indices:
        row, res, att = sample_problem(i, n_layers, n_heads, seed)
        problems.append(row)
        results.append(_with_problem(res, row["problem_id"]))
        attention.append(_with_problem(att, row["problem_id"]))
    return problems, pa.concat_tables(results), pa.concat_tables(attention)


def _rate(rows: int, seconds: float) -> dict:
    return {"rows": rows, "seconds": round(seconds, 4), "rows_per_s": round(rows / seconds)}


def _with_problem(table: pa.Table, problem_id: str) -> pa.Table:
    return table.append_column("problem_id", constant(problem_id, table.num_rows))


CHUNK = 8  # problems per commit in `run` (its --batch-size default)
# The same benchmark on this 2-core machine, idle, with the layer DuckLake replaced (a DuckDB file plus
# home-made Parquet batch directories; 40 problems, fsync on). Printed beside today's figures.
BEFORE = {
    "problem_transactions": 10.2e6,
    "chunk_transactions": None,
    "run_batch": 11.5e6,
    "scan_attention": 180e6,
}


def run_bench(problems: int = 40, db: str | None = None, durable: bool = True, seed: int = 0) -> dict:
    """Time problem-sized commits, run-sized (8-problem) commits, one run-sized batch, and a full scan."""
    with tempfile.TemporaryDirectory(prefix="codi-bench-") as tmp:
        store = open_warehouse(db or Path(tmp) / "bench", durable=durable)
        rng = np.random.default_rng(seed)
        attention = [attention_table(rng) for _ in range(problems)]
        results = results_table()
        per_problem = attention[0].num_rows
        timings = {}

        def batch(prefix: str, lo: int, hi: int):
            ids = [f"{prefix}{i:011d}" for i in range(lo, hi)]
            rows = [
                {"problem_id": pid, "question": f"bench question {pid}", "gold_answer": 1.0} for pid in ids
            ]
            att = pa.concat_tables(
                [_with_problem(attention[i], pid) for i, pid in zip(range(lo, hi), ids, strict=True)]
            )
            res = pa.concat_tables([_with_problem(results, pid) for pid in ids])
            return rows, res, att

        run_a = store.begin_run({"bench": "problem transactions"}, model_name="bench")
        prepared = [batch("a", i, i + 1) for i in range(problems)]
        start = time.perf_counter()
        for rows, res, att in prepared:
            store.append_problems(run_a, rows, res, att)
        timings["problem_transactions"] = time.perf_counter() - start
        store.finish_run(run_a)

        run_c = store.begin_run({"bench": "chunk transactions"}, model_name="bench")
        prepared = [batch("c", i, min(i + CHUNK, problems)) for i in range(0, problems, CHUNK)]
        start = time.perf_counter()
        for rows, res, att in prepared:
            store.append_problems(run_c, rows, res, att)
        timings["chunk_transactions"] = time.perf_counter() - start
        store.finish_run(run_c)

        run_b = store.begin_run({"bench": "run batch"}, model_name="bench")
        rows, res, att = batch("b", 0, problems)
        start = time.perf_counter()
        store.append_problems(run_b, rows, res, att)
        timings["run_batch"] = time.perf_counter() - start
        store.finish_run(run_b)

        start = time.perf_counter()
        with store.reader() as con:
            scanned = con.execute("SELECT count(*), avg(weight) FROM attention").fetchall()[0][0]
        scan_s = time.perf_counter() - start
        disk = sum(f.stat().st_size for f in Path(store.path).rglob("*") if f.is_file())
        store.close()

    total = per_problem * problems
    report = {
        "engine": "DuckLake (SQLite catalog)",
        "problems": problems,
        "attention_rows_per_problem": per_problem,
        "durable": durable,
        **{key: _rate(total, seconds) for key, seconds in timings.items()},
        "scan_attention": _rate(scanned, scan_s),
        "disk_bytes": disk,
        "before": BEFORE,
        "target_rows_per_s": TARGET_ROWS_PER_S,
    }
    report["meets_target"] = (
        min(report["chunk_transactions"]["rows_per_s"], report["run_batch"]["rows_per_s"])
        >= TARGET_ROWS_PER_S
    )
    return report


def summary_lines(report: dict) -> list[str]:
    head = f"{report['problems']} problems x {report['attention_rows_per_problem']:,} attention rows"
    lines = [
        f"{head} (durable={report['durable']}, {report['engine']})",
        f"{'':22s} {'now':>13s}  {'before (DuckDB file + shards)':>30s}",
    ]
    for key in ("problem_transactions", "chunk_transactions", "run_batch", "scan_attention"):
        r = report[key]
        before = report["before"].get(key)
        was = f"{before / 1e6:7.2f} M rows/s" if before else "      -"
        lines.append(
            f"{key:22s} {r['rows_per_s'] / 1e6:7.2f} M rows/s  {was:>22s}   "
            f"({r['rows']:,} rows in {r['seconds']:.3f} s)"
        )
    lines.append(f"disk: {report['disk_bytes'] / 2**20:.0f} MiB for {3 * report['problems']} problems")
    verdict = "meets" if report["meets_target"] else "MISSES"
    lines.append(
        f"ingest in {CHUNK}-problem commits (as `run` does) and in one batch {verdict} the target of "
        f"{report['target_rows_per_s'] / 1e6:.0f} M rows/s"
    )
    return lines
