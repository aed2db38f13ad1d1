-- What push rules decided for each member on each event that notifies them. Unread counts are
-- the rows after the member's read receipt; /notifications lists them.
CREATE TABLE event_push_actions (
    user_id         TEXT NOT NULL,
    room_id         TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    -- The thread root's event ID, or 'main' for the main timeline.
    thread_id       TEXT NOT NULL,
    highlight       BIGINT NOT NULL,
    actions         TEXT NOT NULL,
    PRIMARY KEY (user_id, event_id)
);
CREATE INDEX event_push_actions_unread ON event_push_actions (user_id, room_id, stream_ordering);
CREATE INDEX event_push_actions_user ON event_push_actions (user_id, stream_ordering);
