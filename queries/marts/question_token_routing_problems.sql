-- Per run, problem, layer, query (dst) and question token: which question tokens each thought (and EOT) reads, as the baseline attention weight averaged over heads, ranked within the problem.
-- rank 1 = the most attended question token of the problem at (layer, dst) (ties: the earlier token); share =
-- weight / the problem's total question weight there; number: the number written in the question this token
-- is part of (NULL otherwise). dst 0..5 = T0..T5, 6 = EOT.
CREATE OR REPLACE VIEW question_token_routing_problems AS
SELECT
    w.run_id,
    w.problem_id,
    w.layer,
    w.dst,
    pos.name AS dst_name,
    w.token_pos,
    w.token_text,
    w.number,
    w.weight,
    w.share,
    w.rank
FROM int_question_token_weights w
LEFT JOIN positions pos ON pos.code = w.dst;
