-- Per run, patch layer, thought and method (and sigma): failure rate among baseline-correct problems, the heatmap's cells.
-- Legacy runs keep their rows: failure rates per the research scripts' token index stay meaningful, but
-- that index is not Tk, so thought_name is 'token k' (not Tk) and `note` says so (NULL for codi runs).
CREATE OR REPLACE VIEW importance_matrix AS
WITH c AS (
    SELECT
        run_id,
        patch_layer,
        thought,
        method,
        sigma,
        condition,
        count(*) FILTER (WHERE base_correct) AS n,
        count(*) FILTER (WHERE base_correct AND failed) AS failures,
        count(*) AS n_all,
        avg(kl_answer) AS mean_kl,
        avg(logp_drop) AS mean_logp_drop
    FROM int_outcomes
    WHERE NOT is_baseline
    GROUP BY run_id, patch_layer, thought, method, sigma, condition
)
SELECT
    c.run_id,
    r.convention,
    c.patch_layer,
    c.thought,
    position_label(r.convention, c.thought, pos.name) AS thought_name,
    c.method,
    c.sigma,
    c.condition,
    c.n,
    c.failures,
    c.failures / nullif(c.n, 0) AS failure_rate,
    wilson_low(c.failures, c.n) AS ci_low,
    wilson_high(c.failures, c.n) AS ci_high,
    c.n_all,
    c.mean_kl,
    c.mean_logp_drop,
    legacy_note(r.convention) AS note
FROM c
LEFT JOIN stg_runs r USING (run_id)
LEFT JOIN positions pos ON pos.code = c.thought;
