-- Intermediate: per run, patch layer, problem, layer and thought Tk: EOT -> Tk attention (head mean) and Tk's importance.
-- Codi runs only: int_baseline_attention leaves legacy runs out (int_legacy_attention lists them).
-- One row per baseline-correct problem with attention: the unit of the attention-importance correlations.
-- *_centred subtract the problem's mean over its thoughts (same run, patch layer and layer), for the
-- within-problem correlation that removes differences between problems.
CREATE OR REPLACE VIEW int_attention_importance AS
WITH eot AS (
    SELECT run_id, problem_id, layer, src AS thought, avg(weight) AS attention
    FROM int_baseline_attention
    WHERE dst = 6 AND src BETWEEN 0 AND 5          -- query EOT, keys T0..T5
    GROUP BY run_id, problem_id, layer, src
)
SELECT
    i.run_id,
    i.patch_layer,
    i.problem_id,
    e.layer,
    i.thought,
    e.attention,
    i.importance,
    e.attention - avg(e.attention) OVER problem AS attention_centred,
    i.importance - avg(i.importance) OVER problem AS importance_centred,
    i.trials,
    i.failures,
    p.n_steps,
    stratum(p.n_steps) AS stratum
FROM int_problem_importance i
JOIN eot e USING (run_id, problem_id, thought)
LEFT JOIN stg_problems p USING (problem_id)
WINDOW problem AS (PARTITION BY i.run_id, i.patch_layer, e.layer, i.problem_id);
