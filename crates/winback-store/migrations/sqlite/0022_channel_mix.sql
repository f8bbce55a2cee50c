-- The rest of the seeds' channel mix (issue 23).
--
-- Audience exports remember the variant of the journey that added the contact, so the report
-- can book each destination's cost and results to its arm like a message's.
ALTER TABLE audience_exports ADD COLUMN variant TEXT;
UPDATE audience_exports SET variant = (
  SELECT e.variant FROM enrolments e
  WHERE e.campaign_id = audience_exports.campaign_id AND e.profile_id = audience_exports.profile_id
    AND e.entered_at <= audience_exports.added_at
  ORDER BY e.entered_at DESC LIMIT 1);

-- Phone follow-up (seed 000: "telefonisch contact en een korte enquête"): a journey's call
-- step puts the contact on a named call list, once per enrolment and step. Customer service
-- works the open tasks; each outcome is also stored as a `call_outcome` event, which journeys
-- wait and branch on. `state`: open (to call), done (an outcome closed it) or cancelled (the
-- journey ended, the number became do-not-call, or the attempts ran out).
CREATE TABLE call_tasks (
    id            INTEGER PRIMARY KEY,
    campaign_id   BIGINT NOT NULL,
    enrolment_id  BIGINT NOT NULL,
    profile_id    BIGINT NOT NULL,
    step          TEXT   NOT NULL,
    variant       TEXT   NOT NULL,
    list          TEXT   NOT NULL,
    added_at      BIGINT NOT NULL,
    state         TEXT   NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 0,
    outcome       TEXT,
    reason        TEXT,
    agent         TEXT,
    note          TEXT,
    outcome_at    BIGINT,
    closed_reason TEXT,
    UNIQUE (enrolment_id, step)
);
CREATE INDEX call_tasks_list ON call_tasks (list, state, added_at);
CREATE INDEX call_tasks_campaign ON call_tasks (campaign_id, added_at);
CREATE INDEX call_tasks_profile ON call_tasks (profile_id, state);

-- Wallet passes (seed 001: "push wallet"): one pass per campaign and person, carrying the
-- campaign's newest offer code. A later wallet step updates it (`version` counts the changes);
-- devices register for updates through the PassKit web service, and each registration records
-- the version it was last told about, so every change reaches every device once.
CREATE TABLE wallet_passes (
    serial       TEXT   PRIMARY KEY,
    campaign_id  BIGINT NOT NULL,
    profile_id   BIGINT NOT NULL,
    enrolment_id BIGINT NOT NULL,
    step         TEXT   NOT NULL,
    variant      TEXT   NOT NULL,
    style        TEXT   NOT NULL,
    offer_code   TEXT,
    version      BIGINT NOT NULL,
    issued_at    BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX wallet_passes_campaign ON wallet_passes (campaign_id, issued_at);
CREATE INDEX wallet_passes_profile ON wallet_passes (profile_id);

CREATE TABLE wallet_registrations (
    device          TEXT   NOT NULL,
    serial          TEXT   NOT NULL,
    push_token      TEXT   NOT NULL,
    registered_at   BIGINT NOT NULL,
    unregistered_at BIGINT,
    pushed_version  BIGINT NOT NULL,
    PRIMARY KEY (device, serial)
);
CREATE INDEX wallet_registrations_serial ON wallet_registrations (serial);
