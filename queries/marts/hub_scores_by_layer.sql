-- Per run, layer and thought Tj: hub_scores for one layer (heads averaged): raw and per-later-thought incoming, hub ratio.
-- `note` is NULL. Legacy runs: not meaningful (their 6x6 matrix is shifted by one); a legacy run with
-- attention is one row, every metric NULL, with a note.
CREATE OR REPLACE VIEW hub_scores_by_layer AS
WITH h AS (
    SELECT run_id, layer, position, avg(incoming_raw) AS incoming_raw, avg(incoming_norm) AS incoming_norm,
           max(later_thoughts) AS later_thoughts, count(*) AS heads
    FROM int_head_incoming
    GROUP BY run_id, layer, position
)
SELECT
    h.run_id,
    r.convention,
    h.layer,
    h.position,
    pos.name AS position_name,
    h.later_thoughts,
    h.incoming_raw,
    h.incoming_norm,
    max(h.incoming_norm) OVER run_layer / avg(h.incoming_norm) OVER run_layer AS hub_ratio,
    max(h.incoming_raw) OVER run_layer / avg(h.incoming_raw) OVER run_layer AS hub_ratio_raw,
    h.heads,
    NULL::VARCHAR AS note
FROM h
LEFT JOIN stg_runs r USING (run_id)
LEFT JOIN positions pos ON pos.code = h.position
WINDOW run_layer AS (PARTITION BY h.run_id, h.layer)
UNION ALL BY NAME
SELECT run_id, convention,
       not_meaningful('incoming attention per research-script token index (their 6x6 matrix is shifted by one), not per Tj') AS note
FROM int_legacy_attention;
