-- Thumbnails of other servers' media fetched from their origin, for media not fetched whole
-- (its thumbnails are then made here and kept in media_thumbnails). Keyed by the size we asked
-- for, which is one of our thumbnail sizes; there is no media row to refer to.
CREATE TABLE remote_media_thumbnails (
    origin       TEXT NOT NULL,
    media_id     TEXT NOT NULL,
    width        BIGINT NOT NULL,
    height       BIGINT NOT NULL,
    method       TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL,
    created_ts   BIGINT NOT NULL,
    PRIMARY KEY (origin, media_id, width, height, method)
);
