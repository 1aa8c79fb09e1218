-- Two runs joined on (problem, thought, method, sigma): both outcomes, KL and log p drops; filter on run_a and run_b.
-- One row per shared problem and condition of every ordered pair of distinct runs (int_run_pairs): runs
-- of other models or datasets pair up where they share problems; baseline rows are included (method
-- 'baseline', thought NULL). kl_* is KL at the answer number. A run patched at several layers pairs every
-- layer with every layer of the other: filter patch_layer_a / patch_layer_b, or on `compared` (equal
-- layers when both runs have several, every pairing otherwise), as run_comparison_by_thought and
-- run_comparison_by_condition do. Positions of 'legacy' runs are not our thoughts (SPEC 10):
-- same_convention says whether thought k means the same in both runs, and `note` (NULL when both are codi
-- runs) what it means when either is a legacy run.
CREATE OR REPLACE VIEW run_comparison AS
SELECT * FROM int_run_pairs;
