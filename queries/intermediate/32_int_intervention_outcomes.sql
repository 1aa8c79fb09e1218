-- Intermediate: every corrupted row of every intervention family with its problem's baseline: base_correct, failed (flipped), log p(gold) drop.
-- The failure definition is int_outcomes': failed = flipped (else base_correct AND NOT correct), read among
-- baseline-correct problems; logp_drop = the baseline's log p(gold) minus the row's. `condition` labels the
-- method as int_outcomes does ('zero', 'gauss_0.5'). family, site, thoughts, parts as in stg_interventions.
CREATE OR REPLACE VIEW int_intervention_outcomes AS
WITH baseline AS (
    SELECT run_id, problem_id, bool_and(correct) AS base_correct, avg(logp_gold) AS base_logp_gold
    FROM stg_interventions
    WHERE family = 'baseline'
    GROUP BY run_id, problem_id
)
SELECT
    r.run_id,
    r.problem_id,
    r.condition_id,
    r.family,
    r.site,
    r.patch_layer,
    r.thought,
    r.thoughts,
    len(r.thoughts) AS size,
    r.head,
    r.method,
    r.sigma,
    r.parts,
    CASE WHEN r.sigma IS NULL THEN r.method ELSE r.method || '_' || r.sigma::VARCHAR END AS condition,
    b.base_correct,
    r.correct,
    coalesce(r.flipped, b.base_correct AND NOT r.correct) AS failed,
    r.kl_answer,
    r.logp_gold,
    b.base_logp_gold - r.logp_gold AS logp_drop
FROM stg_interventions r
LEFT JOIN baseline b USING (run_id, problem_id)
WHERE r.family <> 'baseline';
