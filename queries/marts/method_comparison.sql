-- Per run, patch layer, method and sigma: failure rate among baseline-correct problems (Wilson 95%), mean KL, JS and
-- entropy change at the answer number, and disruption (mean_kl_first / mean_js_first: at EOT, the template token).
-- All thoughts pooled. Failure counts use baseline-correct trials (n); the means use every row (n_all).
-- Legacy runs keep their rows (their corruptions, pooled over the research scripts' token indices, which
-- are not T0..T5); `note` says so (NULL for codi runs).
CREATE OR REPLACE VIEW method_comparison AS
WITH m AS (
    SELECT
        run_id,
        patch_layer,
        method,
        sigma,
        condition,
        count(DISTINCT problem_id) FILTER (WHERE base_correct) AS problems,
        count(*) FILTER (WHERE base_correct) AS n,
        count(*) FILTER (WHERE base_correct AND failed) AS failures,
        count(*) AS n_all,
        avg(kl_answer) AS mean_kl,
        avg(js_answer) AS mean_js,
        avg(entropy_change) AS mean_entropy_change,
        avg(kl_first) AS mean_kl_first,
        avg(js_first) AS mean_js_first,
        avg(logp_drop) AS mean_logp_drop,
        avg(disruption) AS mean_disruption
    FROM int_outcomes
    WHERE NOT is_baseline
    GROUP BY run_id, patch_layer, method, sigma, condition
)
SELECT
    m.run_id,
    r.model_name,
    r.convention,
    m.patch_layer,
    m.method,
    m.sigma,
    m.condition,
    m.problems,
    m.n,
    m.failures,
    m.failures / nullif(m.n, 0) AS failure_rate,
    wilson_low(m.failures, m.n) AS ci_low,
    wilson_high(m.failures, m.n) AS ci_high,
    m.n_all,
    m.mean_kl,
    m.mean_js,
    m.mean_entropy_change,
    m.mean_kl_first,
    m.mean_js_first,
    m.mean_logp_drop,
    m.mean_disruption,
    legacy_note(r.convention) AS note
FROM m
LEFT JOIN stg_runs r USING (run_id);
