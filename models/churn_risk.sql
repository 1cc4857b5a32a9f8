-- Audience: users who were active (an app event or an order) but not in the 45 days before the
-- reference date. They leave the audience as soon as they are seen again.
SELECT
    user_id,
    email,
    last_active_at,
    days_inactive
FROM user_activity
WHERE last_active_at IS NOT NULL
  AND days_inactive >= 45
