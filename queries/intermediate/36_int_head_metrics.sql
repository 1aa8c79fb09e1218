-- Intermediate: per run, layer and head: flow, hub, skip and self scores, the composite, functional type and rank (head_metrics' numbers).
-- Codi runs only (int_flow and int_head_incoming leave legacy runs out). flow = mean A[Ti -> Ti-1]
-- (i = 1..5); hub = variance over T0..T4 of the per-later-thought incoming attention
-- (int_head_incoming.incoming_norm); skip = mean A[T5 -> T0..T2]; self_attn = mean A[Ti -> Ti]. *_scaled:
-- min-max over the run's heads (0 when every head is equal). composite = 0.4 flow + 0.4 hub + 0.2 skip,
-- scaled. functional_type: 'Multi-Purpose' when the top two scaled scores both exceed 0.7, else the top one
-- ('Sequential', 'Hub', 'Skip'; ties in that order). rank 1 = highest composite in the run. head_metrics
-- shows these rows (with legacy runs' placeholder rows); head_effects joins them to the heads family's
-- causal effects (marts read intermediates, never each other).
CREATE OR REPLACE VIEW int_head_metrics AS
WITH pairs AS (
    SELECT
        run_id,
        layer,
        head,
        avg(mean_weight) FILTER (WHERE dst BETWEEN 1 AND 5 AND src = dst - 1) AS flow,
        avg(mean_weight) FILTER (WHERE dst = 5 AND src BETWEEN 0 AND 2) AS skip,
        avg(mean_weight) FILTER (WHERE dst BETWEEN 0 AND 5 AND src = dst) AS self_attn
    FROM int_flow
    GROUP BY run_id, layer, head
),
hub AS (
    SELECT run_id, layer, head, var_pop(incoming_norm) AS hub
    FROM int_head_incoming
    GROUP BY run_id, layer, head
),
scores AS (
    SELECT * FROM pairs JOIN hub USING (run_id, layer, head)
),
scaled AS (
    SELECT
        *,
        coalesce((flow - min(flow) OVER run) / nullif(max(flow) OVER run - min(flow) OVER run, 0), 0) AS flow_scaled,
        coalesce((hub - min(hub) OVER run) / nullif(max(hub) OVER run - min(hub) OVER run, 0), 0) AS hub_scaled,
        coalesce((skip - min(skip) OVER run) / nullif(max(skip) OVER run - min(skip) OVER run, 0), 0) AS skip_scaled
    FROM scores
    WINDOW run AS (PARTITION BY run_id)
),
typed AS (
    SELECT
        *,
        0.4 * flow_scaled + 0.4 * hub_scaled + 0.2 * skip_scaled AS composite,
        CASE
            WHEN (flow_scaled > 0.7)::INTEGER + (hub_scaled > 0.7)::INTEGER + (skip_scaled > 0.7)::INTEGER >= 2
                THEN 'Multi-Purpose'
            WHEN flow_scaled >= hub_scaled AND flow_scaled >= skip_scaled THEN 'Sequential'
            WHEN hub_scaled >= skip_scaled THEN 'Hub'
            ELSE 'Skip'
        END AS functional_type
    FROM scaled
)
SELECT
    run_id,
    layer,
    head,
    flow,
    hub,
    skip,
    self_attn,
    flow_scaled,
    hub_scaled,
    skip_scaled,
    composite,
    functional_type,
    rank() OVER (PARTITION BY run_id ORDER BY composite DESC) AS rank
FROM typed;
