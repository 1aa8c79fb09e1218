-- Intermediate: attention rows of each problem's baseline (uncorrupted) condition: the clean model's attention.
CREATE OR REPLACE VIEW int_baseline_attention AS
SELECT a.run_id, a.problem_id, a.layer, a.head, a.dst, a.src, a.weight
FROM stg_attention a
JOIN (SELECT DISTINCT run_id, condition_id FROM stg_results WHERE method = 'baseline') b
    USING (run_id, condition_id);
