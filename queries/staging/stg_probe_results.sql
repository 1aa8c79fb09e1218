-- Staging: each run's current linear probes (the probe_set created last), of complete and running runs only.
-- A run can hold several probe sets (one per set of probe settings); only the newest (max created_at; the
-- larger probe_set id on a tie) is kept, so every probe view reads one set per run. target: value (ridge, r2),
-- operation (logistic, accuracy) or n_steps (step NULL); score is out of fold (folds grouped by problem);
-- p_value is the permutation test's, unadjusted (int_probe_tests adds Holm's adjustment).
CREATE OR REPLACE VIEW stg_probe_results AS
WITH sets AS (
    SELECT run_id, probe_set, max(created_at) AS created_at
    FROM probe_results
    GROUP BY run_id, probe_set
),
newest AS (
    SELECT run_id, probe_set
    FROM sets
    QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY created_at DESC NULLS LAST, probe_set DESC) = 1
)
SELECT
    p.run_id,
    p.probe_set,
    p.target,
    p.step,
    p.position,
    p.layer,
    p.estimator,
    p.metric,
    p.score,
    p.ci_low,
    p.ci_high,
    p.chance,
    p.shuffled,
    p.shuffled_high,
    p.p_value,
    p.p_analytic,
    p.n,
    p.n_classes,
    p.folds,
    p.permutations,
    p.settings,
    p.created_at
FROM probe_results p
JOIN newest USING (run_id, probe_set)
WHERE p.run_id IN (SELECT run_id FROM runs WHERE status IN ('complete', 'running'));
