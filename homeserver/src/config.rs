//! Configuration: a TOML file plus `MYELIN_*` environment overrides.
//!
//! Precedence: built-in defaults < config file < environment. Nested keys map to environment
//! variables with a double underscore: `[database] max_connections` is
//! `MYELIN_DATABASE__MAX_CONNECTIONS`. Validation collects every problem before refusing to start.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The commented example configuration; `myelin generate-config` prints it.
pub const EXAMPLE_CONFIG: &str = include_str!("../../config.example.toml");

/// Environment variables with our prefix that are not configuration keys.
const NON_CONFIG_ENV: &[&str] = &["config"];
const NON_CONFIG_ENV_PREFIXES: &[&str] = &["test_"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    /// Anyone may register (user-interactive auth with `m.login.dummy`).
    Open,
    /// Registration requires a token created by an admin (`m.login.registration_token`).
    Token,
    /// Only admins create accounts (CLI or admin API).
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub server_name: String,
    pub listen: String,
    pub federation_listen: String,
    pub public_baseurl: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub registration: RegistrationMode,
    pub registration_shared_secret: String,
    pub signing_key_path: String,
    pub database: DatabaseConfig,
    pub limits: LimitsConfig,
    pub auth: AuthConfig,
    pub keys: KeysConfig,
    pub well_known: WellKnownConfig,
    pub media: MediaConfig,
    pub metrics: MetricsConfig,
    pub tls: TlsConfig,
    pub user_directory: UserDirectoryConfig,
    pub access_log: AccessLogConfig,
    pub audit_log: AuditLogConfig,
    pub federation: FederationConfig,
    pub presence: PresenceConfig,
    pub storage: StorageConfig,
    pub retention: RetentionConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditLogConfig {
    /// Days to keep audit entries; 0 keeps them forever.
    pub retention_days: u64,
}

/// What the access log keeps of a client's IP address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpMode {
    /// The address as seen.
    Store,
    /// A salted hash; the salt changes every day, so addresses can be matched within a day only.
    Hash,
    /// Nothing.
    Drop,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AccessLogConfig {
    pub enabled: bool,
    pub ip_mode: IpMode,
    pub retention_days: u64,
    pub file: String,
    pub trusted_proxies: Vec<String>,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ip_mode: IpMode::Store,
            retention_days: 28,
            file: String::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FederationConfig {
    /// Talk to other homeservers at all.
    pub enabled: bool,
    /// Check other servers' TLS certificates (turn off only for test setups).
    pub verify_tls: bool,
    pub request_timeout_secs: u64,
    /// Longest wait between retries to an unreachable server.
    pub max_retry_interval_secs: u64,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self { enabled: true, verify_tls: true, request_timeout_secs: 30, max_retry_interval_secs: 3600 }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserDirectoryConfig {
    pub search_all_users: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PresenceConfig {
    pub enabled: bool,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Message retention (MSC1763): how long timeline events live (see `rooms::retention`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionConfig {
    /// Purge expired events at all (rooms' `m.room.retention` events are ignored when off).
    pub enabled: bool,
    /// Lifetime of events in rooms without their own `max_lifetime`; 0 keeps them forever.
    pub default_max_lifetime_ms: u64,
    /// Rooms' `min_lifetime`/`max_lifetime` are raised to at least this.
    pub allowed_min_lifetime_ms: u64,
    /// Rooms' `min_lifetime`/`max_lifetime` are lowered to at most this; 0 sets no bound.
    pub allowed_max_lifetime_ms: u64,
    /// How often the purge job runs.
    pub purge_interval_secs: u64,
    /// Events deleted per transaction by the purge (and admin history purges).
    pub purge_batch_size: u32,
    /// Defaults for direct-message rooms (`RoomRow::is_direct`; see README.md, "Retention").
    pub direct: RoomTypeRetention,
    /// Defaults for rooms with `m.room.encryption` in their state (direct chats' come first).
    pub encrypted: RoomTypeRetention,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            default_max_lifetime_ms: 0,
            allowed_min_lifetime_ms: 0,
            allowed_max_lifetime_ms: 0,
            purge_interval_secs: 3600,
            purge_batch_size: 1000,
            direct: RoomTypeRetention::default(),
            encrypted: RoomTypeRetention::default(),
        }
    }
}

/// Lifetimes for one type of room without its own `m.room.retention`, instead of the server's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoomTypeRetention {
    /// Off: these rooms get the server's defaults.
    pub enabled: bool,
    /// Events younger than this are kept (redactions hold their content); 0 sets no minimum.
    pub default_min_lifetime_ms: u64,
    /// Lifetime of events; 0 keeps them forever.
    pub default_max_lifetime_ms: u64,
}

/// Encryption at rest (see `at_rest`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageConfig {
    pub encryption: bool,
    /// A file holding the key as base64 (`myelin generate-key`).
    pub encryption_key_file: String,
    /// The key as base64, normally from `MYELIN_STORAGE__ENCRYPTION_KEY`.
    pub encryption_key: Secret,
    /// Older keys still accepted for reading (during and after a rotation).
    pub decryption_key_files: Vec<String>,
}

/// A configuration value that must never be printed.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "<redacted>" })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    pub certificate_path: String,
    pub private_key_path: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    pub listen: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MediaConfig {
    pub path: String,
    pub max_upload_bytes: u64,
    pub max_thumbnail_pixels: u64,
    pub legacy_unauthenticated_before_ts: i64,
    pub max_pending_uploads: u32,
    pub pending_upload_lifetime_secs: u64,
    pub url_previews: bool,
    pub url_preview_ip_allowlist: Vec<String>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            path: String::new(),
            max_upload_bytes: 50 * 1024 * 1024,
            max_thumbnail_pixels: 32 * 1024 * 1024,
            legacy_unauthenticated_before_ts: 0,
            max_pending_uploads: 5,
            pending_upload_lifetime_secs: 24 * 3600,
            url_previews: false,
            url_preview_ip_allowlist: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseConfig {
    pub max_connections: u32,
    pub acquire_timeout_secs: u64,
    pub statement_timeout_secs: u64,
    /// Decoded events kept in memory (0 disables the cache).
    pub cached_events: usize,
    /// State entries of resolved room states kept in memory (0 disables the cache).
    pub cached_state_entries: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitsConfig {
    pub max_request_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    pub password_min_length: usize,
    pub refreshable_access_token_lifetime_secs: u64,
    pub refresh_token_lifetime_secs: u64,
    pub uiaa_session_lifetime_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeysConfig {
    pub validity_period_secs: u64,
    pub old_verify_keys: BTreeMap<String, OldVerifyKeyConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OldVerifyKeyConfig {
    pub key: String,
    pub expired_ts: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WellKnownConfig {
    pub client_base_url: String,
    pub server: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server_name: "localhost".into(),
            listen: "127.0.0.1:8008".into(),
            federation_listen: String::new(),
            public_baseurl: String::new(),
            data_dir: PathBuf::from("./data"),
            database_url: String::new(),
            registration: RegistrationMode::Disabled,
            registration_shared_secret: String::new(),
            signing_key_path: String::new(),
            database: DatabaseConfig::default(),
            limits: LimitsConfig::default(),
            auth: AuthConfig::default(),
            keys: KeysConfig::default(),
            well_known: WellKnownConfig::default(),
            media: MediaConfig::default(),
            metrics: MetricsConfig::default(),
            tls: TlsConfig::default(),
            user_directory: UserDirectoryConfig::default(),
            access_log: AccessLogConfig::default(),
            audit_log: AuditLogConfig::default(),
            federation: FederationConfig::default(),
            presence: PresenceConfig::default(),
            storage: StorageConfig::default(),
            retention: RetentionConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout_secs: 30,
            statement_timeout_secs: 60,
            cached_events: 2048,
            cached_state_entries: 50_000,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self { max_request_bytes: 8 * 1024 * 1024 }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            password_min_length: 8,
            refreshable_access_token_lifetime_secs: 300,
            refresh_token_lifetime_secs: 0,
            uiaa_session_lifetime_secs: 900,
        }
    }
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self { validity_period_secs: 7 * 24 * 3600, old_verify_keys: BTreeMap::new() }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".into(), format: LogFormat::Text }
    }
}

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.key, self.message)
    }
}

/// All problems found, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for error in &self.0 {
            writeln!(f, "  - {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

fn error(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError { key: key.into(), message: message.into() }
}

/// Where the configuration came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    DefaultsAndEnvironment,
}

impl Config {
    /// Loads `path` (if it exists; a missing explicitly-given file is an error) and the process
    /// environment, then validates.
    pub fn load(path: &Path, path_was_explicit: bool) -> Result<(Self, ConfigSource), ConfigErrors> {
        let file_text = match std::fs::read_to_string(path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !path_was_explicit => None,
            Err(e) => {
                return Err(ConfigErrors(vec![error(
                    path.display().to_string(),
                    format!("cannot read the config file: {e}"),
                )]));
            }
        };
        let env: Vec<(String, String)> = std::env::vars().collect();
        let config = Self::from_sources(file_text.as_deref(), &env)?;
        let source = match file_text {
            Some(_) => ConfigSource::File(path.to_path_buf()),
            None => ConfigSource::DefaultsAndEnvironment,
        };
        Ok((config, source))
    }

    /// Builds and validates a configuration from TOML text and `(name, value)` environment pairs.
    pub fn from_sources(toml: Option<&str>, env: &[(String, String)]) -> Result<Self, ConfigErrors> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(text) = toml {
            // Parse first so a syntax error is reported with its line, not as a merge failure.
            if let Err(e) = text.parse::<toml::Table>() {
                return Err(ConfigErrors(vec![error("<file>", format!("not valid TOML: {e}"))]));
            }
            figment = figment.merge(Toml::string(text));
        }
        figment = figment.merge(env_provider(env));

        let config: Config = figment.extract().map_err(|e| ConfigErrors(figment_errors(e)))?;
        // A second pass over the merged values finds every key no option consumed.
        let value: figment::value::Value = figment.extract().map_err(|e| ConfigErrors(figment_errors(e)))?;
        let mut unknown = Vec::new();
        let _: Result<Config, _> = serde_ignored::deserialize(&value, |path| unknown.push(path.to_string()));

        let mut errors: Vec<ConfigError> = unknown
            .into_iter()
            .map(|key| {
                let env_name = format!("MYELIN_{}", key.replace('.', "__").to_uppercase());
                error(key, format!("unknown option (typo? from the file or {env_name}); see config.example.toml"))
            })
            .collect();
        errors.extend(config.validate());
        if errors.is_empty() { Ok(config) } else { Err(ConfigErrors(errors)) }
    }

    /// Semantic checks; returns every problem found.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if ruma::ServerName::parse(&self.server_name).is_err() {
            errors.push(error(
                "server_name",
                format!("`{}` is not a valid server name (hostname[:port], e.g. example.org)", self.server_name),
            ));
        }
        if self.listen.parse::<SocketAddr>().is_err() {
            errors.push(error("listen", format!("`{}` is not an address:port, e.g. 127.0.0.1:8008", self.listen)));
        }
        if !self.public_baseurl.is_empty() && !is_http_url(&self.public_baseurl) {
            errors.push(error("public_baseurl", "must start with http:// or https://"));
        }
        if !self.well_known.client_base_url.is_empty() && !is_http_url(&self.well_known.client_base_url) {
            errors.push(error("well_known.client_base_url", "must start with http:// or https://"));
        }
        if !self.well_known.server.is_empty() && ruma::ServerName::parse(&self.well_known.server).is_err() {
            errors.push(error("well_known.server", "must be host[:port], e.g. matrix.example.org:443"));
        }
        let retention = &self.retention;
        if retention.allowed_max_lifetime_ms != 0
            && retention.allowed_max_lifetime_ms < retention.allowed_min_lifetime_ms
        {
            errors.push(error(
                "retention.allowed_max_lifetime_ms",
                "must be 0 (no bound) or at least allowed_min_lifetime_ms",
            ));
        }
        if retention.purge_batch_size == 0 {
            errors.push(error("retention.purge_batch_size", "must be at least 1"));
        }
        if retention.purge_interval_secs == 0 {
            errors.push(error("retention.purge_interval_secs", "must be at least 1"));
        }
        if !self.database_url.is_empty() && crate::storage::Engine::from_url(&self.database_url).is_none() {
            errors.push(error("database_url", "must start with sqlite:// or postgres:// (or postgresql://)"));
        }
        if self.database.max_connections == 0 {
            errors.push(error("database.max_connections", "must be at least 1"));
        }
        if self.limits.max_request_bytes < 65_536 {
            errors.push(error("limits.max_request_bytes", "must be at least 65536 (one Matrix event)"));
        }
        if self.auth.refreshable_access_token_lifetime_secs == 0 {
            errors.push(error("auth.refreshable_access_token_lifetime_secs", "must be at least 1"));
        }
        if self.keys.validity_period_secs < 3600 {
            errors.push(error("keys.validity_period_secs", "must be at least 3600 (one hour)"));
        }
        for (key_id, old) in &self.keys.old_verify_keys {
            if !key_id.starts_with("ed25519:") {
                errors.push(error(format!("keys.old_verify_keys.{key_id}"), "key IDs look like ed25519:<version>"));
            }
            if ruma::serde::Base64::<ruma::serde::base64::Standard>::parse(&old.key).is_err() {
                errors.push(error(format!("keys.old_verify_keys.{key_id}.key"), "not valid base64"));
            }
        }
        if !self.federation_listen.is_empty() && self.federation_listen.parse::<SocketAddr>().is_err() {
            errors.push(error("federation_listen", "must be empty or an address:port, e.g. 0.0.0.0:8448"));
        }
        if self.tls.certificate_path.is_empty() != self.tls.private_key_path.is_empty() {
            errors.push(error("tls", "set both certificate_path and private_key_path, or neither"));
        }
        if !self.metrics.listen.is_empty() && self.metrics.listen.parse::<SocketAddr>().is_err() {
            errors.push(error("metrics.listen", "must be empty or an address:port, e.g. 127.0.0.1:9090"));
        }
        if self.media.max_upload_bytes == 0 {
            errors.push(error("media.max_upload_bytes", "must be at least 1"));
        }
        if let Err(reason) = crate::safe_http::parse_allowlist(&self.media.url_preview_ip_allowlist) {
            errors.push(error("media.url_preview_ip_allowlist", reason));
        }
        if self.access_log.retention_days == 0 {
            errors.push(error("access_log.retention_days", "must be at least 1 (set enabled = false to keep no log)"));
        }
        for proxy in &self.access_log.trusted_proxies {
            if proxy.parse::<std::net::IpAddr>().is_err() {
                errors.push(error("access_log.trusted_proxies", format!("`{proxy}` is not an IP address")));
            }
        }
        let (key_file, key) = (&self.storage.encryption_key_file, &self.storage.encryption_key.0);
        if self.storage.encryption && key_file.is_empty() && key.is_empty() {
            errors.push(error(
                "storage.encryption",
                "needs a key: storage.encryption_key_file or MYELIN_STORAGE__ENCRYPTION_KEY (`myelin generate-key`)",
            ));
        }
        if !key_file.is_empty() && !key.is_empty() {
            errors.push(error("storage.encryption_key", "give the key in a file or in the environment, not both"));
        }
        if self.log.level.parse::<tracing_subscriber::filter::EnvFilter>().is_err() {
            errors.push(error("log.level", "not a valid level or filter (e.g. info, debug, homeserver=debug)"));
        }
        errors
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.parse().expect("validated")
    }

    /// The database URL, defaulting to an SQLite file in the data directory.
    pub fn effective_database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!("sqlite://{}?mode=rwc", self.data_dir.join("myelin.db").display())
        } else {
            self.database_url.clone()
        }
    }

    pub fn effective_signing_key_path(&self) -> PathBuf {
        if self.signing_key_path.is_empty() {
            self.data_dir.join("signing.key")
        } else {
            PathBuf::from(&self.signing_key_path)
        }
    }

    /// Where media files live, defaulting to `media` in the data directory.
    pub fn effective_media_path(&self) -> PathBuf {
        if self.media.path.is_empty() { self.data_dir.join("media") } else { PathBuf::from(&self.media.path) }
    }

    /// The URL clients use to reach us (for `.well-known/matrix/client`).
    pub fn effective_public_baseurl(&self) -> String {
        if !self.well_known.client_base_url.is_empty() {
            return self.well_known.client_base_url.clone();
        }
        if !self.public_baseurl.is_empty() {
            return self.public_baseurl.clone();
        }
        if self.server_name == "localhost" || self.server_name.starts_with("localhost:") {
            // A wildcard listen address (as in containers) is no address to give clients.
            match self.listen.parse::<SocketAddr>() {
                Ok(addr) if addr.ip().is_unspecified() => format!("http://localhost:{}/", addr.port()),
                _ => format!("http://{}/", self.listen),
            }
        } else {
            format!("https://{}/", self.server_name)
        }
    }
}

fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// `MYELIN_*` variables as figment values, skipping the few that are not config keys.
fn env_provider(env: &[(String, String)]) -> figment::providers::Serialized<figment::value::Dict> {
    let mut dict = figment::value::Dict::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("MYELIN_") else { continue };
        let key = rest.to_lowercase();
        if NON_CONFIG_ENV.contains(&key.as_str()) || NON_CONFIG_ENV_PREFIXES.iter().any(|p| key.starts_with(p)) {
            continue;
        }
        let path: Vec<&str> = key.split("__").collect();
        insert_path(&mut dict, &path, parse_env_value(value));
    }
    Serialized::defaults(dict)
}

/// Environment values are strings; numbers and booleans are recognised so they can set numeric
/// and boolean options.
fn parse_env_value(value: &str) -> figment::value::Value {
    use figment::value::Value;
    if let Ok(n) = value.parse::<u64>() {
        return Value::from(n);
    }
    match value {
        "true" => Value::from(true),
        "false" => Value::from(false),
        _ => Value::from(value.to_owned()),
    }
}

fn insert_path(dict: &mut figment::value::Dict, path: &[&str], value: figment::value::Value) {
    use figment::value::Value;
    match path {
        [] => {}
        [last] => {
            dict.insert((*last).to_owned(), value);
        }
        [first, rest @ ..] => {
            let entry = dict.entry((*first).to_owned()).or_insert_with(|| Value::from(figment::value::Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}

fn figment_errors(e: figment::Error) -> Vec<ConfigError> {
    e.into_iter()
        .map(|e| {
            let key = if e.path.is_empty() { "<config>".to_owned() } else { e.path.join(".") };
            error(key, e.kind.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_need_no_config() {
        let config = Config::from_sources(None, &[]).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.server_name, "localhost");
        assert_eq!(config.listen_addr().to_string(), "127.0.0.1:8008");
        assert_eq!(config.registration, RegistrationMode::Disabled);
        assert!(config.effective_database_url().starts_with("sqlite://./data/myelin.db"));
    }

    #[test]
    fn example_config_is_complete_and_matches_defaults() {
        // Every option in config.example.toml is known and its shown value is the default.
        let config = Config::from_sources(Some(EXAMPLE_CONFIG), &[]).unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn environment_overrides_file() {
        let file = "server_name = \"file.example\"\nregistration = \"open\"\n[database]\nmax_connections = 4\n";
        let vars = env(&[
            ("MYELIN_SERVER_NAME", "env.example"),
            ("MYELIN_LISTEN", "0.0.0.0:9000"),
            ("MYELIN_DATABASE__MAX_CONNECTIONS", "7"),
            ("MYELIN_DATABASE_URL", "postgres://localhost/myelin"),
            ("MYELIN_TEST_POSTGRES", "ignored"),
            ("MYELIN_CONFIG", "ignored.toml"),
            ("OTHER", "x"),
        ]);
        let config = Config::from_sources(Some(file), &vars).unwrap();
        assert_eq!(config.server_name, "env.example");
        assert_eq!(config.listen, "0.0.0.0:9000");
        assert_eq!(config.registration, RegistrationMode::Open);
        assert_eq!(config.database.max_connections, 7);
        assert_eq!(config.effective_database_url(), "postgres://localhost/myelin");
    }

    #[test]
    fn localhost_base_url_never_names_a_wildcard_address() {
        let config = Config { listen: "0.0.0.0:8008".into(), ..Config::default() };
        assert_eq!(config.effective_public_baseurl(), "http://localhost:8008/");
        let config = Config { listen: "127.0.0.1:9000".into(), ..Config::default() };
        assert_eq!(config.effective_public_baseurl(), "http://127.0.0.1:9000/");
    }

    #[test]
    fn reports_every_problem_at_once() {
        let file = "server_name = \"bad name!\"\nlisten = \"nowhere\"\nregistraton = \"open\"\n[database]\nmax_conections = 3\nmax_connections = 0\n";
        let errors = Config::from_sources(Some(file), &env(&[("MYELIN_PUBLIC_BASEURL", "ftp://x")])).unwrap_err().0;
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        for expected in [
            "registraton",
            "database.max_conections",
            "server_name",
            "listen",
            "public_baseurl",
            "database.max_connections",
        ] {
            assert!(keys.contains(&expected), "missing {expected} in {keys:?}");
        }
        let unknown = errors.iter().find(|e| e.key == "registraton").unwrap();
        assert!(unknown.message.contains("MYELIN_REGISTRATON"), "{}", unknown.message);
    }

    #[test]
    fn bad_enum_value_names_the_key() {
        let errors = Config::from_sources(Some("registration = \"sometimes\"\n"), &[]).unwrap_err().0;
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "registration");
    }

    #[test]
    fn encryption_needs_exactly_one_key_source_and_hides_it() {
        let errors = Config::from_sources(Some("[storage]\nencryption = true\n"), &[]).unwrap_err().0;
        assert_eq!(errors[0].key, "storage.encryption");
        let vars = env(&[("MYELIN_STORAGE__ENCRYPTION", "true"), ("MYELIN_STORAGE__ENCRYPTION_KEY", "c2VjcmV0")]);
        let config = Config::from_sources(None, &vars).unwrap();
        assert!(config.storage.encryption);
        assert!(!format!("{config:?}").contains("c2VjcmV0"), "keys are never printed");
        let both = "[storage]\nencryption_key_file = \"k\"\n";
        assert!(Config::from_sources(Some(both), &vars).is_err());
    }

    #[test]
    fn invalid_toml_is_reported() {
        let errors = Config::from_sources(Some("server_name = \n"), &[]).unwrap_err().0;
        assert!(errors[0].message.contains("not valid TOML"));
    }
}
