"""Mutation testing of the SQL macros and views (docs/MUTATION.md); mutmut mutates Python only.

    python tests/mutate_sql.py                     # every mutation below (~8 min on 2 busy cores)
    python tests/mutate_sql.py --skip-equivalent   # not the 5 known to be equivalent (~4 min)
    python tests/mutate_sql.py m03 v01             # some of them, by id
    python tests/mutate_sql.py --list              # the mutations, run nothing

Each mutation is one textual change to one file of a temporary copy of queries/ (queries/ itself is never
written). The view and stats tests then run against the copy (warehouse.views reads CODI_QUERIES_DIR),
stopping at the first failure: a failure kills the mutation, a full pass means it survived. Before the
mutations, the tests must pass on an unchanged copy and must fail on a broken one (the canary: proof
that they read the copy, not queries/). A mutation with an `equivalent` note is expected to survive (no
test can tell it from the original; docs/MUTATION.md); the score leaves those out. Any other survivor is
printed as NOT EXPLAINED: kill it with a test, or explain it here and in docs/MUTATION.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUERIES = ROOT / "queries"

# The tests that read the macros and views, in two stages; pytest -x stops at the first failure. Stage 1 is
# torch-free and runs without tests/conftest.py (3 s to start, not 8); stage 2 runs only for what stage 1 left
# alive, so a mutation survives only when every one of these tests passes.
STAGE1 = [
    "tests/test_mutation_kills_sql.py",
    "tests/test_views_outcomes.py",
    "tests/test_views_attention.py",
    "tests/test_stats.py",
    "tests/test_views_families_combo.py",
    "tests/test_views_readouts.py",
]
STAGE2 = [
    "tests/test_exact_values.py::test_wilson_interval",
    "tests/test_exact_values.py::test_difficulty_strata_boundaries",
    "tests/test_exact_values.py::test_hub_normalization_and_head_composite",
    "tests/test_views_legacy.py",  # the slow one (~70 s)
]


@dataclass(frozen=True)
class Mutation:
    id: str
    file: str
    old: str
    new: str
    what: str
    nth: int | None = 1  # which occurrence of `old` (1-based); None: every occurrence
    equivalent: str = ""  # why no test can kill it (docs/MUTATION.md); such a mutation is expected to survive

    def apply(self, folder: Path) -> None:
        path = folder / self.file
        text = path.read_text()
        count = text.count(self.old)
        if count == 0 or (self.nth is not None and count < self.nth):
            raise ValueError(
                f"{self.id}: {self.old!r} occurs {count} time(s) in {self.file}; the SQL changed, "
                "update the mutation"
            )
        if self.nth is None:
            text = text.replace(self.old, self.new)
        else:
            at = -1
            for _ in range(self.nth):
                at = text.index(self.old, at + 1)
            text = text[:at] + self.new + text[at + len(self.old) :]
        path.write_text(text)


M = "macros/macros.sql"  # paths relative to the queries folder
OUTCOMES = "intermediate/20_int_outcomes.sql"
Z, Z2 = "1.959963984540054", "3.841458820694124"
CANARY = Mutation(
    "canary", M, "MACRO wilson_low(k, n)", "MACRO wilson_lo(k, n)", "wilson_low undefined: views fail"
)
MUTATIONS = [
    # --- macros/macros.sql: Wilson bounds ------------------------------------------------------------
    Mutation("m01", M, f"- {Z} * sqrt", "- 1.6448536269514722 * sqrt", "wilson_low: z of a 90% interval"),
    Mutation("m02", M, f"+ {Z} * sqrt", "+ 2.5758293035489004 * sqrt", "wilson_high: z of a 99% interval"),
    Mutation("m03", M, f"- {Z} * sqrt", f"+ {Z} * sqrt", "wilson_low: centre + half (sign swapped)"),
    Mutation("m04", M, f"+ {Z} * sqrt", f"- {Z} * sqrt", "wilson_high: centre - half (sign swapped)"),
    Mutation(
        "m05", M, f"+ {Z2} / (2.0 * n)", f"+ {Z} / (2.0 * n)", "wilson_low: centre shift z/2n, not z^2/2n"
    ),
    Mutation(
        "m06",
        M,
        f"(k::DOUBLE / n + {Z2} / (2.0 * n)",
        "(k::DOUBLE / n",
        "wilson_high: centre k/n (Wald)",
        nth=2,
    ),
    Mutation(
        "m07",
        M,
        "(1 - k::DOUBLE / n) / n +",
        f"(1 - k::DOUBLE / n) / (n + {Z2}) +",
        "wilson_low: variance over n + z^2, not n",
    ),
    Mutation("m08", M, f"/ (1 + {Z2} / n))", ")", "wilson_high: no 1 + z^2/n denominator", nth=2),
    Mutation("m09", M, "/ (4.0 * n * n)", "/ (4.0 * n)", "wilson_low: z^2/4n, not z^2/4n^2"),
    Mutation("m10", M, "/ (4.0 * n * n)", "/ (2.0 * n * n)", "wilson_high: z^2/2n^2, not z^2/4n^2", nth=2),
    Mutation("m11", M, "WHEN n > 0 AND k <= 0", "WHEN n >= 0 AND k <= 0", "wilson_low(0, 0) = 0, not NULL"),
    Mutation("m12", M, "WHEN n > 0 AND k >= n", "WHEN n >= 0 AND k >= n", "wilson_high(0, 0) = 1, not NULL"),
    Mutation("m13", M, "k <= 0 THEN 0.0", "k <= 1 THEN 0.0", "wilson_low pinned to 0 at k = 1 too"),
    Mutation("m14", M, "k >= n THEN 1.0", "k >= n - 1 THEN 1.0", "wilson_high pinned to 1 at k = n - 1 too"),
    Mutation(
        "m15",
        M,
        "k <= 0 THEN 0.0",
        "k < 0 THEN 0.0",
        "wilson_low: no k = 0 branch (formula used)",
        equivalent="at k = 0 the formula gives 0 or -1e-17, which greatest(0.0, ...) makes exactly 0",
    ),
    Mutation(
        "m16",
        M,
        "greatest(0.0,",
        "greatest(-1.0,",
        "wilson_low: clamp at -1, not 0",
        equivalent="k = 0 never reaches the formula, which is > 0 for every k >= 1",
    ),
    Mutation("m17", M, "k >= n THEN 1.0", "k > n THEN 1.0", "wilson_high: no k = n branch (formula used)"),
    Mutation(
        "m18",
        M,
        "least(1.0,",
        "least(2.0,",
        "wilson_high: clamp at 2, not 1",
        equivalent="k = n never reaches the formula, which is < 1 for every k < n",
    ),
    # --- macros/macros.sql: strata, finite, r_to_t ----------------------------------------------------
    Mutation(
        "m19", M, "WHEN n_steps <= 2 THEN", "WHEN n_steps < 2 THEN", "stratum: 2 steps is '2', not '<=2'"
    ),
    Mutation(
        "m20", M, "WHEN n_steps >= 5 THEN", "WHEN n_steps > 5 THEN", "stratum: 5 steps is '5', not '5+'"
    ),
    Mutation("m21", M, "THEN '5+'", "THEN '5'", "stratum: label '5'"),
    Mutation(
        "m22",
        M,
        "WHEN n_steps IS NULL THEN NULL WHEN",
        "WHEN",
        "stratum: no NULL branch",
        equivalent="NULL fails every WHEN, and the ELSE gives NULL::VARCHAR: NULL either way",
    ),
    Mutation("m23", M, "CASE WHEN isfinite(x) THEN x END", "x", "finite: NaN and inf kept"),
    Mutation("m24", M, "sqrt((n - 2) / (1 - r * r))", "sqrt((n - 1) / (1 - r * r))", "r_to_t: df n - 1"),
    Mutation("m25", M, "(1 - r * r)", "(1 - r)", "r_to_t: 1 - r, not 1 - r^2"),
    Mutation("m26", M, "WHEN n > 2 AND abs(r) < 1", "WHEN n > 3 AND abs(r) < 1", "r_to_t: NULL at n = 3"),
    Mutation("m27", M, "WHEN n > 2 AND abs(r) < 1", "WHEN n > 2", "r_to_t: no |r| < 1 guard"),
    # --- macros/macros.sql: legacy notes and names -----------------------------------------------------
    Mutation(
        "m28",
        M,
        "CASE WHEN convention = 'legacy' THEN 'legacy run:",
        "CASE WHEN convention = 'codi' THEN 'legacy run:",
        "legacy_note: on codi runs",
    ),
    Mutation(
        "m29", M, "AS 'not meaningful for legacy runs: ' || reason", "AS reason", "not_meaningful: no prefix"
    ),
    Mutation(
        "m30",
        M,
        "WHEN convention = 'legacy' THEN 'token '",
        "WHEN convention = 'codi' THEN 'token '",
        "position_label: 'token k' for codi runs",
    ),
    Mutation(
        "m31",
        M,
        "convention_a = 'legacy' AND convention_b = 'legacy'",
        "convention_a = 'legacy' OR convention_b = 'legacy'",
        "pair_note: 'both legacy' for one",
    ),
    Mutation(
        "m32",
        M,
        "WHEN convention_a = 'legacy' OR convention_b = 'legacy'",
        "WHEN convention_a = 'legacy'",
        "pair_note: NULL when only run b is legacy",
    ),
    # --- intermediate/20_int_outcomes.sql: failed, base_correct, drops ---------------------------------
    Mutation("v01", OUTCOMES, "coalesce(r.flipped,", "coalesce(r.fixed,", "failed = fixed"),
    Mutation(
        "v02",
        OUTCOMES,
        "coalesce(r.flipped, b.base_correct AND NOT r.correct)",
        "coalesce(r.flipped, NOT r.correct)",
        "failed, where flipped is NULL: any wrong answer",
    ),
    Mutation(
        "v03",
        OUTCOMES,
        "coalesce(r.flipped, b.base_correct AND NOT r.correct)",
        "NOT r.correct",
        "failed = wrong answer, whatever the baseline",
    ),
    Mutation(
        "v04",
        OUTCOMES,
        "WHERE method = 'baseline'",
        "WHERE method <> 'baseline'",
        "base_correct from the corrupted rows",
    ),
    Mutation(
        "v05",
        OUTCOMES,
        "bool_and(correct) AS base_correct",
        "bool_or(correct) AS base_correct",
        "base_correct: any baseline row correct",
        equivalent="a problem has one baseline row per run (condition 0; the store refuses a key twice)",
    ),
    Mutation(
        "v06", OUTCOMES, "b.base_logp_gold - r.logp_gold", "r.logp_gold - b.base_logp_gold", "logp_drop sign"
    ),
    Mutation(
        "v07",
        OUTCOMES,
        "r.entropy_answer - b.base_entropy_answer",
        "b.base_entropy_answer - r.entropy_answer",
        "entropy_change sign",
    ),
    Mutation(
        "v08",
        OUTCOMES,
        "LEFT JOIN baseline b",
        "JOIN baseline b",
        "rows of a problem without a baseline dropped",
    ),
    Mutation(
        "v09", OUTCOMES, "r.method || '_' || r.sigma::VARCHAR", "r.method", "condition label without sigma"
    ),
    # --- intermediate/21_int_problem_importance.sql -----------------------------------------------------
    Mutation(
        "p01",
        "intermediate/21_int_problem_importance.sql",
        " AND method <> 'clean'",
        "",
        "importance: clean control pooled",
    ),
    Mutation(
        "p02",
        "intermediate/21_int_problem_importance.sql",
        "WHERE base_correct AND NOT is_baseline",
        "WHERE NOT is_baseline",
        "importance: baseline-wrong problems too",
    ),
    # --- marts/token_importance.sql ---------------------------------------------------------------------
    Mutation(
        "t01",
        "marts/token_importance.sql",
        "FILTER (WHERE base_correct AND failed)",
        "FILTER (WHERE failed)",
        "failures: baseline-wrong trials counted",
    ),
    Mutation(
        "t02",
        "marts/token_importance.sql",
        "count(*) FILTER (WHERE base_correct) AS n",
        "count(*) AS n",
        "n: every trial",
    ),
    Mutation(
        "t03",
        "marts/token_importance.sql",
        "WHERE NOT is_baseline AND method <> 'clean'",
        "WHERE NOT is_baseline",
        "clean control pooled",
    ),
    Mutation(
        "t04",
        "marts/token_importance.sql",
        "WHERE NOT is_baseline AND method <> 'clean'",
        "WHERE method <> 'clean'",
        "baseline rows pooled",
    ),
    Mutation(
        "t05",
        "marts/token_importance.sql",
        "count(DISTINCT problem_id) FILTER (WHERE base_correct)",
        "count(DISTINCT problem_id)",
        "problems: every problem",
    ),
    # --- marts/method_comparison.sql --------------------------------------------------------------------
    Mutation(
        "c01",
        "marts/method_comparison.sql",
        "FILTER (WHERE base_correct AND failed)",
        "FILTER (WHERE failed)",
        "failures: baseline-wrong trials counted",
    ),
    Mutation(
        "c02",
        "marts/method_comparison.sql",
        "count(*) FILTER (WHERE base_correct) AS n",
        "count(*) AS n",
        "n: every trial",
    ),
    Mutation(
        "c03",
        "marts/method_comparison.sql",
        "WHERE NOT is_baseline",
        "WHERE NOT is_baseline AND method <> 'clean'",
        "clean control left out (it is a row of its own here)",
    ),
    Mutation(
        "c04", "marts/method_comparison.sql", "WHERE NOT is_baseline", "WHERE true", "baseline rows pooled"
    ),
    # --- hub normalization: intermediate/24_int_head_incoming.sql, marts/hub_scores.sql -----------------
    Mutation(
        "h01",
        "intermediate/24_int_head_incoming.sql",
        "FILTER (WHERE dst > src)",
        "FILTER (WHERE dst >= src)",
        "incoming_norm: self-attention included",
        nth=None,
    ),
    Mutation(
        "h02",
        "intermediate/24_int_head_incoming.sql",
        "/ nullif(count(*) FILTER (WHERE dst > src), 0)",
        "/ nullif(count(*), 0)",
        "incoming_norm: divided by all six queries",
    ),
    Mutation(
        "h03",
        "intermediate/24_int_head_incoming.sql",
        "sum(mean_weight) AS incoming_raw",
        "avg(mean_weight) AS incoming_raw",
        "incoming_raw: mean, not column sum",
    ),
    Mutation(
        "h04",
        "intermediate/24_int_head_incoming.sql",
        "WHERE dst BETWEEN 0 AND 5",
        "WHERE dst BETWEEN 0 AND 6",
        "EOT's queries counted as thoughts",
    ),
    Mutation(
        "h05",
        "marts/hub_scores.sql",
        "max(h.incoming_norm) OVER run / avg(h.incoming_norm) OVER run",
        "max(h.incoming_norm) OVER run / min(h.incoming_norm) OVER run",
        "hub_ratio: max / min",
    ),
    Mutation(
        "h06",
        "marts/hub_scores.sql",
        "avg(incoming_norm) AS incoming_norm",
        "max(incoming_norm) AS incoming_norm",
        "incoming_norm: max over heads, not mean",
    ),
    # --- intervention families: staging/stg_results.sql, pairs / triplets, components -------------------
    Mutation(
        "f01",
        "staging/stg_results.sql",
        "WHERE result_family(family, method) IN ('baseline', 'thoughts')",
        "WHERE true",
        "stg_results: every family leaks into the classic views",
    ),
    Mutation(
        "f02",
        "marts/interactions.sql",
        "greatest(e.expected - e.joint_rate, 0.0)",
        "e.expected - e.joint_rate",
        "redundancy: negative where the pair is synergistic",
    ),
    Mutation(
        "f03",
        "marts/interactions.sql",
        "(1 - coalesce(rate_c, 0.0))",
        "(1 - coalesce(rate_c, 1.0))",
        "expected of a pair: a missing third thought that always fails",
    ),
    Mutation(
        "f04",
        "intermediate/33_int_interaction_problems.sql",
        "sa.failed IS NOT NULL AND sb.failed IS NOT NULL AND",
        "",
        "complete: problems lacking a single thought's row counted",
    ),
    Mutation(
        "f05",
        "marts/component_comparison.sql",
        "AND failed_attn AND NOT failed_mlp) AS attn_only",
        "AND NOT failed_attn AND failed_mlp) AS attn_only",
        "attn_only counts the mlp-only problems",
    ),
    # --- readouts: intermediate/41_int_thought_decoding.sql, marts/thought_operand_reading.sql ---------
    Mutation(
        "r01",
        "intermediate/41_int_thought_decoding.sql",
        "(s.step - 1)::SMALLINT AS position",
        "s.step::SMALLINT AS position",
        "thought_decoding: T0 compared with step 0's value (none), Tk with step k's",
    ),
    Mutation(
        "r02",
        "intermediate/41_int_thought_decoding.sql",
        "coalesce(lead(problem_id) OVER w, first_value(problem_id) OVER w)",
        "problem_id",
        "thought_decoding: the control is the problem itself, not another",
    ),
    Mutation(
        "r03",
        "intermediate/41_int_thought_decoding.sql",
        "coalesce(o.best_rank <= k.k, false)",
        "coalesce(o.best_rank < k.k, false)",
        "thought_decoding: top-k counts ranks below k only",
    ),
    Mutation(
        "r04",
        "marts/thought_operand_reading.sql",
        "bool_or(t.is_operand AND t.rank <= m.m)",
        "bool_or(t.is_operand AND t.rank <= 1)",
        "thought_operand_reading: m = 3 tested as top-1",
    ),
    Mutation(
        "r05",
        "marts/thought_operand_reading.sql",
        "- lgamma(q + 1) + lgamma(q - m + 1)",
        "- lgamma(q + 1) + lgamma(q - m)",
        "thought_operand_reading: chance with C(Q, m) off by a factor",
    ),
]


def run_tests(queries: Path, tests: list[str], basetemp: Path, conftest: bool) -> tuple[int, str]:
    env = {**os.environ, "CODI_QUERIES_DIR": str(queries), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-x",
            "-q",
            "-p",
            "no:cacheprovider",
            "--no-header",
            f"--basetemp={basetemp}",
            *([] if conftest else ["--noconftest"]),
            *tests,
        ],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    failed = next((line for line in proc.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))), "")
    return proc.returncode, failed


def trial(mutation: Mutation | None, work: Path) -> tuple[str, str, float]:
    """('killed' | 'survived' | 'error', by what, seconds) for one mutation (None: the unchanged copy)."""
    name = mutation.id if mutation else "unchanged"
    queries = work / name / "queries"
    shutil.copytree(QUERIES, queries, ignore=shutil.ignore_patterns("__pycache__"))
    if mutation:
        mutation.apply(queries)
    start = time.monotonic()
    for stage, (tests, conftest) in enumerate(((STAGE1, False), (STAGE2, True)), 1):
        code, failed = run_tests(queries, tests, work / name / f"tmp{stage}", conftest)
        if code != 0:
            break
    status = {0: "survived", 1: "killed"}.get(code, "error")
    return status, failed.removeprefix("FAILED ").removeprefix("ERROR "), time.monotonic() - start


def _line(name: str, mutations: list[Mutation], scored: dict[str, str]) -> str:
    """killed / (all but the equivalent ones): the score."""
    killed = sum(scored[m.id] == "killed" for m in mutations)
    equivalent = sum(bool(m.equivalent) and scored[m.id] != "killed" for m in mutations)
    survived = len(mutations) - killed - equivalent
    scorable = len(mutations) - equivalent
    score = f"{100 * killed / scorable:.1f}%" if scorable else "-"
    return f"{name:<32} {killed:>6} {survived:>9} {equivalent:>11} {score:>7}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ids", nargs="*", help="mutation ids (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--jobs", type=int, default=2, help="mutations tested at once (default 2)")
    parser.add_argument(
        "--skip-equivalent",
        action="store_true",
        help="leave out the mutations known to be equivalent (each costs ~100 s of a worker)",
    )
    args = parser.parse_args()
    chosen = [
        m
        for m in MUTATIONS
        if (not args.ids or m.id in args.ids) and not (args.skip_equivalent and m.equivalent)
    ]
    if args.list or not chosen:
        for m in MUTATIONS:
            print(f"{m.id:<6} {m.file:<32} {m.what}" + (" (equivalent)" if m.equivalent else ""))
        return 0 if args.list else 1
    with tempfile.TemporaryDirectory(prefix="mutate-sql-") as tmp:
        work = Path(tmp)
        for m in chosen:  # every mutation still matches the SQL, before anything runs
            m.apply(Path(shutil.copytree(QUERIES, work / "check" / m.id)))
        start = time.monotonic()
        results: dict[str, tuple[str, str, float]] = {}
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = {pool.submit(trial, m, work): m for m in [None, CANARY, *chosen]}
            for future in as_completed(futures):
                m = futures[future]
                status, by, seconds = results[m.id if m else "unchanged"] = future.result()
                what = f"{m.file}: {m.what}" if m else "queries/ as it is (must survive)"
                print(
                    f"{m.id if m else 'none':<6} {status:<9} {seconds:4.0f} s  {what}"
                    + (f"\n       killed by {by}" if status == "killed" else ""),
                    flush=True,
                )
    if results["unchanged"][0] != "survived":
        print(f"\nthe tests fail on an unchanged copy of queries/ ({results['unchanged'][1]}): no score")
        return 1
    if results["canary"][0] != "killed":
        print("\nthe canary survived: the tests do not read the copy (CODI_QUERIES_DIR): no score")
        return 1
    scored = {m.id: results[m.id][0] for m in chosen}
    print(f"\n{'file':<32} {'killed':>6} {'survived':>9} {'equivalent':>11} {'score':>7}")
    for file in dict.fromkeys(m.file for m in chosen):
        print(_line(file, [m for m in chosen if m.file == file], scored))
    print(_line("all", chosen, scored) + f"   ({time.monotonic() - start:.0f} s)")
    for m in chosen:
        if scored[m.id] != "killed":
            print(
                f"  {m.id:<5} {scored[m.id]:<9} {m.what}: "
                + (f"equivalent: {m.equivalent}" if m.equivalent else "NOT EXPLAINED: kill it or explain it")
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
