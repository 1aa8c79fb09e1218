-- Staging: runs with the columns analysis needs (model, weights, dataset, convention, patch layers, and settings read from the config).
-- problem_seed, noise_scale and attention exist only in the run's stored config (engine/runs/plan.py puts
-- every RunConfig field there): NULL when the config has no such key (legacy imports, hand-written runs;
-- problem_seed also for runs begun before --problem-seed existed).
CREATE OR REPLACE VIEW stg_runs AS
SELECT
    run_id,
    name,                             -- labels a person gave the run (schema 4): name, tags (JSON), note
    tags,
    note,
    status,
    model_name,
    weights_sha256,
    convention,                       -- 'codi' (our positions) or 'legacy' (research scripts: token k != Tk)
    n_layers::INTEGER AS n_layers,
    n_heads::INTEGER AS n_heads,
    patch_layers,
    methods,
    sigmas,
    config_json->>'noise_scale' AS noise_scale,            -- gauss sigma: 'absolute' or 'rms' (times RMS of h)
    seed,                                                   -- the corruption draws
    try_cast(config_json->>'problem_seed' AS BIGINT) AS problem_seed,  -- which synthetic problems
    config_json->>'attention' AS attention,                -- attention capture: all | baseline | none
    dataset_name,
    dataset_hash,
    parent_run_id,
    started_at,
    finished_at,
    run_seq                           -- 1, 2, ... in the order runs began
FROM runs;
