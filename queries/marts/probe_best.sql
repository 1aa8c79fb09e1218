-- Per run, probe target and step: the probe (position, layer) of the current probe set with the highest score, with its chance, shuffled baseline, interval and Holm-adjusted p-value.
-- Ties on score go to the lower layer, then the lower position. The best of many probes is chosen after
-- seeing the scores, so its score is optimistic; p_holm is adjusted over every probe of the set (not only
-- this one), which accounts for that choice. step is NULL for the n_steps target.
CREATE OR REPLACE VIEW probe_best AS
SELECT
    p.run_id,
    p.probe_set,
    p.target,
    p.step,
    p.position,
    pos.name AS position_name,
    p.layer,
    p.estimator,
    p.metric,
    p.score,
    p.ci_low,
    p.ci_high,
    p.chance,
    p.lift,
    p.shuffled,
    p.shuffled_high,
    p.p_value,
    p.p_analytic,
    p.p_holm,
    p.above_chance,
    p.n
FROM int_probe_tests p
LEFT JOIN positions pos ON pos.code = p.position
QUALIFY row_number() OVER (
    PARTITION BY p.run_id, p.target, p.step ORDER BY p.score DESC NULLS LAST, p.layer, p.position
) = 1;
