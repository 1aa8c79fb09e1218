-- Wilson score interval bounds (95%, z = 1.959964, z^2 = 3.841459) for k successes in n trials; NULL when n = 0.
-- Macros live in the warehouse file like the views, so any DuckDB client can use them too.
CREATE OR REPLACE MACRO wilson_low(k, n) AS
    CASE WHEN n > 0 AND k <= 0 THEN 0.0 WHEN n > 0 THEN greatest(0.0,
        (k::DOUBLE / n + 3.841458820694124 / (2.0 * n)
         - 1.959963984540054 * sqrt((k::DOUBLE / n) * (1 - k::DOUBLE / n) / n + 3.841458820694124 / (4.0 * n * n)))
        / (1 + 3.841458820694124 / n))
    END;

CREATE OR REPLACE MACRO wilson_high(k, n) AS
    CASE WHEN n > 0 AND k >= n THEN 1.0 WHEN n > 0 THEN least(1.0,
        (k::DOUBLE / n + 3.841458820694124 / (2.0 * n)
         + 1.959963984540054 * sqrt((k::DOUBLE / n) * (1 - k::DOUBLE / n) / n + 3.841458820694124 / (4.0 * n * n)))
        / (1 + 3.841458820694124 / n))
    END;

-- Difficulty strata by step count (SPEC 7; engine/strata.py).
CREATE OR REPLACE MACRO stratum(n_steps) AS
    CASE WHEN n_steps IS NULL THEN NULL WHEN n_steps <= 2 THEN '<=2' WHEN n_steps >= 5 THEN '5+'
         ELSE n_steps::VARCHAR END;

-- A stratum's place in display order (<=2, 3, 4, 5+ = 1..4; NULL last): string order would put '<=2' last.
CREATE OR REPLACE MACRO stratum_rank(s) AS
    CASE s WHEN '<=2' THEN 1 WHEN '3' THEN 2 WHEN '4' THEN 3 WHEN '5+' THEN 4 END;

-- NaN and infinity as NULL: corr() of a constant column is NaN, which would poison averages and JSON.
CREATE OR REPLACE MACRO finite(x) AS CASE WHEN isfinite(x) THEN x END;

-- t statistic of a Pearson r over n pairs (df = n - 2); p-values come from `analysis` (scipy).
CREATE OR REPLACE MACRO r_to_t(r, n) AS
    CASE WHEN n > 2 AND abs(r) < 1 THEN r * sqrt((n - 2) / (1 - r * r)) END;

-- Legacy runs (runs.convention = 'legacy', SPEC 10, ingest/legacy.py): the research scripts' token k is not
-- our Tk (their loop fed BOT as the first of six latent steps; their attention slices were shifted by one).
-- Nothing is remapped. Views that stay meaningful keep a legacy run's rows, name its positions 'token k'
-- and say so in `note` (NULL for codi runs); views that depend on our positions show a legacy run as one
-- row with NULL metrics and a note that starts 'not meaningful for legacy runs: '.
CREATE OR REPLACE MACRO legacy_note(convention) AS
    CASE WHEN convention = 'legacy' THEN 'legacy run: thought k = research-script token k (their token 0 is BOT), not Tk' END;

CREATE OR REPLACE MACRO not_meaningful(reason) AS 'not meaningful for legacy runs: ' || reason;

-- A position's name: ours (T0, EOT, ...) for codi runs, 'token k' for a legacy run's index k.
CREATE OR REPLACE MACRO position_label(convention, code, name) AS
    CASE WHEN code IS NULL THEN NULL WHEN convention = 'legacy' THEN 'token ' || code::VARCHAR ELSE name END;

-- What thought k means in a comparison of runs of these conventions (NULL when both are codi runs).
CREATE OR REPLACE MACRO pair_note(convention_a, convention_b) AS
    CASE WHEN convention_a = 'legacy' AND convention_b = 'legacy'
             THEN 'both legacy runs: thought k = research-script token k (their token 0 is BOT), not Tk'
         WHEN convention_a = 'legacy' OR convention_b = 'legacy'
             THEN 'different position conventions: thought k of the legacy run is research-script token k, not Tk' END;

-- A result row's intervention family (warehouse/vocab.py FAMILIES): rows stored before schema 6 have none,
-- and were all the baseline or the classic `thoughts` family (one thought's block output).
CREATE OR REPLACE MACRO result_family(family, method) AS
    coalesce(family, CASE WHEN method = 'baseline' THEN 'baseline' ELSE 'thoughts' END);
