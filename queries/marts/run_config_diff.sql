-- One row per ordered pair of distinct runs and setting: both runs' values (JSON), whether they are the same, and a warning when the difference changes what paired conditions mean.
-- Settings, in `position` order: model, weights_sha256, dataset, dataset_hash, patch_layers, methods,
-- sigmas, noise_scale, seed, problem_seed, attention (as int_run_config: sigmas and noise_scale NULL for a
-- run without gauss). value_a / value_b are JSON (NULL: not known or not applicable); same compares them,
-- NULL equal to NULL. `warning` is set on two settings only, and only when both values are known:
-- weights_sha256 (other weights: each condition corrupts another network) and noise_scale (both runs ran
-- gauss, one absolute and one rms: a sigma means other noise). Other differences, the seed among them
-- (the ordinary seed comparison), carry no warning; conventions have run_pairs' `note`.
CREATE OR REPLACE VIEW run_config_diff AS
WITH settings AS (
    SELECT
        run_id,
        unnest([
            {'position': 1, 'setting': 'model', 'value': to_json(model_name)},
            {'position': 2, 'setting': 'weights_sha256', 'value': to_json(weights_sha256)},
            {'position': 3, 'setting': 'dataset', 'value': to_json(dataset_name)},
            {'position': 4, 'setting': 'dataset_hash', 'value': to_json(dataset_hash)},
            {'position': 5, 'setting': 'patch_layers', 'value': to_json(patch_layers)},
            {'position': 6, 'setting': 'methods', 'value': to_json(methods)},
            {'position': 7, 'setting': 'sigmas', 'value': to_json(sigmas)},
            {'position': 8, 'setting': 'noise_scale', 'value': to_json(noise_scale)},
            {'position': 9, 'setting': 'seed', 'value': to_json(seed)},
            {'position': 10, 'setting': 'problem_seed', 'value': to_json(problem_seed)},
            {'position': 11, 'setting': 'attention', 'value': to_json(attention)}
        ], recursive := true)
    FROM int_run_config
)
SELECT
    a.run_id AS run_a,
    b.run_id AS run_b,
    a.position,
    a.setting,
    a.value AS value_a,
    b.value AS value_b,
    a.value IS NOT DISTINCT FROM b.value AS same,
    CASE WHEN a.value IS NULL OR b.value IS NULL OR a.value = b.value THEN NULL
         WHEN a.setting = 'weights_sha256'
             THEN 'different weights (weights_sha256 A ' || left(a.value->>'$', 12) || ', B ' || left(b.value->>'$', 12)
                  || '): another model or checkpoint; each paired condition corrupts another network'
         WHEN a.setting = 'noise_scale'
             THEN 'noise scale differs (A ' || (a.value->>'$') || ', B ' || (b.value->>'$')
                  || '): the same gauss sigma is different noise in the two runs (rms: sigma x RMS of h)'
    END AS warning
FROM settings a
JOIN settings b ON a.run_id <> b.run_id AND a.setting = b.setting;
