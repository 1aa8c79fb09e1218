-- Per run, layer, query (dst) and question token text: which question tokens each thought (and EOT) reads, averaged over problems, ranked within (run, layer, dst).
-- Weights are head-averaged per (problem, token) first (int_question_token_weights). token: the token's text,
-- whitespace trimmed and lowercased (digit tokens are grouped as their text, so '4' of 48 and '4' of 4 are one
-- row; a whitespace-only token is ''). mean_weight: mean over the token's occurrences (problems where it is
-- absent do not count as 0); n_problems: problems with the token, n_occurrences: its rows; share_of_question:
-- mean of weight / the problem's total question weight at (layer, dst); rank: 1 = the highest mean_weight
-- (ties share a rank); is_number: some occurrence is part of a number written in the question. A rare token
-- read strongly in one problem can rank high: look at n_problems.
CREATE OR REPLACE VIEW question_token_routing AS
WITH by_token AS (
    SELECT
        run_id,
        layer,
        dst,
        lower(regexp_replace(coalesce(token_text, ''), '^\s+|\s+$', '', 'g')) AS token,
        avg(weight) AS mean_weight,
        count(DISTINCT problem_id) AS n_problems,
        count(*) AS n_occurrences,
        avg(share) AS share_of_question,
        bool_or(number IS NOT NULL) AS is_number
    FROM int_question_token_weights
    GROUP BY ALL
)
SELECT
    t.run_id,
    t.layer,
    t.dst,
    pos.name AS dst_name,
    t.token,
    t.mean_weight,
    t.n_problems,
    t.n_occurrences,
    t.share_of_question,
    rank() OVER (PARTITION BY t.run_id, t.layer, t.dst ORDER BY t.mean_weight DESC) AS rank,
    t.is_number
FROM by_token t
LEFT JOIN positions pos ON pos.code = t.dst;
