//! The `triplite` command line: `dev` (a local sync server, as `npx triplit dev`) and `serve`
//! (production, configured like Triplit's server image).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use triplite::sync::{LIMIT_SETTINGS, Limits, SyncServer};
use triplite::{Database, DevTokenKind, Durability, Schema, mint_dev_token};

/// Returns freed memory to the system (see Cargo.toml): RSS falls back after a burst of
/// clients or a large request instead of staying at its peak.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// triplite: an embedded database with sync, drop-in compatible with Triplit.
#[derive(Parser)]
#[command(name = "triplite", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A local sync server for development, as `npx triplit dev`: port 6543, durable SQLite
    /// storage in ./triplit/.data/triplite/app.db, and the service and anonymous tokens printed.
    /// Reads ./.env and TRIPLIT_JWT_SECRET, TRIPLIT_EXTERNAL_JWT_SECRET, TRIPLIT_PROJECT_ID,
    /// TRIPLIT_CLAIMS_PATH, TRIPLIT_LOCAL_DATABASE_URL, TRIPLIT_MAX_BODY_SIZE.
    Dev {
        #[arg(long, short = 'd', alias = "dbPort", default_value_t = 6543)]
        port: u16,
        #[arg(long, default_value = "127.0.0.1")]
        host: IpAddr,
        #[arg(long, short = 's', value_enum, default_value_t = Storage::Sqlite)]
        storage: Storage,
        /// A Triplit JSON schema to start with.
        #[arg(long)]
        schema: Option<PathBuf>,
        #[command(flatten)]
        limits: LimitFlags,
    },
    /// A production sync server, configured like Triplit's server image: PORT (8080), HOST
    /// (0.0.0.0), JWT_SECRET (required), EXTERNAL_JWT_SECRET, PROJECT_ID, CLAIMS_PATH,
    /// LOCAL_DATABASE_URL (the SQLite file), MAX_BODY_SIZE (MB). Logs are JSON lines on stderr;
    /// SIGTERM stops it gracefully.
    Serve {
        #[arg(long, value_enum, default_value_t = Storage::Sqlite)]
        storage: Storage,
        /// A Triplit JSON schema to start with (otherwise: the stored one, or `triplit schema push`).
        #[arg(long)]
        schema: Option<PathBuf>,
        /// `full` waits for the disk at every commit (survives power loss); `normal` survives
        /// a crash of the process only.
        #[arg(long, value_enum, default_value_t = CommitDurability::Full)]
        durability: CommitDurability,
        /// SQLite's page cache, in MiB: a server keeps its memory small.
        #[arg(long, default_value_t = 8)]
        cache_mb: u32,
        #[command(flatten)]
        limits: LimitFlags,
    },
}

/// Limits on what one client can make the server do; each is also an environment variable
/// of the same name (`TRIPLIT_`-prefixed for `dev`). The README lists them with defaults.
#[derive(clap::Args)]
struct LimitFlags {
    /// NAME=VALUE, e.g. `--limit MAX_QUERIES_PER_CONNECTION=100` (repeatable; wins over the
    /// environment): MAX_BODY_SIZE, MAX_CHUNKS_PER_MESSAGE, MAX_CHUNKED_MESSAGES,
    /// MAX_QUERIES_PER_CONNECTION, MAX_CONNECTIONS_PER_TOKEN, MAX_PENDING_OUTPUT,
    /// MAX_FILTER_TERMS, MAX_INCLUDE_DEPTH, MAX_ROWS_EXAMINED, MAX_RESULT_SIZE.
    #[arg(long = "limit", value_name = "NAME=VALUE")]
    settings: Vec<String>,
}

impl LimitFlags {
    /// The defaults, then the environment (`var` looks a name up), then the flags.
    fn limits(&self, var: &dyn Fn(&str) -> Option<String>) -> Result<Limits, String> {
        let mut limits = Limits::default();
        for setting in LIMIT_SETTINGS {
            if let Some(value) = var(setting.name) {
                limits.set(setting.name, &value)?;
            }
        }
        for flag in &self.settings {
            let (name, value) =
                flag.split_once('=').ok_or_else(|| format!("--limit takes NAME=VALUE, not {flag:?}"))?;
            limits.set(name.trim(), value)?;
        }
        Ok(limits)
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Storage {
    Sqlite,
    Memory,
}

#[derive(Clone, Copy, ValueEnum)]
enum CommitDurability {
    Normal,
    Full,
}

/// What both commands configure.
struct Config {
    addr: SocketAddr,
    tokens: Tokens,
    database: Option<PathBuf>,
    schema: Option<PathBuf>,
    limits: Limits,
    durability: Durability,
    cache_mb: u32,
}

/// How tokens are verified, read the same way by both commands.
struct Tokens {
    jwt_secret: String,
    external_jwt_secret: Option<String>,
    project_id: String,
    claims_path: Option<String>,
    /// Seconds an expired token is still accepted (`TOKEN_LEEWAY_SECONDS`, default 0).
    leeway: u64,
    /// Where each key came from, for the startup log (never the keys themselves).
    key_sources: [(&'static str, &'static str); 2],
}

/// The environment a command reads: `serve` its variables as named, `dev` with Triplit's CLI
/// prefix and from `./.env` (the environment wins over it). Empty values count as unset.
struct Settings {
    prefix: &'static str,
    dotenv: HashMap<String, String>,
}

impl Settings {
    fn serve() -> Self {
        Settings { prefix: "", dotenv: HashMap::new() }
    }

    fn dev() -> Self {
        Settings { prefix: "TRIPLIT_", dotenv: load_dotenv(Path::new(".env")) }
    }

    fn get(&self, name: &str) -> Option<String> {
        let name = format!("{}{name}", self.prefix);
        std::env::var(&name).ok().or_else(|| self.dotenv.get(&name).cloned()).filter(|v| !v.is_empty())
    }

    /// Where a setting came from: said in the startup log instead of its value.
    fn source(&self, name: &str) -> &'static str {
        let name = format!("{}{name}", self.prefix);
        if std::env::var(&name).is_ok_and(|v| !v.is_empty()) {
            "environment"
        } else if self.dotenv.get(&name).is_some_and(|v| !v.is_empty()) {
            ".env"
        } else {
            "unset"
        }
    }

    /// The token settings: `JWT_SECRET` is required for `serve`; `dev` falls back to Triplit's
    /// development secret.
    fn tokens(&self) -> Result<Tokens, String> {
        let jwt_secret = match self.get("JWT_SECRET") {
            Some(secret) => secret,
            // `dev` reads prefixed names.
            None if !self.prefix.is_empty() => "jwt-key-for-development-only".into(),
            None => return Err("JWT_SECRET is required".into()),
        };
        let leeway = match self.get("TOKEN_LEEWAY_SECONDS") {
            Some(text) => text
                .parse()
                .map_err(|_| format!("TOKEN_LEEWAY_SECONDS must be a whole number of seconds, not {text:?}"))?,
            None => 0,
        };
        let jwt_source = match self.source("JWT_SECRET") {
            "unset" => "default (development only)",
            source => source,
        };
        Ok(Tokens {
            jwt_secret,
            external_jwt_secret: self.get("EXTERNAL_JWT_SECRET"),
            project_id: self.get("PROJECT_ID").unwrap_or_else(|| "local-project-id".into()),
            claims_path: self.get("CLAIMS_PATH"),
            leeway,
            key_sources: [("JWT_SECRET", jwt_source), ("EXTERNAL_JWT_SECRET", self.source("EXTERNAL_JWT_SECRET"))],
        })
    }
}

fn main() {
    let cli = Cli::parse();
    let dev = matches!(cli.command, Command::Dev { .. });
    let settings = if dev { Settings::dev() } else { Settings::serve() };
    if let Err(message) = init_logging(dev, &settings) {
        eprintln!("triplite: {message}");
        std::process::exit(1);
    }
    let var = |name: &str| settings.get(name);
    let result = match cli.command {
        Command::Dev { port, host, storage, schema, limits } => {
            let database = match storage {
                Storage::Memory => None,
                Storage::Sqlite => Some(PathBuf::from(
                    var("LOCAL_DATABASE_URL").unwrap_or_else(|| "./triplit/.data/triplite/app.db".into()),
                )),
            };
            limits.limits(&var).and_then(|limits| {
                let config = Config {
                    addr: SocketAddr::new(host, port),
                    tokens: settings.tokens()?,
                    database,
                    schema,
                    limits,
                    durability: Durability::Normal,
                    cache_mb: 32,
                };
                run(config, true)
            })
        }
        Command::Serve { storage, schema, durability, cache_mb, limits } => {
            serve_config(&settings, storage, schema, durability, cache_mb, &limits).and_then(|c| run(c, false))
        }
    };
    if let Err(message) = result {
        tracing::error!("{message}");
        std::process::exit(1);
    }
}

/// Logs on stderr: text for `dev`, JSON lines for `serve` (one object per event, its fields
/// at the top level). `RUST_LOG` (a full filter) wins over `LOG_LEVEL` (`TRIPLIT_LOG_LEVEL`
/// for `dev`; default `info`).
fn init_logging(dev: bool, settings: &Settings) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG").ok().filter(|f| !f.is_empty()) {
        Some(directives) => EnvFilter::try_new(&directives).map_err(|e| format!("RUST_LOG {directives:?}: {e}"))?,
        None => {
            let level = settings.get("LOG_LEVEL").unwrap_or_else(|| "info".into());
            if !["trace", "debug", "info", "warn", "error", "off"].contains(&level.to_ascii_lowercase().as_str()) {
                return Err(format!("LOG_LEVEL must be trace, debug, info, warn, error or off, not {level:?}"));
            }
            EnvFilter::new(level.to_ascii_lowercase())
        }
    };
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if dev {
        logs.compact().with_target(false).init();
    } else {
        logs.json().flatten_event(true).with_current_span(false).with_span_list(false).init();
    }
    Ok(())
}

fn serve_config(
    settings: &Settings,
    storage: Storage,
    schema: Option<PathBuf>,
    durability: CommitDurability,
    cache_mb: u32,
    limits: &LimitFlags,
) -> Result<Config, String> {
    let var = |name: &str| settings.get(name);
    let port = match var("PORT") {
        Some(port) => port.parse().map_err(|_| format!("PORT must be a port number, not {port:?}"))?,
        None => 8080,
    };
    let host: IpAddr = match var("HOST") {
        Some(host) => host.parse().map_err(|_| format!("HOST must be an IP address, not {host:?}"))?,
        None => IpAddr::from([0, 0, 0, 0]),
    };
    let database = match storage {
        Storage::Memory => None,
        Storage::Sqlite => Some(PathBuf::from(
            var("LOCAL_DATABASE_URL")
                .ok_or("LOCAL_DATABASE_URL (the SQLite file) is required; or pass --storage memory")?,
        )),
    };
    Ok(Config {
        addr: SocketAddr::new(host, port),
        tokens: settings.tokens()?,
        database,
        schema,
        limits: limits.limits(&var)?,
        durability: match durability {
            CommitDurability::Normal => Durability::Normal,
            CommitDurability::Full => Durability::Full,
        },
        cache_mb,
    })
}

fn run(config: Config, dev: bool) -> Result<(), String> {
    let mut builder = Database::builder()
        .client_id("server")
        .token_leeway_seconds(config.tokens.leeway)
        .jwt_secret(&config.tokens.jwt_secret)
        .durability(config.durability)
        .cache_size_mib(config.cache_mb);
    if let Some(key) = &config.tokens.external_jwt_secret {
        builder = builder.external_jwt_secret(key);
    }
    if let Some(path) = &config.tokens.claims_path {
        builder = builder.claims_path(path);
    }
    if let Some(path) = &config.schema {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        builder = builder.schema(Schema::from_json_str(&text).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    let db = match &config.database {
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
            }
            builder.open(path)
        }
        None => builder.open_in_memory(),
    }
    .map_err(|e| e.to_string())?;
    let limits: serde_json::Map<String, serde_json::Value> =
        LIMIT_SETTINGS.iter().map(|s| (s.name.to_owned(), json!(s.value(&config.limits)))).collect();
    let server = SyncServer::new(db, config.limits);
    let runtime = triplite::net::runtime(None).map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(config.addr).await.map_err(|e| format!("binding {}: {e}", config.addr))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let storage = match &config.database {
            Some(path) => format!("sqlite {}", path.display()),
            None => "memory (nothing is kept after exit)".into(),
        };
        if dev {
            let service = mint_dev_token(&config.tokens.jwt_secret, DevTokenKind::Secret, &config.tokens.project_id)
                .map_err(|e| e.to_string())?;
            let anon = mint_dev_token(&config.tokens.jwt_secret, DevTokenKind::Anon, &config.tokens.project_id)
                .map_err(|e| e.to_string())?;
            println!("triplite {} dev server", env!("CARGO_PKG_VERSION"));
            println!("  Database URL     http://{addr}");
            println!("  Storage          {storage}");
            println!("  Service Token    {service}");
            println!("  Anonymous Token  {anon}");
        }
        let [(_, jwt_secret), (_, external_jwt_secret)] = config.tokens.key_sources;
        tracing::info!(
            addr = %addr,
            storage,
            schema_file = config.schema.as_ref().map(|p| p.display().to_string()),
            jwt_secret,
            external_jwt_secret,
            claims_path = config.tokens.claims_path.as_deref(),
            token_leeway_seconds = config.tokens.leeway,
            limits = %serde_json::Value::Object(limits),
            "listening"
        );
        triplite::net::serve(server, listener, shutdown_signal()).await.map_err(|e| e.to_string())?;
        tracing::info!("stopped");
        Ok(())
    })
}

/// SIGTERM (a container stopping) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

/// The `KEY=value` lines of a `.env` file (the environment wins over them).
fn load_dotenv(path: &Path) -> HashMap<String, String> {
    let Ok(text) = std::fs::read_to_string(path) else { return HashMap::new() };
    text.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.strip_prefix("export ").unwrap_or(line).split_once('='))
        .map(|(key, value)| {
            let value = value.trim();
            let unquoted = [('"', '"'), ('\'', '\'')]
                .iter()
                .find_map(|(open, close)| value.strip_prefix(*open)?.strip_suffix(*close))
                .unwrap_or(value);
            (key.trim().to_owned(), unquoted.to_owned())
        })
        .collect()
}
