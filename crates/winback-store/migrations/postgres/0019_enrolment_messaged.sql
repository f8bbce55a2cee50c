-- When a contact first received a message of its journey. The SQLite migration of the same
-- number explains why it is kept on the enrolment.
ALTER TABLE enrolments ADD COLUMN messaged_at BIGINT;
UPDATE enrolments e SET messaged_at = o.first_sent
FROM (SELECT enrolment_id, MIN(sent_at) AS first_sent FROM outbox WHERE state = 'sent' GROUP BY enrolment_id) o
WHERE o.enrolment_id = e.id;
