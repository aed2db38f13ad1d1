//! Process start-up: build the state from configuration, listen, and shut down gracefully.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::api::Surface;
use crate::config::{Config, ConfigSource};
use crate::media::encrypted_store::EncryptedStore;
use crate::media::store::{LocalFileStore, MediaStore};
use crate::signing_key;
use crate::state::{AppState, SystemClock};
use crate::storage::{Codec, Storage, StorageOptions};
use crate::tls::{Certificates, TlsListener};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot create the directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error(transparent)]
    SigningKey(#[from] signing_key::SigningKeyError),
    #[error("cannot open the database: {0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("server error: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("encryption at rest: {0}")]
    AtRestKey(#[from] crate::at_rest::KeyError),
}

/// The client's address as the listener saw it (TCP or TLS), for `ConnectInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub std::net::SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>> for PeerAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for PeerAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        Self(*stream.remote_addr())
    }
}

/// Opens the database (applying migrations) and loads or creates the signing key.
pub async fn build_state(config: Config) -> Result<AppState, StartupError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| StartupError::DataDir { path: config.data_dir.display().to_string(), source })?;
    let key_path = config.effective_signing_key_path();
    let (key, generated) = signing_key::load_or_generate(&key_path)?;
    if generated {
        tracing::info!(path = %key_path.display(), key_id = %key.key_id(), "generated a new signing key");
    }
    let storage = open_storage(&config).await?;
    let media = open_media_store(&config, &storage)?;
    Ok(AppState::new(config, storage, key, Arc::new(SystemClock), media))
}

/// The configured media store; sealed with the database's at-rest keys when those are on.
pub fn open_media_store(config: &Config, storage: &Storage) -> Result<Box<dyn MediaStore>, StartupError> {
    let media_path = config.effective_media_path();
    let media = LocalFileStore::new(media_path.clone())
        .map_err(|source| StartupError::DataDir { path: media_path.display().to_string(), source })?;
    Ok(match storage.at_rest_keys() {
        Some(keys) => Box::new(EncryptedStore::new(Box::new(media), keys.clone())),
        None => Box::new(media),
    })
}

/// Connects to the configured database, applying pending migrations, and checks the
/// encryption-at-rest key against it (a wrong or missing key refuses to start).
pub async fn open_storage(config: &Config) -> Result<Storage, StartupError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| StartupError::DataDir { path: config.data_dir.display().to_string(), source })?;
    let codec = match crate::at_rest::keyring_from_config(&config.storage)? {
        Some(keys) => Codec::encrypted(Arc::new(keys)),
        None => Codec::plain(),
    };
    open_storage_with(config, codec).await
}

/// [`open_storage`] with the given record codec (key rotation brings its own keys).
pub async fn open_storage_with(config: &Config, codec: Codec) -> Result<Storage, StartupError> {
    let storage = Storage::connect(&StorageOptions {
        url: config.effective_database_url(),
        max_connections: config.database.max_connections,
        acquire_timeout: Duration::from_secs(config.database.acquire_timeout_secs),
        statement_timeout: Duration::from_secs(config.database.statement_timeout_secs),
        codec,
        cached_events: config.database.cached_events,
        cached_state_entries: config.database.cached_state_entries,
    })
    .await?;
    if let Err(e) = storage.check_key().await {
        storage.close().await;
        return Err(e.into());
    }
    Ok(storage)
}

/// Serves until SIGINT or SIGTERM, then finishes in-flight requests and closes the database.
pub async fn run(config: Config, source: ConfigSource) -> Result<(), StartupError> {
    match &source {
        ConfigSource::File(path) => tracing::info!(path = %path.display(), "loaded configuration"),
        ConfigSource::DefaultsAndEnvironment => {
            tracing::info!("no config file found: using defaults and MYELIN_* environment variables")
        }
    }
    tracing::info!(
        server_name = %config.server_name,
        database = %describe_database(&config),
        registration = ?config.registration,
        "starting Myelin {}",
        env!("CARGO_PKG_VERSION")
    );
    let shutdown_requested = shutdown_signal();
    let state = build_state(config).await?;
    if state.config.federation.enabled && !state.config.federation.verify_tls {
        tracing::warn!("federation.verify_tls is off: other servers' certificates are not checked (test setups only)");
    }
    state.outbox.resume(&state).await;
    crate::admin_tasks::fail_interrupted(&state).await;
    crate::accounts::erasure::resume(&state).await;
    let certificates = load_certificates(&state.config)?;
    if !state.config.metrics.listen.is_empty() {
        serve_metrics(state.clone()).await?;
    }

    // All listeners stop together: the signal flips this, each server drains, then we close.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    for (addr, surface) in listeners(&state.config) {
        let listener =
            TcpListener::bind(addr).await.map_err(|source| StartupError::Listen { addr: addr.to_string(), source })?;
        tracing::info!(%addr, ?surface, tls = certificates.is_some(), "listening");
        // Peer addresses reach handlers (and the access log) through `ConnectInfo`.
        let app = crate::app_for(state.clone(), surface).into_make_service_with_connect_info::<PeerAddr>();
        let mut stopped = stopped.clone();
        let shutdown = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        match &certificates {
            Some(certificates) => {
                let listener = TlsListener::new(listener, certificates.clone())
                    .map_err(|source| StartupError::Listen { addr: addr.to_string(), source })?;
                servers.spawn(async move { axum::serve(listener, app).with_graceful_shutdown(shutdown).await });
            }
            None => {
                servers.spawn(async move { axum::serve(listener, app).with_graceful_shutdown(shutdown).await });
            }
        }
    }
    if let Some(certificates) = certificates {
        tokio::spawn(reload_on_hangup(certificates));
    }
    let stopping = state.clone();
    tokio::spawn(async move {
        shutdown_requested.await;
        stopping.rooms.begin_shutdown();
        let _ = stop.send(true);
    });
    while let Some(result) = servers.join_next().await {
        result.map_err(|e| StartupError::Serve(std::io::Error::other(e)))?.map_err(StartupError::Serve)?;
    }
    // Every request is answered: write what they queued before the database closes.
    state.access_log.stop().await;
    state.storage.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// One listener for everything, or a client and a federation listener.
fn listeners(config: &Config) -> Vec<(std::net::SocketAddr, Surface)> {
    match config.federation_listen.parse() {
        Ok(federation) => vec![(config.listen_addr(), Surface::Client), (federation, Surface::Federation)],
        Err(_) => vec![(config.listen_addr(), Surface::All)],
    }
}

fn load_certificates(config: &Config) -> Result<Option<Arc<Certificates>>, StartupError> {
    let tls = &config.tls;
    if tls.certificate_path.is_empty() {
        return Ok(None);
    }
    Ok(Some(Certificates::load(tls.certificate_path.as_ref(), tls.private_key_path.as_ref())?))
}

/// SIGHUP re-reads the certificate files; new connections use them, open ones are untouched.
async fn reload_on_hangup(certificates: Arc<Certificates>) {
    #[cfg(unix)]
    {
        let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
        while hangups.recv().await.is_some() {
            match certificates.reload() {
                Ok(()) => tracing::info!("reloaded the TLS certificate"),
                Err(e) => tracing::error!(error = %e, "TLS certificate reload failed; keeping the old one"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = certificates;
}

/// Serves `/metrics` on its own listener, in the background, until the process exits.
async fn serve_metrics(state: AppState) -> Result<(), StartupError> {
    let addr = state.config.metrics.listen.clone();
    let listener =
        TcpListener::bind(&addr).await.map_err(|source| StartupError::Listen { addr: addr.clone(), source })?;
    tracing::info!(%addr, "serving metrics");
    let app = axum::Router::new().route("/metrics", axum::routing::get(crate::metrics::serve)).with_state(state);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics listener failed");
        }
    });
    Ok(())
}

/// The database in use, without credentials.
fn describe_database(config: &Config) -> String {
    let url = config.effective_database_url();
    match url.split_once('@') {
        Some((_, host)) => format!("postgres://…@{host}"),
        None => url,
    }
}

/// Installs the SIGINT and SIGTERM handlers at once, so a signal that arrives before the returned
/// future is first polled (while the server is still starting) is not lost and does not kill
/// the process; the future resolves when one arrives.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::interrupt()).ok(), signal(SignalKind::terminate()).ok())
    };
    async move {
        #[cfg(unix)]
        tokio::select! {
            () = received(interrupt) => {},
            () = received(terminate) => {},
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown requested: finishing in-flight requests");
    }
}

/// The next delivery of a signal whose handler is installed; never, if it could not be.
#[cfg(unix)]
async fn received(signal: Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(mut signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}
