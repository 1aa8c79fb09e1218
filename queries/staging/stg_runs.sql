-- Staging: runs with the columns analysis needs (model, weights, convention, architecture, patch layers).
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
    seed,
    dataset_name,
    parent_run_id,
    started_at,
    finished_at,
    run_seq                           -- 1, 2, ... in the order runs began
FROM runs;
