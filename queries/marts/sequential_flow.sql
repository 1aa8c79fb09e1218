-- Per run, layer, head and thought Ti (i = 1..5): baseline attention to the true previous thought, A[Ti -> Ti-1].
-- (The research code's shifted matrix made this measure self-attention; SPEC 11.) `note` is NULL.
-- Legacy runs: not meaningful (on their shifted matrix A[token i -> token i-1] is self-attention); a legacy
-- run with attention is one row, every metric NULL, with a note.
CREATE OR REPLACE VIEW sequential_flow AS
SELECT * FROM int_thought_pairs
WHERE kind = 'sequential'                  -- Ti -> Ti-1, i = 1..5
UNION ALL BY NAME
SELECT run_id, convention,
       not_meaningful('on their shifted 6x6 matrix token i -> token i-1 is self-attention, not the previous thought') AS note
FROM int_legacy_attention;
