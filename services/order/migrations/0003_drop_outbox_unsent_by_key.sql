-- The relay no longer asks the database whether an older row of a key is unsent: it reads the oldest
-- unsent rows by id (outbox_unsent_by_id) and keeps the first of each key among them. The index by key
-- only cost every insert and mark a write.
DROP INDEX IF EXISTS outbox_unsent;
