-- Unread counts scan a member's push actions in a room after their read receipt: a narrow
-- index answers that without reading each action's JSON.
CREATE INDEX event_push_actions_unread ON event_push_actions (user_id, room_id, thread_id, stream_ordering, highlight);
