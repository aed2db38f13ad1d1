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
    pub media: crate::media::MediaRuntime,
    pub metrics: crate::metrics::Metrics,
    pub push_rules: crate::notifications::RulesetCache,
    pub notifier: crate::notifications::Notifier,
    pub access_log: crate::access_log::AccessLogger,
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
        let access_log =
            crate::access_log::AccessLogger::start(config.access_log.clone(), storage.clone(), clock.clone());
        let state = Self(Arc::new(Inner {
            config,
            server_name,
            storage,
            signing_key,
            clock,
            rooms: Default::default(),
            token_cache: Default::default(),
            typing: Default::default(),
            media: crate::media::MediaRuntime::new(media_store),
            metrics: Default::default(),
            push_rules: Default::default(),
            notifier: Default::default(),
            access_log,
        }));
        state.notifier.start(Arc::downgrade(&state.0));
        state
    }

    /// The state again from a weakly held reference (background tasks).
    pub fn from_inner(inner: Arc<Inner>) -> Self {
        Self(inner)
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
