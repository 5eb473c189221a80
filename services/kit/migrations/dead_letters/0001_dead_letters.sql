-- Records the consumer loop could not store (ordersystem-service-kit consumer::store), byte for byte, in
-- the service's own schema.
--
-- IF NOT EXISTS: invoicing's and shipping's migration 0001 made this same table before the kit had its own
-- migrations. They have shipped and stay as they are, so they still run first and this finds the table there.
CREATE TABLE IF NOT EXISTS dead_letters (
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
