-- A dead letter redriven through the service's handler (ordersystem-service-kit consumer::redrive): when,
-- and what it came to (Stored or Duplicate). Only added, nullable columns: a service of the version before,
-- still running during a roll, goes on writing dead letters without knowing them.
ALTER TABLE dead_letters
    ADD COLUMN IF NOT EXISTS redriven_at     TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS redrive_outcome TEXT;
