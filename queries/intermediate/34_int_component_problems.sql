-- Intermediate: per run, patch layer, thought, method and problem: the outcome of corrupting the attention output, the MLP output and (from the classic rows) the whole block output, side by side.
-- Rows come from the `components` family (site attn or mlp, one thought); the block columns are the classic
-- `thoughts` row at the same run, problem, patch layer, thought, method and sigma (NULL when the run lacks
-- it). paired: both the attn and the mlp row are there, so component_comparison's attn and mlp rates count
-- the same problems. base_correct as in int_outcomes (the failure rates' problems).
CREATE OR REPLACE VIEW int_component_problems AS
WITH c AS (
    SELECT
        run_id,
        problem_id,
        patch_layer,
        thought,
        method,
        sigma,
        any_value(condition) AS condition,
        bool_and(base_correct) AS base_correct,
        bool_or(failed) FILTER (WHERE site = 'attn') AS failed_attn,
        bool_or(failed) FILTER (WHERE site = 'mlp') AS failed_mlp,
        avg(logp_drop) FILTER (WHERE site = 'attn') AS logp_drop_attn,
        avg(logp_drop) FILTER (WHERE site = 'mlp') AS logp_drop_mlp,
        avg(kl_answer) FILTER (WHERE site = 'attn') AS kl_attn,
        avg(kl_answer) FILTER (WHERE site = 'mlp') AS kl_mlp
    FROM int_intervention_outcomes
    WHERE family = 'components' AND site IN ('attn', 'mlp')
    GROUP BY run_id, problem_id, patch_layer, thought, method, sigma
)
SELECT
    c.run_id,
    c.patch_layer,
    c.thought,
    c.method,
    c.sigma,
    c.condition,
    c.problem_id,
    c.base_correct,
    c.failed_attn,
    c.failed_mlp,
    b.failed AS failed_block,
    c.failed_attn IS NOT NULL AND c.failed_mlp IS NOT NULL AS paired,
    c.logp_drop_attn,
    c.logp_drop_mlp,
    b.logp_drop AS logp_drop_block,
    c.kl_attn,
    c.kl_mlp,
    b.kl_answer AS kl_block
FROM c
LEFT JOIN int_intervention_outcomes b
    ON b.family = 'thoughts' AND b.run_id = c.run_id AND b.problem_id = c.problem_id
    AND b.patch_layer = c.patch_layer AND b.thought = c.thought AND b.method = c.method
    AND b.sigma IS NOT DISTINCT FROM c.sigma;
