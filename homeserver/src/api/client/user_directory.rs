//! `POST /user_directory/search`.

use ruma::api::client::user_directory::search_users::{self, v3::User};
use ruma::{OwnedMxcUri, OwnedUserId};

use crate::api::ruma::Ruma;
use crate::error::Result;
use crate::state::AppState;

/// Results per search at most.
const MAX_LIMIT: i64 = 50;

pub async fn search(state: AppState, request: Ruma<search_users::v3::Request>) -> Result<search_users::v3::Response> {
    let searcher = &request.authed()?.user_id;
    let body = &request.body;
    let limit = i64::try_from(u64::from(body.limit)).unwrap_or(MAX_LIMIT).clamp(1, MAX_LIMIT);
    let all_users = state.config.user_directory.search_all_users;
    let term = body.search_term.trim();
    let mut found = state.storage.search_user_directory(searcher.as_str(), term, all_users, limit + 1).await?;
    let limited = i64::try_from(found.len()).unwrap_or(i64::MAX) > limit;
    found.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let results = found
        .into_iter()
        .filter_map(|row| {
            let mut user = User::new(OwnedUserId::try_from(row.user_id).ok()?);
            user.display_name = row.displayname;
            user.avatar_url = row.avatar_url.map(OwnedMxcUri::from);
            Some(user)
        })
        .collect();
    Ok(search_users::v3::Response::new(results, limited))
}
