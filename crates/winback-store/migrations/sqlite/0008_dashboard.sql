-- The dashboard's administrators and their sessions. Passwords are argon2id PHC strings;
-- sessions are stored as the SHA-256 of the cookie's value, so a copy of the database does not
-- log anyone in.
CREATE TABLE admin_users (
    id            INTEGER PRIMARY KEY,
    username      TEXT   NOT NULL UNIQUE,
    password_hash TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE admin_sessions (
    token_hash TEXT   PRIMARY KEY,
    user_id    BIGINT NOT NULL,
    csrf       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX admin_sessions_user ON admin_sessions (user_id);
