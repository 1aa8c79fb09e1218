-- Baseline attention between thoughts (dst, src in T0..T5) per run, layer and head, labelled 'Ti->Tj'; codi runs only.
-- The rows sequential_flow, self_attention and skip_connections pick from (each adds its legacy note).
CREATE OR REPLACE VIEW int_thought_pairs AS
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
WHERE f.dst BETWEEN 0 AND 5 AND f.src BETWEEN 0 AND 5;
