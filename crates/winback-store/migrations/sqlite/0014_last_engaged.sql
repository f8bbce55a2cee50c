-- Each customer record's last click or human open, kept by `ImportSession::insert_events` (the
-- only writer of events) as engagement arrives. The list-hygiene report ("idle 12+ months")
-- reads it instead of grouping every open and click a shop ever recorded.
ALTER TABLE customers ADD COLUMN last_engaged_at BIGINT;

UPDATE customers SET last_engaged_at = (
    SELECT MAX(e.occurred_at) FROM events e
    WHERE e.customer_id = customers.id
      AND (e.type = 'email_clicked' OR (e.type = 'email_opened' AND e.payload NOT LIKE '%"machine":true%'))
);
