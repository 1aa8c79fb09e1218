-- Intermediate: every result row with its problem's baseline: base_correct, failed (flipped), log p(gold) drop,
-- entropy change at the answer number.
-- Importance (SPEC 4) is `failed` among rows whose baseline is correct. `condition` labels a condition
-- the way the research scripts did ('zero', 'gauss_0.5', ...). Rows of a problem without a baseline keep
-- base_correct NULL. A legacy run's `thought` is the research scripts' token index (stg_runs.convention).
CREATE OR REPLACE VIEW int_outcomes AS
WITH baseline AS (
    SELECT run_id, problem_id, bool_and(correct) AS base_correct, avg(logp_gold) AS base_logp_gold,
           avg(entropy_answer) AS base_entropy_answer
    FROM stg_results
    WHERE method = 'baseline'
    GROUP BY run_id, problem_id
)
SELECT
    r.run_id,
    r.problem_id,
    r.condition_id,
    r.patch_layer,
    r.thought,
    r.method,
    r.sigma,
    CASE WHEN r.sigma IS NULL THEN r.method ELSE r.method || '_' || r.sigma::VARCHAR END AS condition,
    r.method = 'baseline' AS is_baseline,
    b.base_correct,
    r.correct,
    coalesce(r.flipped, b.base_correct AND NOT r.correct) AS failed,
    r.kl_first,
    r.kl_answer,
    r.kl_max,
    r.js_first,
    r.entropy_first,
    r.js_answer,
    r.entropy_answer,
    r.entropy_answer - b.base_entropy_answer AS entropy_change,
    r.disruption,
    r.logp_gold,
    b.base_logp_gold - r.logp_gold AS logp_drop
FROM stg_results r
LEFT JOIN baseline b USING (run_id, problem_id);
