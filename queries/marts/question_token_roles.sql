-- Per run, layer, query (T0..T5, EOT) and role: how a thought's attention to the question splits between the operands of its own step, other steps' operands, other numbers and words, against the share of the question's tokens in that role.
-- Roles of a question token (int_question_token_weights, int_problem_steps): 'own_step_operand' (part of a number
-- that is an operand of step dst+1: T0 -> step 1; EOT has no own step), 'other_step_operand' (an operand of
-- another step only), 'other_number' (a number no step uses), 'word' (not part of a number). Per problem, share
-- = the role's fraction of the query's question attention (head-averaged), token_share = the role's fraction of
-- the question's tokens (what uniform attention would give); the view averages both over the problems (n:
-- for Tk those that have step k+1, for EOT all), with a normal 95% interval of the mean share (sd / sqrt(n)), and enrichment =
-- mean_share / mean_token_share (> 1: the role is read more than its size). Numbers written in words
-- ("three") are words here.
CREATE OR REPLACE VIEW question_token_roles AS
WITH own AS (
    SELECT problem_id, (step - 1)::SMALLINT AS dst, operands
    FROM int_problem_steps
    WHERE step <= 6
),
every_step AS (
    SELECT problem_id, flatten(list(operands)) AS operands
    FROM int_problem_steps
    GROUP BY problem_id
),
tokens AS (
    SELECT
        w.run_id,
        w.problem_id,
        w.layer,
        w.dst,
        w.share,
        w.n_tokens,
        CASE
            WHEN w.number IS NULL THEN 'word'
            WHEN coalesce(list_contains(o.operands, w.number), false) THEN 'own_step_operand'
            WHEN coalesce(list_contains(e.operands, w.number), false) THEN 'other_step_operand'
            ELSE 'other_number'
        END AS role
    FROM int_question_token_weights w
    LEFT JOIN own o ON o.problem_id = w.problem_id AND o.dst = w.dst
    LEFT JOIN every_step e ON e.problem_id = w.problem_id
    WHERE w.dst = 6 OR o.problem_id IS NOT NULL  -- a thought: the problems that have its step
),
roles AS (SELECT unnest(['own_step_operand', 'other_step_operand', 'other_number', 'word']) AS role),
per_problem AS (
    SELECT
        q.run_id,
        q.problem_id,
        q.layer,
        q.dst,
        r.role,
        coalesce(sum(t.share), 0) AS share,
        count(t.role) / any_value(q.n_tokens) AS token_share
    FROM (SELECT DISTINCT run_id, problem_id, layer, dst, n_tokens FROM tokens) q
    CROSS JOIN roles r
    LEFT JOIN tokens t
        ON t.run_id = q.run_id AND t.problem_id = q.problem_id AND t.layer = q.layer AND t.dst = q.dst
        AND t.role = r.role
    GROUP BY q.run_id, q.problem_id, q.layer, q.dst, r.role
)
SELECT
    p.run_id,
    p.layer,
    p.dst,
    pos.name AS dst_name,
    p.role,
    count(*) AS n,
    avg(p.share) AS mean_share,
    avg(p.share) - 1.959963984540054 * stddev_samp(p.share) / sqrt(count(*)) AS ci_low,
    avg(p.share) + 1.959963984540054 * stddev_samp(p.share) / sqrt(count(*)) AS ci_high,
    avg(p.token_share) AS mean_token_share,
    avg(p.share) / nullif(avg(p.token_share), 0) AS enrichment
FROM per_problem p
LEFT JOIN positions pos ON pos.code = p.dst
GROUP BY p.run_id, p.layer, p.dst, pos.name, p.role;
