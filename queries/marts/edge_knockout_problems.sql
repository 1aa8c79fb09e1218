-- Per run, problem, layer scope and key thought Tj (edges family): the problem's outcome when attention to Tj is knocked out, for paired tests across thoughts.
-- One row per problem and condition of edge_knockout (whose rates are these rows' means): base_correct,
-- failed (the answer flipped; counts where base_correct), logp_drop (baseline's logp_gold minus the
-- condition's), and the run's descriptive hub (hub_thought, is_hub) as edge_knockout gives them. Two
-- thoughts' rows of one problem and layer scope pair up: `stats` tests the hub against every other thought
-- with McNemar's exact test on these pairs.
CREATE OR REPLACE VIEW edge_knockout_problems AS
SELECT
    o.run_id,
    o.problem_id,
    o.layer,
    coalesce('L' || o.layer, 'all') AS layers,
    o.thought,
    'T' || o.thought AS thought_name,
    o.method,
    o.base_correct,
    o.correct,
    o.failed,
    o.logp_drop,
    h.hub_thought,
    h.is_hub
FROM int_family_outcomes o
LEFT JOIN int_thought_hub h USING (run_id, thought)
WHERE o.family = 'edges';
