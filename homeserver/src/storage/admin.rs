//! Queries behind the admin API: user and room listings.

use sqlx::Row;

use super::{Result, Storage, flag};

/// A user with their profile, as the admin API lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUserRow {
    pub user_id: String,
    pub is_admin: bool,
    pub deactivated: bool,
    pub created_ts: i64,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

/// How to sort a user listing. Each variant maps to a fixed SQL expression.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UserOrder {
    #[default]
    UserId,
    DisplayName,
    AvatarUrl,
    CreationTs,
    Admin,
    Deactivated,
}

impl UserOrder {
    fn column(self) -> &'static str {
        match self {
            Self::UserId => "u.user_id",
            Self::DisplayName => "p.displayname",
            Self::AvatarUrl => "p.avatar_url",
            Self::CreationTs => "u.created_ts",
            Self::Admin => "u.is_admin",
            Self::Deactivated => "u.deactivated",
        }
    }
}

/// Filters and paging of a user listing.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    /// Substring of the user ID.
    pub user_id: Option<String>,
    /// Substring of the user ID or display name.
    pub name: Option<String>,
    pub include_deactivated: bool,
    pub admins: Option<bool>,
    pub order: UserOrder,
    pub descending: bool,
    pub offset: i64,
    pub limit: i64,
}

/// `%value%` for a case-insensitive `LIKE … ESCAPE '\'`, with the wildcards in `value` escaped.
pub(crate) fn contains_pattern(value: &str) -> String {
    let escaped = value.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

fn admin_user_from_row(row: &sqlx::any::AnyRow) -> Result<AdminUserRow> {
    Ok(AdminUserRow {
        user_id: row.try_get("user_id")?,
        is_admin: row.try_get::<i64, _>("is_admin")? != 0,
        deactivated: row.try_get::<i64, _>("deactivated")? != 0,
        created_ts: row.try_get("created_ts")?,
        displayname: row.try_get("displayname")?,
        avatar_url: row.try_get("avatar_url")?,
    })
}

const USER_FILTER: &str = "FROM users u LEFT JOIN profiles p ON p.user_id = u.user_id \
     WHERE ($1 IS NULL OR LOWER(u.user_id) LIKE $1 ESCAPE '\\') \
     AND ($2 IS NULL OR LOWER(u.user_id) LIKE $2 ESCAPE '\\' OR LOWER(p.displayname) LIKE $2 ESCAPE '\\') \
     AND ($3 = 1 OR u.deactivated = 0) \
     AND ($4 IS NULL OR u.is_admin = $4)";

impl Storage {
    /// One page of users and the number of users matching the filters.
    pub async fn admin_users(&self, query: &UserQuery) -> Result<(Vec<AdminUserRow>, i64)> {
        let user_id = query.user_id.as_deref().map(contains_pattern);
        let name = query.name.as_deref().map(contains_pattern);
        let admins = query.admins.map(flag);
        let direction = if query.descending { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT u.user_id, u.is_admin, u.deactivated, u.created_ts, p.displayname, p.avatar_url {USER_FILTER} \
             ORDER BY {} {direction}, u.user_id {direction} LIMIT $5 OFFSET $6",
            query.order.column()
        );
        let rows = sqlx::query(&sql)
            .bind(user_id.as_deref())
            .bind(name.as_deref())
            .bind(flag(query.include_deactivated))
            .bind(admins)
            .bind(query.limit)
            .bind(query.offset)
            .fetch_all(&self.read)
            .await?;
        let users = rows.iter().map(admin_user_from_row).collect::<Result<Vec<_>>>()?;
        let total = sqlx::query(&format!("SELECT COUNT(*) AS n {USER_FILTER}"))
            .bind(user_id.as_deref())
            .bind(name.as_deref())
            .bind(flag(query.include_deactivated))
            .bind(admins)
            .fetch_one(&self.read)
            .await?
            .try_get("n")?;
        Ok((users, total))
    }

    /// One user with their profile.
    pub async fn admin_user(&self, user_id: &str) -> Result<Option<AdminUserRow>> {
        let row = sqlx::query(
            "SELECT u.user_id, u.is_admin, u.deactivated, u.created_ts, p.displayname, p.avatar_url \
             FROM users u LEFT JOIN profiles p ON p.user_id = u.user_id WHERE u.user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(admin_user_from_row).transpose()
    }

    /// Lifts a deactivation (the caller sets a new password next).
    pub async fn reactivate_user(&self, user_id: &str) -> Result<()> {
        sqlx::query("UPDATE users SET deactivated = 0 WHERE user_id = $1").bind(user_id).execute(&self.write).await?;
        Ok(())
    }

    /// Every room with state, oldest first (a purged blocked room keeps a row without state).
    pub async fn all_room_ids(&self) -> Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT room_id FROM rooms WHERE current_state_group IS NOT NULL ORDER BY created_ts, room_id")
                .fetch_all(&self.read)
                .await?;
        rows.iter().map(|row| Ok(row.try_get("room_id")?)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(contains_pattern("A_b%c\\"), "%a\\_b\\%c\\\\%");
    }
}
