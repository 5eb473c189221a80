-- The W3C trace context of the request that wrote the row, sent by the relay as the record's `traceparent`
-- and `tracestate` headers (ordersystem-service-kit telemetry). Only added, nullable columns: an order
-- service of the version before, still running during a roll, writes rows without them, and those go out
-- without headers.
ALTER TABLE outbox
    ADD COLUMN IF NOT EXISTS traceparent TEXT,
    ADD COLUMN IF NOT EXISTS tracestate  TEXT;
