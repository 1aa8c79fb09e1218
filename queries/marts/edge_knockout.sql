-- Per run, layer scope and key thought Tj (edges family): failure rate among baseline-correct problems when attention from later thoughts and EOT to Tj is removed (Wilson 95%), mean log p(gold) drop, and whether Tj is the run's descriptive hub.
-- layer: the layer whose attention is cut, NULL = every layer (layers 'all'); method 'knockout', or
-- 'clean' (a control that knocks out nothing). n, failures, failure_rate, n_all, mean_logp_drop, mean_kl as
-- head_effects. The descriptive hub (int_thought_hub) is the thought T0..T4 that later thoughts attend to
-- most: the highest incoming_norm of hub_scores (heads and layers averaged; ties: the earlier thought), the
-- max in its hub_ratio and the thought `stats` tests against "no hub". incoming_norm is Tj's own;
-- hub_thought the run's hub; is_hub whether Tj is it (NULL when the run captured no baseline attention).
-- The per-problem rows, for paired tests of the hub against the other thoughts: edge_knockout_problems.
CREATE OR REPLACE VIEW edge_knockout AS
WITH e AS (
    SELECT
        run_id,
        layer,
        thought,
        method,
        count(*) FILTER (WHERE base_correct) AS n,
        count(*) FILTER (WHERE base_correct AND failed) AS failures,
        count(*) FILTER (WHERE base_correct IS NOT NULL) AS n_all,
        avg(logp_drop) AS mean_logp_drop,
        avg(kl_answer) AS mean_kl
    FROM int_family_outcomes
    WHERE family = 'edges'
    GROUP BY run_id, layer, thought, method
)
SELECT
    e.run_id,
    e.layer,
    coalesce('L' || e.layer, 'all') AS layers,
    e.thought,
    'T' || e.thought AS thought_name,
    e.method,
    e.n,
    e.failures,
    e.failures / nullif(e.n, 0) AS failure_rate,
    wilson_low(e.failures, e.n) AS ci_low,
    wilson_high(e.failures, e.n) AS ci_high,
    e.n_all,
    e.mean_logp_drop,
    e.mean_kl,
    h.incoming_norm,
    h.hub_thought,
    h.is_hub
FROM e
LEFT JOIN int_thought_hub h USING (run_id, thought);
