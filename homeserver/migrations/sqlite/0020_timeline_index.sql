-- Timeline walks (sync, /messages) read only positions and IDs from the index: the events
-- themselves come from the event cache, or by ID for the few it lacks. The old index is a prefix
-- of this one.
CREATE INDEX events_room_timeline ON events (room_id, stream_ordering, outlier, rejected_reason, event_id);
DROP INDEX events_room_order;
