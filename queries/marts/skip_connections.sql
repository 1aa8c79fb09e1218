-- Per run, layer, head and early thought Tj (j = 0..2): baseline attention of the last thought back to it, A[T5 -> Tj].
-- `note` is NULL. Legacy runs: not meaningful (their token 5 query was step 5, our T4, and their keys are
-- shifted by one); a legacy run with attention is one row, every metric NULL, with a note.
CREATE OR REPLACE VIEW skip_connections AS
SELECT * FROM int_thought_pairs
WHERE kind = 'skip'                        -- T5 -> T0..T2
UNION ALL BY NAME
SELECT run_id, convention,
       not_meaningful('their 6x6 matrix is shifted by one: token 5 -> tokens 0..2 is not T5 -> T0..T2') AS note
FROM int_legacy_attention;
