-- Intermediate: each run's current probes (stg_probe_results) with the analytic p-value Holm-adjusted over all the probes of the set (p_holm), above_chance and lift (score - chance).
-- Which p: p_analytic (accuracy: exact binomial test of the out-of-fold hits against chance; R^2: Pearson r of
-- the out-of-fold predictions with the labels, one-sided), because the permutation p-value (p_value) cannot
-- fall below 1 / (1 + permutations) and Holm over hundreds of probes needs far smaller p. The permutation test
-- guards the analytic one: above_chance needs p_holm < 0.05 AND a score above the 95th percentile of the
-- shuffled-label scores (shuffled_high), so a probe that fits shuffled labels as well as the real ones never
-- counts. Holm within (run, probe_set) over the m probes with a p-value: sort p ascending (p_1 <= .. <= p_m),
-- p_holm_i = min(1, max over j <= i of (m - j + 1) p_j) (what statsmodels' multipletests(method='holm')
-- gives); a probe without a p-value has p_holm NULL and is not counted in m. Holm controls the family-wise
-- error over every target, step, position and layer fitted, so it is conservative for a large grid.
CREATE OR REPLACE VIEW int_probe_tests AS
WITH ranked AS (
    SELECT
        *,
        row_number() OVER (PARTITION BY run_id, probe_set ORDER BY p_analytic NULLS LAST) AS j,
        count(p_analytic) OVER (PARTITION BY run_id, probe_set) AS m
    FROM stg_probe_results
),
adjusted AS (
    SELECT
        *,
        CASE WHEN p_analytic IS NOT NULL THEN least(1.0, max((m - j + 1) * p_analytic) OVER (
            PARTITION BY run_id, probe_set ORDER BY j ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        )) END AS p_holm
    FROM ranked
)
SELECT
    run_id,
    probe_set,
    target,
    step,
    position,
    pos.name AS position_name,
    layer,
    estimator,
    metric,
    score,
    ci_low,
    ci_high,
    chance,
    score - chance AS lift,
    shuffled,
    shuffled_high,
    p_value,
    p_analytic,
    p_holm,
    p_holm < 0.05 AND (shuffled_high IS NULL OR score > shuffled_high) AS above_chance,
    m AS n_tests,
    n,
    n_classes,
    folds,
    permutations,
    settings,
    created_at
FROM adjusted
LEFT JOIN positions pos ON pos.code = adjusted.position;
