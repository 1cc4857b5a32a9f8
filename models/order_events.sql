-- Events: one row per completed order, sent once each as an `order_completed` event.
-- The order id is the event key, so re-running never sends an order twice.
SELECT
    order_id AS event_id,
    user_id,
    CAST(amount AS DOUBLE) AS amount,
    sku,
    created_at
FROM stg_orders
WHERE status = 'completed'
