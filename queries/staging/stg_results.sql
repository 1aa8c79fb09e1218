-- Staging: one row per run x problem x condition of the baseline and the classic `thoughts` family; results.layer renamed patch_layer (the corrupted block).
-- Other intervention families (pairs, triplets, heads, edges, components) are left out, so every view built
-- on this one keeps its meaning (one thought corrupted at its block output) when a run holds them too;
-- stg_interventions has every row with the family columns.
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
    kl_first,                         -- *_first: at EOT, predicting the template's first word ("The"): near 0
    kl_answer,                        --   under any corruption; kept as extras. *_answer: where the answer
    kl_max,                           --   number is predicted (NULL without a number, and for rows stored
    js_first,                         --   before schema 3, which measured JS and entropy at EOT only)
    entropy_first,
    js_answer,
    entropy_answer,
    logp_gold,
    disruption
FROM results
WHERE result_family(family, method) IN ('baseline', 'thoughts');
