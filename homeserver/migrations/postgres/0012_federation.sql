-- Federation: other servers' keys, received transactions, the outbox, and outlier events.

-- Other servers' public signing keys, taken from key objects whose self-signatures verified.
CREATE TABLE server_keys (
    server_name    TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    public_key     TEXT NOT NULL,
    -- Current keys are valid until this time; retired keys only for signatures before expired_ts.
    valid_until_ts BIGINT NOT NULL,
    expired_ts     BIGINT,
    PRIMARY KEY (server_name, key_id)
);

-- The latest key object each server published, as fetched, for answering notary queries.
CREATE TABLE server_key_objects (
    server_name    TEXT PRIMARY KEY,
    valid_until_ts BIGINT NOT NULL,
    fetched_ts     BIGINT NOT NULL,
    json           TEXT NOT NULL
);

-- Transactions received from other servers: a retried transaction gets the first answer again.
CREATE TABLE federation_txns (
    origin      TEXT NOT NULL,
    txn_id      TEXT NOT NULL,
    response    TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);

-- Events waiting to be sent to each destination, in stream order; deleted once delivered.
CREATE TABLE federation_outbox_pdus (
    destination     TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    PRIMARY KEY (destination, stream_ordering)
);

-- EDUs (typing, receipts, device lists, to-device) waiting for each destination.
CREATE TABLE federation_outbox_edus (
    destination TEXT NOT NULL,
    position    BIGINT NOT NULL,
    edu         TEXT NOT NULL,
    PRIMARY KEY (destination, position)
);
INSERT INTO stream_positions (stream, position) VALUES ('federation_edus', 0);

-- Invites of local users into rooms this server is not in, with the stripped room state the
-- inviting server sent for the invitee to decide by.
CREATE TABLE remote_invites (
    room_id        TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    stripped_state TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);

-- Outliers: events known for their state and auth chains (a remote room's state at join) that
-- are not part of this server's timeline of the room.
ALTER TABLE events ADD COLUMN outlier BIGINT NOT NULL DEFAULT 0;
