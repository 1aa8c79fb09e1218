-- Staging: every results row with its intervention family (NULL read as 'baseline' or 'thoughts'), site, head, thoughts and parts.
-- Rows stored before schema 6 have family NULL: the baseline (method 'baseline') or a classic row (one
-- thought's block output at one layer, family 'thoughts'). layer stays `layer` here: for the heads family
-- it is the ablated head's layer, for edges the layer whose attention is cut (NULL: every layer), for the
-- classic family the patched block. thoughts: the steps written (edges: the key thought); parts: JSON, the
-- condition as its list of interventions. A thin SELECT over results, kept apart from stg_results (which
-- the classic views read) so the family views read every row.
CREATE OR REPLACE VIEW stg_family_rows AS
SELECT
    run_id,
    problem_id,
    condition_id,
    coalesce(family, CASE WHEN method = 'baseline' THEN 'baseline' ELSE 'thoughts' END) AS family,
    site,                             -- block, attn, mlp, head, edge; NULL for the baseline
    layer,
    head,                             -- heads family, one head: the ablated head; else NULL
    thought,                          -- the one step (heads) or key thought (edges); NULL otherwise
    thoughts,                         -- SMALLINT[]: the steps written (edges: [j])
    parts,                            -- JSON text: [{site, layer, steps, method, head?, key?, sigma?}, ...]
    method,
    sigma,
    correct,
    flipped,
    kl_answer,
    logp_gold
FROM results;
