-- Per run, layer, head, query (dst) and key (src): mean and std over problems of the baseline attention A[dst -> src].
-- Every captured pair: queries T0..T5 and EOT, keys Q (question summed), BOT, T0..T5, EOT. The 6x6
-- thought-to-thought matrix is `WHERE dst BETWEEN 0 AND 5 AND src BETWEEN 0 AND 5`. `note` is NULL.
-- Legacy runs: not meaningful (their dst/src are the research scripts' token indices, shifted by one, and
-- head -1 is a mean over heads); a legacy run with attention is one row, every metric NULL, with a note.
CREATE OR REPLACE VIEW flow_matrix AS
SELECT
    f.run_id,
    r.convention,
    f.layer,
    f.head,
    f.dst,
    qd.name AS dst_name,
    f.src,
    qs.name AS src_name,
    f.mean_weight,
    f.std_weight,
    f.n,
    NULL::VARCHAR AS note
FROM int_flow f
LEFT JOIN stg_runs r USING (run_id)
LEFT JOIN positions qd ON qd.code = f.dst
LEFT JOIN positions qs ON qs.code = f.src
UNION ALL BY NAME
SELECT run_id, convention,
       not_meaningful('dst and src are research-script token indices (their 6x6 matrix is shifted by one), not T0..T5') AS note
FROM int_legacy_attention;
