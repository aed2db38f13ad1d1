//! Integration tests: real servers on loopback, real HTTP, both database engines.

mod common;

mod access_log;
mod account;
mod account_data;
mod admin_rooms;
mod admin_users;
mod audit_log;
mod bench_smoke;
mod devices;
mod directory;
mod discovery;
mod e2ee;
mod errors;
mod events;
mod federation;
mod ignored_users;
mod lifecycle;
mod login;
mod media;
mod migrate_db;
mod notifications;
mod profile;
mod push_rules;
mod real_client;
mod receipts;
mod registration;
mod relations;
mod reports;
mod rooms;
mod shared_secret;
mod sync;
mod timeline;
mod typing;
mod user_directory;
