-- Rooms as a DAG of signed events, with deduplicated state snapshots.

CREATE TABLE rooms (
    room_id      TEXT PRIMARY KEY,
    room_version TEXT NOT NULL,
    creator      TEXT NOT NULL,
    created_ts   BIGINT NOT NULL,
    is_public    BIGINT NOT NULL DEFAULT 0,
    -- The state after the latest accepted event (the room's current state).
    current_state_group BIGINT
);

-- Every event, in the order this server accepted it (`stream_ordering`, assigned by the
-- server in commit order, drives /sync and pagination tokens).
CREATE TABLE events (
    stream_ordering    BIGINT PRIMARY KEY,
    event_id           TEXT NOT NULL UNIQUE,
    room_id            TEXT NOT NULL REFERENCES rooms (room_id),
    event_type         TEXT NOT NULL,
    state_key          TEXT,
    sender             TEXT NOT NULL,
    depth              BIGINT NOT NULL,
    origin_server_ts   BIGINT NOT NULL,
    -- State groups: the room state before and after this event.
    state_group_before BIGINT NOT NULL,
    state_group_after  BIGINT NOT NULL,
    rejected_reason    TEXT,
    -- The signed event JSON, through the storage codec.
    json               BLOB NOT NULL
);
CREATE INDEX events_room_order ON events (room_id, stream_ordering);
CREATE INDEX events_room_ts ON events (room_id, origin_server_ts);
CREATE INDEX events_room_state ON events (room_id, event_type, state_key);

-- Events with no children yet: the `prev_events` of the room's next event.
CREATE TABLE forward_extremities (
    room_id  TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

-- A state group is a delta on its `prev_group` (NULL for a full snapshot); chains are kept
-- short so loading any state touches a bounded number of groups.
CREATE TABLE state_groups (
    state_group BIGINT PRIMARY KEY,
    room_id     TEXT NOT NULL,
    prev_group  BIGINT,
    chain_len   BIGINT NOT NULL
);

CREATE TABLE state_group_entries (
    state_group BIGINT NOT NULL,
    event_type  TEXT NOT NULL,
    state_key   TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    PRIMARY KEY (state_group, event_type, state_key)
);

-- The current membership of every user in every room, from the room's current state.
CREATE TABLE memberships (
    room_id         TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    membership      TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    forgotten       BIGINT NOT NULL DEFAULT 0,
    -- When the user last joined: "shared" history stays readable up to there after leaving.
    last_join_ordering BIGINT,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id, membership);

-- Transaction IDs of client sends, for idempotency and `unsigned.transaction_id`.
CREATE TABLE event_txns (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id    TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);
CREATE INDEX event_txns_event ON event_txns (event_id);

CREATE TABLE room_aliases (
    alias      TEXT PRIMARY KEY,
    room_id    TEXT NOT NULL,
    creator    TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);

-- Client filters (`POST /user/{userId}/filter`), stored as given.
CREATE TABLE filters (
    user_id   TEXT NOT NULL,
    filter_id TEXT NOT NULL,
    json      TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);
