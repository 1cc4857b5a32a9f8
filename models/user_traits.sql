-- Records: one row per user with profile attributes and order totals, for Braze user attributes.
-- dob stays a DATE (Braze wants YYYY-MM-DD); country is ISO-3166 alpha-2; lifetime_value is
-- 0 and last_order_at NULL for users with no completed order.
SELECT
    u.user_id,
    u.email,
    u.first_name,
    u.last_name,
    u.country,
    u.dob,
    u.plan,
    a.lifetime_value,
    a.order_count,
    a.last_order_at,
    u.marketing_opt_in
FROM stg_users AS u
INNER JOIN user_activity AS a ON a.user_id = u.user_id
