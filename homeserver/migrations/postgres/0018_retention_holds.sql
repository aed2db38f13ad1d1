-- Redacted events' original content, kept while their room's min_lifetime (retention) says it
-- must be: clients only ever see the redacted form in `events`; the retention purge deletes
-- the row once `release_ts` has passed. `json` is a sealed record with encryption at rest.
CREATE TABLE redaction_holds (
    event_id   TEXT PRIMARY KEY,
    room_id    TEXT NOT NULL,
    release_ts BIGINT NOT NULL,
    json       BYTEA NOT NULL
);
CREATE INDEX redaction_holds_release ON redaction_holds (release_ts);
CREATE INDEX redaction_holds_room ON redaction_holds (room_id);

-- A direct chat, which gets the [retention.direct] defaults: created here with `is_direct`, or
-- first known here through an invite with `is_direct: true`. Later events never change it.
ALTER TABLE rooms ADD COLUMN is_direct BIGINT NOT NULL DEFAULT 0;
