-- Intermediate: per run, layer, head and thought Tj: attention Tj receives from thoughts, raw and per later thought.
-- Codi runs only: int_baseline_attention leaves legacy runs out (int_legacy_attention lists them).
-- incoming_raw is the research definition: the column sum of the 6x6 thought matrix (self included), which
-- favours early thoughts because more queries can see them. incoming_norm (SPEC 7, 11) divides the attention
-- from later thoughts Ti (i > j, self excluded) by how many later thoughts there are: the mean A[Ti -> Tj]
-- over i > j. T5 has no later thought, so its incoming_norm is NULL.
CREATE OR REPLACE VIEW int_head_incoming AS
SELECT
    run_id,
    layer,
    head,
    src AS position,
    sum(mean_weight) AS incoming_raw,
    count(*) FILTER (WHERE dst > src) AS later_thoughts,
    sum(mean_weight) FILTER (WHERE dst > src) / nullif(count(*) FILTER (WHERE dst > src), 0) AS incoming_norm
FROM int_flow
WHERE dst BETWEEN 0 AND 5 AND src BETWEEN 0 AND 5
GROUP BY run_id, layer, head, src;
