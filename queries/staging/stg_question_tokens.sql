-- Staging: each problem's question as the run's tokenizer split it (token_pos 0..), with the number each token is part of, of complete and running runs only.
-- number: the value of the number literal written in the question this token is part of (NULL for other
-- tokens). Tokenizers differ: the bundled gpt2-tiny writes each digit as its own token (' 48' is ' ', '4',
-- '8', all three carrying 48), GPT-2 writes '48' or ' 48' as one token, LLaMA-3 pieces of up to 3 digits.
CREATE OR REPLACE VIEW stg_question_tokens AS
SELECT
    run_id,
    problem_id,
    token_pos,
    token_id,
    token_text,
    number
FROM question_tokens
WHERE run_id IN (SELECT run_id FROM runs WHERE status IN ('complete', 'running'));
