-- Erasures (deactivation with `erase`) still to finish: the background job deletes the row when
-- done, and the server resumes any left at start.
CREATE TABLE user_erasures (
    user_id      TEXT PRIMARY KEY,
    requested_ts BIGINT NOT NULL
);
