//! Push rules: the spec's server-default rules plus the user's changes, stored as the user's
//! `m.push_rules` account data (so clients also receive them through `/sync`).

use http::StatusCode;
use ruma::UserId;
use ruma::api::error::ErrorKind;
use ruma::push::{Action, AnyPushRuleRef, InsertPushRuleError, NewPushRule, RemovePushRuleError, RuleKind, Ruleset};

use crate::error::{Error, Result};
use crate::state::AppState;

const ACCOUNT_DATA_TYPE: &str = "m.push_rules";

fn not_found() -> Error {
    Error::not_found("Push rule not found")
}

/// The user's rules: the server defaults until they change something.
pub async fn ruleset(state: &AppState, user_id: &UserId) -> Result<Ruleset> {
    let stored = state.storage.account_data(user_id.as_str(), "", ACCOUNT_DATA_TYPE).await?;
    from_stored(user_id, stored)
}

/// Several users' push rules, read in one query.
pub async fn rulesets(state: &AppState, user_ids: &[&ruma::OwnedUserId]) -> Result<Vec<(ruma::OwnedUserId, Ruleset)>> {
    let names: Vec<&str> = user_ids.iter().map(|user| user.as_str()).collect();
    let mut stored = state.storage.global_account_data_of_users(&names, ACCOUNT_DATA_TYPE).await?;
    user_ids.iter().map(|user| Ok(((*user).clone(), from_stored(user, stored.remove(user.as_str()))?))).collect()
}

fn from_stored(user_id: &UserId, stored: Option<serde_json::Value>) -> Result<Ruleset> {
    match stored {
        Some(content) => serde_json::from_value(content["global"].clone())
            .map_err(|e| Error::internal(format!("stored push rules: {e}"))),
        None => Ok(Ruleset::server_default(user_id)),
    }
}

async fn save(state: &AppState, user_id: &UserId, ruleset: &Ruleset) -> Result<()> {
    let content = serde_json::json!({"global": ruleset});
    state.storage.set_account_data(user_id.as_str(), "", ACCOUNT_DATA_TYPE, &content).await?;
    state.push_rules.forget(user_id.as_str());
    state.rooms.notify_change();
    Ok(())
}

/// One rule, converted by `f`, or 404.
pub async fn with_rule<T>(
    state: &AppState,
    user_id: &UserId,
    kind: RuleKind,
    rule_id: &str,
    f: impl FnOnce(AnyPushRuleRef<'_>) -> T,
) -> Result<T> {
    let ruleset = ruleset(state, user_id).await?;
    ruleset.get(kind, rule_id).map(f).ok_or_else(not_found)
}

pub async fn insert(
    state: &AppState,
    user_id: &UserId,
    rule: NewPushRule,
    after: Option<&str>,
    before: Option<&str>,
) -> Result<()> {
    let mut ruleset = ruleset(state, user_id).await?;
    ruleset.insert(rule, after, before).map_err(|e| match e {
        InsertPushRuleError::UnknownRuleId => Error::not_found("The `before` or `after` rule does not exist"),
        other => Error::matrix(StatusCode::BAD_REQUEST, ErrorKind::InvalidParam, other.to_string()),
    })?;
    save(state, user_id, &ruleset).await
}

pub async fn remove(state: &AppState, user_id: &UserId, kind: RuleKind, rule_id: &str) -> Result<()> {
    let mut ruleset = ruleset(state, user_id).await?;
    ruleset.remove(kind, rule_id).map_err(|e| match e {
        RemovePushRuleError::NotFound => not_found(),
        other => Error::matrix(StatusCode::BAD_REQUEST, ErrorKind::InvalidParam, other.to_string()),
    })?;
    save(state, user_id, &ruleset).await
}

pub async fn set_enabled(
    state: &AppState,
    user_id: &UserId,
    kind: RuleKind,
    rule_id: &str,
    enabled: bool,
) -> Result<()> {
    let mut ruleset = ruleset(state, user_id).await?;
    ruleset.set_enabled(kind, rule_id, enabled).map_err(|_| not_found())?;
    save(state, user_id, &ruleset).await
}

pub async fn set_actions(
    state: &AppState,
    user_id: &UserId,
    kind: RuleKind,
    rule_id: &str,
    actions: Vec<Action>,
) -> Result<()> {
    let mut ruleset = ruleset(state, user_id).await?;
    ruleset.set_actions(kind, rule_id, actions).map_err(|_| not_found())?;
    save(state, user_id, &ruleset).await
}
