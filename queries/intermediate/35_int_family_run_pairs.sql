-- Intermediate: two runs joined on (problem, patch layer, method, sigma and combination or component) for the pairs / triplets and components families: both outcomes side by side.
-- Every ordered pair of distinct runs, for the shared problems and conditions both ran at the same patch
-- layer (a combination or a component at another layer is another intervention). Pairs and triplets
-- (family 'pairs' / 'triplets', site 'block'): rows of int_interaction_problems with every single thought's
-- row in both runs; singles_a / singles_b hold each run's single-thought failures in combination order.
-- Components (site 'attn' or 'mlp'): the rows of int_intervention_outcomes, thought set, singles NULL.
CREATE OR REPLACE VIEW int_family_run_pairs AS
WITH combos AS (
    SELECT
        run_id, problem_id, family, 'block' AS site, patch_layer, NULL::SMALLINT AS thought, combination, size,
        method, sigma, condition, base_correct, failed,
        CASE WHEN size = 3 THEN [failed_a, failed_b, failed_c] ELSE [failed_a, failed_b] END AS singles
    FROM int_interaction_problems
    WHERE complete
),
components AS (
    SELECT
        run_id, problem_id, family, site, patch_layer, thought, thoughts AS combination, size,
        method, sigma, condition, base_correct, failed, NULL::BOOLEAN[] AS singles
    FROM int_intervention_outcomes
    WHERE family = 'components'
),
rows_ AS (
    SELECT * FROM combos
    UNION ALL
    SELECT * FROM components
)
SELECT
    a.run_id AS run_a,
    b.run_id AS run_b,
    a.family,
    a.site,
    a.patch_layer,
    a.thought,
    a.combination,
    a.size,
    a.method,
    a.sigma,
    a.condition,
    a.problem_id,
    a.base_correct AS base_correct_a,
    b.base_correct AS base_correct_b,
    a.failed AS failed_a,
    b.failed AS failed_b,
    a.singles AS singles_a,
    b.singles AS singles_b
FROM rows_ a
JOIN rows_ b
    ON a.problem_id = b.problem_id
    AND a.family = b.family
    AND a.site = b.site
    AND a.patch_layer = b.patch_layer
    AND a.thought IS NOT DISTINCT FROM b.thought
    AND a.combination = b.combination
    AND a.method = b.method
    AND a.sigma IS NOT DISTINCT FROM b.sigma
    AND a.run_id <> b.run_id;
