-- The invoicing service's tables, created in the schema given by configuration (search_path).
-- One invoice per order: the order id is the key, so a redelivered event cannot create a second one.
CREATE TABLE invoices (
    order_id        BIGINT PRIMARY KEY,
    customer_id     BIGINT NOT NULL,
    firstname       TEXT NOT NULL,
    name            TEXT NOT NULL,
    email           TEXT NOT NULL,
    billing_street  TEXT NOT NULL,
    billing_zip     TEXT NOT NULL,
    billing_city    TEXT NOT NULL,
    updated         TIMESTAMPTZ NOT NULL,
    -- The stored content in canonical JSON: a second event with the same id is compared against it.
    fingerprint     TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE invoice_lines (
    order_id   BIGINT NOT NULL REFERENCES invoices ON DELETE CASCADE,
    line_no    INT NOT NULL,
    count      INT NOT NULL CHECK (count > 0),
    item_id    BIGINT NOT NULL,
    item_name  TEXT NOT NULL,
    price      NUMERIC(14, 2) NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

-- Written by the shared consumer loop (ordersystem-service-kit consumer::store).
CREATE TABLE dead_letters (
    id          BIGSERIAL PRIMARY KEY,
    topic       TEXT NOT NULL,
    partition   INT NOT NULL,
    "offset"    BIGINT NOT NULL,
    record_key  BYTEA,
    payload     BYTEA,
    reason      TEXT NOT NULL,
    error       TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
