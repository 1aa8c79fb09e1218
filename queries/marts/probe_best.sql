-- Per run, probe target and step: the probe (position, layer) of the current probe set with the highest score, with its chance, shuffled baseline, interval and Holm-adjusted p-value.
-- Ties on score go to the lower layer, then the lower position. The best of many probes is chosen after
-- seeing the scores, so its score is optimistic; p_holm is adjusted over every probe of the set (not only
-- this one), which accounts for that choice. step is NULL for the n_steps target.
CREATE OR REPLACE VIEW probe_best AS
SELECT * EXCLUDE (n_tests, n_classes, folds, permutations, settings, created_at)
FROM int_probe_tests
QUALIFY row_number() OVER (
    PARTITION BY run_id, target, step ORDER BY score DESC NULLS LAST, layer, position
) = 1;
