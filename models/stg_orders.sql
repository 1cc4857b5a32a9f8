-- Staging: one row per order from data/orders.csv (all channels, completed and refunded).
-- amount is an exact DECIMAL here; output models convert to DOUBLE only after summing.
SELECT
    CAST(order_id AS VARCHAR) AS order_id,
    CAST(user_id AS VARCHAR) AS user_id,
    CAST(amount AS DECIMAL(12, 2)) AS amount,
    upper(trim(currency)) AS currency,
    CAST(sku AS VARCHAR) AS sku,
    lower(trim(status)) AS status,
    CAST(created_at AS TIMESTAMP) AS created_at
FROM read_csv('data/orders.csv', header = true, auto_detect = true, all_varchar = true)
