-- Per run, patch layer, thought, site and method (and sigma): failure rate when the attention output (attn), the MLP output (mlp) or, for reference, the whole block output (block) of the patch layer is corrupted at that thought.
-- attn and mlp rows are the `components` family's; block rows are the classic `thoughts` rows at the same
-- run, patch layer, thought, method and sigma, shown only where the run has component rows for them.
-- Failure rate among baseline-correct problems with its 95% Wilson interval (as importance_matrix);
-- mean_logp_drop and mean_kl (KL at the answer number) average every row (n_all), whatever the baseline.
-- component_comparison puts attn and mlp side by side on the problems both have.
CREATE OR REPLACE VIEW component_importance AS
WITH keys AS (
    SELECT DISTINCT run_id, patch_layer, thought, method, sigma
    FROM int_intervention_outcomes
    WHERE family = 'components'
),
o AS (
    SELECT o.*
    FROM int_intervention_outcomes o
    WHERE o.family = 'components'
    UNION ALL
    SELECT o.*
    FROM int_intervention_outcomes o
    SEMI JOIN keys k
        ON k.run_id = o.run_id AND k.patch_layer = o.patch_layer AND k.thought = o.thought
        AND k.method = o.method AND k.sigma IS NOT DISTINCT FROM o.sigma
    WHERE o.family = 'thoughts'
),
c AS (
    SELECT
        run_id,
        patch_layer,
        thought,
        site,
        method,
        sigma,
        condition,
        count(*) FILTER (WHERE base_correct) AS n,
        count(*) FILTER (WHERE base_correct AND failed) AS failures,
        count(*) AS n_all,
        avg(logp_drop) AS mean_logp_drop,
        avg(kl_answer) AS mean_kl
    FROM o
    GROUP BY ALL
)
SELECT
    c.run_id,
    u.convention,
    c.patch_layer,
    c.thought,
    'T' || c.thought::VARCHAR AS thought_name,
    c.site,
    CASE c.site WHEN 'attn' THEN 1 WHEN 'mlp' THEN 2 WHEN 'block' THEN 3 END AS site_rank,
    c.method,
    c.sigma,
    c.condition,
    c.n,
    c.failures,
    c.failures / nullif(c.n, 0) AS failure_rate,
    wilson_low(c.failures, c.n) AS ci_low,
    wilson_high(c.failures, c.n) AS ci_high,
    c.n_all,
    c.mean_logp_drop,
    c.mean_kl,
    legacy_note(u.convention) AS note
FROM c
LEFT JOIN stg_runs u USING (run_id);
