-- Staged push actions (see the SQLite migration). PostgreSQL logs rows, not pages, so its
-- event writer writes push actions straight to event_push_actions and this table stays empty (a
-- copy from SQLite files the rows it brings); it exists so that one set of queries reads,
-- purges and copies both engines.
CREATE TABLE recent_push_actions (
    stream_ordering BIGINT NOT NULL,
    user_id         TEXT NOT NULL,
    room_id         TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    thread_id       TEXT NOT NULL,
    highlight       BIGINT NOT NULL,
    actions         TEXT NOT NULL,
    PRIMARY KEY (stream_ordering, user_id)
);
