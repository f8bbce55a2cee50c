-- Customer features per merged profile, recomputed incrementally for the profiles whose records
-- an import touched (feature_dirty) and fully by every scoring run; persisted model fits; and
-- the win-back priority, inactivity matches, RFM cell and explanations of each scored profile.

CREATE TABLE profile_features (
    profile_id  INTEGER PRIMARY KEY,
    computed_at INTEGER NOT NULL,
    data        TEXT    NOT NULL
);

-- Customer records whose orders, events or consent changed since their features were computed.
CREATE TABLE feature_dirty (
    customer_id INTEGER PRIMARY KEY
);

CREATE TABLE model_fits (
    id             INTEGER PRIMARY KEY,
    model          TEXT    NOT NULL,
    fitted_at      INTEGER NOT NULL,
    window_start   INTEGER,
    window_end     INTEGER NOT NULL,
    customers      INTEGER NOT NULL,
    params         TEXT    NOT NULL,
    std_errors     TEXT    NOT NULL,
    log_likelihood DOUBLE PRECISION,
    iterations     INTEGER NOT NULL,
    seconds        DOUBLE PRECISION NOT NULL
);
CREATE INDEX model_fits_model ON model_fits (model, fitted_at);

ALTER TABLE profile_scores ADD COLUMN rfm TEXT;
ALTER TABLE profile_scores ADD COLUMN attrition DOUBLE PRECISION;
ALTER TABLE profile_scores ADD COLUMN priority_minor DOUBLE PRECISION;
ALTER TABLE profile_scores ADD COLUMN inactive_by TEXT NOT NULL DEFAULT '';
ALTER TABLE profile_scores ADD COLUMN details TEXT NOT NULL DEFAULT '{}';
CREATE INDEX profile_scores_priority ON profile_scores (priority_minor);

-- RFM segment moves between consecutive runs.
CREATE TABLE segment_migration (
    run_id       INTEGER NOT NULL,
    from_segment TEXT    NOT NULL,
    to_segment   TEXT    NOT NULL,
    profiles     INTEGER NOT NULL,
    PRIMARY KEY (run_id, from_segment, to_segment)
);
