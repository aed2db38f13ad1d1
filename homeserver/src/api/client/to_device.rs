//! `PUT /sendToDevice/{eventType}/{txnId}`.

use ruma::api::client::to_device::send_event_to_device;

use crate::api::ruma::Ruma;
use crate::e2ee::to_device;
use crate::error::Result;
use crate::state::AppState;

pub async fn send(
    state: AppState,
    request: Ruma<send_event_to_device::v3::Request>,
) -> Result<send_event_to_device::v3::Response> {
    let authed = request.authed()?;
    let body = &request.body;
    to_device::send(&state, authed, &body.event_type.to_string(), body.txn_id.as_str(), &body.messages).await?;
    Ok(send_event_to_device::v3::Response::new())
}
