-- The list hygiene's idle addresses, kept per profile so the report and the dashboard count
-- them from an index instead of reading every customer record (1.1–1.2 s of a report at a
-- million customers). One row per profile with an email address, not erased: `last_at` is its
-- last click or human open of any record (`last_engaged_at`), or when its address was first
-- seen if later or if it never engaged; `engaged` says whether it ever did.
--
-- Exactness, as for the stored outcomes (migration 15): every change to a record's address,
-- first-seen time, last engagement, profile or erasure marks its profile, old and new, in
-- `hygiene_dirty` (the triggers below, in the writer's transaction, so no writer can forget);
-- a reader counts the stored rows of unmarked profiles and recomputes the marked ones from
-- their records, in one statement; `SqlStore::refresh_hygiene` recomputes the marked rows and
-- clears the marks in one transaction.
CREATE TABLE profile_hygiene (
    profile_id INTEGER PRIMARY KEY,
    last_at    INTEGER NOT NULL,
    engaged    INTEGER NOT NULL
);
CREATE INDEX profile_hygiene_last ON profile_hygiene (last_at);
CREATE INDEX profile_hygiene_never ON profile_hygiene (last_at) WHERE engaged = 0;

CREATE TABLE hygiene_dirty (
    customer_id INTEGER PRIMARY KEY
);

-- `WHERE NOT EXISTS`, not `OR IGNORE`: the upsert that fires a trigger imposes its own
-- conflict handling on the trigger's statements (see migration 15).
CREATE TRIGGER customers_hygiene_insert AFTER INSERT ON customers
BEGIN
    INSERT INTO hygiene_dirty (customer_id) SELECT COALESCE(NEW.profile_id, NEW.id)
    WHERE NOT EXISTS (SELECT 1 FROM hygiene_dirty WHERE customer_id = COALESCE(NEW.profile_id, NEW.id));
END;

CREATE TRIGGER customers_hygiene_update AFTER UPDATE OF email, created_at, inserted_at, last_engaged_at, profile_id, erased_at ON customers
WHEN OLD.email IS NOT NEW.email OR OLD.created_at IS NOT NEW.created_at
  OR OLD.inserted_at IS NOT NEW.inserted_at OR OLD.last_engaged_at IS NOT NEW.last_engaged_at
  OR OLD.profile_id IS NOT NEW.profile_id OR OLD.erased_at IS NOT NEW.erased_at
BEGIN
    INSERT INTO hygiene_dirty (customer_id) SELECT COALESCE(OLD.profile_id, OLD.id)
    WHERE NOT EXISTS (SELECT 1 FROM hygiene_dirty WHERE customer_id = COALESCE(OLD.profile_id, OLD.id));
    INSERT INTO hygiene_dirty (customer_id) SELECT COALESCE(NEW.profile_id, NEW.id)
    WHERE NOT EXISTS (SELECT 1 FROM hygiene_dirty WHERE customer_id = COALESCE(NEW.profile_id, NEW.id));
END;

CREATE TRIGGER customers_hygiene_delete AFTER DELETE ON customers
BEGIN
    INSERT INTO hygiene_dirty (customer_id) SELECT COALESCE(OLD.profile_id, OLD.id)
    WHERE NOT EXISTS (SELECT 1 FROM hygiene_dirty WHERE customer_id = COALESCE(OLD.profile_id, OLD.id));
END;

-- Every profile of a store migrated with data is computed by the first refresh.
INSERT INTO hygiene_dirty (customer_id) SELECT DISTINCT COALESCE(profile_id, id) FROM customers;

-- The hygiene's other counts, each from a small index instead of a scan: records merged into
-- another profile, erased records, addresses with non-ASCII characters (the look-alike check
-- runs on those only), and sunset unsubscribes.
CREATE INDEX customers_merged ON customers (id) WHERE profile_id <> id AND erased_at IS NULL;
CREATE INDEX customers_erased ON customers (id) WHERE erased_at IS NOT NULL;
-- (Bytes against characters: `octet_length` needs SQLite 3.43, and the events-import ceiling
-- replays this schema in Python's older SQLite.)
CREATE INDEX customers_non_ascii_email ON customers (id) WHERE length(CAST(email AS BLOB)) <> length(email);
CREATE INDEX consent_ledger_sunset ON consent_ledger (customer_id) WHERE substr(source, 1, 7) = 'sunset:';
