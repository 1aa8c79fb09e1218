-- Per run, patch layer and thought: failure rate among baseline-correct problems, 95% Wilson interval, mean KL and log p drop.
-- n counts trials: baseline-correct problem x corruption, every method and sigma pooled, the `clean` control
-- left out. The Wilson interval treats trials as independent; `python cli.py stats` adds a bootstrap over
-- problems. mean_kl (KL at the answer number), mean_kl_first (at EOT), mean_logp_drop (baseline log p(gold)
-- minus this row's) and mean_disruption average every corrupted row of the thought (n_all), whatever the baseline.
-- Legacy runs keep their rows: failure rates per the research scripts' token index stay meaningful, but
-- that index is not Tk, so thought_name is 'token k' (not Tk) and `note` says so (NULL for codi runs).
CREATE OR REPLACE VIEW token_importance AS
WITH t AS (
    SELECT
        run_id,
        patch_layer,
        thought,
        count(DISTINCT problem_id) FILTER (WHERE base_correct) AS problems,
        count(*) FILTER (WHERE base_correct) AS n,
        count(*) FILTER (WHERE base_correct AND failed) AS failures,
        count(*) AS n_all,
        avg(kl_answer) AS mean_kl,
        avg(kl_first) AS mean_kl_first,
        avg(logp_drop) AS mean_logp_drop,
        avg(disruption) AS mean_disruption
    FROM int_outcomes
    WHERE NOT is_baseline AND method <> 'clean'
    GROUP BY run_id, patch_layer, thought
)
SELECT
    t.run_id,
    r.model_name,
    r.convention,
    t.patch_layer,
    t.thought,
    position_label(r.convention, t.thought, pos.name) AS thought_name,
    t.problems,
    t.n,
    t.failures,
    t.failures / nullif(t.n, 0) AS failure_rate,
    wilson_low(t.failures, t.n) AS ci_low,
    wilson_high(t.failures, t.n) AS ci_high,
    t.n_all,
    t.mean_kl,
    t.mean_kl_first,
    t.mean_logp_drop,
    t.mean_disruption,
    legacy_note(r.convention) AS note
FROM t
LEFT JOIN stg_runs r USING (run_id)
LEFT JOIN positions pos ON pos.code = t.thought;
