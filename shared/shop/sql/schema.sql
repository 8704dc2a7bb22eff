-- The online shop's tables in Postgres: one table per entity of shardflow.shop.v1
-- (shared/schemas/proto/shardflow/shop/v1/entities.proto), with the proto field names as column
-- names, except that an int64 `*_at_ms` field is the timestamptz column `*_at` and statuses are
-- the lower-case names of the proto enums. `shardflow cdc --format shop` maps these rows to the
-- typed envelope; `shardflow gen shop --database-url` loads a generated workload into them.
-- Unqualified: create them in the schema first on the search_path. REPLICA IDENTITY FULL gives
-- updates and deletes a complete `before` image.

CREATE TABLE customers (
    customer_id      bigint      PRIMARY KEY,
    name             text        NOT NULL,
    email            text        NOT NULL,
    country          char(2)     NOT NULL,
    orders_count     bigint      NOT NULL DEFAULT 0,
    last_order_at    timestamptz,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);

CREATE TABLE orders (
    order_id         bigint      PRIMARY KEY,
    customer_id      bigint      NOT NULL REFERENCES customers,
    status           text        NOT NULL
        CHECK (status IN ('pending', 'paid', 'shipped', 'completed', 'cancelled')),
    total_cents      bigint      NOT NULL,
    currency         char(3)     NOT NULL,
    line_count       integer     NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);

CREATE TABLE order_lines (
    order_id         bigint      NOT NULL REFERENCES orders,
    line_no          integer     NOT NULL,
    product_id       bigint      NOT NULL,
    quantity         integer     NOT NULL CHECK (quantity > 0),
    unit_price_cents bigint      NOT NULL,
    currency         char(3)     NOT NULL,
    created_at       timestamptz NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

CREATE TABLE payments (
    payment_id       bigint      PRIMARY KEY,
    order_id         bigint      NOT NULL REFERENCES orders,
    customer_id      bigint      NOT NULL REFERENCES customers,
    status           text        NOT NULL
        CHECK (status IN ('authorized', 'captured', 'failed', 'refunded')),
    amount_cents     bigint      NOT NULL,
    currency         char(3)     NOT NULL,
    method           text        NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);

CREATE TABLE shipments (
    shipment_id      bigint      PRIMARY KEY,
    order_id         bigint      NOT NULL REFERENCES orders,
    customer_id      bigint      NOT NULL REFERENCES customers,
    status           text        NOT NULL
        CHECK (status IN ('shipped', 'delivered', 'returned')),
    carrier          text        NOT NULL,
    tracking_number  text        NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);

ALTER TABLE customers   REPLICA IDENTITY FULL;
ALTER TABLE orders      REPLICA IDENTITY FULL;
ALTER TABLE order_lines REPLICA IDENTITY FULL;
ALTER TABLE payments    REPLICA IDENTITY FULL;
ALTER TABLE shipments   REPLICA IDENTITY FULL;
