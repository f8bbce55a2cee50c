-- Message funnels, messages by state and dropped messages by reason, kept current as messages
-- change and engagement arrives.
--
-- A report, `GET /v1/report` and the dashboard read these counters (a few thousand rows)
-- instead of every message and every engagement event (millions at a large shop). Triggers
-- on the outbox record every change of a counted column in the same transaction as the change,
-- so no write path (the worker, tracking, an events import, a bounce webhook, an erasure) can
-- leave them behind.
--
-- The triggers only append: a row as it is now (+1) and as it was (-1), with the columns the
-- counters are computed from. Nothing contends for a shared counter row (several PostgreSQL
-- workers send at once), and what each counter means is written once, in
-- `winback-store/src/rollups.rs`: `SqlStore::fold_rollups` sums the appended rows into
-- `message_rollup` now and then, and readers add the folded counters and the rows not yet
-- folded, so what they show is the store as it is.
--
-- `outbox.locale` is the contact's locale when the message was queued. `outbox.engagement` is
-- what happened to the message afterwards, one bit each: 1 opened by a person, 2 opened by a
-- machine (a privacy proxy, a scanner), 4 clicked, 8 unsubscribed, 16 complained, 32 bounced
-- hard after the relay accepted it, 64 bounced soft after it was accepted.
--
-- Engagement counts for a message that exists when it arrives (a message's id exists only once
-- it is queued). A survey answer is counted under the message as it was when the answer came
-- (sent, so its provider known) and stays counted.

ALTER TABLE outbox ADD COLUMN locale TEXT NOT NULL DEFAULT 'default';
ALTER TABLE outbox ADD COLUMN engagement BIGINT NOT NULL DEFAULT 0;

UPDATE outbox SET locale = COALESCE((SELECT c.locale FROM customers c WHERE c.id = outbox.profile_id), 'default');

-- What happened to messages already sent, from the engagement events that name them.
UPDATE outbox SET engagement = m.bits
FROM (
    SELECT k, MAX(b1) + MAX(b2) + MAX(b4) + MAX(b8) + MAX(b16) + MAX(b32) + MAX(b64) AS bits
    FROM (
        SELECT json_extract(payload, '$.message_id') AS k,
            CASE WHEN type = 'email_opened' AND json_extract(payload, '$.machine') IS NOT 1 THEN 1 ELSE 0 END AS b1,
            CASE WHEN type = 'email_opened' AND json_extract(payload, '$.machine') IS 1 THEN 2 ELSE 0 END AS b2,
            CASE WHEN type = 'email_clicked' THEN 4 ELSE 0 END AS b4,
            CASE WHEN type = 'email_unsubscribed' THEN 8 ELSE 0 END AS b8,
            CASE WHEN type = 'email_complained' THEN 16 ELSE 0 END AS b16,
            CASE WHEN type = 'email_bounced' AND json_extract(payload, '$.bounce') IS NOT 'soft' THEN 32 ELSE 0 END AS b32,
            CASE WHEN type = 'email_bounced' AND json_extract(payload, '$.bounce') IS 'soft' THEN 64 ELSE 0 END AS b64
        FROM events
        WHERE type IN ('email_opened', 'email_clicked', 'email_unsubscribed', 'email_complained', 'email_bounced')
          AND json_type(payload, '$.message_id') = 'text'
    )
    GROUP BY k
) m
WHERE outbox.idempotency_key = m.k;

CREATE TABLE message_rollup (
    campaign_id    BIGINT NOT NULL,
    day            BIGINT NOT NULL,
    step           TEXT   NOT NULL,
    variant        TEXT   NOT NULL,
    channel        TEXT   NOT NULL,
    locale         TEXT   NOT NULL,
    provider       TEXT   NOT NULL,
    state          TEXT   NOT NULL,
    reason         TEXT   NOT NULL,
    messages       BIGINT NOT NULL,
    sent           BIGINT NOT NULL,
    delivered      BIGINT NOT NULL,
    hard_bounced   BIGINT NOT NULL,
    soft_bounced   BIGINT NOT NULL,
    in_doubt       BIGINT NOT NULL,
    dropped        BIGINT NOT NULL,
    opened_human   BIGINT NOT NULL,
    opened_machine BIGINT NOT NULL,
    clicked        BIGINT NOT NULL,
    unsubscribed   BIGINT NOT NULL,
    complained     BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, day, step, variant, channel, locale, provider, state, reason)
);

-- One message as it is now (sign +1) or as it was (sign -1). `reason` is the drop reason of a
-- dropped message (its outcome up to the first `:`), empty otherwise.
CREATE TABLE message_rollup_delta (
    sign        BIGINT NOT NULL,
    campaign_id BIGINT NOT NULL,
    day         BIGINT NOT NULL,
    step        TEXT   NOT NULL,
    variant     TEXT   NOT NULL,
    channel     TEXT   NOT NULL,
    locale      TEXT   NOT NULL,
    provider    TEXT   NOT NULL,
    state       TEXT   NOT NULL,
    reason      TEXT   NOT NULL,
    outcome     TEXT   NOT NULL,
    engagement  BIGINT NOT NULL
);

-- Survey answers that name a message, by reason.
CREATE TABLE survey_rollup (
    campaign_id BIGINT NOT NULL,
    day         BIGINT NOT NULL,
    step        TEXT   NOT NULL,
    variant     TEXT   NOT NULL,
    channel     TEXT   NOT NULL,
    locale      TEXT   NOT NULL,
    provider    TEXT   NOT NULL,
    reason      TEXT   NOT NULL,
    answers     BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, day, step, variant, channel, locale, provider, reason)
);

-- One survey answer each.
CREATE TABLE survey_rollup_delta (
    campaign_id BIGINT NOT NULL,
    day         BIGINT NOT NULL,
    step        TEXT   NOT NULL,
    variant     TEXT   NOT NULL,
    channel     TEXT   NOT NULL,
    locale      TEXT   NOT NULL,
    provider    TEXT   NOT NULL,
    reason      TEXT   NOT NULL
);

-- A message's columns as the counters read them.
CREATE VIEW outbox_counted AS
SELECT campaign_id, created_at / 86400000000 AS day, step, variant, channel, locale,
    COALESCE(provider, '-') AS provider, state,
    CASE WHEN state <> 'dropped' THEN ''
         WHEN instr(COALESCE(outcome, 'unknown'), ':') > 0 THEN substr(outcome, 1, instr(outcome, ':') - 1)
         ELSE COALESCE(outcome, 'unknown') END AS reason,
    COALESCE(outcome, '') AS outcome, engagement, idempotency_key
FROM outbox;

-- The messages that exist now; the first fold sums them.
INSERT INTO message_rollup_delta
SELECT 1, campaign_id, day, step, variant, channel, locale, provider, state, reason, outcome, engagement
FROM outbox_counted;

INSERT INTO survey_rollup_delta
SELECT o.campaign_id, o.day, o.step, o.variant, o.channel, o.locale, o.provider,
    CASE WHEN json_type(e.payload, '$.reason') = 'text' THEN json_extract(e.payload, '$.reason') ELSE 'other' END
FROM events e JOIN outbox_counted o ON o.idempotency_key = json_extract(e.payload, '$.message_id')
WHERE e.type = 'survey_answered' AND json_type(e.payload, '$.message_id') = 'text';

CREATE TRIGGER outbox_rollup_insert AFTER INSERT ON outbox
BEGIN
    INSERT INTO message_rollup_delta
    SELECT 1, campaign_id, day, step, variant, channel, locale, provider, state, reason, outcome, engagement
    FROM outbox_counted WHERE idempotency_key = NEW.idempotency_key;
END;

CREATE TRIGGER outbox_rollup_delete BEFORE DELETE ON outbox
BEGIN
    INSERT INTO message_rollup_delta
    SELECT -1, campaign_id, day, step, variant, channel, locale, provider, state, reason, outcome, engagement
    FROM outbox_counted WHERE idempotency_key = OLD.idempotency_key;
END;

-- Leases, attempts and recipients change often and count for nothing here: only a change of a
-- counted column records anything. The row as it was is recorded before the update, the row
-- as it is after.
CREATE TRIGGER outbox_rollup_update_old BEFORE UPDATE ON outbox
WHEN OLD.state IS NOT NEW.state OR OLD.outcome IS NOT NEW.outcome OR OLD.provider IS NOT NEW.provider
  OR OLD.engagement IS NOT NEW.engagement OR OLD.locale IS NOT NEW.locale OR OLD.campaign_id IS NOT NEW.campaign_id
  OR OLD.created_at IS NOT NEW.created_at OR OLD.step IS NOT NEW.step OR OLD.variant IS NOT NEW.variant
  OR OLD.channel IS NOT NEW.channel OR OLD.idempotency_key IS NOT NEW.idempotency_key
BEGIN
    INSERT INTO message_rollup_delta
    SELECT -1, campaign_id, day, step, variant, channel, locale, provider, state, reason, outcome, engagement
    FROM outbox_counted WHERE idempotency_key = OLD.idempotency_key;
END;

CREATE TRIGGER outbox_rollup_update_new AFTER UPDATE ON outbox
WHEN OLD.state IS NOT NEW.state OR OLD.outcome IS NOT NEW.outcome OR OLD.provider IS NOT NEW.provider
  OR OLD.engagement IS NOT NEW.engagement OR OLD.locale IS NOT NEW.locale OR OLD.campaign_id IS NOT NEW.campaign_id
  OR OLD.created_at IS NOT NEW.created_at OR OLD.step IS NOT NEW.step OR OLD.variant IS NOT NEW.variant
  OR OLD.channel IS NOT NEW.channel OR OLD.idempotency_key IS NOT NEW.idempotency_key
BEGIN
    INSERT INTO message_rollup_delta
    SELECT 1, campaign_id, day, step, variant, channel, locale, provider, state, reason, outcome, engagement
    FROM outbox_counted WHERE idempotency_key = NEW.idempotency_key;
END;

-- An engagement event that names a message sets the message's bit in the statement that
-- stores it (`ImportSession::insert_events`, the only writer of events): from the typed event,
-- without parsing the payload of every open of every newsletter in a trigger. A survey answer
-- that names a message is counted by reason here.
CREATE TRIGGER events_survey AFTER INSERT ON events
WHEN NEW.type = 'survey_answered' AND json_type(NEW.payload, '$.message_id') = 'text'
BEGIN
    INSERT INTO survey_rollup_delta
    SELECT campaign_id, day, step, variant, channel, locale, provider,
        CASE WHEN json_type(NEW.payload, '$.reason') = 'text' THEN json_extract(NEW.payload, '$.reason') ELSE 'other' END
    FROM outbox_counted WHERE idempotency_key = json_extract(NEW.payload, '$.message_id');
END;
