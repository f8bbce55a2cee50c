-- Message funnels, messages by state and dropped messages by reason, kept current as messages
-- change and engagement arrives. The SQLite migration of the same number explains the design;
-- what each counter means is written once, in `winback-store/src/rollups.rs`.
--
-- The triggers only append: several workers send at once, and a counter row that every
-- sending transaction updated would serialise them on its lock (and could deadlock two
-- transactions that touch two counters in opposite orders). `SqlStore::fold_rollups` moves
-- the appended rows into `message_rollup` with one `DELETE … RETURNING` statement, so a row
-- committed while it runs is either folded or left for the next fold, never lost or counted
-- twice.

ALTER TABLE outbox ADD COLUMN locale TEXT NOT NULL DEFAULT 'default';
ALTER TABLE outbox ADD COLUMN engagement BIGINT NOT NULL DEFAULT 0;

UPDATE outbox SET locale = COALESCE(c.locale, 'default') FROM customers c WHERE c.id = outbox.profile_id;

-- The bit an engagement event sets on the message it names (0: none).
CREATE FUNCTION winback_engagement_bit(kind TEXT, payload JSONB) RETURNS BIGINT
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN jsonb_typeof(payload -> 'message_id') IS DISTINCT FROM 'string' THEN 0
        WHEN kind = 'email_opened' THEN CASE WHEN payload -> 'machine' = 'true'::jsonb THEN 2 ELSE 1 END
        WHEN kind = 'email_clicked' THEN 4
        WHEN kind = 'email_unsubscribed' THEN 8
        WHEN kind = 'email_complained' THEN 16
        WHEN kind = 'email_bounced' THEN CASE WHEN payload -> 'bounce' = '"soft"'::jsonb THEN 64 ELSE 32 END
        ELSE 0
    END
$$;

UPDATE outbox SET engagement = m.bits
FROM (
    SELECT payload::jsonb ->> 'message_id' AS k, bit_or(winback_engagement_bit(type, payload::jsonb)) AS bits
    FROM events
    WHERE type IN ('email_opened', 'email_clicked', 'email_unsubscribed', 'email_complained', 'email_bounced')
    GROUP BY 1
) m
WHERE outbox.idempotency_key = m.k AND m.bits <> 0;

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

-- One message's row in `message_rollup_delta`, as it is (`sign` +1) or was (-1).
CREATE FUNCTION winback_message_delta(o outbox, sign BIGINT) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO message_rollup_delta
    VALUES (
        sign, o.campaign_id, o.created_at / 86400000000, o.step, o.variant, o.channel, o.locale,
        COALESCE(o.provider, '-'), o.state,
        CASE WHEN o.state = 'dropped' THEN split_part(COALESCE(o.outcome, 'unknown'), ':', 1) ELSE '' END,
        COALESCE(o.outcome, ''), o.engagement
    )
$$;

-- The messages that exist now; the first fold sums them.
SELECT winback_message_delta(o, 1) FROM outbox o;

INSERT INTO survey_rollup_delta
SELECT o.campaign_id, o.created_at / 86400000000, o.step, o.variant, o.channel, o.locale,
    COALESCE(o.provider, '-'),
    CASE WHEN jsonb_typeof(e.payload::jsonb -> 'reason') = 'string' THEN e.payload::jsonb ->> 'reason' ELSE 'other' END
FROM events e JOIN outbox o ON o.idempotency_key = e.payload::jsonb ->> 'message_id'
WHERE e.type = 'survey_answered';

CREATE FUNCTION winback_outbox_rollup() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM winback_message_delta(OLD, -1);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM winback_message_delta(NEW, 1);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_rollup_insert_delete AFTER INSERT OR DELETE ON outbox
FOR EACH ROW EXECUTE FUNCTION winback_outbox_rollup();

-- Leases, attempts and recipients change often and count for nothing here.
CREATE TRIGGER outbox_rollup_update AFTER UPDATE ON outbox
FOR EACH ROW WHEN (
    OLD.state IS DISTINCT FROM NEW.state OR OLD.outcome IS DISTINCT FROM NEW.outcome
    OR OLD.provider IS DISTINCT FROM NEW.provider OR OLD.engagement IS DISTINCT FROM NEW.engagement
    OR OLD.locale IS DISTINCT FROM NEW.locale OR OLD.campaign_id IS DISTINCT FROM NEW.campaign_id
    OR OLD.created_at IS DISTINCT FROM NEW.created_at OR OLD.step IS DISTINCT FROM NEW.step
    OR OLD.variant IS DISTINCT FROM NEW.variant OR OLD.channel IS DISTINCT FROM NEW.channel
)
EXECUTE FUNCTION winback_outbox_rollup();

-- An engagement event that names a message sets the message's bit in the statement that stores
-- it (`ImportSession::insert_events`); a survey answer that names a message is counted by
-- reason here.
CREATE FUNCTION winback_survey_rollup() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    p JSONB;
BEGIN
    p := NEW.payload::jsonb;
    IF jsonb_typeof(p -> 'message_id') = 'string' THEN
        INSERT INTO survey_rollup_delta
        SELECT o.campaign_id, o.created_at / 86400000000, o.step, o.variant, o.channel, o.locale,
            COALESCE(o.provider, '-'),
            CASE WHEN jsonb_typeof(p -> 'reason') = 'string' THEN p ->> 'reason' ELSE 'other' END
        FROM outbox o WHERE o.idempotency_key = p ->> 'message_id';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_survey AFTER INSERT ON events
FOR EACH ROW WHEN (NEW.type = 'survey_answered')
EXECUTE FUNCTION winback_survey_rollup();
