-- Staging: every result row, of every intervention family, with what the condition intervened on (family, site, head, thoughts, parts).
-- family is result_family(): rows stored before schema 6 (family NULL) are the baseline or the classic
-- `thoughts` family, and get site 'block' and thoughts [thought] as such rows are written now. Families
-- (warehouse/vocab.py): baseline; thoughts (one thought's block output: site block, thought k, thoughts
-- [k]); pairs / triplets (thoughts [a, b] / [a, b, c] sorted, corrupted together at one layer's block
-- output: thought NULL); components (site attn or mlp: the attention or MLP output of block patch_layer
-- instead of the block's output); heads and edges. parts is the condition as its interventions (JSON text).
CREATE OR REPLACE VIEW stg_interventions AS
SELECT
    run_id,
    problem_id,
    condition_id,
    result_family(family, method) AS family,
    CASE WHEN family IS NULL AND method <> 'baseline' THEN coalesce(site, 'block') ELSE site END AS site,
    layer AS patch_layer,             -- NULL for the baseline
    thought,                          -- the one thought of a thoughts / components row; NULL for combinations
    CASE WHEN family IS NULL AND thoughts IS NULL AND thought IS NOT NULL THEN [thought]
         ELSE thoughts END AS thoughts,
    head,
    method,
    sigma,
    parts,
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
    js_answer,
    entropy_answer,
    logp_gold,
    disruption
FROM results;
