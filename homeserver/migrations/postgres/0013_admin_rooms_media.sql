-- Administration of rooms and media: blocked rooms, background admin tasks, quarantine.

-- Rooms no one on this server may join, be invited to or knock on (the admin API's block).
CREATE TABLE blocked_rooms (
    room_id    TEXT PRIMARY KEY,
    blocked_by TEXT NOT NULL,
    blocked_ts BIGINT NOT NULL
);

-- Long admin actions (room deletion, history purges) run in the background; their progress
-- is polled here. `result` is the JSON the status endpoint reports.
CREATE TABLE admin_tasks (
    task_id    TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    room_id    TEXT NOT NULL,
    status     TEXT NOT NULL,
    result     TEXT,
    error      TEXT,
    created_ts BIGINT NOT NULL,
    updated_ts BIGINT NOT NULL
);
CREATE INDEX admin_tasks_room ON admin_tasks (room_id, created_ts);

-- The highest stream ordering a room purge removed: new events are ordered after it, so
-- positions already handed to clients in sync tokens are never reused.
INSERT INTO stream_positions (stream, position) VALUES ('events_purged', 0);

-- Quarantined media answers 404 to downloads; the admin who quarantined it is kept.
ALTER TABLE media ADD COLUMN quarantined_by TEXT;
CREATE INDEX media_uploader ON media (uploader, created_ts);
