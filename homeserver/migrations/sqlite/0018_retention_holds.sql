-- Redacted events' original content, kept while their room's min_lifetime (retention) says it
-- must be: clients only ever see the redacted form in `events`; the retention purge deletes
-- the row once `release_ts` has passed. `json` is a sealed record with encryption at rest.
CREATE TABLE redaction_holds (
    event_id   TEXT PRIMARY KEY,
    room_id    TEXT NOT NULL,
    release_ts BIGINT NOT NULL,
    json       BLOB NOT NULL
);
CREATE INDEX redaction_holds_release ON redaction_holds (release_ts);
CREATE INDEX redaction_holds_room ON redaction_holds (room_id);

-- Set once a membership event with `is_direct: true` enters the room's timeline (an invite to a
-- direct chat): the room then gets the [retention.direct] defaults.
ALTER TABLE rooms ADD COLUMN is_direct BIGINT NOT NULL DEFAULT 0;
