-- The relay takes unsent rows oldest first (ORDER BY id LIMIT n). Without this index that scan walks the
-- primary key through every row ever sent, which grows with the table and slowed each round to tens of
-- milliseconds after 100,000 orders; this one holds only the unsent rows.
CREATE INDEX outbox_unsent_by_id ON outbox (id) WHERE sent_at IS NULL;
