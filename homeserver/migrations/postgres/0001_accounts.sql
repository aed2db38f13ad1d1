-- Accounts, devices, tokens and user-interactive auth. Flags are BIGINT 0/1 on both engines so
-- one set of queries serves SQLite and PostgreSQL.
CREATE TABLE users (
    user_id       TEXT PRIMARY KEY,
    password_hash TEXT,
    is_admin      BIGINT NOT NULL DEFAULT 0,
    deactivated   BIGINT NOT NULL DEFAULT 0,
    created_ts    BIGINT NOT NULL
);

CREATE TABLE profiles (
    user_id     TEXT PRIMARY KEY REFERENCES users (user_id) ON DELETE CASCADE,
    displayname TEXT,
    avatar_url  TEXT
);

CREATE TABLE devices (
    user_id      TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    device_id    TEXT NOT NULL,
    display_name TEXT,
    created_ts   BIGINT NOT NULL,
    last_seen_ts BIGINT,
    last_seen_ip TEXT,
    PRIMARY KEY (user_id, device_id)
);

-- Tokens are stored only as SHA-256 hashes: a copy of the database yields no live token.
CREATE TABLE refresh_tokens (
    token_hash BYTEA PRIMARY KEY,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    expires_ts BIGINT,
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_device ON refresh_tokens (user_id, device_id);

CREATE TABLE access_tokens (
    token_hash         BYTEA PRIMARY KEY,
    user_id            TEXT NOT NULL,
    device_id          TEXT NOT NULL,
    created_ts         BIGINT NOT NULL,
    expires_ts         BIGINT,
    refresh_token_hash BYTEA REFERENCES refresh_tokens (token_hash) ON DELETE CASCADE,
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX access_tokens_device ON access_tokens (user_id, device_id);
CREATE INDEX access_tokens_refresh ON access_tokens (refresh_token_hash);

CREATE TABLE uiaa_sessions (
    session_id TEXT PRIMARY KEY,
    user_id    TEXT,
    purpose    TEXT NOT NULL,
    completed  BYTEA NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX uiaa_sessions_created ON uiaa_sessions (created_ts);

CREATE TABLE registration_tokens (
    token        TEXT PRIMARY KEY,
    uses_allowed BIGINT,
    completed    BIGINT NOT NULL DEFAULT 0,
    expiry_time  BIGINT,
    created_ts   BIGINT NOT NULL
);
