-- The search rows lose their indexes by event ID and by room. Searches find rows through the FTS
-- index and read them by stream ordering; redactions and prunes delete by stream ordering. Each
-- of those indexes cost every commit a page of the write-ahead log per event written (event IDs
-- are random, and a batch's events are spread over many rooms). SQLite cannot drop a UNIQUE
-- constraint, so the table is rebuilt; the rows keep their stream orderings, which are the FTS
-- index's row IDs, so that index stays as it is.
CREATE TABLE event_search_rebuilt (
    stream_ordering  INTEGER PRIMARY KEY,
    event_id         TEXT NOT NULL,
    room_id          TEXT NOT NULL,
    sender           TEXT NOT NULL,
    search_key       TEXT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    value            TEXT NOT NULL
);
INSERT INTO event_search_rebuilt (stream_ordering, event_id, room_id, sender, search_key, origin_server_ts, value)
    SELECT stream_ordering, event_id, room_id, sender, search_key, origin_server_ts, value FROM event_search;
DROP TRIGGER event_search_fts_insert;
DROP TRIGGER event_search_fts_delete;
DROP TRIGGER event_search_fts_update;
DROP TABLE event_search;
ALTER TABLE event_search_rebuilt RENAME TO event_search;
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
