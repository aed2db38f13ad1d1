//! Media metadata: one row per media item, one per stored thumbnail.

use sqlx::Row;

use super::Result;
use super::Storage;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRow {
    pub origin: String,
    pub media_id: String,
    pub uploader: Option<String>,
    pub content_type: String,
    pub filename: Option<String>,
    /// `None` while an asynchronously created media ID waits for its upload.
    pub size: Option<i64>,
    pub created_ts: i64,
    pub unused_expires_ts: Option<i64>,
    /// The admin who quarantined it; quarantined media is not served.
    pub quarantined_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThumbnailRow {
    pub width: i64,
    pub height: i64,
    pub method: String,
    pub content_type: String,
    pub size: i64,
}

/// What an upload stores about its content.
#[derive(Debug, Clone)]
pub struct UploadedContent<'a> {
    pub content_type: &'a str,
    pub filename: Option<&'a str>,
    pub size: i64,
    pub sha256: &'a str,
}

pub(super) const MEDIA_COLUMNS: &str = "origin, media_id, uploader, content_type, filename, sealed_filename, size, \
     created_ts, unused_expires_ts, quarantined_by";

/// The identity of a media item's sealed file name.
pub(super) fn filename_record_id(origin: &str, media_id: &str) -> String {
    format!("media_filename/{origin}/{media_id}")
}

impl Storage {
    /// A `media` row read with [`MEDIA_COLUMNS`]; the file name is unsealed when it was stored
    /// encrypted.
    pub(super) fn media_from_row(&self, row: &sqlx::any::AnyRow) -> Result<MediaRow> {
        let origin: String = row.try_get("origin")?;
        let media_id: String = row.try_get("media_id")?;
        let sealed: Option<Vec<u8>> = row.try_get("sealed_filename")?;
        let filename = match sealed {
            Some(bytes) => match self.codec.decode(&filename_record_id(&origin, &media_id), &bytes)? {
                serde_json::Value::String(name) => Some(name),
                _ => return Err(super::StorageError::Corrupt(format!("file name of {origin}/{media_id}"))),
            },
            None => row.try_get("filename")?,
        };
        Ok(MediaRow {
            origin,
            media_id,
            uploader: row.try_get("uploader")?,
            content_type: row.try_get("content_type")?,
            filename,
            size: row.try_get("size")?,
            created_ts: row.try_get("created_ts")?,
            unused_expires_ts: row.try_get("unused_expires_ts")?,
            quarantined_by: row.try_get("quarantined_by")?,
        })
    }

    /// The file name for the plain `filename` column: none when encrypting at rest.
    fn plain_filename<'a>(&self, filename: Option<&'a str>) -> Option<&'a str> {
        filename.filter(|_| !self.codec.encrypts())
    }

    /// The file name sealed, when encrypting at rest.
    fn sealed_filename(&self, origin: &str, media_id: &str, filename: Option<&str>) -> Option<Vec<u8>> {
        let name = filename.filter(|_| self.codec.encrypts())?;
        Some(self.codec.encode(&filename_record_id(origin, media_id), &serde_json::Value::from(name)))
    }

    /// Records a completed upload.
    pub async fn insert_media(
        &self,
        origin: &str,
        media_id: &str,
        uploader: &str,
        content: &UploadedContent<'_>,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO media (origin, media_id, uploader, content_type, filename, sealed_filename, size, sha256, \
             created_ts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(origin)
        .bind(media_id)
        .bind(uploader)
        .bind(content.content_type)
        .bind(self.plain_filename(content.filename))
        .bind(self.sealed_filename(origin, media_id, content.filename))
        .bind(content.size)
        .bind(content.sha256)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Records another server's media fetched into our store; a concurrent fetch is fine.
    pub async fn insert_remote_media(
        &self,
        origin: &str,
        media_id: &str,
        content: &UploadedContent<'_>,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO media (origin, media_id, content_type, filename, sealed_filename, size, sha256, created_ts) \
             VALUES ($1, $2, $3, $4, $8, $5, $6, $7) ON CONFLICT (origin, media_id) DO NOTHING",
        )
        .bind(origin)
        .bind(media_id)
        .bind(content.content_type)
        .bind(self.plain_filename(content.filename))
        .bind(content.size)
        .bind(content.sha256)
        .bind(now)
        .bind(self.sealed_filename(origin, media_id, content.filename))
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Reserves a media ID for a later upload, unless the user already has `max_pending`
    /// unexpired reservations. Returns whether it was reserved.
    pub async fn reserve_media(
        &self,
        origin: &str,
        media_id: &str,
        uploader: &str,
        now: i64,
        expires_ts: i64,
        max_pending: i64,
    ) -> Result<bool> {
        let mut tx = self.write.begin().await?;
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM media WHERE uploader = $1 AND size IS NULL AND unused_expires_ts > $2",
        )
        .bind(uploader)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        if row.try_get::<i64, _>("n")? >= max_pending {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO media (origin, media_id, uploader, content_type, created_ts, unused_expires_ts) \
             VALUES ($1, $2, $3, 'application/octet-stream', $4, $5)",
        )
        .bind(origin)
        .bind(media_id)
        .bind(uploader)
        .bind(now)
        .bind(expires_ts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Fills in a reserved media ID; false when it was already filled (a concurrent upload won).
    pub async fn complete_reserved_media(
        &self,
        origin: &str,
        media_id: &str,
        content: &UploadedContent<'_>,
    ) -> Result<bool> {
        let result = sqlx::query(
            "UPDATE media SET content_type = $3, filename = $4, sealed_filename = $7, size = $5, sha256 = $6, \
             unused_expires_ts = NULL WHERE origin = $1 AND media_id = $2 AND size IS NULL",
        )
        .bind(origin)
        .bind(media_id)
        .bind(content.content_type)
        .bind(self.plain_filename(content.filename))
        .bind(content.size)
        .bind(content.sha256)
        .bind(self.sealed_filename(origin, media_id, content.filename))
        .execute(&self.write)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn media(&self, origin: &str, media_id: &str) -> Result<Option<MediaRow>> {
        let row = sqlx::query(&format!("SELECT {MEDIA_COLUMNS} FROM media WHERE origin = $1 AND media_id = $2"))
            .bind(origin)
            .bind(media_id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(|row| self.media_from_row(row)).transpose()
    }

    pub async fn thumbnail(
        &self,
        origin: &str,
        media_id: &str,
        width: i64,
        height: i64,
        method: &str,
    ) -> Result<Option<ThumbnailRow>> {
        let row = sqlx::query(
            "SELECT width, height, method, content_type, size FROM media_thumbnails \
             WHERE origin = $1 AND media_id = $2 AND width = $3 AND height = $4 AND method = $5",
        )
        .bind(origin)
        .bind(media_id)
        .bind(width)
        .bind(height)
        .bind(method)
        .fetch_optional(&self.read)
        .await?;
        row.map(|row| {
            Ok(ThumbnailRow {
                width: row.try_get("width")?,
                height: row.try_get("height")?,
                method: row.try_get("method")?,
                content_type: row.try_get("content_type")?,
                size: row.try_get("size")?,
            })
        })
        .transpose()
    }

    /// A page of every media item's (origin, media ID), for walking the whole store.
    pub async fn media_page(&self, limit: i64, offset: i64) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT origin, media_id FROM media ORDER BY origin, media_id LIMIT $1 OFFSET $2")
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|row| Ok((row.try_get("origin")?, row.try_get("media_id")?))).collect()
    }

    /// A page of every stored thumbnail: (origin, media ID, width, height, method).
    pub async fn thumbnail_page(&self, limit: i64, offset: i64) -> Result<Vec<(String, String, i64, i64, String)>> {
        let rows = sqlx::query(
            "SELECT origin, media_id, width, height, method FROM media_thumbnails \
             ORDER BY origin, media_id, width, height, method LIMIT $1 OFFSET $2",
        )
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("origin")?,
                    row.try_get("media_id")?,
                    row.try_get("width")?,
                    row.try_get("height")?,
                    row.try_get("method")?,
                ))
            })
            .collect()
    }

    /// Records a generated thumbnail; a concurrent request storing the same one is fine.
    pub async fn insert_thumbnail(&self, origin: &str, media_id: &str, thumbnail: &ThumbnailRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO media_thumbnails (origin, media_id, width, height, method, content_type, size) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (origin, media_id, width, height, method) DO NOTHING",
        )
        .bind(origin)
        .bind(media_id)
        .bind(thumbnail.width)
        .bind(thumbnail.height)
        .bind(&thumbnail.method)
        .bind(&thumbnail.content_type)
        .bind(thumbnail.size)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// A thumbnail of a remote media item fetched from its origin.
    pub async fn remote_thumbnail(
        &self,
        origin: &str,
        media_id: &str,
        width: i64,
        height: i64,
        method: &str,
    ) -> Result<Option<ThumbnailRow>> {
        let row = sqlx::query(
            "SELECT width, height, method, content_type, size FROM remote_media_thumbnails \
             WHERE origin = $1 AND media_id = $2 AND width = $3 AND height = $4 AND method = $5",
        )
        .bind(origin)
        .bind(media_id)
        .bind(width)
        .bind(height)
        .bind(method)
        .fetch_optional(&self.read)
        .await?;
        row.map(|row| {
            Ok(ThumbnailRow {
                width: row.try_get("width")?,
                height: row.try_get("height")?,
                method: row.try_get("method")?,
                content_type: row.try_get("content_type")?,
                size: row.try_get("size")?,
            })
        })
        .transpose()
    }

    pub async fn insert_remote_thumbnail(
        &self,
        origin: &str,
        media_id: &str,
        thumbnail: &ThumbnailRow,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO remote_media_thumbnails (origin, media_id, width, height, method, content_type, size, created_ts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (origin, media_id, width, height, method) DO NOTHING",
        )
        .bind(origin)
        .bind(media_id)
        .bind(thumbnail.width)
        .bind(thumbnail.height)
        .bind(&thumbnail.method)
        .bind(&thumbnail.content_type)
        .bind(thumbnail.size)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Deletes a media item's metadata and its thumbnails' (the caller removes the files).
    pub async fn delete_media(&self, origin: &str, media_id: &str) -> Result<bool> {
        let result = sqlx::query("DELETE FROM media WHERE origin = $1 AND media_id = $2")
            .bind(origin)
            .bind(media_id)
            .execute(&self.write)
            .await?;
        Ok(result.rows_affected() == 1)
    }
}
