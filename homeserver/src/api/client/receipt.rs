//! `POST /rooms/{roomId}/receipt/{type}/{eventId}` and `POST /rooms/{roomId}/read_markers`.

use ruma::api::client::read_marker::set_read_marker;
use ruma::api::client::receipt::create_receipt::{self, v3::ReceiptType};

use crate::api::ruma::Ruma;
use crate::error::{Error, Result};
use crate::receipts::{self, ReceiptKind};
use crate::state::AppState;

pub async fn create(
    state: AppState,
    request: Ruma<create_receipt::v3::Request>,
) -> Result<create_receipt::v3::Response> {
    let body = &request.body;
    let kind = match body.receipt_type {
        ReceiptType::Read => ReceiptKind::Read,
        ReceiptType::ReadPrivate => ReceiptKind::ReadPrivate,
        ReceiptType::FullyRead => ReceiptKind::FullyRead,
        _ => return Err(Error::invalid_param("Unknown receipt type")),
    };
    let thread = body.thread.as_str();
    if kind == ReceiptKind::FullyRead && thread.is_some() {
        return Err(Error::invalid_param("m.fully_read cannot have a thread_id"));
    }
    receipts::post(&state, &request.authed()?.user_id, &body.room_id, kind, body.event_id.as_str(), thread).await?;
    Ok(create_receipt::v3::Response::new())
}

pub async fn markers(
    state: AppState,
    request: Ruma<set_read_marker::v3::Request>,
) -> Result<set_read_marker::v3::Response> {
    let body = &request.body;
    let markers = [
        (ReceiptKind::FullyRead, body.fully_read.as_ref().map(|e| e.as_str())),
        (ReceiptKind::Read, body.read_receipt.as_ref().map(|e| e.as_str())),
        (ReceiptKind::ReadPrivate, body.private_read_receipt.as_ref().map(|e| e.as_str())),
    ];
    receipts::set_markers(&state, &request.authed()?.user_id, &body.room_id, &markers).await?;
    Ok(set_read_marker::v3::Response::new())
}
