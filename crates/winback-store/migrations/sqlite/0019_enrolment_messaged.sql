-- When a contact first received a message of its journey (the relay or provider accepted it):
-- the report's "messaged" counts the people with one, not the people in a messaged arm. A
-- contact whose every message was dropped (no consent, a cap, a suppression) entered the
-- treated arm but was never messaged.
--
-- Why kept on the enrolment: the report groups a campaign's enrolments in one scan; a flag
-- there costs that scan nothing, where counting distinct enrolments over the outbox would read
-- every message. Settling a batch of sent messages sets it in the same transaction.
ALTER TABLE enrolments ADD COLUMN messaged_at BIGINT;
UPDATE enrolments SET messaged_at = (
    SELECT MIN(o.sent_at) FROM outbox o WHERE o.enrolment_id = enrolments.id AND o.state = 'sent')
WHERE EXISTS (SELECT 1 FROM outbox o WHERE o.enrolment_id = enrolments.id AND o.state = 'sent');
