-- Intermediate: per run, layer, head, query and key: mean, std and count over problems of baseline attention.
-- Codi runs only: int_baseline_attention leaves legacy runs out (int_legacy_attention lists them).
CREATE OR REPLACE VIEW int_flow AS
SELECT
    run_id,
    layer,
    head,
    dst,
    src,
    avg(weight) AS mean_weight,
    stddev_samp(weight) AS std_weight,
    count(*) AS n
FROM int_baseline_attention
GROUP BY run_id, layer, head, dst, src;
