-- The always-on schedule's jobs (features refresh, nightly scoring, retention): the last run of
-- each, and a lease so that of several workers exactly one runs a due job.
CREATE TABLE jobs (
    name          TEXT   PRIMARY KEY,
    lease_owner   TEXT,
    lease_until   BIGINT,
    last_started  BIGINT,
    last_finished BIGINT,
    last_outcome  TEXT,
    runs          BIGINT NOT NULL DEFAULT 0
);
