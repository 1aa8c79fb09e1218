-- Staging: one row per run x problem x condition; results.layer renamed patch_layer (the corrupted block).
CREATE OR REPLACE VIEW stg_results AS
SELECT
    run_id,
    problem_id,
    condition_id,
    layer AS patch_layer,             -- NULL for the baseline
    thought,                          -- 0..5; NULL for the baseline
    method,                           -- 'baseline', 'zero', 'gauss', 'random', 'shuffle', 'clean', 'mean'
    sigma,                            -- NULL unless gauss
    donor_problem_id,
    donor_thought,
    answer_text,
    answer_value,
    correct,
    flipped,
    fixed,
    kl_first,
    kl_answer,
    kl_max,
    js_first,
    entropy_first,
    logp_gold,
    disruption
FROM results;
