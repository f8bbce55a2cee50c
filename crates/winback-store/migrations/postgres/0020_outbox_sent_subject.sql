-- The subject line of a sent email as its recipient got it. The SQLite migration of the same
-- number explains why.
ALTER TABLE outbox ADD COLUMN sent_subject TEXT;
