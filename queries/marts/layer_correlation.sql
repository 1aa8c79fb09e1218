-- Per run, patch layer and layer: Pearson r of EOT -> Tk attention with Tk's importance, pooled, within-problem, per thought.
-- n = (problem, thought) pairs; t = r sqrt((n-2)/(1-r^2)). r_within correlates values centred per problem
-- (differences between problems removed); r_t0..r_t5 correlate across problems for one thought.
-- p-values, the permutation test for r_within and bootstrap intervals: `python cli.py stats`. `note` is NULL.
-- Legacy runs: not meaningful (their attention 'token k' and ablation 'token k' were different positions);
-- a legacy run with attention is one row, every metric NULL, with a note.
CREATE OR REPLACE VIEW layer_correlation AS
WITH c AS (
    SELECT
        run_id,
        patch_layer,
        layer,
        count(*) AS n,
        count(DISTINCT problem_id) AS problems,
        finite(corr(importance, attention)) AS r,
        finite(corr(importance_centred, attention_centred)) AS r_within,
        finite(corr(importance, attention) FILTER (WHERE thought = 0)) AS r_t0,
        finite(corr(importance, attention) FILTER (WHERE thought = 1)) AS r_t1,
        finite(corr(importance, attention) FILTER (WHERE thought = 2)) AS r_t2,
        finite(corr(importance, attention) FILTER (WHERE thought = 3)) AS r_t3,
        finite(corr(importance, attention) FILTER (WHERE thought = 4)) AS r_t4,
        finite(corr(importance, attention) FILTER (WHERE thought = 5)) AS r_t5
    FROM int_attention_importance
    GROUP BY run_id, patch_layer, layer
)
SELECT
    c.run_id,
    r.convention,
    c.patch_layer,
    c.layer,
    c.n,
    c.problems,
    c.r,
    r_to_t(c.r, c.n) AS t,
    c.r_within,
    c.r_t0, c.r_t1, c.r_t2, c.r_t3, c.r_t4, c.r_t5,
    NULL::VARCHAR AS note
FROM c
LEFT JOIN stg_runs r USING (run_id)
UNION ALL BY NAME
SELECT run_id, convention,
       not_meaningful('their attention token k (position BOT+1+k) and ablation token k (latent step k) were different positions') AS note
FROM int_legacy_attention;
