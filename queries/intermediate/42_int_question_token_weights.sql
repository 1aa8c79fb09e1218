-- Intermediate: per run x problem x layer x query (dst) x question token, the baseline attention weight averaged over heads, with the token, its number, its share of the question's weight and its rank in the problem.
-- weight: mean over the heads stored; share: weight / the sum over the problem's question tokens at that
-- (layer, dst); rank: 1 = the most attended token of the problem at (layer, dst), ties broken by the earlier
-- token (row_number, so the top m are always m tokens); n_tokens: the question's tokens there (Q).
-- token_text and number come from stg_question_tokens (NULL when the token has no row there).
CREATE OR REPLACE VIEW int_question_token_weights AS
WITH head_mean AS (
    SELECT run_id, problem_id, layer, dst, token_pos, avg(weight) AS weight
    FROM stg_token_attention
    GROUP BY run_id, problem_id, layer, dst, token_pos
)
SELECT
    h.run_id,
    h.problem_id,
    h.layer,
    h.dst,
    h.token_pos,
    q.token_text,
    q.number,
    h.weight,
    h.weight / nullif(sum(h.weight) OVER problem, 0) AS share,
    row_number() OVER (PARTITION BY h.run_id, h.problem_id, h.layer, h.dst ORDER BY h.weight DESC, h.token_pos)
        AS rank,
    count(*) OVER problem AS n_tokens
FROM head_mean h
LEFT JOIN stg_question_tokens q
    ON q.run_id = h.run_id AND q.problem_id = h.problem_id AND q.token_pos = h.token_pos
WINDOW problem AS (PARTITION BY h.run_id, h.problem_id, h.layer, h.dst);
