-- Links the last identity resolution did not apply because the merged profile would have been
-- larger than `max_group_size` (an oversized chain split at its weakest links), for
-- `winback status` and `customers show`.
CREATE TABLE identity_held_apart (
    customer_a BIGINT NOT NULL,
    customer_b BIGINT NOT NULL,
    rule       TEXT   NOT NULL,
    value      TEXT   NOT NULL,
    would_be   BIGINT NOT NULL,
    PRIMARY KEY (customer_a, customer_b, rule)
);
CREATE INDEX identity_held_apart_b ON identity_held_apart (customer_b);
