-- Staging: logit-lens top-k of the baseline's states per run x problem x layer x position x rank, of complete and running runs only.
-- layer -1 is the vector fed at the position (a thought's input: the projection of the previous position's
-- last hidden state; EOT's: its embedding), layer 0..L-1 a block's output (decoded through the final norm
-- and the unembedding); position 0..5 = T0..T5, 6 = EOT; rank 1 = most probable. token_text is the token
-- decoded alone, leading space kept. Failed and interrupted runs' rows are left out (they may be partial).
CREATE OR REPLACE VIEW stg_decoding AS
SELECT
    run_id,
    problem_id,
    layer,
    position,
    rank,
    token_id,
    token_text,
    prob
FROM decoding
WHERE run_id IN (SELECT run_id FROM runs WHERE status IN ('complete', 'running'));
