-- Staging: problems with their gold answer and step count.
CREATE OR REPLACE VIEW stg_problems AS
SELECT
    problem_id,
    gold_answer,
    n_steps::INTEGER AS n_steps,
    source,
    source_id
FROM problems;
