-- Per run and thought Tj: attention it receives from thoughts (heads and layers averaged), raw and per later thought; hub ratio.
-- incoming_raw: the research definition, the column sum of the 6x6 matrix (self included), biased towards
-- early thoughts. incoming_norm: mean attention from each later thought Ti (i > j, self excluded); NULL for T5.
-- hub_ratio = max / mean of incoming_norm over T0..T4 (1 = no hub); hub_ratio_raw is the same on the raw sums.
-- `note` is NULL. Legacy runs: not meaningful (their 6x6 matrix is shifted by one); a legacy run with
-- attention is one row, every metric NULL, with a note.
CREATE OR REPLACE VIEW hub_scores AS
WITH h AS (
    SELECT run_id, position, avg(incoming_raw) AS incoming_raw, avg(incoming_norm) AS incoming_norm,
           max(later_thoughts) AS later_thoughts, count(*) AS heads
    FROM int_head_incoming
    GROUP BY run_id, position
)
SELECT
    h.run_id,
    r.convention,
    h.position,
    pos.name AS position_name,
    h.later_thoughts,
    h.incoming_raw,
    h.incoming_norm,
    max(h.incoming_norm) OVER run / avg(h.incoming_norm) OVER run AS hub_ratio,
    max(h.incoming_raw) OVER run / avg(h.incoming_raw) OVER run AS hub_ratio_raw,
    h.heads,
    NULL::VARCHAR AS note
FROM h
LEFT JOIN stg_runs r USING (run_id)
LEFT JOIN positions pos ON pos.code = h.position
WINDOW run AS (PARTITION BY h.run_id)
UNION ALL BY NAME
SELECT run_id, convention,
       not_meaningful('incoming attention per research-script token index (their 6x6 matrix is shifted by one), not per Tj') AS note
FROM int_legacy_attention;
