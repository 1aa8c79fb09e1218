-- Intermediate: two runs joined on a condition of the heads or edges family and a problem, both outcomes side by side.
-- Every ordered pair of distinct runs, for the problems and conditions both have: the same family, method,
-- sigma, layer, head, key thought, steps and (heads ablated together) the same set of heads. Each side's
-- base_correct, failed and logp_drop as int_family_outcomes gives them.
CREATE OR REPLACE VIEW int_family_pairs AS
SELECT
    a.run_id AS run_a,
    b.run_id AS run_b,
    a.problem_id,
    a.family,
    a.condition,
    a.method,
    a.sigma,
    a.layer,
    a.head,
    a.thought,
    a.steps,
    a.part_heads,
    a.base_correct AS base_correct_a,
    b.base_correct AS base_correct_b,
    a.failed AS failed_a,
    b.failed AS failed_b,
    a.logp_drop AS logp_drop_a,
    b.logp_drop AS logp_drop_b
FROM int_family_outcomes a
JOIN int_family_outcomes b
    ON a.problem_id = b.problem_id
    AND a.run_id <> b.run_id
    AND a.family = b.family
    AND a.method = b.method
    AND a.sigma IS NOT DISTINCT FROM b.sigma
    AND a.layer IS NOT DISTINCT FROM b.layer
    AND a.head IS NOT DISTINCT FROM b.head
    AND a.thought IS NOT DISTINCT FROM b.thought
    AND a.steps IS NOT DISTINCT FROM b.steps
    AND a.part_heads IS NOT DISTINCT FROM b.part_heads;
