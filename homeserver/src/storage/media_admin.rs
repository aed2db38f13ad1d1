//! Media queries of the admin API: a user's uploads, old or large media, quarantine.

use sqlx::Row;

use super::media::MEDIA_COLUMNS;
use super::rooms::EVENT_COLUMNS;
use super::{EventRow, MediaRow, Result, Storage};

/// How to sort a user's media. Each variant maps to a fixed column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MediaOrder {
    MediaId,
    UploadName,
    #[default]
    CreatedTs,
    MediaLength,
    MediaType,
    QuarantinedBy,
}

impl MediaOrder {
    fn column(self) -> &'static str {
        match self {
            Self::MediaId => "media_id",
            Self::UploadName => "filename",
            Self::CreatedTs => "created_ts",
            Self::MediaLength => "size",
            Self::MediaType => "content_type",
            Self::QuarantinedBy => "quarantined_by",
        }
    }
}

/// Which local media a bulk deletion takes.
#[derive(Debug, Clone)]
pub struct MediaSelection<'a> {
    pub origin: &'a str,
    pub before_ts: i64,
    pub size_gt: i64,
    /// Media used as a user's or a room's avatar is kept.
    pub keep_profiles: bool,
}

impl Storage {
    /// One page of a user's uploads and how many there are.
    pub async fn user_media(
        &self,
        uploader: &str,
        order: MediaOrder,
        descending: bool,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<MediaRow>, i64)> {
        let direction = if descending { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {MEDIA_COLUMNS} FROM media WHERE uploader = $1 \
             ORDER BY {} {direction}, media_id {direction} LIMIT $2 OFFSET $3",
            order.column()
        );
        let rows = sqlx::query(&sql).bind(uploader).bind(limit).bind(offset).fetch_all(&self.read).await?;
        let media = rows.iter().map(|row| self.media_from_row(row)).collect::<Result<Vec<_>>>()?;
        let total = sqlx::query("SELECT COUNT(*) AS n FROM media WHERE uploader = $1")
            .bind(uploader)
            .fetch_one(&self.read)
            .await?
            .try_get("n")?;
        Ok((media, total))
    }

    /// The media IDs of a user's uploads.
    pub async fn user_media_ids(&self, origin: &str, uploader: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT media_id FROM media WHERE origin = $1 AND uploader = $2 ORDER BY media_id")
            .bind(origin)
            .bind(uploader)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|row| Ok(row.try_get("media_id")?)).collect()
    }

    /// The media IDs a bulk deletion takes: created before `before_ts`, larger than `size_gt`.
    pub async fn select_media_for_deletion(&self, selection: &MediaSelection<'_>) -> Result<Vec<String>> {
        let avatar_prefix = format!("mxc://{}/", selection.origin);
        let rows = sqlx::query(
            "SELECT media_id FROM media WHERE origin = $1 AND created_ts < $2 AND COALESCE(size, 0) > $3 \
             AND ($4 = 0 OR ($5 || media_id) NOT IN \
                 (SELECT avatar_url FROM profiles WHERE avatar_url IS NOT NULL)) \
             ORDER BY media_id",
        )
        .bind(selection.origin)
        .bind(selection.before_ts)
        .bind(selection.size_gt)
        .bind(super::flag(selection.keep_profiles))
        .bind(&avatar_prefix)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|row| Ok(row.try_get("media_id")?)).collect()
    }

    /// Every `url` a room avatar event ever named (current or past: kept media errs on the
    /// safe side).
    pub async fn room_avatar_urls(&self) -> Result<Vec<String>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE e.event_type = 'm.room.avatar' AND e.state_key = ''"
        ))
        .fetch_all(&self.read)
        .await?;
        let mut urls = Vec::new();
        for row in &rows {
            let event = EventRow::from_row(&self.codec, row)?;
            if let Some(url) = event.json["content"]["url"].as_str() {
                urls.push(url.to_owned());
            }
        }
        Ok(urls)
    }

    /// Which of `urls` a stored message or sticker (`content.url`, `content.info.thumbnail_url`)
    /// names. Reads every such event, streamed: for the rare runs that have candidates.
    pub async fn media_urls_still_named(
        &self,
        urls: &std::collections::HashSet<String>,
    ) -> Result<std::collections::HashSet<String>> {
        use futures_util::TryStreamExt as _;
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events e WHERE e.event_type IN ('m.room.message', 'm.sticker') \
             AND e.outlier = 0"
        );
        let mut rows = sqlx::query(&sql).fetch(&self.read);
        let mut named = std::collections::HashSet::new();
        while let Some(row) = rows.try_next().await? {
            let event = EventRow::from_row(&self.codec, &row)?;
            let content = &event.json["content"];
            for url in [&content["url"], &content["info"]["thumbnail_url"]] {
                if let Some(url) = url.as_str().filter(|url| urls.contains(*url)) {
                    named.insert(url.to_owned());
                }
            }
        }
        Ok(named)
    }

    /// Every avatar URL a user profile names.
    pub async fn profile_avatar_urls(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT DISTINCT avatar_url FROM profiles WHERE avatar_url IS NOT NULL")
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|row| Ok(row.try_get("avatar_url")?)).collect()
    }

    /// Quarantines (`by` = the admin) or releases (`None`) a media item; false if unknown.
    pub async fn set_media_quarantine(&self, origin: &str, media_id: &str, by: Option<&str>) -> Result<bool> {
        let done = sqlx::query("UPDATE media SET quarantined_by = $3 WHERE origin = $1 AND media_id = $2")
            .bind(origin)
            .bind(media_id)
            .bind(by)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
