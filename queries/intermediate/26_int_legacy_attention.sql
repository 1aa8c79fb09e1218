-- Intermediate: one row per legacy run with attention rows; the position-based attention views show each as one row with a note.
-- A legacy run's attention is indexed by the research scripts' token k: their 6x6 matrix [i, j] was the
-- attention of latent step i to step j + 1 (step 0 = BOT), so [i, i-1] is self-attention; their EOT vector's
-- token k was position BOT+1+k while their ablation token k was step k; head -1 is a mean over heads.
-- Flow, hub, skip, head metrics and the attention-importance correlations assume our positions, so
-- int_baseline_attention leaves legacy runs out and those views list these runs with NULL metrics and a
-- note instead (SPEC 10, 11; ingest/legacy.py).
CREATE OR REPLACE VIEW int_legacy_attention AS
SELECT r.run_id, r.convention
FROM stg_runs r
WHERE r.convention = 'legacy' AND r.run_id IN (SELECT run_id FROM stg_attention);
