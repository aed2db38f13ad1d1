//! Integration tests: real servers on loopback, real HTTP, both database engines.

mod common;

mod account;
mod devices;
mod discovery;
mod errors;
mod login;
mod real_client;
mod registration;
mod rooms;
mod sync;
mod timeline;
