-- Per run, patch layer, corruption method and thought: failure rate among baseline-correct trials, every sigma of the method pooled (RQ2).
-- A method's profile over the thoughts is what `stats` ranks to ask whether methods agree (Kendall's W,
-- pairwise Spearman). Sigmas are pooled per method: the methods are the raters, and gauss at four sigmas
-- would otherwise count as four raters that share their noise. The `clean` control (which must never fail)
-- is left out. n counts baseline-correct trials, problems the baseline-correct problems, sigmas the noise
-- levels pooled (0 for methods without one). Legacy runs keep their rows (thought_name 'token k', `note`).
CREATE OR REPLACE VIEW method_thought_profile AS
WITH t AS (
    SELECT
        run_id,
        patch_layer,
        method,
        thought,
        count(DISTINCT sigma) AS sigmas,
        count(DISTINCT problem_id) FILTER (WHERE base_correct) AS problems,
        count(*) FILTER (WHERE base_correct) AS n,
        count(*) FILTER (WHERE base_correct AND failed) AS failures
    FROM int_outcomes
    WHERE NOT is_baseline AND method <> 'clean' AND thought IS NOT NULL
    GROUP BY run_id, patch_layer, method, thought
)
SELECT
    t.run_id,
    r.convention,
    t.patch_layer,
    t.method,
    t.thought,
    position_label(r.convention, t.thought, pos.name) AS thought_name,
    t.sigmas,
    t.problems,
    t.n,
    t.failures,
    t.failures / nullif(t.n, 0) AS failure_rate,
    legacy_note(r.convention) AS note
FROM t
LEFT JOIN stg_runs r USING (run_id)
LEFT JOIN positions pos ON pos.code = t.thought;
