-- Staging: baseline attention of each thought / EOT query to every question token, per run x problem x layer x head, of complete and running runs only.
-- dst 0..5 = T0..T5, 6 = EOT; token_pos joins stg_question_tokens. Summed over token_pos a row set equals
-- the attention table's question key (src -2) of the baseline condition (condition_id 0).
CREATE OR REPLACE VIEW stg_token_attention AS
SELECT
    run_id,
    problem_id,
    layer,
    head,
    dst,
    token_pos,
    weight
FROM token_attention
WHERE run_id IN (SELECT run_id FROM runs WHERE status IN ('complete', 'running'));
