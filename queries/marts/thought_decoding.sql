-- Per run, layer, position, target, match and k: how often thought Tk (and EOT) decodes (logit lens) to the problem's intermediate values, beside how often it decodes to another problem's (control_rate) and the difference (lift).
-- n: problems with the target (for 'step', problems that have step position+1: T0 -> step 1; EOT has no
-- 'step' row); hits: problems with a matching token among ranks <= k (k = 1 and the run's stored top-k);
-- rate with a 95% Wilson interval (problems treated as independent). Targets: 'step', 'any_step' (any step's
-- value, so more chances to hit), 'final' (gold_answer). Match: 'exact' (the token's trimmed text read as a
-- number equals the value) or 'leading' (an all-digit token that is a prefix of the value's integer text:
-- the first piece the model would write; non-negative integer values only). Caveat: 'leading' with a
-- tokenizer that writes single digits (the bundled gpt2-tiny) is weak evidence: any digit token has 1 of
-- 10 first digits to hit, and small numbers are common in every problem. The control is the honest baseline:
-- the same test of the problem's tokens against the target of another problem of the run (the next by
-- ordinal, wrapping, that has the target): control_rate over control_n problems (those with such a
-- problem) estimates how often a wrong problem's value matches; lift = rate - control_rate. hit_only /
-- control_only: the discordant pairs (problems whose own target matches and the control's does not, and the
-- reverse), what an exact McNemar test of hit vs control needs (its p comes from `analysis`, scipy).
CREATE OR REPLACE VIEW thought_decoding AS
WITH counts AS (
    SELECT
        run_id,
        layer,
        position,
        target,
        match,
        k,
        count(*) AS n,
        count(*) FILTER (WHERE hit) AS hits,
        count(control_hit) AS control_n,
        count(*) FILTER (WHERE control_hit) AS control_hits,
        count(*) FILTER (WHERE hit AND NOT control_hit) AS hit_only,
        count(*) FILTER (WHERE control_hit AND NOT hit) AS control_only
    FROM int_thought_decoding
    GROUP BY run_id, layer, position, target, match, k
)
SELECT
    c.run_id,
    c.layer,
    c.position,
    pos.name AS position_name,
    c.target,
    c.match,
    c.k,
    c.n,
    c.hits,
    c.hits / nullif(c.n, 0) AS rate,
    wilson_low(c.hits, c.n) AS ci_low,
    wilson_high(c.hits, c.n) AS ci_high,
    c.control_n,
    c.control_hits,
    c.control_hits / nullif(c.control_n, 0) AS control_rate,
    c.hits / nullif(c.n, 0) - c.control_hits / nullif(c.control_n, 0) AS lift,
    c.hit_only,
    c.control_only
FROM counts c
LEFT JOIN positions pos ON pos.code = c.position;
