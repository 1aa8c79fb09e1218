-- Intermediate: two runs joined on (problem, thought, method, sigma), both outcomes side by side; `compared` marks the layer pairings comparisons use.
-- Every ordered pair of distinct runs, for the problems and conditions both have (joined on problem id, so
-- runs of other models or datasets pair up where they share problems); baseline rows are included (method
-- 'baseline', thought NULL). kl_* is KL at the answer number. A run patched at several layers pairs every
-- layer with every layer of the other; `compared` is true for the pairings a comparison uses: equal patch
-- layers when both runs were patched at several layers, every pairing otherwise (a single-layer run meets
-- each layer of the other). Positions of 'legacy' runs are not our thoughts (SPEC 10): same_convention says
-- whether thought k means the same in both runs, and `note` (NULL when both are codi runs) what it means
-- when either is a legacy run.
CREATE OR REPLACE VIEW int_run_pairs AS
WITH layers AS (
    SELECT run_id, count(DISTINCT patch_layer) AS patch_layers
    FROM stg_results
    GROUP BY run_id
)
SELECT
    a.run_id AS run_a,
    b.run_id AS run_b,
    a.problem_id,
    a.thought,
    a.method,
    a.sigma,
    a.condition,
    a.patch_layer AS patch_layer_a,
    b.patch_layer AS patch_layer_b,
    CASE WHEN la.patch_layers > 1 AND lb.patch_layers > 1 THEN a.patch_layer IS NOT DISTINCT FROM b.patch_layer
         ELSE true END AS compared,
    a.base_correct AS base_correct_a,
    b.base_correct AS base_correct_b,
    a.correct AS correct_a,
    b.correct AS correct_b,
    a.failed AS failed_a,
    b.failed AS failed_b,
    a.correct IS DISTINCT FROM b.correct AS changed,
    a.kl_answer AS kl_a,
    b.kl_answer AS kl_b,
    b.kl_answer - a.kl_answer AS kl_delta,
    a.kl_first AS kl_first_a,
    b.kl_first AS kl_first_b,
    a.logp_drop AS logp_drop_a,
    b.logp_drop AS logp_drop_b,
    a.disruption AS disruption_a,
    b.disruption AS disruption_b,
    ra.model_name AS model_a,
    rb.model_name AS model_b,
    ra.convention AS convention_a,
    rb.convention AS convention_b,
    ra.convention IS NOT DISTINCT FROM rb.convention AS same_convention,
    pair_note(ra.convention, rb.convention) AS note
FROM int_outcomes a
JOIN int_outcomes b
    ON a.problem_id = b.problem_id
    AND a.method = b.method
    AND a.thought IS NOT DISTINCT FROM b.thought
    AND a.sigma IS NOT DISTINCT FROM b.sigma
    AND a.run_id <> b.run_id
LEFT JOIN stg_runs ra ON ra.run_id = a.run_id
LEFT JOIN stg_runs rb ON rb.run_id = b.run_id
LEFT JOIN layers la ON la.run_id = a.run_id
LEFT JOIN layers lb ON lb.run_id = b.run_id;
