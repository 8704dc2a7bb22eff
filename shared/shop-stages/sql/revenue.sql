-- The revenue stage's table: one row per (product, currency, window), holding the latest pane.
-- Created by the stage at start (idempotent), or ahead of time by a migration.
CREATE TABLE IF NOT EXISTS shop_revenue (
    product_id      bigint      NOT NULL,
    currency        text        NOT NULL,
    window_start_ms bigint      NOT NULL,
    window_end_ms   bigint      NOT NULL,
    revenue_cents   bigint      NOT NULL,
    order_count     bigint      NOT NULL,
    pane            text        NOT NULL,
    result_id       text        NOT NULL,
    pane_index      bigint      NOT NULL,
    PRIMARY KEY (product_id, currency, window_start_ms)
);
