-- Intermediate: every row of the heads and edges families with its problem's baseline: base_correct, failed, log p(gold) drop.
-- Read from int_intervention_outcomes (the baseline join and the failure definition, stated once there);
-- `layer` is its patch_layer: the ablated head's layer (heads; NULL for heads
-- ablated together, which name their heads in parts), or the layer whose attention is cut (edges; NULL:
-- every layer). The pairs / triplets and components views read int_intervention_outcomes directly.
-- failed, base_correct and logp_drop are int_intervention_outcomes' (failed as int_outcomes defines it,
-- counted among rows whose baseline is correct; logp_drop positive: the gold answer became less likely). steps labels the thought steps
-- written: 'all' for T0..T5, else 'T2' or 'T0+T3'. k: how many interventions the condition is (parts);
-- part_heads: the heads a condition of the heads family ablates, as 'L0H1,L1H0' in (layer, head) order
-- (one head, or the top-k set). `condition` names the condition in words: 'L1H0 zero all' (one head),
-- 'top-3 [L0H1,L1H0,L1H1] zero all' (heads ablated together), 'knockout T2 L1' or 'knockout T2 all layers'
-- (edges). Rows of a problem without a baseline keep base_correct NULL.
CREATE OR REPLACE VIEW int_family_outcomes AS
WITH rows AS (
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
    FROM int_intervention_outcomes
    WHERE family IN ('heads', 'edges')
)
SELECT
    run_id,
    problem_id,
    condition_id,
    family,
    site,
    layer,
    head,
    thought,
    thoughts,
    steps,
    method,
    sigma,
    parts,
    k,
    part_heads,
    CASE family
        WHEN 'heads' THEN coalesce('L' || layer || 'H' || head, 'top-' || k || ' [' || part_heads || ']')
                 || ' ' || method || ' ' || steps
        WHEN 'edges' THEN method || ' T' || thought || ' ' || coalesce('L' || layer, 'all layers')
    END AS condition,
    base_correct,
    correct,
    failed,
    kl_answer,
    logp_gold,
    logp_drop
FROM rows;
