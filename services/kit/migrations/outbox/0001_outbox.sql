-- The outbox the relay publishes (ordersystem-service-kit relay::store), in the service's own schema. A
-- service writes a row (record_key, payload) in the transaction that stores what the event reports; the
-- relay marks it sent after the broker's acknowledgement and deletes it once it is old.
--
-- IF NOT EXISTS: order's migrations 0001-0003 made this same table and index before the kit had its own
-- migrations. They have shipped and stay as they are, so they still run first and this finds the table there.
CREATE TABLE IF NOT EXISTS outbox (
    id          BIGSERIAL PRIMARY KEY,
    record_key  TEXT NOT NULL,
    payload     BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at     TIMESTAMPTZ
);
-- The relay takes unsent rows oldest first (ORDER BY id LIMIT n) and keeps the first of each key among them.
-- Without this index that scan walks the primary key through every row still kept after it was sent; this
-- one holds only the unsent rows.
CREATE INDEX IF NOT EXISTS outbox_unsent_by_id ON outbox (id) WHERE sent_at IS NULL;
