-- The contact's locale and email domain as they were when it entered a campaign. The SQLite
-- migration of the same number explains why they are kept on the enrolment.
ALTER TABLE enrolments ADD COLUMN locale TEXT;
ALTER TABLE enrolments ADD COLUMN email_domain TEXT;
-- Enrolments made before this migration take today's values: what the report showed for them.
UPDATE enrolments e SET locale = c.locale, email_domain = regexp_replace(c.email, '^.*@', '')
FROM customers c WHERE c.id = e.profile_id;
