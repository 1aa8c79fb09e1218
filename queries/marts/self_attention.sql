-- Per run, layer, head and thought Ti: baseline attention of a thought to itself, A[Ti -> Ti].
-- `note` is NULL. Legacy runs: not meaningful (their matrix [i, j] is step i -> step j + 1, so [i, i] is not
-- self-attention); a legacy run with attention is one row, every metric NULL, with a note.
CREATE OR REPLACE VIEW self_attention AS
SELECT * FROM int_thought_pairs
WHERE kind = 'self'                        -- Ti -> Ti
UNION ALL BY NAME
SELECT run_id, convention,
       not_meaningful('their 6x6 matrix is shifted by one: token i -> token i is not self-attention') AS note
FROM int_legacy_attention;
