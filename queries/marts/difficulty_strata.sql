-- Per run, patch layer, difficulty stratum (<=2, 3, 4, 5+ steps) and layer: problems, mean importance, attention-importance r.
-- Rows come in display order (stratum_rank 1..4: <=2, 3, 4, 5+, never string order; ORDER BY stratum_rank
-- when selecting from this view with other clauses). problems counts the stratum's baseline-correct problems
-- (those with an importance); problems_all and baseline_accuracy count every problem of the stratum. One row per layer (layer NULL without attention).
-- `note` is NULL for codi runs. Legacy runs keep their rows (importance pooled over the research scripts'
-- tokens 0..5) with a note, and their correlation columns are NULL: their attention 'token k' and ablation
-- 'token k' were different positions, so int_attention_importance has no legacy rows.
CREATE OR REPLACE VIEW difficulty_strata AS
WITH base AS (
    SELECT o.run_id, stratum(p.n_steps) AS stratum, count(*) AS problems_all,
           avg(o.base_correct::INTEGER) AS baseline_accuracy
    FROM int_outcomes o
    LEFT JOIN stg_problems p USING (problem_id)
    WHERE o.is_baseline
    GROUP BY o.run_id, stratum(p.n_steps)
),
imp AS (
    SELECT i.run_id, i.patch_layer, stratum(p.n_steps) AS stratum, count(DISTINCT i.problem_id) AS problems,
           avg(i.importance) AS mean_importance, sum(i.failures) / sum(i.trials) AS failure_rate
    FROM int_problem_importance i
    LEFT JOIN stg_problems p USING (problem_id)
    GROUP BY i.run_id, i.patch_layer, stratum(p.n_steps)
),
c AS (
    SELECT run_id, patch_layer, stratum, layer, count(*) AS n,
           finite(corr(importance, attention)) AS r,
           finite(corr(importance_centred, attention_centred)) AS r_within
    FROM int_attention_importance
    GROUP BY run_id, patch_layer, stratum, layer
)
SELECT
    imp.run_id,
    r.convention,
    imp.patch_layer,
    imp.stratum,
    stratum_rank(imp.stratum) AS stratum_rank,
    imp.problems,
    base.problems_all,
    base.baseline_accuracy,
    imp.mean_importance,
    imp.failure_rate,
    c.layer,
    c.n,
    c.r,
    r_to_t(c.r, c.n) AS t,
    c.r_within,
    legacy_note(r.convention) || '; attention-importance r not meaningful for legacy runs' AS note
FROM imp
LEFT JOIN stg_runs r ON r.run_id = imp.run_id
LEFT JOIN base ON base.run_id = imp.run_id AND base.stratum IS NOT DISTINCT FROM imp.stratum
LEFT JOIN c ON c.run_id = imp.run_id AND c.patch_layer IS NOT DISTINCT FROM imp.patch_layer
    AND c.stratum IS NOT DISTINCT FROM imp.stratum
ORDER BY imp.run_id, imp.patch_layer, stratum_rank(imp.stratum) NULLS LAST, c.layer;
