-- Per run, layer, head and thought Ti: baseline attention of a thought to itself, A[Ti -> Ti].
-- `note` is NULL. Legacy runs: not meaningful (their matrix [i, j] is step i -> step j + 1, so [i, i] is not
-- self-attention); a legacy run with attention is one row, every metric NULL, with a note.
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
    f.n,
    NULL::VARCHAR AS note
FROM int_flow f
LEFT JOIN stg_runs r USING (run_id)
WHERE f.dst BETWEEN 0 AND 5 AND f.src = f.dst
UNION ALL BY NAME
SELECT run_id, convention,
       not_meaningful('their 6x6 matrix is shifted by one: token i -> token i is not self-attention') AS note
FROM int_legacy_attention;
