-- Intermediate: per run, patch layer, baseline-correct problem and thought: share of corruptions that broke it.
-- All corruption methods and sigmas are pooled; the `clean` control (which must never fail) is left out.
-- Legacy runs are included: their `thought` is the research scripts' token index, not Tk.
CREATE OR REPLACE VIEW int_problem_importance AS
SELECT
    run_id,
    patch_layer,
    problem_id,
    thought,
    count(*) AS trials,
    count(*) FILTER (WHERE failed) AS failures,
    count(*) FILTER (WHERE failed) / count(*) AS importance
FROM int_outcomes
WHERE base_correct AND NOT is_baseline AND method <> 'clean' AND thought IS NOT NULL
GROUP BY run_id, patch_layer, problem_id, thought;
