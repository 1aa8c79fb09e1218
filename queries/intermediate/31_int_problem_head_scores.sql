-- Intermediate: per run, problem, layer and head: head_metrics' flow, skip and self scores for one problem.
-- Codi runs only (int_baseline_attention). flow = mean A[Ti -> Ti-1] (i = 1..5); skip = mean A[T5 -> T0..T2];
-- self_attn = mean A[Ti -> Ti]. Every problem holds every pair, so their mean over problems is head_metrics'
-- flow, skip and self_attn (the hub score, a variance over thoughts, comes from int_problem_incoming).
CREATE OR REPLACE VIEW int_problem_head_scores AS
SELECT
    run_id,
    problem_id,
    layer,
    head,
    avg(weight) FILTER (WHERE dst BETWEEN 1 AND 5 AND src = dst - 1) AS flow,
    avg(weight) FILTER (WHERE dst = 5 AND src BETWEEN 0 AND 2) AS skip,
    avg(weight) FILTER (WHERE dst BETWEEN 0 AND 5 AND src = dst) AS self_attn
FROM int_baseline_attention
WHERE dst BETWEEN 0 AND 5 AND src BETWEEN 0 AND 5
GROUP BY run_id, problem_id, layer, head;
