//! Latency percentiles and result printing.

use std::time::Duration;

use serde_json::{Map, Value, json};

/// Sorted latency samples.
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Self(samples)
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * (self.0.len() - 1) as f64).round() as usize;
        self.0[rank.min(self.0.len() - 1)].as_secs_f64() * 1000.0
    }
}

/// One scenario's measurements.
pub struct ScenarioResult {
    pub scenario: &'static str,
    pub fields: Map<String, Value>,
    pub summary: String,
}

impl ScenarioResult {
    pub fn new(scenario: &'static str, summary: String) -> Self {
        Self { scenario, fields: Map::new(), summary }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.to_owned(), value.into());
        self
    }

    pub fn with_latencies(self, prefix: &str, latencies: &Latencies) -> Self {
        self.with(&format!("{prefix}_p50_ms"), round(latencies.percentile_ms(50.0)))
            .with(&format!("{prefix}_p95_ms"), round(latencies.percentile_ms(95.0)))
            .with(&format!("{prefix}_p99_ms"), round(latencies.percentile_ms(99.0)))
    }

    pub fn print(&self, label: &str) {
        let mut line = json!({"server": label, "scenario": self.scenario});
        if let Value::Object(map) = &mut line {
            map.extend(self.fields.clone());
        }
        println!("{line}");
        eprintln!("[{label}] {}: {}", self.scenario, self.summary);
    }
}

pub fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}
