-- Per run, layer, head and early thought Tj (j = 0..2): baseline attention of the last thought back to it, A[T5 -> Tj].
CREATE OR REPLACE VIEW skip_connections AS
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
WHERE f.dst = 5 AND f.src BETWEEN 0 AND 2;
