-- Campaigns and their versions, enrolments (journeys), the outbox, tags, suppressions, offers,
-- audience exports, the deliverability ramp and shop-wide signals.
--
-- An enrolment runs the campaign version it entered with, so editing a running campaign never
-- breaks its contacts. Enrolments and outbox rows carry a lease and a fencing token: a worker
-- may only finish a row while the fence it claimed with is still the row's fence.

CREATE TABLE campaigns (
    id             INTEGER PRIMARY KEY,
    name           TEXT   NOT NULL UNIQUE,
    status         TEXT   NOT NULL,
    version        BIGINT NOT NULL,
    file           TEXT   NOT NULL,
    trigger_cursor BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE campaign_versions (
    campaign_id BIGINT NOT NULL,
    version     BIGINT NOT NULL,
    source      TEXT   NOT NULL,
    checksum    TEXT   NOT NULL,
    applied_at  BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, version)
);

CREATE TABLE enrolments (
    id            INTEGER PRIMARY KEY,
    campaign_id   BIGINT NOT NULL,
    version       BIGINT NOT NULL,
    profile_id    BIGINT NOT NULL,
    trigger_key   TEXT   NOT NULL,
    exclusive     BIGINT NOT NULL,
    state         TEXT   NOT NULL,
    step          BIGINT NOT NULL,
    resume        BIGINT NOT NULL,
    variant       TEXT   NOT NULL,
    holdout       BIGINT NOT NULL,
    entered_at    BIGINT NOT NULL,
    due_at        BIGINT,
    waiting_event TEXT,
    waiting_since BIGINT,
    lease_owner   TEXT,
    lease_until   BIGINT,
    fence         BIGINT NOT NULL DEFAULT 0,
    ended_at      BIGINT,
    end_reason    TEXT,
    UNIQUE (campaign_id, profile_id, trigger_key)
);
CREATE INDEX enrolments_due ON enrolments (due_at) WHERE state = 'active';
CREATE INDEX enrolments_profile ON enrolments (profile_id, state);
CREATE INDEX enrolments_campaign ON enrolments (campaign_id, state);

CREATE TABLE journey_log (
    enrolment_id BIGINT NOT NULL,
    at           BIGINT NOT NULL,
    step         TEXT   NOT NULL,
    what         TEXT   NOT NULL
);
CREATE INDEX journey_log_enrolment ON journey_log (enrolment_id);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    idempotency_key TEXT   NOT NULL UNIQUE,
    campaign_id     BIGINT NOT NULL,
    enrolment_id    BIGINT NOT NULL,
    profile_id      BIGINT NOT NULL,
    step            TEXT   NOT NULL,
    variant         TEXT   NOT NULL,
    channel         TEXT   NOT NULL,
    template        TEXT   NOT NULL,
    subject         TEXT,
    preheader       TEXT,
    sender_name     TEXT,
    url             TEXT,
    sunset          BIGINT NOT NULL DEFAULT 0,
    state           TEXT   NOT NULL,
    not_before      BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    fence           BIGINT NOT NULL DEFAULT 0,
    attempts        BIGINT NOT NULL DEFAULT 0,
    recipient       TEXT,
    provider        TEXT,
    sent_at         BIGINT,
    settled_at      BIGINT,
    outcome         TEXT,
    detail          TEXT,
    provider_id     TEXT,
    complained      BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX outbox_due ON outbox (not_before) WHERE state = 'pending';
CREATE INDEX outbox_claimed ON outbox (lease_until) WHERE state IN ('claimed', 'sending');
CREATE INDEX outbox_profile ON outbox (profile_id, channel, sent_at);
CREATE INDEX outbox_enrolment ON outbox (enrolment_id);
CREATE INDEX outbox_provider ON outbox (provider, sent_at);

CREATE TABLE contact_tags (
    profile_id BIGINT NOT NULL,
    tag        TEXT   NOT NULL,
    added_at   BIGINT NOT NULL,
    source     TEXT   NOT NULL,
    PRIMARY KEY (profile_id, tag)
);
CREATE INDEX contact_tags_tag ON contact_tags (tag);

-- Addresses and numbers that must not be messaged: hard bounces, complaints, STOP replies,
-- and soft bounces once they reach three (`active` turns 1).
CREATE TABLE suppressions (
    channel      TEXT   NOT NULL,
    address      TEXT   NOT NULL,
    reason       TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    soft_bounces BIGINT NOT NULL DEFAULT 0,
    active       BIGINT NOT NULL DEFAULT 1,
    PRIMARY KEY (channel, address)
);

CREATE TABLE offers (
    code            TEXT   PRIMARY KEY,
    campaign_id     BIGINT NOT NULL,
    enrolment_id    BIGINT NOT NULL,
    profile_id      BIGINT NOT NULL,
    step            TEXT   NOT NULL,
    variant         TEXT   NOT NULL,
    ladder          TEXT   NOT NULL,
    rung            BIGINT NOT NULL,
    kind            TEXT   NOT NULL,
    amount_minor    BIGINT,
    percent         BIGINT,
    sku             TEXT,
    currency        TEXT   NOT NULL,
    min_order_minor BIGINT NOT NULL,
    uses            BIGINT NOT NULL,
    used            BIGINT NOT NULL DEFAULT 0,
    issued_at       BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    state           TEXT   NOT NULL,
    cost_minor      BIGINT NOT NULL DEFAULT 0,
    description     TEXT   NOT NULL,
    UNIQUE (enrolment_id, step)
);
CREATE INDEX offers_profile ON offers (profile_id, state);

CREATE TABLE offer_redemptions (
    code           TEXT   NOT NULL,
    order_id       BIGINT NOT NULL,
    redeemed_at    BIGINT NOT NULL,
    discount_minor BIGINT NOT NULL,
    PRIMARY KEY (code, order_id)
);

CREATE TABLE audience_exports (
    campaign_id BIGINT NOT NULL,
    step        TEXT   NOT NULL,
    target      TEXT   NOT NULL,
    profile_id  BIGINT NOT NULL,
    added_at    BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, step, profile_id)
);

CREATE TABLE provider_ramp (
    provider          TEXT   PRIMARY KEY,
    share             REAL NOT NULL,
    attempts_at_share BIGINT NOT NULL,
    paused            TEXT,
    updated_at        BIGINT NOT NULL
);

-- Shop-wide business signals (seed 004's `assortment_updated`) that end waits of every contact.
CREATE TABLE shop_signals (
    id   INTEGER PRIMARY KEY,
    name TEXT   NOT NULL,
    at   BIGINT NOT NULL
);

-- Positions of engine-wide sweeps (exits on new orders and events).
CREATE TABLE engine_cursors (
    name  TEXT   PRIMARY KEY,
    value BIGINT NOT NULL
);
