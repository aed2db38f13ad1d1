//! The one storage seam: connection pools, migrations, the record codec, and queries grouped by
//! table. One set of SQL texts serves SQLite and PostgreSQL (through sqlx's `Any` driver); only
//! the migrations (DDL) differ per engine.

mod access_log;
mod account_data;
mod accounts;
mod admin;
mod admin_tasks;
mod aliases;
mod audit_log;
mod cache;
mod checkpoint;
mod codec;
mod content_reports;
mod copy;
mod e2ee_keys;
mod erasure;
mod event_batch;
mod event_writer;
mod federation;
mod filters;
mod json_statements;
mod key_backup;
mod key_check;
mod media;
mod media_admin;
mod memberships;
mod notifications;
mod openid;
mod presence;
mod receipts;
mod reclaim;
mod redaction_holds;
mod registration_tokens;
mod relations;
mod remote_rooms;
mod room_purge;
mod rooms;
mod rotation;
mod search;
mod state_groups;
mod to_device;
mod tokens;
mod uiaa;
mod user_directory;

use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub use access_log::{AccessLogQuery, AccessLogRow, Connection};
pub use account_data::AccountDataRow;
pub use accounts::{DeviceRow, NewAccount, NewDevice, ProfileField, ProfileRow, RegisterOutcome, UserRow};
pub use admin::{AdminUserRow, UserOrder, UserQuery};
pub use admin_tasks::AdminTaskRow;
pub use audit_log::{AuditEntry, AuditHead, AuditQuery, AuditRow};
pub use codec::Codec;
pub use content_reports::{ContentReportRow, NewContentReport, ReportQuery};
pub use copy::{TABLES, copy_database};
pub use e2ee_keys::{CrossSigningKeyRow, DeviceKeysRow, KeySignatureRow};
pub use event_writer::QueuedEvent;
pub use federation::{OutboxBatch, ServerKeyRow};
pub use key_backup::{BackupKeyRow, BackupVersionRow, KeyScope};
pub use media::{MediaRow, ThumbnailRow, UploadedContent};
pub use media_admin::{MediaOrder, MediaSelection};
pub use memberships::{MemberSummary, MembershipRow};
pub use notifications::{NotificationRow, UnreadCount};
pub use presence::PresenceRow;
pub use receipts::{NewReceipt, ReceiptRow};
pub use reclaim::Reclaimed;
pub use redaction_holds::Hold;
pub use registration_tokens::RegistrationTokenRow;
pub use relations::{Aggregation, RelationQuery, RelationRow};
pub use remote_rooms::{AdoptedRoom, RemoteInvite};
pub use room_purge::PurgePoint;
pub use rooms::{EventRow, NewEvent, Order, Persisted, PushAction, ResolvedCurrent, RoomRow, StateMap};
pub use search::{SearchHit, SearchOrder, SearchQuery, searchable_text};
pub use to_device::{NewToDeviceMessage, ToDeviceRow};
pub use tokens::{AccessTokenRow, NewTokens, RefreshedDevice};
pub use uiaa::UiaaSessionRow;
pub use user_directory::DirectoryUser;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn from_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL (use sqlite:// or postgres://)")]
    UnsupportedUrl,
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    /// Encryption at rest: the configured key does not match the database, or is missing.
    #[error("{0}")]
    Key(String),
}

impl StorageError {
    /// True when a write lost a race against a uniqueness constraint.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, Self::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

/// SQLite page caches: readers share the OS page cache and mostly read recent pages; the one
/// writer's transactions touch many index pages, and a small cache would spill and re-read them.
/// WAL checkpoints run in the background (`checkpoint`); the writer's own threshold (pages, 200
/// MiB) is only a backstop should those stop.
const READER_PRAGMAS: &str = "PRAGMA cache_size = -1024;";
const WRITER_PRAGMAS: &str = "PRAGMA cache_size = -8192; PRAGMA wal_autocheckpoint = 50000;";

/// Decoded events by ID.
type EventCache = cache::Cache<String, EventRow>;
/// Full states of state groups.
type StateCache = cache::Cache<i64, std::sync::Arc<StateMap>>;

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

#[derive(Debug, Clone)]
pub struct StorageOptions {
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// PostgreSQL's `statement_timeout`; zero means none.
    pub statement_timeout: Duration,
    /// How records are stored: plain, or encrypted at rest.
    pub codec: Codec,
    /// Decoded events kept in memory; 0 disables the event cache.
    pub cached_events: usize,
    /// State entries (summed over resolved state groups) kept in memory; 0 disables the cache.
    pub cached_state_entries: usize,
}

/// Handle to the database. Cheap to clone.
///
/// SQLite allows one writer at a time; giving writes their own single-connection pool makes them
/// queue in-process instead of failing with `SQLITE_BUSY`. On PostgreSQL both handles are the same
/// pool.
#[derive(Clone, Debug)]
pub struct Storage {
    read: AnyPool,
    write: AnyPool,
    engine: Engine,
    /// Held while writing events or state groups, so their counters are assigned in commit order.
    event_order: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// The next event stream ordering, when known (under `event_order`).
    next_ordering: std::sync::Arc<rooms::NextOrdering>,
    state_group_numbers: std::sync::Arc<state_groups::StateGroupNumbers>,
    event_writer: event_writer::EventWriter,
    event_commit_latency: std::sync::Arc<crate::metrics::SharedHistogram>,
    codec: Codec,
    /// Decoded events by ID (events change only when redacted, pruned, purged or promoted from
    /// outlier; those writes invalidate their entries).
    event_cache: std::sync::Arc<EventCache>,
    /// Resolved state groups (immutable; cleared when a room purge frees group numbers).
    state_cache: std::sync::Arc<StateCache>,
    /// Unread counts by user and room, each exact through a stream position.
    unread_cache: std::sync::Arc<notifications::UnreadCache>,
}

impl Storage {
    /// Connects (creating an SQLite file if needed) and applies pending migrations.
    pub async fn connect(options: &StorageOptions) -> Result<Self> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

        let engine = Engine::from_url(&options.url).ok_or(StorageError::UnsupportedUrl)?;
        let connect_options = AnyConnectOptions::from_str(&options.url)?;
        let statement_timeout_ms = options.statement_timeout.as_millis();
        let pool_options = |max: u32, sqlite_pragmas: &'static str| {
            // No ping before every acquire: it doubled the round trips of every query (a broken
            // connection still fails its query, and the pool then replaces it).
            AnyPoolOptions::new()
                .max_connections(max)
                .acquire_timeout(options.acquire_timeout)
                .test_before_acquire(false)
                .after_connect(move |conn, _meta| {
                    Box::pin(async move {
                        match engine {
                            Engine::Sqlite => {
                                conn.execute(
                                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
                                     PRAGMA secure_delete = ON; PRAGMA temp_store = MEMORY;",
                                )
                                .await?;
                                conn.execute(sqlite_pragmas).await?;
                            }
                            Engine::Postgres if statement_timeout_ms > 0 => {
                                conn.execute(format!("SET statement_timeout = {statement_timeout_ms}").as_str())
                                    .await?;
                            }
                            Engine::Postgres => {}
                        }
                        Ok(())
                    })
                })
        };
        let event_order: std::sync::Arc<tokio::sync::Mutex<()>> = Default::default();
        // SQLite writes go through one connection of their own (see [`Storage`]).
        let (read, write) = match engine {
            Engine::Sqlite => {
                let write = pool_options(1, WRITER_PRAGMAS).connect_with(connect_options.clone()).await?;
                let read = pool_options(options.max_connections, READER_PRAGMAS).connect_with(connect_options).await?;
                checkpoint::spawn(read.clone(), event_order.clone());
                (read, write)
            }
            Engine::Postgres => {
                let pool = pool_options(options.max_connections, "").connect_with(connect_options).await?;
                (pool.clone(), pool)
            }
        };
        let latency: std::sync::Arc<crate::metrics::SharedHistogram> = Default::default();
        let event_cache = std::sync::Arc::new(cache::Cache::new(options.cached_events, |_| 1));
        let next_ordering: std::sync::Arc<rooms::NextOrdering> = Default::default();
        let state_group_numbers: std::sync::Arc<state_groups::StateGroupNumbers> = Default::default();
        let event_writer = event_writer::EventWriter::spawn(
            engine,
            write.clone(),
            options.codec.clone(),
            event_order.clone(),
            event_writer::Numbers { next_ordering: next_ordering.clone(), state_groups: state_group_numbers.clone() },
            latency.clone(),
            event_cache.clone(),
        );
        let storage = Self {
            read,
            write,
            engine,
            event_order,
            next_ordering,
            state_group_numbers,
            event_writer,
            event_commit_latency: latency,
            codec: options.codec.clone(),
            event_cache,
            state_cache: std::sync::Arc::new(cache::Cache::new(options.cached_state_entries, |state| {
                state.len().max(1)
            })),
            unread_cache: std::sync::Arc::new(cache::Cache::new(notifications::CACHED_UNREAD_ROOMS, |_| 1)),
        };
        storage.migrate().await?;
        storage.state_group_numbers.seed(&storage.write).await?;
        Ok(storage)
    }

    async fn migrate(&self) -> Result<()> {
        let mut conn = self.write.acquire().await?;
        match self.engine {
            Engine::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&mut *conn).await?,
            Engine::Postgres => {
                // A migration may rightly run for a long time on a big database: no timeout, on a
                // connection that is closed afterwards rather than returned to the pool.
                conn.execute("SET statement_timeout = 0").await?;
                conn.close_on_drop();
                sqlx::migrate!("./migrations/postgres").run(&mut *conn).await?
            }
        }
        Ok(())
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Whether records are encrypted at rest.
    pub fn encrypts_at_rest(&self) -> bool {
        self.codec.encrypts()
    }

    /// The at-rest keys, when encrypting (media is sealed with the same ones).
    pub fn at_rest_keys(&self) -> Option<&std::sync::Arc<crate::at_rest::Keyring>> {
        self.codec.keys()
    }

    /// Cheap liveness check of the database.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// How long event batches take to write and commit, for metrics.
    pub fn event_commit_latency(&self) -> &crate::metrics::SharedHistogram {
        &self.event_commit_latency
    }

    /// Connection pool use, for metrics.
    pub fn pool_stats(&self) -> PoolStats {
        let (open, idle) = (self.read.size(), u32::try_from(self.read.num_idle()).unwrap_or(u32::MAX));
        let max = self.read.options().get_max_connections();
        if self.engine == Engine::Sqlite {
            // The single writer connection is a pool of its own.
            let writer_idle = u32::try_from(self.write.num_idle()).unwrap_or(u32::MAX);
            PoolStats { open: open + self.write.size(), idle: idle + writer_idle, max: max + 1 }
        } else {
            PoolStats { open, idle, max }
        }
    }

    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub open: u32,
    pub idle: u32,
    pub max: u32,
}

/// Where each stream a sync reads stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncPositions {
    pub events: i64,
    pub account_data: i64,
    pub receipts: i64,
    pub device_lists: i64,
    pub to_device: i64,
    pub presence: i64,
}

/// Streams other than events, whose positions live in `stream_positions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    AccountData,
    Receipts,
    DeviceLists,
    ToDevice,
    AccessLog,
    ContentReports,
    FederationEdus,
    /// Not a stream of its own: how far `DeviceLists` has been announced to other servers.
    DeviceListsAnnounced,
    Presence,
    /// How far events from before the search index were indexed.
    SearchBackfill,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Self::AccountData => "account_data",
            Self::Receipts => "receipts",
            Self::DeviceLists => "device_lists",
            Self::ToDevice => "to_device",
            Self::AccessLog => "access_log",
            Self::ContentReports => "content_reports",
            Self::FederationEdus => "federation_edus",
            Self::DeviceListsAnnounced => "device_lists_announced",
            Self::Presence => "presence",
            Self::SearchBackfill => "search_backfill",
        }
    }
}

/// Takes the next position of `stream` inside a write transaction (atomic on both engines).
async fn advance_stream(conn: &mut sqlx::AnyConnection, stream: Stream) -> Result<i64> {
    advance_stream_by(conn, stream, 1).await
}

/// Takes the next `count` positions of `stream` and returns the last; the row lock held until
/// commit makes positions appear in commit order, so a reader never skips one.
async fn advance_stream_by(conn: &mut sqlx::AnyConnection, stream: Stream, count: i64) -> Result<i64> {
    let row = sqlx::query("UPDATE stream_positions SET position = position + $2 WHERE stream = $1 RETURNING position")
        .bind(stream.name())
        .bind(count)
        .fetch_one(&mut *conn)
        .await?;
    Ok(sqlx::Row::try_get(&row, "position")?)
}

impl Storage {
    /// Moves a bookmark position (`DeviceListsAnnounced`) forward.
    pub async fn set_stream_position(&self, stream: Stream, position: i64) -> Result<()> {
        sqlx::query("UPDATE stream_positions SET position = $2 WHERE stream = $1 AND position < $2")
            .bind(stream.name())
            .bind(position)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// The newest position of every stream a sync reads, in one query (so from one snapshot).
    /// Where every stream stands and the user's memberships, read in one statement so both
    /// come from the same snapshot: a membership committed between two reads could otherwise be
    /// covered by the positions yet missing from the memberships.
    pub async fn sync_start(&self, user_id: &str) -> Result<(SyncPositions, Vec<MembershipRow>)> {
        let positions = format!(
            "SELECT {} FROM (SELECT stream, position FROM stream_positions \
             UNION ALL SELECT 'events' AS stream, MAX(n) AS position FROM ({}) AS highest) AS p",
            self.engine.json_rows(&["stream", "position"], ""),
            rooms::HIGHEST_ORDERINGS
        );
        let sql = format!(
            "SELECT ({positions}) AS positions, ({}) AS memberships",
            memberships::user_memberships_json(self.engine)
        );
        let row = sqlx::query(&sql).bind(user_id).fetch_one(&self.read).await?;
        let mut positions = SyncPositions::default();
        for (stream, position) in json_rows_in::<(String, i64)>(&row, "positions")? {
            let slot = match stream.as_str() {
                "events" => &mut positions.events,
                s if s == Stream::AccountData.name() => &mut positions.account_data,
                s if s == Stream::Receipts.name() => &mut positions.receipts,
                s if s == Stream::DeviceLists.name() => &mut positions.device_lists,
                s if s == Stream::ToDevice.name() => &mut positions.to_device,
                s if s == Stream::Presence.name() => &mut positions.presence,
                _ => continue,
            };
            *slot = position;
        }
        Ok((positions, memberships::memberships_in_json(&row, "memberships")?))
    }

    /// The newest position of a stream.
    pub async fn stream_position(&self, stream: Stream) -> Result<i64> {
        let row = sqlx::query("SELECT position FROM stream_positions WHERE stream = $1")
            .bind(stream.name())
            .fetch_one(&self.read)
            .await?;
        Ok(sqlx::Row::try_get(&row, "position")?)
    }
}

/// Bound parameters in one multi-row statement at most: SQLite finds each parameter by a linear
/// search of the statement's parameter names, so binding costs grow with the square of the size.
const PARAMS_PER_STATEMENT: usize = 128;

/// `rows` split for multi-row statements of `width` parameters a row: each piece under
/// [`PARAMS_PER_STATEMENT`], and a power of two long, so a table's statements come in a few
/// shapes that the per-connection statement cache keeps prepared.
fn statement_chunks<T>(rows: &[T], width: usize) -> impl Iterator<Item = &[T]> {
    let most = (PARAMS_PER_STATEMENT / width).max(1);
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let len = rest.len().min(most);
        let (chunk, tail) = rest.split_at(1 << len.ilog2());
        rest = tail;
        Some(chunk)
    })
}

/// `($1, …, $width), ($width+1, …), …` for a multi-row `VALUES` of `rows` rows.
fn row_values(rows: usize, width: usize) -> String {
    (0..rows).map(|row| format!("({})", placeholders(row * width + 1, width))).collect::<Vec<_>>().join(", ")
}

/// `$first, $first+1, …` for `count` values of an `IN (…)` list.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

impl Engine {
    /// The `columns` of every row of a query, folded into one row: a JSON array (as text) of
    /// values, or of arrays of values for several columns, ordered by `order_by` (or unordered
    /// when empty). On SQLite each row of a result is a hand-off between the connection's
    /// thread and the reading task, so hundreds of short rows cost more than one long one.
    fn json_rows(self, columns: &[&str], order_by: &str) -> String {
        let order = if order_by.is_empty() { String::new() } else { format!(" ORDER BY {order_by}") };
        let array = match self {
            Engine::Sqlite => "json_array",
            Engine::Postgres => "json_build_array",
        };
        let value = if columns.len() == 1 { columns[0].to_owned() } else { format!("{array}({})", columns.join(", ")) };
        match self {
            Engine::Sqlite => format!("json_group_array({value}{order})"),
            Engine::Postgres => format!("CAST(COALESCE(json_agg({value}{order}), '[]') AS TEXT)"),
        }
    }

    /// The engine a connection talks to.
    fn of(conn: &sqlx::AnyConnection) -> Self {
        if conn.backend_name() == <sqlx::Sqlite as sqlx::Database>::NAME { Engine::Sqlite } else { Engine::Postgres }
    }

    /// A `SELECT` of the rows of the JSON array bound as `$param` (each row an array of values
    /// typed `columns`, named `c0`, `c1`, …), to feed a multi-row `INSERT`: one statement with
    /// one parameter whatever the number of rows, so a batch is one round trip and one statement
    /// shape (see [`json_statements::JsonStatements`]).
    fn json_table(self, param: usize, columns: &[JsonColumn]) -> String {
        let values: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, column)| match (self, column) {
                (Engine::Sqlite, JsonColumn::Hex) => format!("unhex(value ->> {i}) AS c{i}"),
                (Engine::Sqlite, _) => format!("value ->> {i} AS c{i}"),
                (Engine::Postgres, JsonColumn::Text) => format!("x ->> {i} AS c{i}"),
                (Engine::Postgres, JsonColumn::Int) => format!("CAST(x ->> {i} AS BIGINT) AS c{i}"),
                (Engine::Postgres, JsonColumn::Hex) => format!("decode(x ->> {i}, 'hex') AS c{i}"),
            })
            .collect();
        match self {
            // Each row is materialized once: `json_each` hands out a row's value as new text
            // every time a column reads it. `WHERE true` tells SQLite's parser that a following
            // `ON CONFLICT` is an upsert.
            Engine::Sqlite => format!(
                "WITH json_rows (value) AS MATERIALIZED (SELECT value FROM json_each(${param})) \
                 SELECT {} FROM json_rows WHERE true",
                values.join(", ")
            ),
            // `jsonb`, parsed once: on a `json` value every `->>` parses the row's text again
            // (a batch of 31 events spent 3 ms of its 3.5 ms there).
            Engine::Postgres => {
                format!("SELECT {} FROM jsonb_array_elements(CAST(${param} AS jsonb)) AS x", values.join(", "))
            }
        }
    }

    /// `IN (…)` over a list of `count` values bound last, from `$first` on, by
    /// [`Engine::bind_list`]. On SQLite the list is one JSON array: one statement shape whatever
    /// its length (`IN ($1, …, $n)` is a new statement to prepare and plan for every length)
    /// and one parameter to bind. PostgreSQL plans a plain list best.
    fn in_list(self, first: usize, count: usize) -> String {
        if self.lists_as_json(count) {
            format!("IN (SELECT value FROM json_each(${first}))")
        } else {
            format!("IN ({})", placeholders(first, count))
        }
    }

    /// Whether a list of `count` values goes as JSON: on SQLite, unless it is a short one (the
    /// lists of an incremental sync), which plain placeholders plan and run faster in a few
    /// shapes of their own.
    fn lists_as_json(self, count: usize) -> bool {
        self == Engine::Sqlite && count > SHORT_LIST
    }

    /// Binds the list of an [`Engine::in_list`].
    fn bind_list<'q, T>(self, query: AnyQuery<'q>, values: &'q [T]) -> AnyQuery<'q>
    where
        T: serde::Serialize + sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any> + 'q,
    {
        if self.lists_as_json(values.len()) {
            query.bind(serde_json::to_string(values).unwrap_or_else(|_| "[]".to_owned()))
        } else {
            values.iter().fold(query, |query, value| query.bind(value))
        }
    }
}

/// Lists this short are bound value by value on SQLite too (see [`Engine::lists_as_json`]).
const SHORT_LIST: usize = 4;

/// A statement being built, as `sqlx::query` makes it.
type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// The SQL type of a column of [`Engine::json_table`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonColumn {
    Text,
    Int,
    /// A BLOB, as hex text ([`json_statements::hex`]).
    Hex,
}

/// The rows of a [`Engine::json_rows`] column.
fn json_rows_in<T: serde::de::DeserializeOwned>(row: &sqlx::any::AnyRow, column: &str) -> Result<Vec<T>> {
    let text: String = sqlx::Row::try_get(row, column)?;
    serde_json::from_str(&text).map_err(|e| StorageError::Corrupt(format!("aggregated {column}: {e}")))
}

/// Whether a stream window `(after, up_to]` is empty: a sync whose stream has not moved since
/// its last token skips the query.
fn empty_window(after: i64, up_to: i64) -> bool {
    after >= up_to
}

/// Booleans are stored as 0/1 integers on both engines.
fn flag(value: bool) -> i64 {
    i64::from(value)
}

#[cfg(test)]
impl Storage {
    /// Runs a statement directly, for tests that tamper with the database.
    pub(crate) async fn execute_raw_for_tests(&self, sql: &str) {
        sqlx::query(sql).execute(&self.write).await.expect("test statement");
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Opens a fresh database per test: a temporary SQLite file, and a fresh PostgreSQL schema
    //! when `MYELIN_TEST_POSTGRES` is set.

    use super::*;

    pub async fn sqlite() -> Storage {
        let dir = std::env::temp_dir().join(format!("myelin-unit-{}", random_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("test.db").display());
        Storage::connect(&options(url)).await.unwrap()
    }

    pub async fn postgres() -> Option<Storage> {
        Some(Storage::connect(&options(postgres_url().await?)).await.unwrap())
    }

    /// A URL for a fresh schema in the test PostgreSQL, when there is one.
    pub async fn postgres_url() -> Option<String> {
        let base = std::env::var("MYELIN_TEST_POSTGRES").ok()?;
        let schema = format!("unit_{}", random_suffix().to_lowercase());
        let pool = sqlx::PgPool::connect(&base).await.unwrap();
        sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&pool).await.unwrap();
        pool.close().await;
        let separator = if base.contains('?') { '&' } else { '?' };
        Some(format!("{base}{separator}options[search_path]={schema}"))
    }

    /// Fresh database URLs for both engines that are available here.
    pub async fn engine_urls() -> Vec<String> {
        let dir = std::env::temp_dir().join(format!("myelin-unit-{}", random_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut urls = vec![format!("sqlite://{}?mode=rwc", dir.join("test.db").display())];
        urls.extend(postgres_url().await);
        urls
    }

    /// Opens `url` storing records with `codec`.
    pub async fn connect_with(url: &str, codec: Codec) -> Storage {
        Storage::connect(&StorageOptions { codec, ..options(url.to_owned()) }).await.unwrap()
    }

    /// Both engines that are available here.
    pub async fn engines() -> Vec<Storage> {
        let mut all = vec![sqlite().await];
        all.extend(postgres().await);
        all
    }

    /// A plain message by `@alice:x` with no prev events, on no state group: tests set what
    /// they need on top (`NewEvent { …, ..message(room, id) }`).
    pub fn message(room_id: &str, event_id: &str) -> NewEvent {
        NewEvent {
            event_id: event_id.into(),
            room_id: room_id.into(),
            event_type: "m.room.message".into(),
            state_key: None,
            sender: "@alice:x".into(),
            depth: 1,
            origin_server_ts: 1,
            json: serde_json::json!({"event_id": event_id, "content": {"body": "hi"}}),
            prev_events: Vec::new(),
            rejected_reason: None,
            state_group_before: 0,
            state_group_after: None,
            txn: None,
            outlier: false,
            destinations: Vec::new(),
            resolved_current: None,
            push_actions: Vec::new(),
        }
    }

    fn options(url: String) -> StorageOptions {
        StorageOptions {
            url,
            max_connections: 4,
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: Duration::ZERO,
            codec: Codec::plain(),
            cached_events: 1024,
            cached_state_entries: 10_000,
        }
    }

    fn random_suffix() -> String {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).unwrap();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_chunks_are_powers_of_two_under_the_parameter_limit() {
        let rows: Vec<usize> = (0..100).collect();
        let sizes: Vec<usize> = statement_chunks(&rows, 13).map(<[usize]>::len).collect();
        // 128 / 13 = 9 rows at most, so pieces of 8, then 4 and 2 and 1 for what is left.
        assert_eq!(sizes, vec![8; 12].into_iter().chain([4]).collect::<Vec<_>>());
        let joined: Vec<usize> = statement_chunks(&rows, 13).flatten().copied().collect();
        assert_eq!(joined, rows);
        let sizes: Vec<usize> = statement_chunks(&rows[..7], 2).map(<[usize]>::len).collect();
        assert_eq!(sizes, vec![4, 2, 1]);
        assert_eq!(statement_chunks(&rows[..0], 2).count(), 0);
        // A row wider than the limit still goes in, one per statement.
        assert_eq!(statement_chunks(&rows[..3], 500).count(), 3);
    }

    #[tokio::test]
    async fn postgres_statements_time_out() {
        let Some(url) = test_support::postgres_url().await else { return };
        let options = StorageOptions {
            url,
            max_connections: 1,
            acquire_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_millis(200),
            codec: Codec::plain(),
            cached_events: 0,
            cached_state_entries: 0,
        };
        let storage = Storage::connect(&options).await.unwrap();
        let slow = sqlx::query("SELECT pg_sleep(2)").execute(&storage.read).await;
        let message = slow.expect_err("cancelled by statement_timeout").to_string();
        assert!(message.contains("statement timeout"), "{message}");
        storage.close().await;
    }
}
