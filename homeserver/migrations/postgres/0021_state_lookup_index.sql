-- Lookups by (type, state key) are for state events only: messages, most of the events, no
-- longer each add an entry to this index.
DROP INDEX events_room_state;
CREATE INDEX events_room_state ON events (room_id, event_type, state_key) WHERE state_key IS NOT NULL;
