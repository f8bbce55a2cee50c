-- Each contact's behaviour in the year before entering, frozen at entry: orders and spend
-- (cancelled and refunded orders left out, every record of the person counted). The report
-- uses them as CUPED covariates to narrow its intervals; they must be fixed before the
-- campaign could touch them, so they are taken when the contact enters, like the locale and
-- the email domain (migration 18), and never recomputed.
ALTER TABLE enrolments ADD COLUMN pre_orders BIGINT NOT NULL DEFAULT 0;
ALTER TABLE enrolments ADD COLUMN pre_spend_minor BIGINT NOT NULL DEFAULT 0;
UPDATE enrolments SET
  pre_orders = (SELECT COUNT(*) FROM orders o JOIN customers c ON c.id = o.customer_id
    WHERE (c.id = enrolments.profile_id OR c.profile_id = enrolments.profile_id)
      AND o.ordered_at >= enrolments.entered_at - 31536000000000 AND o.ordered_at < enrolments.entered_at
      AND o.status NOT IN ('cancelled', 'refunded')),
  pre_spend_minor = (SELECT CAST(COALESCE(SUM(o.total_minor), 0) AS BIGINT) FROM orders o JOIN customers c ON c.id = o.customer_id
    WHERE (c.id = enrolments.profile_id OR c.profile_id = enrolments.profile_id)
      AND o.ordered_at >= enrolments.entered_at - 31536000000000 AND o.ordered_at < enrolments.entered_at
      AND o.status NOT IN ('cancelled', 'refunded'));
