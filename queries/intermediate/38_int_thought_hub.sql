-- Intermediate: per run and thought T0..T5: its incoming_norm (heads and layers averaged, as hub_scores), the run's descriptive hub, and whether this thought is it.
-- incoming_norm of Tj is hub_scores': the mean over every layer and head of int_head_incoming.incoming_norm
-- (the mean attention Tj receives from each later thought; NULL for T5, which has none). The run's hub
-- (hub_thought) is the thought T0..T4 with the highest incoming_norm: the max in hub_scores' hub_ratio
-- (max / mean over T0..T4), the thought `stats` tests against "no hub" (analysis/hubs.py). Ties: the earlier
-- thought. Codi runs with baseline attention only; edge_knockout joins it to the causal knockouts.
CREATE OR REPLACE VIEW int_thought_hub AS
WITH incoming AS (
    SELECT run_id, position AS thought, avg(incoming_norm) AS incoming_norm
    FROM int_head_incoming
    WHERE position BETWEEN 0 AND 5
    GROUP BY run_id, position
),
hub AS (
    SELECT run_id, arg_max(thought, incoming_norm) AS hub_thought
    FROM (
        SELECT * FROM incoming
        WHERE thought BETWEEN 0 AND 4 AND incoming_norm IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY incoming_norm DESC, thought) = 1
    )
    GROUP BY run_id
)
SELECT
    i.run_id,
    i.thought,
    i.incoming_norm,
    h.hub_thought,
    i.thought = h.hub_thought AS is_hub
FROM incoming i
LEFT JOIN hub h USING (run_id);
