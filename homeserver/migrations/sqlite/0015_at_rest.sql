-- Encryption at rest: one known record sealed with the database's key, checked at start so a
-- wrong or missing key refuses to start instead of failing on the first read.
CREATE TABLE at_rest_key_check (
    id     BIGINT PRIMARY KEY,
    record BLOB NOT NULL
);

-- A media item's file name, sealed, when encryption at rest is on (`filename` is then NULL).
ALTER TABLE media ADD COLUMN sealed_filename BLOB;
