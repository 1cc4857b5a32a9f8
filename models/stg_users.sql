-- Staging: one row per user from data/users.csv, typed and tidied.
-- The CSV is read as text (all_varchar) so every type is decided here by an explicit CAST,
-- not by DuckDB's sniffer guessing from a sample of rows. Empty fields (dob) arrive as NULL.
SELECT
    CAST(user_id AS VARCHAR) AS user_id,
    lower(trim(email)) AS email,
    trim(first_name) AS first_name,
    trim(last_name) AS last_name,
    upper(trim(country)) AS country,
    lower(trim(plan)) AS plan,
    CAST(dob AS DATE) AS dob,
    CAST(signup_at AS TIMESTAMP) AS signup_at,
    CAST(marketing_opt_in AS BOOLEAN) AS marketing_opt_in
FROM read_csv('data/users.csv', header = true, auto_detect = true, all_varchar = true)
