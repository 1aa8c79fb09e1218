-- Intermediate: per run x problem x layer x position x target x match x k, whether a decoded token among ranks <= k matches the problem's target value (hit), and another problem's (control_hit).
-- Targets: 'step' = the value of step position+1 (T0 -> step 1 .. T5 -> step 6; EOT and problems without
-- that step have no row), 'any_step' = any step's value (problems with steps), 'final' = gold_answer; steps
-- from int_problem_steps. Match: 'exact' = the token's text, whitespace trimmed, is a number
-- (-?digits[.digits]) equal to the value; 'leading' = the trimmed text is all digits and a prefix of the
-- value's integer text ('4' or '48' for 48: the first piece the model would write), for non-negative integer
-- values only (a problem whose target has none has no 'leading' row). k: 1 and the run's top-k stored (max
-- rank). The control is the same test of this problem's tokens against the target of the next problem of the
-- run by run_problems.ordinal (wrapping) that has decoding rows and the target (same target, match and
-- position): control_problem_id; NULL when no other problem has it. Only problems with decoding rows count.
CREATE OR REPLACE VIEW int_thought_decoding AS
WITH tokens AS (
    SELECT
        run_id,
        problem_id,
        layer,
        position,
        rank,
        regexp_replace(coalesce(token_text, ''), '^\s+|\s+$', '', 'g') AS text
    FROM stg_decoding
),
read AS (
    SELECT
        *,
        CASE WHEN regexp_full_match(text, '-?[0-9]+(\.[0-9]+)?') THEN TRY_CAST(text AS DOUBLE) END AS number,
        regexp_full_match(text, '[0-9]+') AS digits
    FROM tokens
),
top_k AS (
    SELECT run_id, 1 AS k FROM stg_decoding GROUP BY run_id
    UNION
    SELECT run_id, max(rank) AS k FROM stg_decoding GROUP BY run_id
),
decoded AS (
    SELECT d.run_id, d.problem_id, rp.ordinal
    FROM (SELECT DISTINCT run_id, problem_id FROM stg_decoding) d
    JOIN run_problems rp ON rp.run_id = d.run_id AND rp.problem_id = d.problem_id
),
raw_values AS (
    SELECT d.run_id, d.problem_id, d.ordinal, 'step' AS target, (s.step - 1)::SMALLINT AS position, s.value
    FROM decoded d
    JOIN int_problem_steps s ON s.problem_id = d.problem_id
    WHERE s.step <= 6 AND s.value IS NOT NULL
    UNION ALL
    SELECT d.run_id, d.problem_id, d.ordinal, 'any_step', pos.position::SMALLINT, s.value
    FROM decoded d
    JOIN int_problem_steps s ON s.problem_id = d.problem_id
    CROSS JOIN (SELECT unnest(range(7)) AS position) pos
    WHERE s.value IS NOT NULL
    UNION ALL
    SELECT d.run_id, d.problem_id, d.ordinal, 'final', pos.position::SMALLINT, p.gold_answer
    FROM decoded d
    JOIN stg_problems p ON p.problem_id = d.problem_id
    CROSS JOIN (SELECT unnest(range(7)) AS position) pos
    WHERE p.gold_answer IS NOT NULL
),
target_values AS (
    SELECT DISTINCT
        v.run_id,
        v.problem_id,
        v.ordinal,
        v.target,
        m.match,
        v.position,
        v.value,
        CASE WHEN m.match = 'leading' THEN CAST(v.value AS BIGINT)::VARCHAR END AS integer_text
    FROM raw_values v
    CROSS JOIN (VALUES ('exact'), ('leading')) m(match)
    WHERE m.match = 'exact' OR (v.value >= 0 AND v.value = trunc(v.value) AND v.value < 1e15)
),
targets AS (
    SELECT
        run_id,
        problem_id,
        target,
        match,
        position,
        CASE WHEN count(*) OVER (PARTITION BY run_id, target, match, position) > 1 THEN
            coalesce(lead(problem_id) OVER w, first_value(problem_id) OVER w)
        END AS control_problem_id
    FROM (SELECT DISTINCT run_id, problem_id, ordinal, target, match, position FROM target_values)
    WINDOW w AS (PARTITION BY run_id, target, match, position ORDER BY ordinal, problem_id)
),
-- each problem's tokens tested against its own target value (side 'own') and its control problem's ('control')
sides AS (
    SELECT *, 'own' AS side, problem_id AS value_problem_id FROM targets
    UNION ALL
    SELECT *, 'control', control_problem_id FROM targets WHERE control_problem_id IS NOT NULL
),
ranked AS (
    SELECT
        t.run_id,
        t.problem_id,
        r.layer,
        t.position,
        t.target,
        t.match,
        t.side,
        t.control_problem_id,
        min(r.rank) FILTER (
            WHERE CASE t.match WHEN 'exact' THEN r.number = v.value
                               ELSE r.digits AND starts_with(v.integer_text, r.text) END
        ) AS best_rank
    FROM sides t
    JOIN target_values v
        ON v.run_id = t.run_id AND v.problem_id = t.value_problem_id AND v.target = t.target
        AND v.match = t.match AND v.position = t.position
    JOIN read r ON r.run_id = t.run_id AND r.problem_id = t.problem_id AND r.position = t.position
    GROUP BY ALL
),
own AS (SELECT * EXCLUDE (side) FROM ranked WHERE side = 'own'),
control AS (
    SELECT * EXCLUDE (side, best_rank, control_problem_id), best_rank AS control_best_rank
    FROM ranked
    WHERE side = 'control'
)
SELECT
    o.run_id,
    o.problem_id,
    o.layer,
    o.position,
    o.target,
    o.match,
    k.k::SMALLINT AS k,
    coalesce(o.best_rank <= k.k, false) AS hit,
    CASE WHEN o.control_problem_id IS NOT NULL THEN coalesce(c.control_best_rank <= k.k, false) END AS control_hit,
    o.best_rank,                      -- the best rank of a matching token (NULL: none in the stored top-k)
    o.control_problem_id,
    c.control_best_rank
FROM own o
JOIN top_k k ON k.run_id = o.run_id
LEFT JOIN control c
    ON c.run_id = o.run_id AND c.problem_id = o.problem_id AND c.layer = o.layer AND c.position = o.position
    AND c.target = o.target AND c.match = o.match;
