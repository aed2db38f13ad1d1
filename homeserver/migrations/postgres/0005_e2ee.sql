-- End-to-end encryption support: keys, to-device messages and key backup. The server stores
-- these for clients; it never holds a private key or a plaintext message.
INSERT INTO stream_positions (stream, position) VALUES ('device_lists', 0);
INSERT INTO stream_positions (stream, position) VALUES ('to_device', 0);

-- Each device's identity keys as the device uploaded them (self-signed).
CREATE TABLE device_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json  BYTEA NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, device_id)
);

-- One-time keys: each is handed out once, then deleted.
CREATE TABLE one_time_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  BYTEA NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, device_id, algorithm, key_id)
);

-- One fallback key per device and algorithm, handed out (and marked used) when no one-time key is left.
CREATE TABLE fallback_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  BYTEA NOT NULL,
    used      BIGINT NOT NULL DEFAULT 0,
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- Cross-signing keys: key_type is master, self_signing or user_signing.
CREATE TABLE cross_signing_keys (
    user_id    TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    key_type   TEXT NOT NULL,
    public_key TEXT NOT NULL,
    key_json   BYTEA NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures added after upload (/keys/signatures/upload). Kept apart from the keys because who
-- may see a signature depends on who asks. target_key_id is a device ID or a public key.
CREATE TABLE key_signatures (
    target_user_id TEXT NOT NULL,
    target_key_id  TEXT NOT NULL,
    signer_user_id TEXT NOT NULL,
    signer_key_id  TEXT NOT NULL,
    signature      TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
);

-- The latest change of each user's devices or keys, for device_lists in /sync and /keys/changes.
CREATE TABLE device_list_changes (
    user_id   TEXT PRIMARY KEY,
    stream_id BIGINT NOT NULL
);
CREATE INDEX device_list_changes_stream ON device_list_changes (stream_id);

-- To-device messages waiting for their device; deleted once the device's sync acknowledges them.
CREATE TABLE to_device_messages (
    stream_id  BIGINT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    sender     TEXT NOT NULL,
    event_type TEXT NOT NULL,
    content    BYTEA NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX to_device_inbox ON to_device_messages (user_id, device_id, stream_id);

-- Transaction IDs of /sendToDevice requests, so a retried request is not delivered twice.
CREATE TABLE to_device_txns (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id    TEXT NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, device_id, txn_id)
);

-- Server-side key backup versions; deleted versions are kept (without keys) so numbers never repeat.
CREATE TABLE key_backup_versions (
    user_id   TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    version   BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data BYTEA NOT NULL,
    etag      BIGINT NOT NULL DEFAULT 0,
    deleted   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, version)
);

CREATE TABLE key_backup_keys (
    user_id             TEXT NOT NULL,
    version             BIGINT NOT NULL,
    room_id             TEXT NOT NULL,
    session_id          TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count     BIGINT NOT NULL,
    is_verified         BIGINT NOT NULL,
    session_data        BYTEA NOT NULL,
    FOREIGN KEY (user_id, version) REFERENCES key_backup_versions (user_id, version) ON DELETE CASCADE,
    PRIMARY KEY (user_id, version, room_id, session_id)
);
