-- Privacy: retention, erasure and their audit trail.
--
-- `store_secrets` holds this installation's random salt. Erased people leave only salted
-- SHA-256 hashes of their identifiers in `erased_identities`, so an import that brings an
-- erased address, number or customer id back stores an anonymous shell instead of the person,
-- and nobody holding the database alone can test a guessed address without the salt.

CREATE TABLE store_secrets (
    name       TEXT   PRIMARY KEY,
    value      TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE erased_identities (
    hash        TEXT   PRIMARY KEY,
    kind        TEXT   NOT NULL,
    customer_id BIGINT NOT NULL,
    erased_at   BIGINT NOT NULL
);

-- One row per retention run, erasure, objection or export; `affected` people.
CREATE TABLE privacy_runs (
    id          INTEGER PRIMARY KEY,
    kind        TEXT   NOT NULL,
    dry_run     BIGINT NOT NULL,
    settings    TEXT   NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    affected    BIGINT NOT NULL DEFAULT 0
);

-- Each person a run touched, by pseudonymous profile id, with why.
CREATE TABLE privacy_audit (
    id               INTEGER PRIMARY KEY,
    run_id           BIGINT NOT NULL,
    profile_id       BIGINT NOT NULL,
    action           TEXT   NOT NULL,
    reason           TEXT   NOT NULL,
    last_activity_at BIGINT,
    at               BIGINT NOT NULL
);
CREATE INDEX privacy_audit_run ON privacy_audit (run_id);
CREATE INDEX privacy_audit_profile ON privacy_audit (profile_id);
