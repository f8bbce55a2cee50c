-- The deliverability ramp's window of recent attempts, kept as running counts so a send does not
-- rescan the outbox: two buckets of 1,000 attempts each (the current one and the one before), so
-- the window always holds between 1,000 and 2,000 of the latest attempts once it has filled.
ALTER TABLE provider_ramp ADD COLUMN cur_attempts    BIGINT NOT NULL DEFAULT 0;
ALTER TABLE provider_ramp ADD COLUMN cur_hard        BIGINT NOT NULL DEFAULT 0;
ALTER TABLE provider_ramp ADD COLUMN cur_complaints  BIGINT NOT NULL DEFAULT 0;
ALTER TABLE provider_ramp ADD COLUMN prev_attempts   BIGINT NOT NULL DEFAULT 0;
ALTER TABLE provider_ramp ADD COLUMN prev_hard       BIGINT NOT NULL DEFAULT 0;
ALTER TABLE provider_ramp ADD COLUMN prev_complaints BIGINT NOT NULL DEFAULT 0;
