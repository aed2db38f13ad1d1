-- Search rows are no longer unique by event ID (SQLite dropped that index, see its migration):
-- redactions and prunes delete them by stream ordering. The room index stays here: PostgreSQL
-- may narrow a search to the searcher's rooms before it tests the text.
ALTER TABLE event_search DROP CONSTRAINT IF EXISTS event_search_event_id_key;
