-- Counters for the streams other than events, advanced atomically by UPDATE … RETURNING.
CREATE TABLE stream_positions (
    stream   TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);
INSERT INTO stream_positions (stream, position) VALUES ('account_data', 0);

-- Global (room_id = '') and per-room account data; the latest content per type.
CREATE TABLE account_data (
    user_id   TEXT NOT NULL,
    room_id   TEXT NOT NULL,
    data_type TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    content   BLOB NOT NULL,
    PRIMARY KEY (user_id, room_id, data_type)
);
CREATE INDEX account_data_stream ON account_data (user_id, stream_id);
