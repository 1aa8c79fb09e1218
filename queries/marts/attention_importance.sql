-- Per run, patch layer, layer and thought Tk: baseline EOT -> Tk attention (head mean) beside Tk's importance, over problems.
-- Baseline-correct problems only (importance is defined on them). r correlates the two across problems for
-- this thought; per-problem rows are in int_attention_importance. `note` is NULL.
-- Legacy runs: not meaningful (their attention 'token k' and ablation 'token k' were different positions);
-- a legacy run with attention is one row, every metric NULL, with a note.
CREATE OR REPLACE VIEW attention_importance AS
WITH a AS (
    SELECT
        run_id,
        patch_layer,
        layer,
        thought,
        count(*) AS problems,
        avg(attention) AS mean_attention,
        stddev_samp(attention) AS std_attention,
        avg(importance) AS mean_importance,
        sum(failures) / sum(trials) AS failure_rate,
        finite(corr(importance, attention)) AS r
    FROM int_attention_importance
    GROUP BY run_id, patch_layer, layer, thought
)
SELECT
    a.run_id,
    r.convention,
    a.patch_layer,
    a.layer,
    a.thought,
    pos.name AS thought_name,
    a.problems,
    a.mean_attention,
    a.std_attention,
    a.mean_importance,
    a.failure_rate,
    a.r,
    NULL::VARCHAR AS note
FROM a
LEFT JOIN stg_runs r USING (run_id)
LEFT JOIN positions pos ON pos.code = a.thought
UNION ALL BY NAME
SELECT run_id, convention,
       not_meaningful('their attention token k (position BOT+1+k) and ablation token k (latent step k) were different positions') AS note
FROM int_legacy_attention;
