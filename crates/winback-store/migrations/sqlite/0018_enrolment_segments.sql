-- The contact's locale and email domain as they were when it entered a campaign: what the
-- report splits each campaign's arms by ("by locale", "by mailbox provider").
--
-- Why kept on the enrolment: a segment is a pre-treatment covariate. Read from the customer as
-- it is today, a contact who changed address after a campaign's mail moved between segments
-- after assignment; and the report looked every enrolment's customer up (0.9 s of a report at a
-- million customers). The enrolment insert fills both from the profile's record in the same
-- transaction; erasure clears the domain with the address.
ALTER TABLE enrolments ADD COLUMN locale TEXT;
ALTER TABLE enrolments ADD COLUMN email_domain TEXT;
-- Enrolments made before this migration take today's values: what the report showed for them.
UPDATE enrolments SET
    locale = (SELECT c.locale FROM customers c WHERE c.id = enrolments.profile_id),
    email_domain = (SELECT substr(c.email, length(rtrim(c.email, replace(c.email, '@', ''))) + 1)
                    FROM customers c WHERE c.id = enrolments.profile_id);
