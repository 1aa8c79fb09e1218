-- The design card's wide row: one per attention weight, with its condition (thought, method, sigma) and outcome (correct, KL, disruption).
-- patch_layer is the corrupted block, layer the attention's own layer. Filter on run_id / problem_id /
-- layer: the view has one row per attention row.
CREATE OR REPLACE VIEW v_rows AS
SELECT
    r.run_id,
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
    r.disruption,
    a.layer,
    a.head,
    a.src,
    a.dst,
    a.weight
FROM stg_results r
JOIN stg_attention a USING (run_id, problem_id, condition_id);
