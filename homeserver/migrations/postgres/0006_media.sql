-- Media metadata; the bytes live in the media store (files under media.path).
-- size is NULL while an asynchronously created media ID waits for its upload.
CREATE TABLE media (
    origin            TEXT NOT NULL,
    media_id          TEXT NOT NULL,
    uploader          TEXT,
    content_type      TEXT NOT NULL,
    filename          TEXT,
    size              BIGINT,
    sha256            TEXT,
    created_ts        BIGINT NOT NULL,
    unused_expires_ts BIGINT,
    PRIMARY KEY (origin, media_id)
);
CREATE INDEX media_pending ON media (uploader, unused_expires_ts);

-- Thumbnails made on first request and reused.
CREATE TABLE media_thumbnails (
    origin       TEXT NOT NULL,
    media_id     TEXT NOT NULL,
    width        BIGINT NOT NULL,
    height       BIGINT NOT NULL,
    method       TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL,
    FOREIGN KEY (origin, media_id) REFERENCES media (origin, media_id) ON DELETE CASCADE,
    PRIMARY KEY (origin, media_id, width, height, method)
);
