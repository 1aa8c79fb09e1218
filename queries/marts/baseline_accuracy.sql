-- Per run: problems with a baseline, how many the uncorrupted model answers correctly, the accuracy and its 95% Wilson interval.
-- The baseline is the uncorrupted condition (method 'baseline', one row per problem). n counts the problems
-- whose baseline has an outcome (correct not NULL); baseline_accuracy = correct / n, as model_comparison's.
-- Legacy runs keep their row (a baseline means the same in both conventions); `note` is NULL for codi runs.
CREATE OR REPLACE VIEW baseline_accuracy AS
WITH b AS (
    SELECT
        run_id,
        count(*) AS problems,
        count(base_correct) AS n,
        count(*) FILTER (WHERE base_correct) AS correct
    FROM int_outcomes
    WHERE is_baseline
    GROUP BY run_id
)
SELECT
    b.run_id,
    r.model_name,
    r.convention,
    b.problems,
    b.n,
    b.correct,
    b.correct / nullif(b.n, 0) AS baseline_accuracy,
    wilson_low(b.correct, b.n) AS ci_low,
    wilson_high(b.correct, b.n) AS ci_high,
    legacy_note(r.convention) AS note
FROM b
LEFT JOIN stg_runs r USING (run_id);
