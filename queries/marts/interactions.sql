-- Per run, patch layer, method (and sigma) and combination of thoughts corrupted together (pairs, triplets): the joint failure rate, each thought's alone, the rate expected if they acted independently, synergy and redundancy.
-- Failure rates are among baseline-correct problems (as importance_matrix), over the same problems for the
-- joint and the single corruptions: those with every single thought's row at the same layer and method
-- (int_interaction_problems.complete; `incomplete` counts the baseline-correct problems left out for
-- lacking one). expected = 1 - prod(1 - rate_i) over the combination's thoughts (independent effects);
-- synergy = joint_rate - expected (> 0: together they break more than independence predicts);
-- redundancy = greatest(expected - joint_rate, 0). joint_low, joint_high: the joint rate's 95% Wilson
-- interval; `stats` adds problem-bootstrap intervals of joint, expected and synergy and a p-value.
-- mean_logp_drop (joint) and mean_logp_drop_a/b/c (each thought alone) average every complete problem,
-- whatever its baseline; logp_drop_additive is the sum of the singles' means (what additive drops predict).
CREATE OR REPLACE VIEW interactions AS
WITH c AS (
    SELECT
        run_id,
        patch_layer,
        family,
        size,
        method,
        sigma,
        condition,
        combination,
        thought_a,
        thought_b,
        thought_c,
        count(*) FILTER (WHERE base_correct AND complete) AS n,
        count(*) FILTER (WHERE base_correct AND NOT complete) AS incomplete,
        count(*) FILTER (WHERE base_correct AND complete AND failed) AS failures,
        count(*) FILTER (WHERE base_correct AND complete AND failed_a) AS failures_a,
        count(*) FILTER (WHERE base_correct AND complete AND failed_b) AS failures_b,
        count(*) FILTER (WHERE base_correct AND complete AND failed_c) AS failures_c,
        count(*) FILTER (WHERE complete) AS n_all,
        avg(logp_drop) FILTER (WHERE complete) AS mean_logp_drop,
        avg(logp_drop_a) FILTER (WHERE complete) AS mean_logp_drop_a,
        avg(logp_drop_b) FILTER (WHERE complete) AS mean_logp_drop_b,
        avg(logp_drop_c) FILTER (WHERE complete) AS mean_logp_drop_c,
        avg(kl_answer) FILTER (WHERE complete) AS mean_kl
    FROM int_interaction_problems
    GROUP BY ALL
),
r AS (
    SELECT
        *,
        failures / nullif(n, 0) AS joint_rate,
        failures_a / nullif(n, 0) AS rate_a,
        failures_b / nullif(n, 0) AS rate_b,
        CASE WHEN size = 3 THEN failures_c / nullif(n, 0) END AS rate_c
    FROM c
),
e AS (
    SELECT *, 1 - (1 - rate_a) * (1 - rate_b) * (1 - coalesce(rate_c, 0.0)) AS expected
    FROM r
)
SELECT
    e.run_id,
    u.convention,
    e.patch_layer,
    e.family,
    e.size,
    e.method,
    e.sigma,
    e.condition,
    e.combination,
    array_to_string(list_transform(e.combination, k -> 'T' || k::VARCHAR), '+') AS combination_name,
    e.thought_a,
    e.thought_b,
    e.thought_c,
    e.n,
    e.incomplete,
    e.failures,
    e.joint_rate,
    wilson_low(e.failures, e.n) AS joint_low,
    wilson_high(e.failures, e.n) AS joint_high,
    e.failures_a,
    e.rate_a,
    e.failures_b,
    e.rate_b,
    CASE WHEN e.size = 3 THEN e.failures_c END AS failures_c,
    e.rate_c,
    e.expected,
    e.joint_rate - e.expected AS synergy,
    greatest(e.expected - e.joint_rate, 0.0) AS redundancy,
    e.n_all,
    e.mean_logp_drop,
    e.mean_logp_drop_a,
    e.mean_logp_drop_b,
    CASE WHEN e.size = 3 THEN e.mean_logp_drop_c END AS mean_logp_drop_c,
    e.mean_logp_drop_a + e.mean_logp_drop_b + coalesce(e.mean_logp_drop_c, 0.0) AS logp_drop_additive,
    e.mean_kl,
    legacy_note(u.convention) AS note
FROM e
LEFT JOIN stg_runs u USING (run_id);
