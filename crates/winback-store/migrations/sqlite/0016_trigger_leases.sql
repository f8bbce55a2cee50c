-- A lease on each campaign's trigger (its audience scan, its date check, its event cursor), so
-- that of several workers one evaluates a campaign's trigger at a time. Without it two workers
-- both scanned the base for the same campaigns (enrolment kept each entry single, but the work
-- was done twice: measured with 4 workers at a million customers). A worker that dies holding
-- the lease leaves it to expire.
ALTER TABLE campaigns ADD COLUMN trigger_owner TEXT;
ALTER TABLE campaigns ADD COLUMN trigger_until BIGINT;
