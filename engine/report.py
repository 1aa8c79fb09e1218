"""The importance-by-thought table printed at the end of `run` (read back from the warehouse)."""
from __future__ import annotations

from engine.positions import N_THOUGHTS

IMPORTANCE_SQL = """
WITH base AS (
    SELECT problem_id, correct AS base_correct FROM results WHERE run_id = ? AND method = 'baseline'
)
SELECT r.thought,
       count(*) FILTER (WHERE b.base_correct) AS n,
       count(*) FILTER (WHERE r.flipped) AS failures,
       avg(r.kl_answer) AS mean_kl_answer
FROM results r JOIN base b USING (problem_id)
WHERE r.run_id = ? AND r.method <> 'baseline'
GROUP BY r.thought ORDER BY r.thought
"""


def importance_by_thought(db: str, run_id: str) -> dict:
    """Failure rate among baseline-correct problems per thought (all methods pooled), and mean KL at the
    answer number (KL at EOT sits on the template token "The" and says little)."""
    from warehouse.store import open_warehouse

    store = open_warehouse(db, read_only=True)
    with store.reader() as con:
        rows = con.execute(IMPORTANCE_SQL, [run_id, run_id]).fetchall()
        accuracy = con.execute("SELECT avg(correct::INT) FROM results WHERE run_id = ? AND method = 'baseline'",
                               [run_id]).fetchone()[0]
    table = [{"thought": f"T{t}", "n": n, "failures": f, "failure_rate": (f / n) if n else None,
              "mean_kl_answer": kl} for t, n, f, kl in rows if t is not None and 0 <= t < N_THOUGHTS]
    lines = [f"baseline accuracy: {accuracy:.1%}" if accuracy is not None else "baseline accuracy: n/a",
             f"{'thought':>7} {'n':>6} {'failures':>8} {'rate':>7} {'KL@answer':>9}"]
    for row in table:
        rate = "n/a" if row["failure_rate"] is None else f"{row['failure_rate']:.1%}"
        kl = "n/a" if row["mean_kl_answer"] is None else f"{row['mean_kl_answer']:.3f}"
        lines.append(f"{row['thought']:>7} {row['n']:>6} {row['failures']:>8} {rate:>7} {kl:>9}")
    return {"baseline_accuracy": accuracy, "rows": table, "text": "\n".join(lines)}
