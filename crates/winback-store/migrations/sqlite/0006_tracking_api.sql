-- Tracking, the HTTP API and the preference centre.

-- Click destinations by link id. A tracked link's token names only the id; the redirect target
-- comes from here, never from the URL, so the click endpoint cannot be an open redirect.
CREATE TABLE links (
    name       TEXT   PRIMARY KEY,
    url        TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);

-- API keys: only a SHA-256 of the secret is stored (the secret is 256 random bits, so a fast
-- hash is enough; argon2 is for guessable passwords). `prefix` identifies a key in lists.
CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY,
    name         TEXT   NOT NULL,
    prefix       TEXT   NOT NULL UNIQUE,
    hash         TEXT   NOT NULL UNIQUE,
    scopes       TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    last_used_at BIGINT
);

-- Responses to POSTs that carried an Idempotency-Key, replayed on a retry with the same body.
-- `status` 0 marks a request still being handled.
CREATE TABLE idempotency_keys (
    api_key_id   BIGINT NOT NULL,
    idem_key     TEXT   NOT NULL,
    request_hash TEXT   NOT NULL,
    status       BIGINT NOT NULL,
    body         TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (api_key_id, idem_key)
);

-- Inbound SMS replies by the provider's message id: a retried webhook neither suppresses twice
-- nor sends a second confirmation.
CREATE TABLE sms_inbound (
    provider_id TEXT   PRIMARY KEY,
    sender      TEXT   NOT NULL,
    body        TEXT   NOT NULL,
    action      TEXT   NOT NULL,
    received_at BIGINT NOT NULL
);

-- The preference centre's choices per profile: frequency (`normal` or `low`, seed 004) and
-- the topics the contact turned off. Per-channel opt-outs go to the consent ledger.
CREATE TABLE preferences (
    profile_id BIGINT PRIMARY KEY,
    frequency  TEXT   NOT NULL,
    topics_off TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);
