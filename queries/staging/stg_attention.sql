-- Staging: attention weight per run x problem x condition x layer x head x query (dst) x key (src).
CREATE OR REPLACE VIEW stg_attention AS
SELECT
    run_id,
    problem_id,
    condition_id,
    layer,                            -- the attention's own layer (not the patch layer)
    head,
    dst,                              -- query position code: 0..5 = T0..T5, 6 = EOT
    src,                              -- key position code: -2 question (summed), -1 BOT, 0..6
    weight
FROM attention;
