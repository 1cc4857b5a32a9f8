-- Staging: one row per mobile-app event from data/app_events.csv.
SELECT
    CAST(event_id AS VARCHAR) AS event_id,
    CAST(user_id AS VARCHAR) AS user_id,
    lower(trim(event_name)) AS event_name,
    CAST(occurred_at AS TIMESTAMP) AS occurred_at
FROM read_csv('data/app_events.csv', header = true, auto_detect = true, all_varchar = true)
