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

-- NaN and infinity as NULL: corr() of a constant column is NaN, which would poison averages and JSON.
CREATE OR REPLACE MACRO finite(x) AS CASE WHEN isfinite(x) THEN x END;

-- t statistic of a Pearson r over n pairs (df = n - 2); p-values come from `analysis` (scipy).
CREATE OR REPLACE MACRO r_to_t(r, n) AS
    CASE WHEN n > 2 AND abs(r) < 1 THEN r * sqrt((n - 2) / (1 - r * r)) END;
