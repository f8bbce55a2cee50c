-- Each enrolment's orders and revenue within its campaign's conversion window, kept on the
-- enrolment. The SQLite migration of the same number explains the design and why it is exact.
ALTER TABLE enrolments ADD COLUMN outcome_orders BIGINT NOT NULL DEFAULT 0;
ALTER TABLE enrolments ADD COLUMN outcome_revenue_minor BIGINT NOT NULL DEFAULT 0;
ALTER TABLE enrolments ADD COLUMN outcome_window BIGINT;
-- Enrolments whose outcome was never computed, found without scanning a campaign's enrolments.
CREATE INDEX enrolments_outcome_missing ON enrolments (campaign_id) WHERE outcome_window IS NULL;
-- The window each campaign's stored outcomes were last refreshed for (NULL: never).
ALTER TABLE campaigns ADD COLUMN outcome_window BIGINT;

CREATE TABLE outcome_dirty (
    customer_id BIGINT PRIMARY KEY
);

CREATE FUNCTION winback_order_moved() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outcome_dirty (customer_id) VALUES (OLD.customer_id) ON CONFLICT DO NOTHING;
    INSERT INTO feature_dirty (customer_id) VALUES (OLD.customer_id) ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER orders_moved_marks_old_customer AFTER UPDATE OF customer_id ON orders
FOR EACH ROW WHEN (OLD.customer_id IS DISTINCT FROM NEW.customer_id)
EXECUTE FUNCTION winback_order_moved();
