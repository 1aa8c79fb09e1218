-- Per run, layer, head and thought Ti (i = 1..5): baseline attention to the true previous thought, A[Ti -> Ti-1].
-- (The research code's shifted matrix made this measure self-attention; SPEC 11.)
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
    f.n
FROM int_flow f
LEFT JOIN stg_runs r USING (run_id)
WHERE f.dst BETWEEN 1 AND 5 AND f.src = f.dst - 1;
