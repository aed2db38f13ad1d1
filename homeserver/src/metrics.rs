//! Prometheus metrics in the text exposition format, served on their own listener.
//!
//! Labels are bounded by construction: routes are templates (`/rooms/{room_id}/…`), never raw
//! paths; methods outside the standard set count as `other`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// Upper bounds of the request latency buckets, in seconds.
const BUCKETS: [f64; 13] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0, 60.0];

#[derive(Debug, Default)]
struct Histogram {
    /// Cumulative counts per bucket (`le`), then the +Inf count.
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bucket, bound) in self.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// A histogram shared between the code that observes and the page that renders it.
#[derive(Debug, Default)]
pub struct SharedHistogram(Mutex<Histogram>);

impl SharedHistogram {
    pub fn observe(&self, latency: Duration) {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).observe(latency.as_secs_f64());
    }
}

/// (route template, method, status)
type RequestKey = (String, &'static str, u16);

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<RequestKey, Histogram>>,
    events_persisted: AtomicU64,
    sync_waiters: AtomicI64,
}

impl Metrics {
    pub fn event_persisted(&self) {
        self.events_persisted.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a long-polling `/sync` while it waits; the count drops when the guard does.
    pub fn sync_waiting(&self) -> SyncWaiter<'_> {
        self.sync_waiters.fetch_add(1, Ordering::Relaxed);
        SyncWaiter(self)
    }

    fn observe_request(&self, route: String, method: &'static str, status: u16, latency: Duration) {
        let mut requests = self.requests.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        requests.entry((route, method, status)).or_default().observe(latency.as_secs_f64());
    }
}

pub struct SyncWaiter<'a>(&'a Metrics);

impl Drop for SyncWaiter<'_> {
    fn drop(&mut self) {
        self.0.sync_waiters.fetch_sub(1, Ordering::Relaxed);
    }
}

fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware recording every request's count and latency by route template and status.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("<unmatched>", MatchedPath::as_str).to_owned();
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.observe_request(route, method, response.status().as_u16(), started.elapsed());
    response
}

/// `GET /metrics`.
pub async fn serve(State(state): State<AppState>) -> Response {
    let text = render(&state);
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

pub fn render(state: &AppState) -> String {
    let metrics = &state.metrics;
    let mut out = String::new();
    out.push_str("# HELP myelin_http_requests_total HTTP requests by route template, method and status.\n");
    out.push_str("# TYPE myelin_http_requests_total counter\n");
    let requests = metrics.requests.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for ((route, method, status), histogram) in requests.iter() {
        let labels = format!("route=\"{}\",method=\"{method}\",status=\"{status}\"", escape(route));
        let _ = writeln!(out, "myelin_http_requests_total{{{labels}}} {}", histogram.count);
    }
    out.push_str("# HELP myelin_http_request_duration_seconds HTTP request latency.\n");
    out.push_str("# TYPE myelin_http_request_duration_seconds histogram\n");
    for ((route, method, status), histogram) in requests.iter() {
        let labels = format!("route=\"{}\",method=\"{method}\",status=\"{status}\"", escape(route));
        write_histogram(&mut out, "myelin_http_request_duration_seconds", &labels, histogram);
    }
    drop(requests);

    out.push_str("# HELP myelin_db_event_commit_seconds Time to write and commit one batch of events.\n");
    out.push_str("# TYPE myelin_db_event_commit_seconds histogram\n");
    let commits = state.storage.event_commit_latency().0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    write_histogram(&mut out, "myelin_db_event_commit_seconds", "", &commits);
    drop(commits);

    let pool = state.storage.pool_stats();
    gauge(&mut out, "myelin_db_connections", "Open database connections.", pool.open);
    gauge(&mut out, "myelin_db_connections_idle", "Idle database connections.", pool.idle);
    gauge(&mut out, "myelin_db_connections_max", "Most database connections the pool opens.", pool.max);
    let waiters = metrics.sync_waiters.load(Ordering::Relaxed);
    gauge(&mut out, "myelin_sync_waiters", "Long-polling /sync requests waiting for news.", waiters);
    out.push_str(
        "# HELP myelin_events_persisted_total Room events persisted.\n# TYPE myelin_events_persisted_total counter\n",
    );
    let _ = writeln!(out, "myelin_events_persisted_total {}", metrics.events_persisted.load(Ordering::Relaxed));
    if let Some(rss) = resident_memory_bytes() {
        gauge(&mut out, "process_resident_memory_bytes", "Resident memory size in bytes.", rss);
    }
    out
}

/// The bucket, sum and count lines of one histogram; `labels` may be empty.
fn write_histogram(out: &mut String, name: &str, labels: &str, histogram: &Histogram) {
    let with = |extra: &str| if labels.is_empty() { format!("{{{extra}}}") } else { format!("{{{labels},{extra}}}") };
    for (count, bound) in histogram.buckets.iter().zip(BUCKETS) {
        let _ = writeln!(out, "{name}_bucket{} {count}", with(&format!("le=\"{bound}\"")));
    }
    let _ = writeln!(out, "{name}_bucket{} {}", with("le=\"+Inf\""), histogram.count);
    let plain = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
    let _ = writeln!(out, "{name}_sum{plain} {}", histogram.sum);
    let _ = writeln!(out, "{name}_count{plain} {}", histogram.count);
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
}

/// VmRSS from /proc (Linux); `None` elsewhere.
fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut histogram = Histogram::default();
        histogram.observe(0.003);
        histogram.observe(0.2);
        histogram.observe(100.0);
        assert_eq!(histogram.buckets[0], 0);
        assert_eq!(histogram.buckets[1], 1, "le=0.005");
        assert_eq!(histogram.buckets[6], 2, "le=0.25");
        assert_eq!(histogram.buckets[BUCKETS.len() - 1], 2, "le=60");
        assert_eq!(histogram.count, 3);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
