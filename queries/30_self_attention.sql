-- Per run, layer, head and thought Ti: baseline attention of a thought to itself, A[Ti -> Ti].
CREATE OR REPLACE VIEW self_attention AS
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
WHERE f.dst BETWEEN 0 AND 5 AND f.src = f.dst;
