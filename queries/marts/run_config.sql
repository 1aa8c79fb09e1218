-- One row per run: the settings that decide what its numbers mean (model, weights, dataset, patch layers, methods, gauss sigmas and noise scale, seeds, attention capture).
-- As int_run_config: sigmas and noise_scale only for runs with `gauss` (NULL otherwise); a legacy run's
-- noise scale is 'absolute'; problem_seed and attention NULL where the run's config has none. `note` as
-- in model_comparison (NULL for codi runs). The report's lineage table reads it.
CREATE OR REPLACE VIEW run_config AS
SELECT *, legacy_note(convention) AS note
FROM int_run_config;
