-- Per run, ablated head, method and step scope (heads family): failure rate among baseline-correct problems (Wilson 95%), mean log p(gold) drop, and the head's descriptive composite and rank.
-- One head's slice of the input to the attention output projection zeroed ('zero') or set to its
-- donor-pool mean ('mean'; 'clean' is the control that writes the clean value back) at the thought steps
-- `steps` ('all' = T0..T5, else the one step, also in `thought`). n: baseline-correct problems; failures
-- and failure_rate among them (as token_importance: failed = the answer flipped). n_all: problems with a
-- baseline; mean_logp_drop: the baseline's logp_gold minus the condition's, averaged over those n_all
-- problems; mean_kl: KL at the answer number. composite, composite_rank (1 = highest in the run),
-- functional_type, flow, hub, skip: the head's descriptive metrics from attention (head_metrics' numbers,
-- int_head_metrics), NULL when the run captured no baseline attention. The heads ablated together (top-k)
-- are head_topk_effects.
CREATE OR REPLACE VIEW head_effects AS
WITH e AS (
    SELECT
        run_id,
        layer,
        head,
        method,
        steps,
        any_value(thought) AS thought,
        count(*) FILTER (WHERE base_correct) AS n,
        count(*) FILTER (WHERE base_correct AND failed) AS failures,
        count(*) FILTER (WHERE base_correct IS NOT NULL) AS n_all,
        avg(logp_drop) AS mean_logp_drop,
        avg(kl_answer) AS mean_kl
    FROM int_family_outcomes
    WHERE family = 'heads' AND head IS NOT NULL
    GROUP BY run_id, layer, head, method, steps
)
SELECT
    e.run_id,
    e.layer,
    e.head,
    'L' || e.layer || 'H' || e.head AS head_label,
    e.method,
    e.steps,
    e.thought,
    e.n,
    e.failures,
    e.failures / nullif(e.n, 0) AS failure_rate,
    wilson_low(e.failures, e.n) AS ci_low,
    wilson_high(e.failures, e.n) AS ci_high,
    e.n_all,
    e.mean_logp_drop,
    e.mean_kl,
    m.composite,
    m.rank AS composite_rank,
    m.functional_type,
    m.flow,
    m.hub,
    m.skip
FROM e
LEFT JOIN int_head_metrics m USING (run_id, layer, head);
