//! `PUT /send/{txnId}`: events and EDUs pushed to us by another server.

use std::collections::BTreeMap;

use ruma::api::federation::transactions::send_transaction_message;
use ruma::{CanonicalJsonObject, OwnedEventId, RoomId};

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::rooms::incoming::{accept_received, fill_gap, verify_received};
use crate::rooms::send::Relay;
use crate::state::AppState;

const MAX_PDUS: usize = 50;
const MAX_EDUS: usize = 100;

pub async fn send(
    state: AppState,
    request: Ruma<send_transaction_message::v1::Request>,
) -> Result<send_transaction_message::v1::Response> {
    let origin = request.origin()?.clone();
    let body = request.body;
    if body.origin != origin {
        return Err(Error::forbidden("The transaction's origin is not the server that signed the request"));
    }
    if body.pdus.len() > MAX_PDUS || body.edus.len() > MAX_EDUS {
        return Err(Error::bad_json(format!("A transaction holds at most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs")));
    }
    let txn_id = body.transaction_id.as_str();
    if let Some(previous) = state.storage.federation_txn_response(origin.as_str(), txn_id).await? {
        let pdus = serde_json::from_value(previous).unwrap_or_default();
        return Ok(send_transaction_message::v1::Response::new(pdus));
    }
    let mut results: BTreeMap<OwnedEventId, Result<(), String>> = BTreeMap::new();
    for raw in &body.pdus {
        // Events are handled in order: a later one may build on an earlier one.
        if let Some((event_id, result)) = receive(&state, &origin, raw.get()).await {
            results.insert(event_id, result);
        }
    }
    crate::rooms::edus::receive_edus(&state, &origin, &body.edus).await;
    let answer = serde_json::to_value(
        results.iter().map(|(id, r)| (id.to_string(), r.clone().err())).collect::<BTreeMap<_, _>>(),
    )
    .unwrap_or_default();
    state.storage.store_federation_txn(origin.as_str(), txn_id, &answer, state.now_ms()).await?;
    Ok(send_transaction_message::v1::Response::new(results))
}

/// One PDU: its event ID (when it has one we can compute) and whether it was accepted.
async fn receive(
    state: &AppState,
    origin: &ruma::ServerName,
    json: &str,
) -> Option<(OwnedEventId, Result<(), String>)> {
    let object: CanonicalJsonObject = serde_json::from_str(json).ok()?;
    let room_id = object.get("room_id")?.as_str().and_then(|id| <&RoomId>::try_from(id).ok())?.to_owned();
    let room = state.storage.room(room_id.as_str()).await.ok()??;
    let rules = ruma::RoomVersionId::try_from(room.room_version.as_str()).ok()?.rules()?;
    let event_id = federation::pdu::event_id_for(&object, &rules).ok()?;
    if let Err(e) = crate::rooms::acl::check(state, &room_id, origin.as_str()).await {
        return Some((event_id, Err(e.to_string())));
    }
    let result = match verify_received(state, &room_id, object).await {
        Ok(pdu) => match fill_gap(state, origin, &pdu).await {
            Ok(()) => accept_received(state, pdu, Relay::Nobody).await.map(|_| ()),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let result = result.map_err(|e| {
        tracing::info!(%origin, %event_id, error = %e, "refused a received event");
        e.to_string()
    });
    Some((event_id, result))
}
