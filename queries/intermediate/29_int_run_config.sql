-- Intermediate: one row per run, the settings that decide what its numbers mean (model, weights, dataset, patch layers, corruptions, seeds, attention capture).
-- The gauss settings belong to gauss only: sigmas and noise_scale are NULL for a run without `gauss` (the
-- engine stores its default sigmas and noise scale either way). A legacy run's gauss noise was absolute
-- (ingest/legacy.py: gauss_S -> sigma S, absolute), so noise_scale is 'absolute' there; a codi run's is
-- its config's (NULL when the config lacks it: a hand-written run). methods and sigmas are sorted, so
-- 'zero,gauss' and 'gauss,zero' read as one setting. problem_seed and attention: the config's, NULL for
-- legacy runs and runs that did not store them.
CREATE OR REPLACE VIEW int_run_config AS
WITH r AS (
    SELECT *, coalesce(list_contains(methods, 'gauss'), false) AS ran_gauss FROM stg_runs
)
SELECT
    run_id,
    convention,
    model_name,
    weights_sha256,
    dataset_name,
    dataset_hash,
    patch_layers,
    list_sort(methods) AS methods,
    CASE WHEN ran_gauss THEN list_sort(sigmas) END AS sigmas,
    CASE WHEN ran_gauss AND convention = 'legacy' THEN coalesce(noise_scale, 'absolute')
         WHEN ran_gauss THEN noise_scale END AS noise_scale,
    seed,
    problem_seed,
    attention
FROM r;
