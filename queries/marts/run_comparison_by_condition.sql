-- Two runs per patch-layer pairing, thought and condition on their shared problems: each run's failure rate (Wilson 95%), mean KL, and B - A.
-- Every corrupted condition both runs have, the `clean` control included (a row of its own); only the
-- layer pairings a comparison uses (int_run_pairs.compared). Each run's rate is among its own
-- baseline-correct trials on the shared problems (n_a, n_b). mean_kl_*: KL at the answer number over every
-- shared row. The bootstrap interval of the difference is `python cli.py compare`'s. `note` as in
-- run_comparison.
CREATE OR REPLACE VIEW run_comparison_by_condition AS
WITH c AS (
    SELECT
        run_a,
        run_b,
        patch_layer_a,
        patch_layer_b,
        thought,
        method,
        sigma,
        condition,
        count(DISTINCT problem_id) AS problems,
        count(*) FILTER (WHERE base_correct_a) AS n_a,
        count(*) FILTER (WHERE base_correct_a AND failed_a) AS failures_a,
        count(*) FILTER (WHERE base_correct_b) AS n_b,
        count(*) FILTER (WHERE base_correct_b AND failed_b) AS failures_b,
        avg(kl_a) AS mean_kl_a,
        avg(kl_b) AS mean_kl_b,
        bool_and(same_convention) AS same_convention,
        any_value(note) AS note
    FROM int_run_pairs
    WHERE compared AND method <> 'baseline'
    GROUP BY run_a, run_b, patch_layer_a, patch_layer_b, thought, method, sigma, condition
)
SELECT
    run_a,
    run_b,
    patch_layer_a,
    patch_layer_b,
    thought,
    'T' || thought AS thought_name,
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
    failures_b / nullif(n_b, 0) - failures_a / nullif(n_a, 0) AS difference,
    mean_kl_a,
    mean_kl_b,
    same_convention,
    note
FROM c;
