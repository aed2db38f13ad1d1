//! The Matrix server-server protocol, as pure functions and types.
//!
//! No HTTP server, no database and no global state live here: the homeserver wires these
//! pieces to its storage and network layers.

pub mod auth;
pub mod client;
pub mod discovery;
pub mod incoming;
pub mod keys;
pub mod multipart;
pub mod pdu;
pub mod server_keys;
pub mod signing;
pub mod state_res;
#[cfg(test)]
mod test_dag;
pub mod xmatrix;

pub use keys::{KeyFileError, ServerSigningKey};
pub use pdu::{DagPosition, EventTemplate, Pdu, PduError};
