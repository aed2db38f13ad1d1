//! Integration tests: real servers on loopback, real HTTP, both database engines.

mod common;

mod account;
mod account_data;
mod bench_smoke;
mod devices;
mod directory;
mod discovery;
mod e2ee;
mod errors;
mod events;
mod federation;
mod federation_dag;
mod federation_e2ee;
mod ignored_users;
mod lifecycle;
mod login;
mod media;
mod migrate_db;
mod notifications;
mod openid;
mod presence;
mod profile;
mod push_rules;
mod real_client;
mod receipts;
mod registration;
mod relations;
mod rooms;
mod search;
mod synapse_interop;
mod sync;
mod timeline;
mod typing;
mod user_directory;
