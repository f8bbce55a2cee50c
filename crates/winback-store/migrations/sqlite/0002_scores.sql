-- Scoring runs: the latest score of every profile, each run's stage changes, and the share of
-- the base in each stage per run (the "% inactive" KPI over time).

CREATE TABLE score_runs (
    id        INTEGER PRIMARY KEY,
    scored_at INTEGER NOT NULL,
    profiles  INTEGER NOT NULL,
    models    TEXT    NOT NULL
);

CREATE TABLE profile_scores (
    profile_id   INTEGER PRIMARY KEY,
    run_id       INTEGER NOT NULL,
    stage        TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    segment      TEXT,
    p_alive      DOUBLE PRECISION,
    expected_90d DOUBLE PRECISION,
    clv_minor    DOUBLE PRECISION,
    reorder      TEXT,
    purchases    INTEGER NOT NULL,
    spend_minor  INTEGER NOT NULL,
    currency     TEXT
);
CREATE INDEX profile_scores_stage ON profile_scores (stage, clv_minor);

CREATE TABLE stage_history (
    profile_id INTEGER NOT NULL,
    run_id     INTEGER NOT NULL,
    changed_at INTEGER NOT NULL,
    from_stage TEXT,
    to_stage   TEXT    NOT NULL,
    PRIMARY KEY (profile_id, run_id)
);

CREATE TABLE stage_shares (
    run_id   INTEGER NOT NULL,
    stage    TEXT    NOT NULL,
    profiles INTEGER NOT NULL,
    PRIMARY KEY (run_id, stage)
);
