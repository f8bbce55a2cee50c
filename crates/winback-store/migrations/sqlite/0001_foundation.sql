-- Foundation schema. Times are integer microseconds since the Unix epoch (UTC); money is integer
-- minor units with an ISO 4217 code beside it. Both backends share these column types, so one
-- conformance suite and one set of queries serve both.
--
-- The high-volume fact tables (orders, order lines, events, the consent ledger) carry no foreign
-- keys: the store resolves every reference inside the import transaction before writing, and a
-- per-row foreign-key check doubled bulk-load time on both backends (measured: PostgreSQL
-- 22.6 s vs 11.1 s per million upserted orders). Citus, the sharding path, also restricts
-- foreign keys between distributed tables.

CREATE TABLE customers (
    id            INTEGER PRIMARY KEY,
    external_id   TEXT    NOT NULL UNIQUE,
    email         TEXT,
    email_key     TEXT,
    phone         TEXT,
    first_name    TEXT,
    last_name     TEXT,
    address1      TEXT,
    address2      TEXT,
    postal_code   TEXT,
    city          TEXT,
    country       TEXT,
    address_key   TEXT,
    time_zone     TEXT,
    locale        TEXT,
    created_at    INTEGER,
    attributes    TEXT    NOT NULL DEFAULT '{}',
    -- The merged profile this record belongs to (smallest id of its identity group).
    profile_id    INTEGER,
    erased_at     INTEGER,
    inserted_at   INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX customers_email_key ON customers (email_key);
CREATE INDEX customers_phone ON customers (phone);
CREATE INDEX customers_address_key ON customers (address_key);
CREATE INDEX customers_profile ON customers (profile_id);

CREATE TABLE orders (
    id             INTEGER PRIMARY KEY,
    external_id    TEXT    NOT NULL UNIQUE,
    customer_id    INTEGER NOT NULL,
    ordered_at     INTEGER NOT NULL,
    total_minor    INTEGER NOT NULL,
    discount_minor INTEGER NOT NULL,
    currency       TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    category       TEXT,
    item_count     INTEGER NOT NULL,
    inserted_at    INTEGER NOT NULL
);
CREATE INDEX orders_customer_time ON orders (customer_id, ordered_at);

CREATE TABLE order_discount_codes (
    order_id INTEGER NOT NULL,
    code     TEXT    NOT NULL,
    PRIMARY KEY (order_id, code)
);
CREATE INDEX order_discount_codes_code ON order_discount_codes (code);

CREATE TABLE order_items (
    order_id         INTEGER NOT NULL,
    line_no          INTEGER NOT NULL,
    sku              TEXT,
    name             TEXT    NOT NULL,
    category         TEXT,
    quantity         INTEGER NOT NULL,
    unit_price_minor INTEGER NOT NULL,
    currency         TEXT    NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    event_key   TEXT    NOT NULL UNIQUE,
    customer_id INTEGER NOT NULL,
    type        TEXT    NOT NULL,
    occurred_at INTEGER NOT NULL,
    payload     TEXT    NOT NULL,
    inserted_at INTEGER NOT NULL
);
CREATE INDEX events_customer_time ON events (customer_id, occurred_at);
CREATE INDEX events_type_time ON events (type, occurred_at);

-- Every consent statement ever recorded; the one in force is folded from the history.
CREATE TABLE consent_ledger (
    id              INTEGER PRIMARY KEY,
    customer_id     INTEGER NOT NULL,
    channel         TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    source          TEXT    NOT NULL,
    wording_version TEXT,
    recorded_at     INTEGER NOT NULL,
    inserted_at     INTEGER NOT NULL,
    UNIQUE (customer_id, channel, status, recorded_at, source)
);

-- The links that merged profiles in the last identity resolution, for explanations.
CREATE TABLE identity_links (
    customer_a INTEGER NOT NULL REFERENCES customers (id),
    customer_b INTEGER NOT NULL REFERENCES customers (id),
    rule       TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    linked_at  INTEGER NOT NULL,
    PRIMARY KEY (customer_a, customer_b, rule)
);
CREATE INDEX identity_links_b ON identity_links (customer_b);

-- Keys too common to merge on (a shop's own address, info@ mailboxes), from the last run.
CREATE TABLE identity_skipped_keys (
    rule    TEXT    NOT NULL,
    value   TEXT    NOT NULL,
    records INTEGER NOT NULL,
    PRIMARY KEY (rule, value)
);

CREATE TABLE import_runs (
    id            INTEGER PRIMARY KEY,
    kind          TEXT    NOT NULL,
    file          TEXT    NOT NULL,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER NOT NULL,
    rows_ok       INTEGER NOT NULL,
    rows_rejected INTEGER NOT NULL,
    mode          TEXT    NOT NULL
);
