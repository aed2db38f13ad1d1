//! Process start-up: build the state from configuration, listen, and shut down gracefully.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::{Config, ConfigSource};
use crate::media::store::LocalFileStore;
use crate::signing_key;
use crate::state::{AppState, SystemClock};
use crate::storage::{Storage, StorageOptions};

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
    let media_path = config.effective_media_path();
    let media = LocalFileStore::new(media_path.clone())
        .map_err(|source| StartupError::DataDir { path: media_path.display().to_string(), source })?;
    Ok(AppState::new(config, storage, key, Arc::new(SystemClock), Box::new(media)))
}

/// Connects to the configured database, applying pending migrations.
pub async fn open_storage(config: &Config) -> Result<Storage, StartupError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| StartupError::DataDir { path: config.data_dir.display().to_string(), source })?;
    Ok(Storage::connect(&StorageOptions {
        url: config.effective_database_url(),
        max_connections: config.database.max_connections,
        acquire_timeout: Duration::from_secs(config.database.acquire_timeout_secs),
    })
    .await?)
}

/// Serves until SIGINT or SIGTERM, then finishes in-flight requests and closes the database.
pub async fn run(config: Config, source: ConfigSource) -> Result<(), StartupError> {
    match &source {
        ConfigSource::File(path) => tracing::info!(path = %path.display(), "loaded configuration"),
        ConfigSource::DefaultsAndEnvironment => {
            tracing::info!("no config file found: using defaults and MYELIN_* environment variables")
        }
    }
    let addr = config.listen_addr();
    tracing::info!(
        server_name = %config.server_name,
        database = %describe_database(&config),
        registration = ?config.registration,
        "starting Myelin {}",
        env!("CARGO_PKG_VERSION")
    );
    let state = build_state(config).await?;
    let listener =
        TcpListener::bind(addr).await.map_err(|source| StartupError::Listen { addr: addr.to_string(), source })?;
    tracing::info!(%addr, "listening");
    if !state.config.metrics.listen.is_empty() {
        serve_metrics(state.clone()).await?;
    }
    let storage = state.storage.clone();
    let stopping = state.clone();
    let shutdown = async move {
        shutdown_signal().await;
        stopping.rooms.begin_shutdown();
    };
    axum::serve(listener, crate::app(state)).with_graceful_shutdown(shutdown).await.map_err(StartupError::Serve)?;
    storage.close().await;
    tracing::info!("stopped");
    Ok(())
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

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested: finishing in-flight requests");
}
