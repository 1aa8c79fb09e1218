-- Intermediate: attention rows of each codi run's baseline (uncorrupted) condition: the clean model's attention.
-- Legacy runs are left out: their dst/src are the research scripts' token indices, not our position codes
-- (int_legacy_attention lists them, so the views built on this one can say why they have no numbers).
-- head -1 (a stored mean over heads, written only by legacy imports) is never a head: averaged with the
-- heads it would count them twice, so it is left out as well.
CREATE OR REPLACE VIEW int_baseline_attention AS
SELECT a.run_id, a.problem_id, a.layer, a.head, a.dst, a.src, a.weight
FROM stg_attention a
JOIN (SELECT DISTINCT s.run_id, s.condition_id
      FROM stg_results s
      JOIN stg_runs r USING (run_id)
      WHERE s.method = 'baseline' AND r.convention IS DISTINCT FROM 'legacy') b
    USING (run_id, condition_id)
WHERE a.head >= 0;
