-- Per run, problem, layer, position, target, match and k: does thought Tk (or EOT) decode to this problem's target (hit), and to another problem's (control_hit)? The rows thought_decoding counts.
-- Targets: 'step' (the value of step position+1; only problems with that step), 'any_step', 'final'
-- (gold_answer). Match 'exact' (the trimmed token text read as a number equals the value) or 'leading' (an
-- all-digit token that is a prefix of the non-negative integer value's text). k: 1 and the run's stored
-- top-k. control_problem_id: the next problem of the run by ordinal (wrapping) with the same target; a
-- control hit is this problem's tokens matching that problem's value. best_rank / control_best_rank: the
-- best rank of a matching token. Logit lens of the baseline's states: layer -1 is the vector fed at the
-- position, 0..L-1 block outputs.
CREATE OR REPLACE VIEW thought_decoding_problems AS
SELECT
    d.run_id,
    d.problem_id,
    d.layer,
    d.position,
    pos.name AS position_name,
    d.target,
    d.match,
    d.k,
    d.hit,
    d.control_hit,
    d.best_rank,
    d.control_problem_id,
    d.control_best_rank
FROM int_thought_decoding d
LEFT JOIN positions pos ON pos.code = d.position;
