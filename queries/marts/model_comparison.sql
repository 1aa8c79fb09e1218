-- One row per run, side by side: model, weights, convention, patch layers, problems, baseline accuracy, failure rate by thought.
-- Failure rates are among baseline-correct trials, every corruption but the `clean` control pooled
-- (as token_importance); mean_kl is KL at the answer number over every corrupted row.
-- Legacy runs keep their row: failure_rate_t0..t5 are then per research-script token 0..5 (not T0..T5),
-- which `note` says (NULL for codi runs).
CREATE OR REPLACE VIEW model_comparison AS
WITH base AS (
    SELECT run_id, count(*) AS problems, avg(base_correct::INTEGER) AS baseline_accuracy
    FROM int_outcomes
    WHERE is_baseline
    GROUP BY run_id
),
cond AS (
    SELECT
        run_id,
        count(*) FILTER (WHERE base_correct) AS n,
        count(*) FILTER (WHERE base_correct AND failed) AS failures,
        count(*) FILTER (WHERE base_correct AND failed AND thought = 0) / nullif(count(*) FILTER (WHERE base_correct AND thought = 0), 0) AS failure_rate_t0,
        count(*) FILTER (WHERE base_correct AND failed AND thought = 1) / nullif(count(*) FILTER (WHERE base_correct AND thought = 1), 0) AS failure_rate_t1,
        count(*) FILTER (WHERE base_correct AND failed AND thought = 2) / nullif(count(*) FILTER (WHERE base_correct AND thought = 2), 0) AS failure_rate_t2,
        count(*) FILTER (WHERE base_correct AND failed AND thought = 3) / nullif(count(*) FILTER (WHERE base_correct AND thought = 3), 0) AS failure_rate_t3,
        count(*) FILTER (WHERE base_correct AND failed AND thought = 4) / nullif(count(*) FILTER (WHERE base_correct AND thought = 4), 0) AS failure_rate_t4,
        count(*) FILTER (WHERE base_correct AND failed AND thought = 5) / nullif(count(*) FILTER (WHERE base_correct AND thought = 5), 0) AS failure_rate_t5,
        avg(kl_answer) AS mean_kl,
        avg(logp_drop) AS mean_logp_drop
    FROM int_outcomes
    WHERE NOT is_baseline AND method <> 'clean'
    GROUP BY run_id
)
SELECT
    r.run_id,
    r.model_name,
    r.weights_sha256,
    r.convention,
    r.status,
    r.dataset_name,
    r.n_layers,
    r.n_heads,
    r.patch_layers,
    base.problems,
    base.baseline_accuracy,
    cond.n,
    cond.failures,
    cond.failures / nullif(cond.n, 0) AS failure_rate,
    wilson_low(cond.failures, cond.n) AS ci_low,
    wilson_high(cond.failures, cond.n) AS ci_high,
    cond.failure_rate_t0,
    cond.failure_rate_t1,
    cond.failure_rate_t2,
    cond.failure_rate_t3,
    cond.failure_rate_t4,
    cond.failure_rate_t5,
    cond.mean_kl,
    cond.mean_logp_drop,
    r.started_at,
    legacy_note(r.convention) AS note
FROM stg_runs r
LEFT JOIN base USING (run_id)
LEFT JOIN cond USING (run_id);
