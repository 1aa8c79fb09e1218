-- Per run, kind (previous thought, self, skip), layer and thought pair: baseline attention averaged over heads; layer NULL: over every layer and head.
-- kind: 'sequential' A[Ti -> Ti-1] (i = 1..5), 'self' A[Ti -> Ti], 'skip' A[T5 -> T0..T2] (int_thought_pairs).
-- mean_weight averages the heads' means over problems; min_head / max_head are the lowest and highest head
-- (of the layer, or of every layer when layer is NULL); heads counts the (layer, head) pairs averaged. The
-- per-head rows are sequential_flow, self_attention and skip_connections. `note` is NULL.
-- Legacy runs: not meaningful (their 6x6 matrix is shifted by one, so none of the three kinds is what it
-- says); a legacy run with attention is one row, every metric NULL, with a note.
CREATE OR REPLACE VIEW thought_flow AS
SELECT
    run_id,
    any_value(convention) AS convention,
    kind,
    layer,
    dst,
    src,
    any_value(pair) AS pair,
    avg(mean_weight) AS mean_weight,
    min(mean_weight) AS min_head,
    max(mean_weight) AS max_head,
    count(*) AS heads,
    NULL::VARCHAR AS note
FROM int_thought_pairs
WHERE kind IS NOT NULL
GROUP BY GROUPING SETS ((run_id, kind, layer, dst, src), (run_id, kind, dst, src))
UNION ALL BY NAME
SELECT run_id, convention,
       not_meaningful('their 6x6 matrix is shifted by one: previous-thought, self and skip attention need our positions') AS note
FROM int_legacy_attention;
