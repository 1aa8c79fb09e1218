-- Intermediate: every row of the heads and edges families with its problem's baseline: base_correct, failed, log p(gold) drop.
-- Read from stg_interventions; `layer` is its patch_layer: the ablated head's layer (heads; NULL for heads
-- ablated together, which name their heads in parts), or the layer whose attention is cut (edges; NULL:
-- every layer). The pairs / triplets and components rows are int_intervention_outcomes'.
-- As int_outcomes does for the classic rows: failed = flipped (else baseline correct and this row wrong);
-- a failure counts among rows whose baseline is correct. logp_drop = the baseline row's logp_gold minus
-- this row's (positive: the condition made the gold answer less likely). steps labels the thought steps
-- written: 'all' for T0..T5, else 'T2' or 'T0+T3'. k: how many interventions the condition is (parts);
-- part_heads: the heads a condition of the heads family ablates, as 'L0H1,L1H0' in (layer, head) order
-- (one head, or the top-k set). `condition` names the condition in words: 'L1H0 zero all' (one head),
-- 'top-3 [L0H1,L1H0,L1H1] zero all' (heads ablated together), 'knockout T2 L1' or 'knockout T2 all layers'
-- (edges). Rows of a problem without a baseline keep base_correct NULL.
CREATE OR REPLACE VIEW int_family_outcomes AS
WITH baseline AS (
    SELECT run_id, problem_id, bool_and(correct) AS base_correct, avg(logp_gold) AS base_logp_gold
    FROM stg_interventions
    WHERE family = 'baseline'
    GROUP BY run_id, problem_id
),
rows AS (
    SELECT
        *,
        patch_layer AS layer,
        CASE WHEN list_sort(thoughts) = [0, 1, 2, 3, 4, 5] THEN 'all'
             ELSE 'T' || array_to_string(list_sort(thoughts), '+T') END AS steps,
        json_array_length(parts) AS k,
        CASE WHEN family = 'heads' THEN (
            SELECT string_agg('L' || (e->>'layer') || 'H' || (e->>'head'), ','
                              ORDER BY (e->>'layer')::INTEGER, (e->>'head')::INTEGER)
            FROM unnest(json_extract(parts, '$[*]')) AS u(e)
        ) END AS part_heads
    FROM stg_interventions
    WHERE family IN ('heads', 'edges')
)
SELECT
    r.run_id,
    r.problem_id,
    r.condition_id,
    r.family,
    r.site,
    r.layer,
    r.head,
    r.thought,
    r.thoughts,
    r.steps,
    r.method,
    r.sigma,
    r.parts,
    r.k,
    r.part_heads,
    CASE r.family
        WHEN 'heads' THEN coalesce('L' || r.layer || 'H' || r.head, 'top-' || r.k || ' [' || r.part_heads || ']')
                 || ' ' || r.method || ' ' || r.steps
        WHEN 'edges' THEN r.method || ' T' || r.thought || ' ' || coalesce('L' || r.layer, 'all layers')
    END AS condition,
    b.base_correct,
    r.correct,
    coalesce(r.flipped, b.base_correct AND NOT r.correct) AS failed,
    r.kl_answer,
    r.logp_gold,
    b.base_logp_gold - r.logp_gold AS logp_drop
FROM rows r
LEFT JOIN baseline b USING (run_id, problem_id);
