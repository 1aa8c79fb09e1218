-- Per run and probe (target, step, position, layer) of the run's current probe set: the out-of-fold score beside chance, the shuffled-label baseline and the Holm-adjusted p-value.
-- Only each run's newest probe_set (stg_probe_results). lift = score - chance (chance: the majority class's
-- accuracy, or R^2 0); shuffled / shuffled_high: the mean and 95th percentile of the same probe on shuffled
-- labels; p_value: the permutation p (floor 1/(1 + permutations)); p_analytic: the analytic one-sided p; p_holm:
-- p_analytic Holm-adjusted over all n_tests probes of the set; above_chance: p_holm < 0.05 and score > shuffled_high.
-- The score's ci is over problems; a probe can be above chance and still far from useful: look at lift.
CREATE OR REPLACE VIEW probe_summary AS
SELECT * FROM int_probe_tests;
