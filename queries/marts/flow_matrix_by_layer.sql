-- Per run, layer, query (dst) and key (src): baseline attention A[dst -> src] averaged over the layer's heads, with the lowest and highest head.
-- flow_matrix's rows (each head's mean over problems) averaged over heads: queries T0..T5 and EOT, keys Q
-- (question summed), BOT, T0..T5, EOT; heads counts them. `note` is NULL.
-- Legacy runs: not meaningful (their dst/src are the research scripts' token indices, shifted by one, and
-- head -1 is a mean over heads); a legacy run with attention is one row, every metric NULL, with a note.
CREATE OR REPLACE VIEW flow_matrix_by_layer AS
WITH l AS (
    SELECT
        run_id,
        layer,
        dst,
        src,
        avg(mean_weight) AS mean_weight,
        min(mean_weight) AS min_head,
        max(mean_weight) AS max_head,
        count(*) AS heads
    FROM int_flow
    GROUP BY run_id, layer, dst, src
)
SELECT
    l.run_id,
    r.convention,
    l.layer,
    l.dst,
    qd.name AS dst_name,
    l.src,
    qs.name AS src_name,
    l.mean_weight,
    l.min_head,
    l.max_head,
    l.heads,
    NULL::VARCHAR AS note
FROM l
LEFT JOIN stg_runs r USING (run_id)
LEFT JOIN positions qd ON qd.code = l.dst
LEFT JOIN positions qs ON qs.code = l.src
UNION ALL BY NAME
SELECT run_id, convention,
       not_meaningful('dst and src are research-script token indices (their 6x6 matrix is shifted by one), not T0..T5') AS note
FROM int_legacy_attention;
