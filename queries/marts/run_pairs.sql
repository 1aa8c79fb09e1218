-- One row per ordered pair of distinct runs: each run's problems, the problems both ran, whether patch layers pair up, and what thought k means across them.
-- problems_a / problems_b count each run's problems with result rows; shared_problems those with a baseline
-- in both runs (the problems run_comparison joins on). patch_layers_paired: both runs were patched at
-- several layers, so comparisons pair equal layers (int_run_pairs.compared). same_convention and `note`
-- (the pair_note macro: NULL when both are codi runs) as in run_comparison. Pairs that share no problem
-- keep their row (shared_problems 0).
CREATE OR REPLACE VIEW run_pairs AS
WITH per_run AS (
    SELECT run_id, count(DISTINCT problem_id) AS problems, count(DISTINCT patch_layer) AS patch_layers
    FROM stg_results
    GROUP BY run_id
),
shared AS (
    SELECT run_a, run_b, count(DISTINCT problem_id) AS shared_problems
    FROM int_run_pairs
    WHERE method = 'baseline'
    GROUP BY run_a, run_b
)
SELECT
    a.run_id AS run_a,
    b.run_id AS run_b,
    coalesce(pa.problems, 0) AS problems_a,
    coalesce(pb.problems, 0) AS problems_b,
    coalesce(s.shared_problems, 0) AS shared_problems,
    coalesce(pa.patch_layers, 0) > 1 AND coalesce(pb.patch_layers, 0) > 1 AS patch_layers_paired,
    a.convention IS NOT DISTINCT FROM b.convention AS same_convention,
    pair_note(a.convention, b.convention) AS note
FROM stg_runs a
JOIN stg_runs b ON a.run_id <> b.run_id
LEFT JOIN per_run pa ON pa.run_id = a.run_id
LEFT JOIN per_run pb ON pb.run_id = b.run_id
LEFT JOIN shared s ON s.run_a = a.run_id AND s.run_b = b.run_id;
