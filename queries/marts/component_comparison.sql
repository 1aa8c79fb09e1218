-- Per run, patch layer, thought and method (and sigma): the attention output against the MLP output on the same baseline-correct problems: both failure rates, the block's, their difference and the paired 2 x 2 counts.
-- Problems: baseline-correct with both an attn and an mlp row (int_component_problems.paired). both,
-- attn_only, mlp_only, neither: how many of them fail under both corruptions, under attn only, under mlp
-- only, under neither (the table of McNemar's test, which `stats` computes exactly). difference =
-- failure_rate_attn - failure_rate_mlp. failure_rate_block is the classic row's over those of the same
-- problems that have one (n_block). Log p drops and KL average every paired problem, whatever its baseline.
CREATE OR REPLACE VIEW component_comparison AS
WITH c AS (
    SELECT
        run_id,
        patch_layer,
        thought,
        method,
        sigma,
        condition,
        count(*) FILTER (WHERE base_correct AND paired) AS n,
        count(*) FILTER (WHERE base_correct AND paired AND failed_attn AND failed_mlp) AS both,
        count(*) FILTER (WHERE base_correct AND paired AND failed_attn AND NOT failed_mlp) AS attn_only,
        count(*) FILTER (WHERE base_correct AND paired AND NOT failed_attn AND failed_mlp) AS mlp_only,
        count(*) FILTER (WHERE base_correct AND paired AND NOT failed_attn AND NOT failed_mlp) AS neither,
        count(*) FILTER (WHERE base_correct AND paired AND failed_attn) AS failures_attn,
        count(*) FILTER (WHERE base_correct AND paired AND failed_mlp) AS failures_mlp,
        count(*) FILTER (WHERE base_correct AND paired AND failed_block IS NOT NULL) AS n_block,
        count(*) FILTER (WHERE base_correct AND paired AND failed_block) AS failures_block,
        avg(logp_drop_attn) FILTER (WHERE paired) AS mean_logp_drop_attn,
        avg(logp_drop_mlp) FILTER (WHERE paired) AS mean_logp_drop_mlp,
        avg(kl_attn) FILTER (WHERE paired) AS mean_kl_attn,
        avg(kl_mlp) FILTER (WHERE paired) AS mean_kl_mlp
    FROM int_component_problems
    GROUP BY ALL
)
SELECT
    c.run_id,
    u.convention,
    c.patch_layer,
    c.thought,
    'T' || c.thought::VARCHAR AS thought_name,
    c.method,
    c.sigma,
    c.condition,
    c.n,
    c.failures_attn,
    c.failures_attn / nullif(c.n, 0) AS failure_rate_attn,
    c.failures_mlp,
    c.failures_mlp / nullif(c.n, 0) AS failure_rate_mlp,
    c.failures_attn / nullif(c.n, 0) - c.failures_mlp / nullif(c.n, 0) AS difference,
    c.both,
    c.attn_only,
    c.mlp_only,
    c.neither,
    c.n_block,
    c.failures_block,
    c.failures_block / nullif(c.n_block, 0) AS failure_rate_block,
    c.mean_logp_drop_attn,
    c.mean_logp_drop_mlp,
    c.mean_kl_attn,
    c.mean_kl_mlp,
    legacy_note(u.convention) AS note
FROM c
LEFT JOIN stg_runs u USING (run_id);
