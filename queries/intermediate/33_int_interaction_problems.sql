-- Intermediate: per run, patch layer, method, combination of thoughts (pairs, triplets) and problem: the joint corruption's outcome beside each single thought's at the same layer and method.
-- A pairs / triplets row (thoughts [a, b] or [a, b, c], sorted) joins the classic `thoughts` rows of the
-- same run, problem, patch layer, method and sigma for thought_a, thought_b (and thought_c); failed_* and
-- logp_drop_* are those rows' (NULL when the run lacks one; thought_c and its columns are NULL for a pair).
-- complete: every single thought's row is there, so joint and single failure rates count the same
-- problems. Every problem with a joint row is kept, base_correct says which are baseline-correct (the
-- failure rates' problems, as in int_outcomes); `interactions` aggregates these rows and `stats`
-- resamples them.
CREATE OR REPLACE VIEW int_interaction_problems AS
WITH joint AS (
    SELECT *, thoughts[1] AS thought_a, thoughts[2] AS thought_b, thoughts[3] AS thought_c
    FROM int_intervention_outcomes
    WHERE family IN ('pairs', 'triplets')
),
single AS (
    SELECT run_id, problem_id, patch_layer, method, sigma, thought, failed, logp_drop, kl_answer
    FROM int_intervention_outcomes
    WHERE family = 'thoughts'
)
SELECT
    j.run_id,
    j.patch_layer,
    j.family,
    j.size,
    j.method,
    j.sigma,
    j.condition,
    j.thoughts AS combination,
    j.thought_a,
    j.thought_b,
    j.thought_c,
    j.problem_id,
    j.base_correct,
    j.failed,
    sa.failed AS failed_a,
    sb.failed AS failed_b,
    sc.failed AS failed_c,
    sa.failed IS NOT NULL AND sb.failed IS NOT NULL AND (j.size = 2 OR sc.failed IS NOT NULL) AS complete,
    j.logp_drop,
    sa.logp_drop AS logp_drop_a,
    sb.logp_drop AS logp_drop_b,
    sc.logp_drop AS logp_drop_c,
    j.kl_answer
FROM joint j
LEFT JOIN single sa
    ON sa.run_id = j.run_id AND sa.problem_id = j.problem_id AND sa.patch_layer = j.patch_layer
    AND sa.method = j.method AND sa.sigma IS NOT DISTINCT FROM j.sigma AND sa.thought = j.thought_a
LEFT JOIN single sb
    ON sb.run_id = j.run_id AND sb.problem_id = j.problem_id AND sb.patch_layer = j.patch_layer
    AND sb.method = j.method AND sb.sigma IS NOT DISTINCT FROM j.sigma AND sb.thought = j.thought_b
LEFT JOIN single sc
    ON sc.run_id = j.run_id AND sc.problem_id = j.problem_id AND sc.patch_layer = j.patch_layer
    AND sc.method = j.method AND sc.sigma IS NOT DISTINCT FROM j.sigma AND sc.thought = j.thought_c;
