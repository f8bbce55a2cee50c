-- A lease on each campaign's trigger; the SQLite migration of the same number explains it.
ALTER TABLE campaigns ADD COLUMN trigger_owner TEXT;
ALTER TABLE campaigns ADD COLUMN trigger_until BIGINT;
