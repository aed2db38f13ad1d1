//! The access log: who made which authenticated request, when, from where.
//!
//! The `record` middleware learns the caller from a task-local slot the authentication code
//! fills (`note_caller`), and hands one row per authenticated request to a bounded channel. A
//! writer task inserts whatever has queued in one transaction, so a burst of requests costs a
//! few batched writes, not one per request; on shutdown `stop` drains the queue before the
//! database closes. Rows name the route template, never the raw path or query (which can hold
//! tokens), and never a request or response body.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::{mpsc, oneshot};

use crate::accounts::Authed;
use crate::config::{AccessLogConfig, IpMode};
use crate::state::{AppState, Clock};
use crate::storage::{AccessLogRow, Storage};

const QUEUE_DEPTH: usize = 10_000;
const MAX_BATCH: usize = 1_000;
/// How long a batch waits for more entries before it is written.
const GATHER_FOR: Duration = Duration::from_millis(100);
const MAX_USER_AGENT_CHARS: usize = 512;
const DAY_MS: i64 = 86_400_000;
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

tokio::task_local! {
    /// The authenticated caller of the request this task is serving, once known.
    static CALLER: Arc<OnceLock<Authed>>;
}

/// Called by the authentication code: tells the access log who is calling.
pub fn note_caller(authed: &Authed) {
    let _ = CALLER.try_with(|slot| slot.set(authed.clone()));
}

enum Job {
    Row(Box<AccessLogRow>),
    Flush(oneshot::Sender<()>),
}

/// The queue to the writer task and the day's IP salt.
pub struct AccessLogger {
    config: AccessLogConfig,
    trusted_proxies: Vec<IpAddr>,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// (day number, salt) for `ip_mode = "hash"`.
    salt: Mutex<(i64, [u8; 16])>,
    /// Users being erased: their requests still in flight (the deactivation itself) are not
    /// recorded once the erasure has removed their entries.
    erased: Mutex<HashSet<String>>,
}

impl AccessLogger {
    /// Starts the writer task (when the log is enabled).
    pub fn start(config: AccessLogConfig, storage: Storage, clock: Arc<dyn Clock>) -> Self {
        let trusted_proxies = config.trusted_proxies.iter().filter_map(|ip| ip.parse().ok()).collect();
        let logger = Self {
            config,
            trusted_proxies,
            jobs: Mutex::new(None),
            task: Mutex::new(None),
            salt: Mutex::new((-1, [0; 16])),
            erased: Mutex::new(HashSet::new()),
        };
        if logger.config.enabled {
            let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
            *lock(&logger.jobs) = Some(sender);
            let task = tokio::spawn(write_loop(logger.config.clone(), storage, clock, receiver));
            *lock(&logger.task) = Some(task);
        }
        logger
    }

    /// What the log keeps of `ip` at `now`.
    pub fn client_ip(&self, ip: IpAddr, now: i64) -> Option<String> {
        match self.config.ip_mode {
            IpMode::Store => Some(ip.to_string()),
            IpMode::Drop => None,
            IpMode::Hash => {
                let day = now.div_euclid(DAY_MS);
                let salt = {
                    let mut current = lock(&self.salt);
                    if current.0 != day {
                        let mut salt = [0u8; 16];
                        if getrandom::fill(&mut salt).is_err() {
                            return None;
                        }
                        *current = (day, salt);
                    }
                    current.1
                };
                let digest = Sha256::new().chain_update(salt).chain_update(ip.to_string().as_bytes()).finalize();
                Some(format!("hash:{}", digest[..12].iter().map(|b| format!("{b:02x}")).collect::<String>()))
            }
        }
    }

    /// From now on, records nothing more about `user_id` (an erased user).
    pub fn forget_user(&self, user_id: &str) {
        lock(&self.erased).insert(user_id.to_owned());
    }

    async fn queue(&self, row: AccessLogRow) {
        if lock(&self.erased).contains(&row.user_id) {
            return;
        }
        let sender = lock(&self.jobs).clone();
        if let Some(sender) = sender {
            // A full queue slows requests down rather than losing entries.
            if sender.send(Job::Row(Box::new(row))).await.is_err() {
                tracing::warn!("access log writer stopped: an entry was not recorded");
            }
        }
    }

    /// Waits until everything queued so far is written.
    pub async fn flush(&self) {
        let sender = lock(&self.jobs).clone();
        let Some(sender) = sender else { return };
        let (done, written) = oneshot::channel();
        if sender.send(Job::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }

    /// Writes what is queued and stops the writer (at shutdown, after the last request).
    pub async fn stop(&self) {
        lock(&self.jobs).take();
        let task = lock(&self.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn write_loop(
    config: AccessLogConfig,
    storage: Storage,
    clock: Arc<dyn Clock>,
    mut receiver: mpsc::Receiver<Job>,
) {
    let mut file = open_file(&config.file).await;
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        tokio::select! {
            received = receiver.recv_many(&mut batch, MAX_BATCH) => {
                if received == 0 {
                    return;
                }
                gather(&mut receiver, &mut batch).await;
                let mut rows = Vec::with_capacity(batch.len());
                let mut flushed = Vec::new();
                for job in batch.drain(..) {
                    match job {
                        Job::Row(row) => rows.push(*row),
                        Job::Flush(done) => flushed.push(done),
                    }
                }
                write_batch(&storage, file.as_mut(), &rows).await;
                for done in flushed {
                    let _ = done.send(());
                }
            }
            _ = prune.tick() => {
                let retention_ms = i64::try_from(config.retention_days).unwrap_or(i64::MAX / DAY_MS) * DAY_MS;
                if let Err(e) = prune_before(&storage, clock.now_ms().saturating_sub(retention_ms)).await {
                    tracing::error!(error = %e, "access log pruning failed");
                }
            }
        }
    }
}

/// Waits a moment for more entries, unless someone waits for a flush: one transaction for the
/// requests of the last few milliseconds instead of one (and its commit) per request, which was
/// a tenth of the server's CPU in a busy send-and-sync profile.
async fn gather(receiver: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>) {
    let deadline = tokio::time::Instant::now() + GATHER_FOR;
    while batch.len() < MAX_BATCH && !batch.iter().any(|job| matches!(job, Job::Flush(_))) {
        match tokio::time::timeout_at(deadline, receiver.recv_many(batch, MAX_BATCH - batch.len())).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Deletes entries older than `before_ts`.
pub async fn prune_before(storage: &Storage, before_ts: i64) -> crate::storage::Result<u64> {
    let deleted = storage.prune_access_log(before_ts).await?;
    if deleted > 0 {
        tracing::info!(deleted, "pruned the access log");
    }
    Ok(deleted)
}

async fn open_file(path: &str) -> Option<tokio::fs::File> {
    if path.is_empty() {
        return None;
    }
    match tokio::fs::OpenOptions::new().create(true).append(true).open(path).await {
        Ok(file) => Some(file),
        Err(e) => {
            tracing::error!(path, error = %e, "cannot open the access log file; logging to the database only");
            None
        }
    }
}

async fn write_batch(storage: &Storage, file: Option<&mut tokio::fs::File>, rows: &[AccessLogRow]) {
    if rows.is_empty() {
        return;
    }
    if let Err(e) = storage.insert_access_log(rows).await {
        tracing::error!(error = %e, entries = rows.len(), "could not write access log entries");
    }
    if let Some(file) = file {
        let mut lines = String::new();
        for row in rows {
            if let Ok(line) = serde_json::to_string(row) {
                lines.push_str(&line);
                lines.push('\n');
            }
        }
        if let Err(e) = file.write_all(lines.as_bytes()).await {
            tracing::error!(error = %e, "could not append to the access log file");
        }
    }
}

/// The client's address: the peer, unless the peer is a trusted proxy, in which case the
/// nearest untrusted address in `X-Forwarded-For` (each proxy appends the address it saw).
fn client_address(peer: IpAddr, headers: &http::HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in forwarded.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => continue,
            Ok(ip) => return ip,
            // Garbage from a client: the last address we can trust is all we know.
            Err(_) => return peer,
        }
    }
    peer
}

/// Middleware: records authenticated requests once they are answered.
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !state.config.access_log.enabled {
        return next.run(request).await;
    }
    let started = Instant::now();
    let ts = state.now_ms();
    let route = request.extensions().get::<MatchedPath>().map_or("<unmatched>", MatchedPath::as_str).to_owned();
    let method = request.method().as_str().to_owned();
    let peer = request.extensions().get::<ConnectInfo<crate::server::PeerAddr>>().map(|info| info.0.0.ip());
    let client = peer.map(|peer| client_address(peer, request.headers(), &state.access_log.trusted_proxies));
    let user_agent = request
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(MAX_USER_AGENT_CHARS).collect::<String>());
    let (mut parts, body) = request.into_parts();
    let room_id = match RawPathParams::from_request_parts(&mut parts, &state).await {
        Ok(params) => params
            .iter()
            .find(|(name, value)| {
                matches!(*name, "room_id" | "roomId") || (*name == "room_id_or_alias" && value.starts_with('!'))
            })
            .map(|(_, value)| value.to_owned()),
        Err(_) => None,
    };
    let request = Request::from_parts(parts, body);

    let slot = Arc::new(OnceLock::new());
    let response = CALLER.scope(slot.clone(), next.run(request)).await;
    let Some(caller) = slot.get() else { return response };
    let row = AccessLogRow {
        id: 0,
        ts,
        user_id: caller.user_id.to_string(),
        device_id: Some(caller.device_id.to_string()),
        ip: client.and_then(|ip| state.access_log.client_ip(ip, ts)),
        user_agent,
        method,
        route,
        room_id,
        status: i64::from(response.status().as_u16()),
        latency_us: i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX),
    };
    state.access_log.queue(row).await;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logger(ip_mode: IpMode) -> AccessLogger {
        let config = AccessLogConfig { enabled: false, ip_mode, ..AccessLogConfig::default() };
        AccessLogger {
            config,
            trusted_proxies: Vec::new(),
            jobs: Mutex::new(None),
            task: Mutex::new(None),
            salt: Mutex::new((-1, [0; 16])),
            erased: Mutex::new(HashSet::new()),
        }
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.1".parse().unwrap());
        let client = client_address(proxy, &headers, &[proxy]);
        assert_eq!(client, "203.0.113.9".parse::<IpAddr>().unwrap(), "the spoofable first hop is ignored");
        let stranger: IpAddr = "198.51.100.4".parse().unwrap();
        assert_eq!(client_address(stranger, &headers, &[proxy]), stranger, "untrusted peers cannot claim an address");
        headers.insert("x-forwarded-for", "not-an-ip".parse().unwrap());
        assert_eq!(client_address(proxy, &headers, &[proxy]), proxy);
        assert_eq!(client_address(proxy, &http::HeaderMap::new(), &[proxy]), proxy);
    }

    #[test]
    fn ip_modes() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(logger(IpMode::Store).client_ip(ip, 0).as_deref(), Some("192.0.2.7"));
        assert_eq!(logger(IpMode::Drop).client_ip(ip, 0), None);
        let hashing = logger(IpMode::Hash);
        let today = hashing.client_ip(ip, 1000).unwrap();
        assert!(today.starts_with("hash:") && !today.contains("192.0.2.7"));
        assert_eq!(hashing.client_ip(ip, 2000).unwrap(), today, "same salt within a day");
        assert_ne!(hashing.client_ip(ip, DAY_MS + 1).unwrap(), today, "the salt rotates daily");
    }
}
