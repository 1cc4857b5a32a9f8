-- Audience: customers whose completed orders add up to more than $1,000 (refunds excluded).
SELECT
    user_id,
    email,
    lifetime_value,
    order_count
FROM user_activity
WHERE lifetime_value > 1000
