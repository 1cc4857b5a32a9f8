-- Audience: users who signed up in the 30 days before the reference date (a rolling window:
-- members leave on their own as they age out).
SELECT
    user_id,
    email,
    signup_at
FROM user_activity
WHERE signup_at >= as_of - INTERVAL 30 DAY
  AND signup_at < as_of
