-- Administration: the tamper-evident admin audit log, the access log and content reports.

-- One row per administrative action. `hash` is SHA-256 (hex) over the canonical JSON of the
-- entry and the previous entry's hash, so editing or deleting a row breaks the chain.
CREATE TABLE audit_log (
    seq    BIGINT PRIMARY KEY,
    ts     BIGINT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    params TEXT NOT NULL,
    result TEXT NOT NULL,
    hash   TEXT NOT NULL
);
CREATE INDEX audit_log_ts ON audit_log (ts);

-- The newest entry of the chain. Appends update this one row first, which serializes them on
-- both engines (the row lock is held until commit), so the chain never forks. `base_seq` and
-- `base_hash` are the last entry removed by retention (0 and '' while none is): the chain
-- verifies from there.
CREATE TABLE audit_head (
    id        BIGINT PRIMARY KEY,
    seq       BIGINT NOT NULL,
    hash      TEXT NOT NULL,
    base_seq  BIGINT NOT NULL,
    base_hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash, base_seq, base_hash) VALUES (1, 0, '', 0, '');

-- Authenticated requests: route templates only, never raw paths or query strings.
CREATE TABLE access_log (
    id         BIGINT PRIMARY KEY,
    ts         BIGINT NOT NULL,
    user_id    TEXT NOT NULL,
    device_id  TEXT,
    ip         TEXT,
    user_agent TEXT,
    method     TEXT NOT NULL,
    route      TEXT NOT NULL,
    room_id    TEXT,
    status     BIGINT NOT NULL,
    latency_us BIGINT NOT NULL
);
CREATE INDEX access_log_ts ON access_log (ts);
CREATE INDEX access_log_user ON access_log (user_id, ts);
CREATE INDEX access_log_room ON access_log (room_id, ts);
INSERT INTO stream_positions (stream, position) VALUES ('access_log', 0);

-- Reports of events (and of whole rooms, with no event) for the server's admins.
CREATE TABLE content_reports (
    id          BIGINT PRIMARY KEY,
    received_ts BIGINT NOT NULL,
    room_id     TEXT NOT NULL,
    event_id    TEXT,
    user_id     TEXT NOT NULL,
    reason      TEXT,
    score       BIGINT
);
CREATE INDEX content_reports_room ON content_reports (room_id);
CREATE INDEX content_reports_user ON content_reports (user_id);
INSERT INTO stream_positions (stream, position) VALUES ('content_reports', 0);
