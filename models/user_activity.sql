-- Intermediate: one row per user with order totals and recency, as of a fixed reference date.
-- The audiences filter this model, so the "as of" date and the definition of activity live in
-- one place. as_of is the example data's reference date (data/generate.py), never current_date,
-- so every run over the same data gives the same audiences. On live data use e.g.
-- `SELECT date_trunc('day', max(occurred_at)) + INTERVAL 1 DAY FROM stg_app_events`.
WITH params AS (
    SELECT TIMESTAMP '2026-11-01 00:00:00' AS as_of
),

completed_orders AS (
    SELECT
        user_id,
        count(*) AS order_count,
        sum(amount) AS lifetime_value,
        max(created_at) AS last_order_at
    FROM stg_orders
    WHERE status = 'completed'
    GROUP BY user_id
),

-- Any order (even one later refunded) or app event counts as activity.
activity AS (
    SELECT user_id, occurred_at AS active_at FROM stg_app_events
    UNION ALL
    SELECT user_id, created_at AS active_at FROM stg_orders
),

last_activity AS (
    SELECT user_id, max(active_at) AS last_active_at
    FROM activity
    GROUP BY user_id
)

SELECT
    u.user_id,
    u.email,
    u.signup_at,
    coalesce(o.order_count, 0) AS order_count,
    CAST(round(coalesce(o.lifetime_value, 0), 2) AS DOUBLE) AS lifetime_value,
    o.last_order_at,
    a.last_active_at,
    -- calendar days between the last active day and the as-of day
    date_diff('day', CAST(a.last_active_at AS DATE), CAST(p.as_of AS DATE)) AS days_inactive,
    p.as_of
FROM stg_users AS u
CROSS JOIN params AS p
LEFT JOIN completed_orders AS o ON o.user_id = u.user_id
LEFT JOIN last_activity AS a ON a.user_id = u.user_id
