-- Per run, layer, head and thought Ti (i = 1..5): baseline attention to the true previous thought, A[Ti -> Ti-1].
-- (The research code's shifted matrix made this measure self-attention; SPEC 11.) `note` is NULL.
-- Legacy runs: not meaningful (on their shifted matrix A[token i -> token i-1] is self-attention); a legacy
-- run with attention is one row, every metric NULL, with a note.
CREATE OR REPLACE VIEW sequential_flow AS
SELECT
    f.run_id,
    r.convention,
    f.layer,
    f.head,
    f.dst,
    f.src,
    'T' || f.dst || '->T' || f.src AS pair,
    f.mean_weight,
    f.std_weight,
    f.n,
    NULL::VARCHAR AS note
FROM int_flow f
LEFT JOIN stg_runs r USING (run_id)
WHERE f.dst BETWEEN 1 AND 5 AND f.src = f.dst - 1
UNION ALL BY NAME
SELECT run_id, convention,
       not_meaningful('on their shifted 6x6 matrix token i -> token i-1 is self-attention, not the previous thought') AS note
FROM int_legacy_attention;
