//! `/pushrules/` endpoints.

use ruma::api::client::push::{
    PushRule, delete_pushrule, get_notifications, get_pushrule, get_pushrule_actions, get_pushrule_enabled,
    get_pushrules_all, get_pushrules_global_scope, set_pushrule, set_pushrule_actions, set_pushrule_enabled,
};

use crate::api::ruma::Ruma;
use crate::error::Result;
use crate::push_rules;
use crate::state::AppState;

pub async fn all(
    state: AppState,
    request: Ruma<get_pushrules_all::v3::Request>,
) -> Result<get_pushrules_all::v3::Response> {
    let ruleset = push_rules::ruleset(&state, &request.authed()?.user_id).await?;
    Ok(get_pushrules_all::v3::Response::new(ruleset))
}

pub async fn global(
    state: AppState,
    request: Ruma<get_pushrules_global_scope::v3::Request>,
) -> Result<get_pushrules_global_scope::v3::Response> {
    let ruleset = push_rules::ruleset(&state, &request.authed()?.user_id).await?;
    Ok(get_pushrules_global_scope::v3::Response::new(ruleset))
}

pub async fn get(state: AppState, request: Ruma<get_pushrule::v3::Request>) -> Result<get_pushrule::v3::Response> {
    let body = &request.body;
    let user_id = &request.authed()?.user_id;
    let rule = push_rules::with_rule(&state, user_id, body.kind.clone(), &body.rule_id, |r| PushRule::from(r)).await?;
    Ok(get_pushrule::v3::Response::new(rule))
}

pub async fn set(state: AppState, request: Ruma<set_pushrule::v3::Request>) -> Result<set_pushrule::v3::Response> {
    let body = request.body.clone();
    push_rules::insert(&state, &request.authed()?.user_id, body.rule, body.after.as_deref(), body.before.as_deref())
        .await?;
    Ok(set_pushrule::v3::Response::new())
}

pub async fn delete(
    state: AppState,
    request: Ruma<delete_pushrule::v3::Request>,
) -> Result<delete_pushrule::v3::Response> {
    let body = &request.body;
    push_rules::remove(&state, &request.authed()?.user_id, body.kind.clone(), &body.rule_id).await?;
    Ok(delete_pushrule::v3::Response::new())
}

pub async fn enabled(
    state: AppState,
    request: Ruma<get_pushrule_enabled::v3::Request>,
) -> Result<get_pushrule_enabled::v3::Response> {
    let body = &request.body;
    let user_id = &request.authed()?.user_id;
    let enabled = push_rules::with_rule(&state, user_id, body.kind.clone(), &body.rule_id, |r| r.enabled()).await?;
    Ok(get_pushrule_enabled::v3::Response::new(enabled))
}

pub async fn set_enabled(
    state: AppState,
    request: Ruma<set_pushrule_enabled::v3::Request>,
) -> Result<set_pushrule_enabled::v3::Response> {
    let body = &request.body;
    push_rules::set_enabled(&state, &request.authed()?.user_id, body.kind.clone(), &body.rule_id, body.enabled).await?;
    Ok(set_pushrule_enabled::v3::Response::new())
}

pub async fn actions(
    state: AppState,
    request: Ruma<get_pushrule_actions::v3::Request>,
) -> Result<get_pushrule_actions::v3::Response> {
    let body = &request.body;
    let user_id = &request.authed()?.user_id;
    let actions =
        push_rules::with_rule(&state, user_id, body.kind.clone(), &body.rule_id, |r| r.actions().to_vec()).await?;
    Ok(get_pushrule_actions::v3::Response::new(actions))
}

pub async fn set_actions(
    state: AppState,
    request: Ruma<set_pushrule_actions::v3::Request>,
) -> Result<set_pushrule_actions::v3::Response> {
    let body = &request.body;
    let user_id = &request.authed()?.user_id;
    push_rules::set_actions(&state, user_id, body.kind.clone(), &body.rule_id, body.actions.clone()).await?;
    Ok(set_pushrule_actions::v3::Response::new())
}

pub async fn notifications(
    state: AppState,
    request: Ruma<get_notifications::v3::Request>,
) -> Result<get_notifications::v3::Response> {
    let body = &request.body;
    let only_highlights = body.only.as_deref() == Some("highlight");
    let limit = body.limit.map(u64::from);
    let user_id = &request.authed()?.user_id;
    let (notifications, next) =
        crate::notifications::list(&state, user_id, body.from.as_deref(), limit, only_highlights).await?;
    let mut response = get_notifications::v3::Response::new(notifications);
    response.next_token = next;
    Ok(response)
}
