-- The subject line of a sent email as its recipient got it: rendered with their name, offer and
-- language. The campaign's `subject` is a template; a customer's timeline shows what was sent.
-- It is personal data: erasure clears it with the recipient.
ALTER TABLE outbox ADD COLUMN sent_subject TEXT;
