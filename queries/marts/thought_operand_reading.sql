-- Per run, layer, thought (dst 0..5), operands_of and m: does thought Tk attend most to the question tokens of its step's operands (step k+1), beyond what picking m tokens at random would give?
-- A problem counts (n) when it has step dst+1 (operands_of 'step'; any step for 'any_step') and at least one
-- of those operands is written in the question (stg_question_tokens.number; operands are the numbers of
-- the step's annotation, int_problem_steps). hit: one of the problem's m most attended question tokens
-- (head-averaged baseline weight, ties to the earlier token) is part of an operand; rate with a 95% Wilson
-- interval. chance: mean over the problems of 1 - C(Q - n_op, m) / C(Q, m), Q = the question's tokens,
-- n_op = those that are part of an operand (the hit rate of m tokens drawn at random); lift = rate - chance.
-- A number a tokenizer splits into pieces (gpt2-tiny: one token per digit) is several operand tokens, which
-- raises chance too. Operands that are earlier steps' results are not in the question and never count.
CREATE OR REPLACE VIEW thought_operand_reading AS
WITH step_operands AS (
    SELECT problem_id, 'step' AS operands_of, (step - 1)::SMALLINT AS dst, operands
    FROM int_problem_steps
    WHERE step <= 6
    UNION ALL
    SELECT s.problem_id, 'any_step', d.dst::SMALLINT, flatten(list(s.operands)) AS operands
    FROM int_problem_steps s
    CROSS JOIN (SELECT unnest(range(6)) AS dst) d
    GROUP BY s.problem_id, d.dst
),
tokens AS (
    SELECT
        w.run_id,
        w.problem_id,
        w.layer,
        w.dst,
        o.operands_of,
        w.rank,
        w.n_tokens,
        coalesce(list_contains(o.operands, w.number), false) AS is_operand
    FROM int_question_token_weights w
    JOIN step_operands o ON o.problem_id = w.problem_id AND o.dst = w.dst
),
problems AS (
    SELECT
        t.run_id,
        t.problem_id,
        t.layer,
        t.dst,
        t.operands_of,
        m.m,
        any_value(t.n_tokens) AS q,
        count(*) FILTER (WHERE t.is_operand) AS n_op,
        bool_or(t.is_operand AND t.rank <= m.m) AS hit
    FROM tokens t
    CROSS JOIN (VALUES (1), (3)) m(m)
    GROUP BY ALL
    HAVING count(*) FILTER (WHERE t.is_operand) > 0
),
chances AS (
    SELECT
        *,
        CASE WHEN q - n_op < m THEN 1.0
             ELSE 1.0 - exp(lgamma(q - n_op + 1) - lgamma(q - n_op - m + 1) - lgamma(q + 1) + lgamma(q - m + 1))
        END AS chance
    FROM problems
),
counts AS (
    SELECT
        run_id,
        layer,
        dst,
        operands_of,
        m,
        count(*) AS n,
        count(*) FILTER (WHERE hit) AS hits,
        avg(chance) AS chance
    FROM chances
    GROUP BY ALL
)
SELECT
    c.run_id,
    c.layer,
    c.dst,
    pos.name AS dst_name,
    c.operands_of,
    c.m,
    c.n,
    c.hits,
    c.hits / nullif(c.n, 0) AS rate,
    wilson_low(c.hits, c.n) AS ci_low,
    wilson_high(c.hits, c.n) AS ci_high,
    c.chance,
    c.hits / nullif(c.n, 0) - c.chance AS lift
FROM counts c
LEFT JOIN positions pos ON pos.code = c.dst;
