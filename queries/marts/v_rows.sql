-- The design card's wide row: one per attention weight, with its condition (thought, method, sigma) and outcome (correct, KL, disruption).
-- patch_layer is the corrupted block, layer the attention's own layer. Filter on run_id / problem_id /
-- layer: the view has one row per attention row. Legacy runs keep their rows as stored: their thought, dst
-- and src are the research scripts' token indices (not our position codes) and head -1 is a mean over
-- heads; `note` says so (NULL for codi runs). The run's convention joins the small results side, so the
-- attention rows meet a single join.
CREATE OR REPLACE VIEW v_rows AS
WITH r AS (
    SELECT
        s.*,
        u.convention,
        CASE WHEN u.convention = 'legacy' THEN 'legacy run: thought, dst and src are research-script token '
             || 'indices (not position codes); head -1 is a mean over heads' END AS note
    FROM stg_results s
    LEFT JOIN stg_runs u USING (run_id)
)
SELECT
    r.run_id,
    r.convention,
    r.problem_id,
    r.condition_id,
    r.patch_layer,
    r.thought,
    r.method,
    r.sigma,
    r.correct,
    r.flipped,
    r.kl_first,
    r.kl_answer,
    r.js_answer,
    r.disruption,
    a.layer,
    a.head,
    a.src,
    a.dst,
    a.weight,
    r.note
FROM r
JOIN stg_attention a USING (run_id, problem_id, condition_id);
