-- Full-text search (`POST /search`): one row per searchable event (a message's `content.body`,
-- a room's `content.name` or `content.topic`), keyed by the event's stream ordering. The FTS5
-- index refers to these rows (external content) and is kept in step by triggers, so a copy into
-- this engine (`myelin migrate-db`) rebuilds it by inserting the rows.
CREATE TABLE event_search (
    stream_ordering  INTEGER PRIMARY KEY,
    event_id         TEXT NOT NULL UNIQUE,
    room_id          TEXT NOT NULL,
    sender           TEXT NOT NULL,
    search_key       TEXT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    value            TEXT NOT NULL
);
CREATE INDEX event_search_room ON event_search (room_id, stream_ordering);
-- Events persisted before this migration are indexed by a background task; this is how far it got.
INSERT INTO stream_positions (stream, position) VALUES ('search_backfill', 0);
CREATE VIRTUAL TABLE event_search_fts USING fts5(
    value, content = 'event_search', content_rowid = 'stream_ordering', tokenize = 'porter unicode61'
);
CREATE TRIGGER event_search_fts_insert AFTER INSERT ON event_search BEGIN
    INSERT INTO event_search_fts (rowid, value) VALUES (new.stream_ordering, new.value);
END;
CREATE TRIGGER event_search_fts_delete AFTER DELETE ON event_search BEGIN
    INSERT INTO event_search_fts (event_search_fts, rowid, value) VALUES ('delete', old.stream_ordering, old.value);
END;
CREATE TRIGGER event_search_fts_update AFTER UPDATE ON event_search BEGIN
    INSERT INTO event_search_fts (event_search_fts, rowid, value) VALUES ('delete', old.stream_ordering, old.value);
    INSERT INTO event_search_fts (rowid, value) VALUES (new.stream_ordering, new.value);
END;

-- Presence: the latest state per user. `stream_id` orders changes for /sync; `last_active_ts`
-- is written with state changes only (activity in between is tracked in memory).
CREATE TABLE presence (
    user_id        TEXT PRIMARY KEY,
    state          TEXT NOT NULL,
    status_msg     TEXT,
    last_active_ts BIGINT NOT NULL,
    stream_id      BIGINT NOT NULL
);
CREATE INDEX presence_stream ON presence (stream_id);
INSERT INTO stream_positions (stream, position) VALUES ('presence', 0);

-- OpenID tokens (`/openid/request_token`), stored as SHA-256 hashes, valid until `expires_ts`.
CREATE TABLE openid_tokens (
    token_hash BLOB PRIMARY KEY,
    user_id    TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX openid_tokens_expiry ON openid_tokens (expires_ts);
