-- Push actions are written here first, in stream order: a commit appends its rows to one end
-- of one B-tree instead of adding a row to every notified member's range of
-- event_push_actions (each such row rewrote a whole page of the write-ahead log). The event
-- writer moves them into event_push_actions in bulk, member by member; readers read both.
CREATE TABLE recent_push_actions (
    stream_ordering BIGINT NOT NULL,
    user_id         TEXT NOT NULL,
    room_id         TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    thread_id       TEXT NOT NULL,
    highlight       BIGINT NOT NULL,
    actions         TEXT NOT NULL,
    PRIMARY KEY (stream_ordering, user_id)
) WITHOUT ROWID;
