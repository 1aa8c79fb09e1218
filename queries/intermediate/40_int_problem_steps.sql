-- Intermediate: each problem's reasoning steps, parsed from its solution's calculator annotations (<<48/2=24>>).
-- step 1.. in solution order; `value` is the step's result (what thought T(step-1) would hold if thought k computed
-- step k+1); `op` the step's one operator (+ - * /), 'mixed' when it has several kinds, 'none' when none;
-- `operands` the numbers of its left side (commas dropped). Problems without annotations have no rows.
CREATE OR REPLACE VIEW int_problem_steps AS
WITH annotated AS (
    SELECT
        problem_id,
        regexp_extract_all(solution, '<<([^<>]*)>>', 1) AS annotations
    FROM problems
    WHERE solution IS NOT NULL
),
steps AS (
    SELECT
        problem_id,
        unnest(annotations) AS annotation,
        unnest(generate_series(1, len(annotations))) AS step,
        len(annotations) AS n_annotated
    FROM annotated
),
parsed AS (
    SELECT
        problem_id,
        step,
        n_annotated,
        annotation,
        replace(regexp_extract(annotation, '^([^=]*)=', 1), ',', '') AS expression,
        TRY_CAST(trim(replace(regexp_extract(annotation, '=([^=]*)$', 1), ',', '')) AS DOUBLE) AS value
    FROM steps
)
SELECT
    problem_id,
    step::SMALLINT AS step,
    n_annotated::SMALLINT AS n_annotated,
    step = n_annotated AS is_last,
    annotation,
    expression,
    CASE len(list_distinct(regexp_extract_all(expression, '[0-9.)]\s*([-+*/x])', 1)))
        WHEN 0 THEN 'none'
        WHEN 1 THEN regexp_extract_all(expression, '[0-9.)]\s*([-+*/x])', 1)[1]
        ELSE 'mixed'
    END AS op,
    list_transform(regexp_extract_all(expression, '[0-9]+(?:\.[0-9]+)?'), x -> CAST(x AS DOUBLE)) AS operands,
    value
FROM parsed;
