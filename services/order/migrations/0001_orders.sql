-- The order service's tables, created in the schema given by configuration (search_path).
CREATE TABLE customers (
    customer_id BIGSERIAL PRIMARY KEY,
    firstname   TEXT NOT NULL,
    name        TEXT NOT NULL,
    email       TEXT NOT NULL UNIQUE
);

CREATE TABLE items (
    item_id BIGSERIAL PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE,
    price   NUMERIC(12, 2) NOT NULL CHECK (price >= 0)
);

CREATE TABLE orders (
    id               BIGSERIAL PRIMARY KEY,
    customer_id      BIGINT NOT NULL REFERENCES customers,
    updated          TIMESTAMPTZ NOT NULL,
    shipping_street  TEXT NOT NULL,
    shipping_zip     TEXT NOT NULL,
    shipping_city    TEXT NOT NULL,
    billing_street   TEXT NOT NULL,
    billing_zip      TEXT NOT NULL,
    billing_city     TEXT NOT NULL
);

-- Item name and price are copied at order time: a later price change does not alter a placed order.
CREATE TABLE order_lines (
    order_id   BIGINT NOT NULL REFERENCES orders ON DELETE CASCADE,
    line_no    INT NOT NULL,
    count      INT NOT NULL CHECK (count > 0),
    item_id    BIGINT NOT NULL REFERENCES items,
    item_name  TEXT NOT NULL,
    price      NUMERIC(12, 2) NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

-- Written in the order's transaction; published by the relay (ordersystem-service-kit relay::store).
CREATE TABLE outbox (
    id          BIGSERIAL PRIMARY KEY,
    record_key  TEXT NOT NULL,
    payload     BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at     TIMESTAMPTZ
);
CREATE INDEX outbox_unsent ON outbox (record_key, id) WHERE sent_at IS NULL;
