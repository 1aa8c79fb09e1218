-- Per run, layer, head and early thought Tj (j = 0..2): baseline attention of the last thought back to it, A[T5 -> Tj].
-- `note` is NULL. Legacy runs: not meaningful (their token 5 query was step 5, our T4, and their keys are
-- shifted by one); a legacy run with attention is one row, every metric NULL, with a note.
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
    f.n,
    NULL::VARCHAR AS note
FROM int_flow f
LEFT JOIN stg_runs r USING (run_id)
WHERE f.dst = 5 AND f.src BETWEEN 0 AND 2
UNION ALL BY NAME
SELECT run_id, convention,
       not_meaningful('their 6x6 matrix is shifted by one: token 5 -> tokens 0..2 is not T5 -> T0..T2') AS note
FROM int_legacy_attention;
