-- Intermediate: per run, problem, layer, head and thought Tj: int_head_incoming for one problem (no mean over problems).
-- Codi runs only (int_baseline_attention). incoming_raw = column sum of the problem's 6x6 thought matrix (self
-- included); incoming_norm = mean A[Ti -> Tj] over the later thoughts i > j (NULL for T5). Every problem holds
-- every (dst, src) pair of the baseline, so the mean over problems of these rows is int_head_incoming's row,
-- and their mean over problems, layers and heads is hub_scores': `stats` bootstraps and permutes these rows.
CREATE OR REPLACE VIEW int_problem_incoming AS
SELECT
    run_id,
    problem_id,
    layer,
    head,
    src AS position,
    sum(weight) AS incoming_raw,
    count(*) FILTER (WHERE dst > src) AS later_thoughts,
    sum(weight) FILTER (WHERE dst > src) / nullif(count(*) FILTER (WHERE dst > src), 0) AS incoming_norm
FROM int_baseline_attention
WHERE dst BETWEEN 0 AND 5 AND src BETWEEN 0 AND 5
GROUP BY run_id, problem_id, layer, head, src;
