-- Two runs per condition of the heads and edges families on their shared problems: each run's failure rate (Wilson 95%), mean log p(gold) drop, and B - A.
-- Filter on run_a and run_b. A condition pairs when both runs ran it (same family, method, layer, head,
-- key thought, steps; heads ablated together: the same set, int_family_pairs). Each run's rate is among its
-- own baseline-correct trials on the shared problems (n_a, n_b), as run_comparison_by_thought; problems
-- counts the shared problems; mean_logp_drop_*: over the shared problems with a baseline. The bootstrap
-- interval of the difference (problems resampled, paired) is `python cli.py compare`'s.
CREATE OR REPLACE VIEW run_comparison_families AS
WITH c AS (
    SELECT
        run_a,
        run_b,
        family,
        condition,
        method,
        layer,
        head,
        thought,
        steps,
        part_heads,
        count(DISTINCT problem_id) AS problems,
        count(*) FILTER (WHERE base_correct_a) AS n_a,
        count(*) FILTER (WHERE base_correct_a AND failed_a) AS failures_a,
        count(*) FILTER (WHERE base_correct_b) AS n_b,
        count(*) FILTER (WHERE base_correct_b AND failed_b) AS failures_b,
        avg(logp_drop_a) AS mean_logp_drop_a,
        avg(logp_drop_b) AS mean_logp_drop_b
    FROM int_family_pairs
    GROUP BY ALL
)
SELECT
    run_a,
    run_b,
    family,
    condition,
    method,
    layer,
    head,
    thought,
    steps,
    part_heads,
    problems,
    n_a,
    failures_a,
    failures_a / nullif(n_a, 0) AS failure_rate_a,
    wilson_low(failures_a, n_a) AS ci_low_a,
    wilson_high(failures_a, n_a) AS ci_high_a,
    n_b,
    failures_b,
    failures_b / nullif(n_b, 0) AS failure_rate_b,
    wilson_low(failures_b, n_b) AS ci_low_b,
    wilson_high(failures_b, n_b) AS ci_high_b,
    failures_b / nullif(n_b, 0) - failures_a / nullif(n_a, 0) AS difference,
    mean_logp_drop_a,
    mean_logp_drop_b
FROM c;
