//! Shared application state: configuration, storage and the server's identity.

use std::ops::Deref;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use federation::ServerSigningKey;
use ruma::OwnedServerName;

use crate::config::Config;
use crate::storage::Storage;

/// The source of "now"; tests can substitute a clock they control.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Everything a request handler or service needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub server_name: OwnedServerName,
    pub storage: Storage,
    pub signing_key: ServerSigningKey,
    pub clock: Arc<dyn Clock>,
    pub rooms: crate::rooms::RoomRuntime,
    pub token_cache: crate::accounts::token_cache::TokenCache,
    pub typing: crate::typing::TypingTracker,
    pub presence: crate::presence::PresenceTracker,
    pub media: crate::media::MediaRuntime,
    pub metrics: crate::metrics::Metrics,
    pub push_rules: crate::notifications::RulesetCache,
    pub access_log: crate::access_log::AccessLogger,
    /// Nonces of shared-secret registration.
    pub registration_nonces: crate::accounts::shared_secret::Nonces,
    /// Signed requests to other servers.
    pub federation: federation::client::FederationClient,
    /// Other servers' signing keys.
    pub keyring: crate::server_keys::Keyring,
    /// Per-destination delivery of queued events and EDUs.
    pub outbox: crate::federation_sender::Outbox,
}

impl AppState {
    pub fn new(
        config: Config,
        storage: Storage,
        signing_key: ServerSigningKey,
        clock: Arc<dyn Clock>,
        media_store: Box<dyn crate::media::store::MediaStore>,
    ) -> Self {
        let server_name = OwnedServerName::try_from(config.server_name.as_str())
            .expect("server_name is validated when the configuration is loaded");
        crate::audit::prune_periodically(storage.clone(), clock.clone(), config.audit_log.retention_days);
        let access_log =
            crate::access_log::AccessLogger::start(config.access_log.clone(), storage.clone(), clock.clone());
        let client_options = federation::client::ClientOptions {
            verify_tls: config.federation.verify_tls,
            request_timeout: std::time::Duration::from_secs(config.federation.request_timeout_secs.max(1)),
        };
        let federation = federation::client::FederationClient::new(server_name.clone(), &client_options)
            .expect("the TLS backend of the federation client initialises");
        let media = crate::media::MediaRuntime::new(media_store, &config.media);
        let state = Self(Arc::new(Inner {
            config,
            server_name,
            storage,
            signing_key,
            clock,
            rooms: Default::default(),
            token_cache: Default::default(),
            typing: Default::default(),
            presence: Default::default(),
            media,
            metrics: Default::default(),
            push_rules: Default::default(),
            access_log,
            registration_nonces: Default::default(),
            federation,
            keyring: Default::default(),
            outbox: Default::default(),
        }));
        crate::federation_sender::device_lists::start(&state);
        crate::presence::start_sweeper(Arc::downgrade(&state.0));
        crate::search::start_backfill(Arc::downgrade(&state.0));
        crate::rooms::retention_purge::start_purger(Arc::downgrade(&state.0), &state.config.retention);
        state
    }

    /// The state again from a weakly held reference (background tasks).
    pub fn from_inner(inner: Arc<Inner>) -> Self {
        Self(inner)
    }

    /// A reference for background tasks that must not keep the server alive.
    pub fn weak(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.0)
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
