//! Myelin, a Matrix homeserver.

pub mod config;
pub mod storage;
