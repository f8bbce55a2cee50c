-- The SHA-256 (hex) of each message's idempotency key. The mail channel derives the
-- `Message-ID` (`wb.<first 32 hex>@…`) and the VERP tag of the envelope sender
-- (`bounces+<first 16 hex>@…`) from it, so a bounce or complaint report mailed back hours later
-- finds its message by a prefix of this column. Rows written before this migration are filled
-- in by the migration runner (SQL has no portable SHA-256).
ALTER TABLE outbox ADD COLUMN key_digest TEXT;
CREATE INDEX outbox_key_digest ON outbox (key_digest);
