-- Two runs per patch layer, method and combination of thoughts (pairs, triplets) on their shared problems: each run's joint rate, expected rate and synergy, and the synergy's B - A.
-- Rows of int_family_run_pairs (equal patch layers; problems with every single thought's row in both runs).
-- Each run's rates are among its own baseline-correct shared problems (n_a, n_b); expected and synergy as
-- in `interactions` (expected = 1 - prod(1 - single rate), synergy = joint - expected). The bootstrap
-- interval of synergy_difference (shared problems resampled, paired) is `python cli.py compare`'s.
CREATE OR REPLACE VIEW run_comparison_by_combination AS
WITH c AS (
    SELECT
        run_a,
        run_b,
        patch_layer,
        family,
        size,
        method,
        sigma,
        condition,
        combination,
        count(DISTINCT problem_id) AS problems,
        count(*) FILTER (WHERE base_correct_a) AS n_a,
        count(*) FILTER (WHERE base_correct_a AND failed_a) AS failures_a,
        count(*) FILTER (WHERE base_correct_a AND singles_a[1]) AS failures_a1,
        count(*) FILTER (WHERE base_correct_a AND singles_a[2]) AS failures_a2,
        count(*) FILTER (WHERE base_correct_a AND singles_a[3]) AS failures_a3,
        count(*) FILTER (WHERE base_correct_b) AS n_b,
        count(*) FILTER (WHERE base_correct_b AND failed_b) AS failures_b,
        count(*) FILTER (WHERE base_correct_b AND singles_b[1]) AS failures_b1,
        count(*) FILTER (WHERE base_correct_b AND singles_b[2]) AS failures_b2,
        count(*) FILTER (WHERE base_correct_b AND singles_b[3]) AS failures_b3
    FROM int_family_run_pairs
    WHERE family IN ('pairs', 'triplets')
    GROUP BY ALL
),
e AS (
    SELECT
        *,
        failures_a / nullif(n_a, 0) AS joint_rate_a,
        1 - (1 - failures_a1 / nullif(n_a, 0)) * (1 - failures_a2 / nullif(n_a, 0))
          * (1 - failures_a3 / nullif(n_a, 0)) AS expected_a,
        failures_b / nullif(n_b, 0) AS joint_rate_b,
        1 - (1 - failures_b1 / nullif(n_b, 0)) * (1 - failures_b2 / nullif(n_b, 0))
          * (1 - failures_b3 / nullif(n_b, 0)) AS expected_b
    FROM c
)
SELECT
    run_a,
    run_b,
    patch_layer,
    family,
    size,
    method,
    sigma,
    condition,
    combination,
    array_to_string(list_transform(combination, k -> 'T' || k::VARCHAR), '+') AS combination_name,
    problems,
    n_a,
    joint_rate_a,
    expected_a,
    joint_rate_a - expected_a AS synergy_a,
    n_b,
    joint_rate_b,
    expected_b,
    joint_rate_b - expected_b AS synergy_b,
    (joint_rate_b - expected_b) - (joint_rate_a - expected_a) AS synergy_difference
FROM e;
