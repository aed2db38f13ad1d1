//! The outbox: one sender task per destination delivers what the database queued for it
//! (events in stream order, then EDUs) in transactions of at most 50 PDUs and 100 EDUs, one
//! transaction in flight per destination, retrying with exponential backoff. Rows are deleted
//! only once the destination acknowledged them, so a restart resumes where delivery stopped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use ruma::api::federation::transactions::send_transaction_message;
use ruma::serde::Raw;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedServerName, OwnedTransactionId, UInt};
use tokio::sync::Notify;

use crate::state::{AppState, Inner};
use crate::storage::OutboxBatch;

const MAX_PDUS: i64 = 50;
const MAX_EDUS: i64 = 100;
const FIRST_RETRY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Outbox {
    senders: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Outbox {
    /// Tells the senders of `destinations` that something was queued, starting them if needed.
    pub fn wake(&self, state: &AppState, destinations: &[String]) {
        if destinations.is_empty() || !state.config.federation.enabled {
            return;
        }
        let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        for destination in destinations {
            let notify = senders.entry(destination.clone()).or_insert_with(|| {
                let notify = Arc::new(Notify::new());
                tokio::spawn(deliver(state.weak(), destination.clone(), notify.clone()));
                notify
            });
            notify.notify_one();
        }
    }

    /// Starts sending whatever was left queued when the server last stopped.
    pub async fn resume(&self, state: &AppState) {
        match state.storage.outbox_destinations().await {
            Ok(destinations) => self.wake(state, &destinations),
            Err(e) => tracing::error!(error = %e, "could not read the federation outbox"),
        }
    }
}

/// Delivers one destination's queue for as long as the server runs.
async fn deliver(state: Weak<Inner>, destination: String, wake: Arc<Notify>) {
    let Ok(server) = OwnedServerName::try_from(destination.as_str()) else {
        tracing::warn!(destination, "not a server name; dropping what was queued for it");
        return;
    };
    let mut retry = FIRST_RETRY;
    loop {
        let Some(inner) = state.upgrade() else { return };
        let state = AppState::from_inner(inner);
        let batch = match state.storage.outbox_batch(&destination, MAX_PDUS, MAX_EDUS).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(destination, error = %e, "could not read the federation outbox");
                OutboxBatch::default()
            }
        };
        if batch.is_empty() {
            drop(state);
            wake.notified().await;
            continue;
        }
        match send_batch(&state, &server, &batch).await {
            Ok(()) => {
                retry = FIRST_RETRY;
                let pdus: Vec<i64> = batch.pdus.iter().map(|(ordering, _)| *ordering).collect();
                let edus: Vec<i64> = batch.edus.iter().map(|(position, _)| *position).collect();
                if let Err(e) = state.storage.delete_outbox(&destination, &pdus, &edus).await {
                    tracing::error!(destination, error = %e, "could not clear delivered federation items");
                }
            }
            Err(e) => {
                let max = Duration::from_secs(state.config.federation.max_retry_interval_secs.max(1));
                tracing::info!(destination, error = %e, retry_in_secs = retry.as_secs(), "federation delivery failed");
                drop(state);
                // A wake-up (new events) does not cut the wait short: the server is down.
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(max);
            }
        }
    }
}

async fn send_batch(
    state: &AppState,
    destination: &ruma::ServerName,
    batch: &OutboxBatch,
) -> Result<(), federation::client::FederationError> {
    let txn_id = transaction_id(batch);
    let now = UInt::try_from(state.now_ms().max(0)).unwrap_or_default();
    let mut request =
        send_transaction_message::v1::Request::new(txn_id, state.server_name.clone(), MilliSecondsSinceUnixEpoch(now));
    request.pdus = batch.pdus.iter().filter_map(|(_, json)| federation_form(json)).collect();
    request.edus = batch
        .edus
        .iter()
        .filter_map(|(_, edu)| serde_json::value::to_raw_value(edu).ok().map(Raw::from_json))
        .collect();
    let response = state.federation.send(destination, &state.signing_key, request).await?;
    for (event_id, result) in response.pdus {
        if let Err(reason) = result {
            tracing::info!(destination = %destination, %event_id, reason, "the destination did not accept an event");
        }
    }
    Ok(())
}

/// The same transaction ID for every retry of the same batch, so the receiver can tell a retry
/// from a new transaction.
fn transaction_id(batch: &OutboxBatch) -> OwnedTransactionId {
    let span = |ids: Vec<i64>| match (ids.first(), ids.last()) {
        (Some(first), Some(last)) => format!("{first}-{last}"),
        _ => "0".to_owned(),
    };
    let pdus = span(batch.pdus.iter().map(|(id, _)| *id).collect());
    let edus = span(batch.edus.iter().map(|(id, _)| *id).collect());
    OwnedTransactionId::from(format!("p{pdus}e{edus}"))
}

/// A stored event as other servers must see it: without our `unsigned` additions.
pub fn federation_form(json: &serde_json::Value) -> Option<Box<serde_json::value::RawValue>> {
    let mut event = json.clone();
    if let Some(object) = event.as_object_mut() {
        object.remove("unsigned");
    }
    serde_json::value::to_raw_value(&event).ok()
}
