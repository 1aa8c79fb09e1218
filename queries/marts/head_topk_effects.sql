-- Per run, method and step scope: the heads ablated together (heads family, the top-k condition): failure rate among baseline-correct problems (Wilson 95%), mean log p(gold) drop, and the set's descriptive ranks.
-- The condition's rows have layer and head NULL; `parts` lists its k heads (heads: 'L0H1,L1H0', in
-- (layer, head) order). n, failures, failure_rate, n_all, mean_logp_drop, mean_kl as head_effects.
-- mean_composite: the heads' mean descriptive composite (int_head_metrics); worst_rank: the largest
-- composite rank among them; top_ranked: true when the set is the run's k top-ranked heads (every one
-- ranked <= k), NULL without baseline attention.
CREATE OR REPLACE VIEW head_topk_effects AS
WITH e AS (
    SELECT
        run_id,
        part_heads,
        method,
        steps,
        any_value(k) AS k,
        any_value(parts) AS parts,
        count(*) FILTER (WHERE base_correct) AS n,
        count(*) FILTER (WHERE base_correct AND failed) AS failures,
        count(*) FILTER (WHERE base_correct IS NOT NULL) AS n_all,
        avg(logp_drop) AS mean_logp_drop,
        avg(kl_answer) AS mean_kl
    FROM int_family_outcomes
    WHERE family = 'heads' AND head IS NULL
    GROUP BY run_id, part_heads, method, steps
),
members AS (
    SELECT DISTINCT e.run_id, e.part_heads, (p->>'layer')::INTEGER AS layer, (p->>'head')::INTEGER AS head
    FROM e, unnest(json_extract(e.parts, '$[*]')) AS u(p)
),
ranked AS (
    SELECT
        m.run_id,
        m.part_heads,
        avg(h.composite) AS mean_composite,
        max(h.rank) AS worst_rank,
        count(h.rank) AS ranked_heads
    FROM members m
    LEFT JOIN int_head_metrics h USING (run_id, layer, head)
    GROUP BY m.run_id, m.part_heads
)
SELECT
    e.run_id,
    e.k,
    e.part_heads AS heads,
    e.method,
    e.steps,
    e.n,
    e.failures,
    e.failures / nullif(e.n, 0) AS failure_rate,
    wilson_low(e.failures, e.n) AS ci_low,
    wilson_high(e.failures, e.n) AS ci_high,
    e.n_all,
    e.mean_logp_drop,
    e.mean_kl,
    r.mean_composite,
    r.worst_rank,
    CASE WHEN r.ranked_heads > 0 THEN r.ranked_heads = e.k AND r.worst_rank <= e.k END AS top_ranked
FROM e
LEFT JOIN ranked r USING (run_id, part_heads);
