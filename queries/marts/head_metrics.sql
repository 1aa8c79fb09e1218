-- Per run, layer and head: previous-thought flow, hub, skip and self scores, composite, functional type and rank.
-- flow = mean A[Ti -> Ti-1] (i = 1..5); hub = variance over T0..T4 of the per-later-thought incoming
-- attention (int_head_incoming.incoming_norm); skip = mean A[T5 -> T0..T2]; self_attn = mean A[Ti -> Ti].
-- *_scaled: min-max over the run's heads (0 when every head is equal). composite = 0.4 flow + 0.4 hub +
-- 0.2 skip, scaled. functional_type: 'Multi-Purpose' when the top two scaled scores both exceed 0.7, else
-- the top one ('Sequential', 'Hub', 'Skip'; ties in that order). rank 1 = highest composite in the run.
-- `note` is NULL. Legacy runs: not meaningful (on their shifted 6x6 matrix the flow score measured
-- self-attention; head -1 is a mean over heads, not a head); a legacy run with attention is one row, every
-- metric NULL, with a note. The numbers are int_head_metrics' (which head_effects joins too).
CREATE OR REPLACE VIEW head_metrics AS
SELECT
    t.run_id,
    r.convention,
    t.layer,
    t.head,
    t.flow,
    t.hub,
    t.skip,
    t.self_attn,
    t.flow_scaled,
    t.hub_scaled,
    t.skip_scaled,
    t.composite,
    t.functional_type,
    t.rank,
    NULL::VARCHAR AS note
FROM int_head_metrics t
LEFT JOIN stg_runs r USING (run_id)
UNION ALL BY NAME
SELECT run_id, convention,
       not_meaningful('flow, hub, skip and self need our positions (on their shifted 6x6 matrix flow is self-attention)') AS note
FROM int_legacy_attention;
