-- Two runs per patch layer, thought, component (attn, mlp) and method on their shared problems: each run's failure rate (Wilson 95%) and B - A.
-- Rows of int_family_run_pairs of the components family (equal patch layers). Each run's rate is among its
-- own baseline-correct shared problems (n_a, n_b); the bootstrap interval of the difference (shared
-- problems resampled, paired) is `python cli.py compare`'s.
CREATE OR REPLACE VIEW run_comparison_by_component AS
WITH c AS (
    SELECT
        run_a,
        run_b,
        patch_layer,
        thought,
        site,
        method,
        sigma,
        condition,
        count(DISTINCT problem_id) AS problems,
        count(*) FILTER (WHERE base_correct_a) AS n_a,
        count(*) FILTER (WHERE base_correct_a AND failed_a) AS failures_a,
        count(*) FILTER (WHERE base_correct_b) AS n_b,
        count(*) FILTER (WHERE base_correct_b AND failed_b) AS failures_b
    FROM int_family_run_pairs
    WHERE family = 'components'
    GROUP BY ALL
)
SELECT
    run_a,
    run_b,
    patch_layer,
    thought,
    'T' || thought::VARCHAR AS thought_name,
    site,
    method,
    sigma,
    condition,
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
    failures_b / nullif(n_b, 0) - failures_a / nullif(n_a, 0) AS difference
FROM c;
