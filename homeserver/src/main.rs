//! The `myelin` command: serve, and the administrative commands around it.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use homeserver::config::{Config, EXAMPLE_CONFIG, LogFormat};
use tracing_subscriber::EnvFilter;

/// mimalloc returns freed memory to the system promptly; with glibc's allocator the argon2
/// buffers of concurrent password checks left hundreds of MiB of resident heap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

unsafe extern "C" {
    /// mimalloc's option setter (in the library the allocator links).
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_arena_eager_commit` in mimalloc 3's option list.
const MI_OPTION_ARENA_EAGER_COMMIT: std::ffi::c_int = 4;

/// By default mimalloc commits its arenas eagerly on Linux: some 16 MiB resident before the
/// first request. Committing on demand costs nothing measurable here. The environment
/// (`MIMALLOC_ARENA_EAGER_COMMIT`) still wins.
///
/// mimalloc also asks for transparent huge pages for its arenas (before `main`, so its
/// `allow_thp` option comes too late), and each huge page is resident in full however little of
/// it is used: 18 of an idle server's 43 MiB. The process opts out of them instead; it made
/// nothing measurably slower.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none() {
        // SAFETY: a plain setter of a global option, called before any other thread exists.
        unsafe { mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
    }
    #[cfg(target_os = "linux")]
    {
        unsafe extern "C" {
            fn prctl(option: std::ffi::c_int, ...) -> std::ffi::c_int;
        }
        const PR_SET_THP_DISABLE: std::ffi::c_int = 41;
        // SAFETY: prctl with PR_SET_THP_DISABLE takes one integer argument and only sets a flag
        // of this process; a failure (an old kernel) leaves huge pages on, which is harmless.
        unsafe {
            prctl(
                PR_SET_THP_DISABLE,
                1 as std::ffi::c_ulong,
                0 as std::ffi::c_ulong,
                0 as std::ffi::c_ulong,
                0 as std::ffi::c_ulong,
            )
        };
    }
}

#[derive(Parser)]
#[command(name = "myelin", version, about = "Myelin, a Matrix homeserver")]
struct Cli {
    /// Configuration file. Without this flag, ./myelin.toml is used if it exists.
    #[arg(long, short, global = true, env = "MYELIN_CONFIG")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Print a complete, commented configuration file.
    GenerateConfig,
    /// Validate the configuration and report every problem.
    CheckConfig,
    /// Create a user account.
    CreateUser {
        /// Localpart (e.g. alice) or full user ID on this server.
        name: String,
        /// Read the password from this file ("-" for standard input). Without it the account has
        /// no password and cannot log in with one.
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Make the user a server admin.
        #[arg(long)]
        admin: bool,
    },
    /// Set a user's password (read from a file or standard input) and log out their devices.
    ResetPassword {
        /// Localpart (e.g. alice) or full user ID on this server.
        name: String,
        /// Read the new password from this file ("-" for standard input).
        #[arg(long)]
        password_file: PathBuf,
        /// Keep the user's existing sessions logged in.
        #[arg(long)]
        keep_devices: bool,
    },
    /// Apply pending database migrations and exit (the server also does this when it starts).
    Migrate,
    /// Copy everything from one database to another, e.g. from the embedded SQLite default to
    /// PostgreSQL. Stop the server first; the target must be empty. Media files stay where they are.
    MigrateDb {
        /// Source database URL, e.g. sqlite://data/myelin.db
        #[arg(long)]
        from: String,
        /// Target database URL, e.g. postgres://myelin:secret@localhost/myelin
        #[arg(long)]
        to: String,
    },
    /// Manage registration tokens (used when `registration = "token"`).
    RegistrationToken {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// The tamper-evident admin audit log.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Write a new random encryption-at-rest key (base64) to a file readable only by its owner.
    /// Point `storage.encryption_key_file` at it. It refuses to overwrite an existing file.
    GenerateKey {
        /// Where to write the key, e.g. /etc/myelin/storage.key
        path: PathBuf,
    },
    /// Seal every stored record and media file under a new encryption-at-rest key, in batches,
    /// reading with the configured keys. The server may keep running if it already has the new
    /// key as `storage.encryption_key_file` and the old one in `storage.decryption_key_files`.
    RotateKey {
        /// The new key (from `myelin generate-key`).
        #[arg(long)]
        new_key_file: PathBuf,
        /// Rows (and media files) per batch; each batch of rows is one transaction.
        #[arg(long, default_value_t = 500)]
        batch: i64,
    },
    /// Print the version.
    Version,
    /// Check that the server at this configuration's listen address answers `/health` (for
    /// container health checks). Exits 0 when healthy, 1 otherwise.
    Healthcheck,
}

#[derive(Subcommand)]
enum AuditAction {
    /// Check the hash chain; exits non-zero and names the first broken entry if it is broken.
    Verify,
}

#[derive(Subcommand)]
enum TokenAction {
    /// Create a token and print it.
    Create {
        /// Token text; random when omitted.
        #[arg(long)]
        token: Option<String>,
        /// How many registrations it allows; unlimited when omitted.
        #[arg(long)]
        uses: Option<i64>,
        /// Expire it after this many seconds.
        #[arg(long)]
        expires_in_secs: Option<i64>,
    },
    /// List tokens.
    List,
    /// Delete a token.
    Delete { token: String },
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::GenerateConfig) => {
            print!("{EXAMPLE_CONFIG}");
            return ExitCode::SUCCESS;
        }
        Some(Command::Version) => {
            println!("myelin {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(Command::MigrateDb { from, to }) => return migrate_db(&from, &to),
        Some(Command::GenerateKey { path }) => return generate_key(&path),
        _ => {}
    }
    let explicit = cli.config.is_some();
    let path = cli.config.unwrap_or_else(|| PathBuf::from("myelin.toml"));
    let (config, source) = match Config::load(&path, explicit) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprint!("{errors}");
            if matches!(cli.command, Some(Command::Healthcheck)) {
                // Docker reserves exit code 2 in health checks; unhealthy is 1.
                return ExitCode::FAILURE;
            }
            return ExitCode::from(2);
        }
    };
    if matches!(cli.command, Some(Command::CheckConfig)) {
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    if matches!(cli.command, Some(Command::Healthcheck)) {
        return healthcheck(config.listen_addr());
    }
    init_logging(&config);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            None | Some(Command::Serve) => homeserver::server::run(config, source).await.map_err(|e| e.to_string()),
            Some(Command::CreateUser { name, password_file, admin }) => {
                create_user(config, name, password_file, admin).await
            }
            Some(Command::RegistrationToken { action }) => registration_token(config, action).await,
            Some(Command::ResetPassword { name, password_file, keep_devices }) => {
                reset_password(config, name, password_file, keep_devices).await
            }
            Some(Command::Migrate) => migrate(config).await,
            Some(Command::Audit { action: AuditAction::Verify }) => audit_verify(config).await,
            Some(Command::RotateKey { new_key_file, batch }) => rotate_key(config, new_key_file, batch).await,
            Some(
                Command::GenerateConfig
                | Command::Version
                | Command::CheckConfig
                | Command::Healthcheck
                | Command::MigrateDb { .. }
                | Command::GenerateKey { .. },
            ) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// GET /health over loopback (a wildcard listen address is reached through 127.0.0.1 or ::1).
fn healthcheck(listen: std::net::SocketAddr) -> ExitCode {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() { Ipv4Addr::LOCALHOST.into() } else { Ipv6Addr::LOCALHOST.into() });
    }
    let timeout = Duration::from_secs(5);
    let answer = (|| -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    })();
    match answer {
        Ok(response) if response.starts_with("HTTP/1.1 200") => {
            println!("healthy: {addr}");
            ExitCode::SUCCESS
        }
        Ok(response) => {
            eprintln!("unhealthy: {addr} answered {}", response.lines().next().unwrap_or(""));
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: cannot reach {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match config.log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn create_user(config: Config, name: String, password_file: Option<PathBuf>, admin: bool) -> Result<(), String> {
    let password_given = password_file.is_some();
    let password = match password_file {
        None => None,
        Some(path) => Some(read_secret(&path)?),
    };
    let state = homeserver::server::build_state(config).await.map_err(|e| e.to_string())?;
    let result = homeserver::accounts::create_account(&state, &name, password, admin).await;
    let target = result.as_ref().map_or(name.clone(), ToString::to_string);
    let params = serde_json::json!({"admin": admin, "password_set": password_given});
    audit(&state, "create_user", Some(&target), params, homeserver::audit::outcome(&result)).await?;
    state.storage.close().await;
    let user_id = result.map_err(|e| format!("{} ({})", e, e.errcode()))?;
    println!("created {user_id}{}", if admin { " (admin)" } else { "" });
    Ok(())
}

async fn reset_password(
    config: Config,
    name: String,
    password_file: PathBuf,
    keep_devices: bool,
) -> Result<(), String> {
    let password = read_secret(&password_file)?;
    let state = homeserver::server::build_state(config).await.map_err(|e| e.to_string())?;
    let result = homeserver::accounts::reset_password(&state, &name, password, !keep_devices).await;
    let target = result.as_ref().map_or(name.clone(), ToString::to_string);
    let params = serde_json::json!({"logout_devices": !keep_devices});
    audit(&state, "reset_password", Some(&target), params, homeserver::audit::outcome(&result)).await?;
    state.storage.close().await;
    let user_id = result.map_err(|e| format!("{} ({})", e, e.errcode()))?;
    println!("password changed for {user_id}{}", if keep_devices { "" } else { "; all devices logged out" });
    Ok(())
}

/// `rotate-key`: reseals everything, then says how to finish.
async fn rotate_key(config: Config, new_key_file: PathBuf, batch: i64) -> Result<(), String> {
    if batch < 1 {
        return Err("--batch must be at least 1".into());
    }
    let new_key = homeserver::at_rest::Key::from_file(&new_key_file).map_err(|e| e.to_string())?;
    let rotated = homeserver::key_rotation::rotate(&config, new_key, batch).await?;
    println!(
        "resealed {} records and {} media files under {}; set storage.encryption_key_file to it and restart; \
         keep the old key in storage.decryption_key_files until no process uses it",
        rotated.records,
        rotated.media_files,
        new_key_file.display()
    );
    Ok(())
}

/// `generate-key`: created with mode 0600 from the start, so the key is never readable by others.
fn generate_key(path: &std::path::Path) -> ExitCode {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(path).and_then(|mut file| {
        writeln!(file, "{}", homeserver::at_rest::generate_key_text())?;
        file.sync_all()
    });
    match written {
        Ok(()) => {
            println!("wrote a new key to {}; keep a copy apart from the database backups", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot create {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// `migrate-db`: needs no configuration, only the two URLs.
fn migrate_db(from: &str, to: &str) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(homeserver::storage::copy_database(from, to)) {
        Ok(counts) => {
            for (table, rows) in counts {
                println!("{table}\t{rows}");
            }
            if let Err(e) = runtime.block_on(audit_migrate_db(from, to)) {
                eprintln!("error: copied, but could not record it in the audit log: {e}");
                return ExitCode::FAILURE;
            }
            println!("copied; point database_url at the new database and start the server");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(config: Config) -> Result<(), String> {
    let storage = homeserver::server::open_storage(&config).await.map_err(|e| e.to_string())?;
    storage.close().await;
    println!("database is up to date");
    Ok(())
}

fn read_secret(path: &PathBuf) -> Result<String, String> {
    let mut text = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).map_err(|e| format!("cannot read standard input: {e}"))?;
    } else {
        text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    }
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

async fn registration_token(config: Config, action: TokenAction) -> Result<(), String> {
    let state = homeserver::server::build_state(config).await.map_err(|e| e.to_string())?;
    let storage = &state.storage;
    let now = state.now_ms();
    match action {
        TokenAction::Create { token, uses, expires_in_secs } => {
            let token = token.unwrap_or_else(|| homeserver::accounts::tokens::new_opaque_id(16));
            let expiry = expires_in_secs.map(|secs| now + secs * 1000);
            let created =
                storage.create_registration_token(&token, uses, expiry, now).await.map_err(|e| e.to_string())?;
            let params = serde_json::json!({"uses_allowed": uses, "expiry_time": expiry});
            let outcome = if created { "ok" } else { "error: M_INVALID_PARAM" };
            let fingerprint = homeserver::audit::fingerprint(&token);
            audit(&state, "create_registration_token", Some(&fingerprint), params, outcome.to_owned()).await?;
            if !created {
                return Err(format!("token {token} already exists"));
            }
            println!("{token}");
        }
        TokenAction::List => {
            for row in storage.registration_tokens().await.map_err(|e| e.to_string())? {
                let uses = row.uses_allowed.map_or("unlimited".to_owned(), |n| n.to_string());
                let expiry = row.expiry_time.map_or("never".to_owned(), |t| t.to_string());
                println!("{}\tused {} of {}\texpires {}", row.token, row.completed, uses, expiry);
            }
        }
        TokenAction::Delete { token } => {
            let deleted = storage.delete_registration_token(&token).await.map_err(|e| e.to_string())?;
            let outcome = if deleted { "ok" } else { "error: M_NOT_FOUND" };
            let fingerprint = homeserver::audit::fingerprint(&token);
            audit(&state, "delete_registration_token", Some(&fingerprint), serde_json::json!({}), outcome.to_owned())
                .await?;
            if !deleted {
                return Err(format!("no token {token}"));
            }
            println!("deleted {token}");
        }
    }
    storage.close().await;
    Ok(())
}

/// Appends a CLI action to the audit log.
async fn audit(
    state: &homeserver::AppState,
    action: &str,
    target: Option<&str>,
    params: serde_json::Value,
    outcome: String,
) -> Result<(), String> {
    homeserver::audit::record(
        &state.storage,
        state.now_ms(),
        homeserver::audit::CLI_ACTOR,
        action,
        target,
        params,
        outcome,
    )
    .await
    .map(|_| ())
    .map_err(|e| format!("cannot write the audit log: {e}"))
}

/// Records a finished `migrate-db` in the target's audit log (which now continues the source's
/// chain). The URLs are recorded without credentials.
async fn audit_migrate_db(from: &str, to: &str) -> Result<(), String> {
    let storage = homeserver::storage::Storage::connect(&homeserver::storage::StorageOptions {
        url: to.to_owned(),
        max_connections: 1,
        acquire_timeout: Duration::from_secs(30),
        statement_timeout: Duration::ZERO,
        codec: homeserver::storage::Codec::plain(),
        cached_events: 0,
        cached_state_entries: 0,
    })
    .await
    .map_err(|e| e.to_string())?;
    let now = i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis(),
    )
    .unwrap_or(i64::MAX);
    let params = serde_json::json!({"from": without_credentials(from), "to": without_credentials(to)});
    let result =
        homeserver::audit::record(&storage, now, homeserver::audit::CLI_ACTOR, "migrate_db", None, params, "ok".into())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
    storage.close().await;
    result
}

/// A database URL without its user and password.
fn without_credentials(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://…@{host}"),
        _ => url.to_owned(),
    }
}

/// `audit verify`: walks the chain; a broken chain is an error naming the first bad entry.
async fn audit_verify(config: Config) -> Result<(), String> {
    let storage = homeserver::server::open_storage(&config).await.map_err(|e| e.to_string())?;
    let verification = homeserver::audit::verify(&storage).await;
    storage.close().await;
    match verification.map_err(|e| e.to_string())? {
        homeserver::audit::Verification::Intact { entries } => {
            println!("audit log intact: {entries} entries");
            Ok(())
        }
        homeserver::audit::Verification::Broken { seq, reason } => {
            Err(format!("audit log broken at entry {seq}: {reason}"))
        }
    }
}
