//! The user directory: local users a searcher may find by user ID or display name.

use sqlx::Row;

use super::{Result, Storage, flag};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    pub user_id: String,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

/// `term` as a case-insensitive LIKE pattern matching anywhere, with LIKE's wildcards escaped.
fn contains_pattern(term: &str) -> String {
    let escaped = term.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

impl Storage {
    /// Active local users matching `term` whom `searcher` may find: themselves, users sharing a
    /// joined room with them, and users in a room listed in the public directory; or everyone
    /// with `all_users`. Display-name and user-ID prefix matches come first.
    pub async fn search_user_directory(
        &self,
        searcher: &str,
        term: &str,
        all_users: bool,
        limit: i64,
    ) -> Result<Vec<DirectoryUser>> {
        let pattern = contains_pattern(term);
        let prefix = format!("{}%", contains_pattern(term).trim_start_matches('%'));
        let rows = sqlx::query(
            "SELECT u.user_id, p.displayname, p.avatar_url FROM users u JOIN profiles p ON p.user_id = u.user_id \
             WHERE u.deactivated = 0 \
             AND (LOWER(u.user_id) LIKE $2 ESCAPE '\\' OR LOWER(COALESCE(p.displayname, '')) LIKE $2 ESCAPE '\\') \
             AND ($3 = 1 OR u.user_id = $1 \
               OR EXISTS (SELECT 1 FROM memberships mine JOIN memberships theirs ON theirs.room_id = mine.room_id \
                          WHERE mine.user_id = $1 AND mine.membership = 'join' \
                          AND theirs.user_id = u.user_id AND theirs.membership = 'join') \
               OR EXISTS (SELECT 1 FROM memberships m JOIN rooms r ON r.room_id = m.room_id \
                          WHERE m.user_id = u.user_id AND m.membership = 'join' AND r.is_public = 1)) \
             ORDER BY CASE WHEN LOWER(COALESCE(p.displayname, '')) LIKE $4 ESCAPE '\\' \
                           OR LOWER(u.user_id) LIKE '@' || $4 ESCAPE '\\' THEN 0 ELSE 1 END, u.user_id \
             LIMIT $5",
        )
        .bind(searcher)
        .bind(&pattern)
        .bind(flag(all_users))
        .bind(&prefix)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DirectoryUser {
                    user_id: row.try_get("user_id")?,
                    displayname: row.try_get("displayname")?,
                    avatar_url: row.try_get("avatar_url")?,
                })
            })
            .collect()
    }
}
