-- Each enrolment's orders and revenue within its campaign's conversion window, kept on the
-- enrolment so a report sums stored figures instead of looking up every contact's orders
-- (3.8 s of a 7.4 s report at a million customers). `outcome_window` is the window, in
-- microseconds, the figures were computed for; NULL means not computed yet.
--
-- Exactness: a report reads the stored figures only where they cannot be stale (the window
-- matches and no record of the contact is marked in `outcome_dirty`) and computes the rest
-- from the orders, so the dashboard never shows a stale figure. Every writer of orders and
-- of profile membership marks the records it touched (`ImportSession::commit`, identity
-- resolution, and the trigger below for an order moved to another customer);
-- `SqlStore::refresh_outcomes` recomputes the marked enrolments and clears the marks in one
-- transaction.
ALTER TABLE enrolments ADD COLUMN outcome_orders BIGINT NOT NULL DEFAULT 0;
ALTER TABLE enrolments ADD COLUMN outcome_revenue_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE enrolments ADD COLUMN outcome_window BIGINT;
-- Enrolments whose outcome was never computed, found without scanning a campaign's enrolments.
CREATE INDEX enrolments_outcome_missing ON enrolments (campaign_id) WHERE outcome_window IS NULL;
-- The window each campaign's stored outcomes were last refreshed for (NULL: never).
ALTER TABLE campaigns ADD COLUMN outcome_window BIGINT;

CREATE TABLE outcome_dirty (
    customer_id INTEGER PRIMARY KEY
);

-- An order re-imported under another customer leaves its old customer's figures stale (the
-- import marks only the customers its rows name). Rare, so a trigger costs nothing on loads.
-- `WHERE NOT EXISTS`, not `OR IGNORE`: the upsert that fires the trigger imposes its own
-- conflict handling on the trigger's statements.
CREATE TRIGGER orders_moved_marks_old_customer AFTER UPDATE OF customer_id ON orders
WHEN OLD.customer_id <> NEW.customer_id
BEGIN
    INSERT INTO outcome_dirty (customer_id) SELECT OLD.customer_id
    WHERE NOT EXISTS (SELECT 1 FROM outcome_dirty WHERE customer_id = OLD.customer_id);
    INSERT INTO feature_dirty (customer_id) SELECT OLD.customer_id
    WHERE NOT EXISTS (SELECT 1 FROM feature_dirty WHERE customer_id = OLD.customer_id);
END;
