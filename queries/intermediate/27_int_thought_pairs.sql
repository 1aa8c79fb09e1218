-- Baseline attention between thoughts (dst, src in T0..T5) per run, layer and head, labelled 'Ti->Tj' and by kind; codi runs only.
-- kind: 'sequential' (Ti -> Ti-1, i = 1..5), 'self' (Ti -> Ti), 'skip' (T5 -> T0..T2), NULL for other pairs.
-- The rows sequential_flow, self_attention, skip_connections and thought_flow pick from (each adds its legacy note).
CREATE OR REPLACE VIEW int_thought_pairs AS
SELECT
    f.run_id,
    r.convention,
    f.layer,
    f.head,
    f.dst,
    f.src,
    'T' || f.dst || '->T' || f.src AS pair,
    CASE WHEN f.dst BETWEEN 1 AND 5 AND f.src = f.dst - 1 THEN 'sequential'
         WHEN f.src = f.dst THEN 'self'
         WHEN f.dst = 5 AND f.src BETWEEN 0 AND 2 THEN 'skip' END AS kind,
    f.mean_weight,
    f.std_weight,
    f.n,
    NULL::VARCHAR AS note
FROM int_flow f
LEFT JOIN stg_runs r USING (run_id)
WHERE f.dst BETWEEN 0 AND 5 AND f.src BETWEEN 0 AND 5;
