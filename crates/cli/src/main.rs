//! `hubbub`: the terminal face of Hubbub.
//!
//! - `hubbub hub --listen ADDR` serves the chat hub at `/chathub` for ASP.NET Core SignalR
//!   clients and at `/signalr` for classic ASP.NET SignalR 2.x clients (plus `/healthz`,
//!   `/metrics`, and a folder at `/` with `--static DIR`); with `--redis URL` or `--postgres
//!   URL` it is one node of a fleet sharing that Redis or PostgreSQL database.
//! - `hubbub chat [--url URL] --name NAME` is a terminal chat (an embedded hub when no URL).
//! - `hubbub listen --url URL` prints one JSON object per event and per received invocation.
//! - `hubbub send --url URL --name NAME TEXT` sends a chat message with the hub's send method
//!   (auto: `Send`, else `SendMessage`; or `--send-method`) and waits for it.
//! - `hubbub invoke --url URL METHOD [JSON_ARG…]` invokes any hub method and prints its result
//!   as JSON.

mod client;
mod config;

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "hubbub", version, about = "Chat over any SignalR hub")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the chat hub (at /chathub) until SIGTERM or Ctrl-C.
    Hub(Box<HubArgs>),
    /// Chat in the terminal: each line typed (or piped) is sent; messages are shown as they come.
    Chat(client::ChatArgs),
    /// Print one JSON object per connection event and per invocation received from the hub.
    Listen(client::ListenArgs),
    /// Send one chat message (Send or SendMessage, found automatically), wait for it, and exit.
    Send(client::SendArgs),
    /// Invoke any hub method with JSON arguments and print its result as JSON (exit status 1
    /// with the hub's error on failure).
    Invoke(client::InvokeArgs),
}

#[derive(Debug, clap::Args)]
struct HubArgs {
    /// Read settings from this TOML file: every flag below is a key (`max-connections = 500`,
    /// `cors-origin = ["https://a.example"]`, `static = "site"`). Flags given here win over
    /// the file, the file over HUBBUB_* environment variables. Relative paths are relative to
    /// the file's folder.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Address to listen on: 127.0.0.1:PORT or [::1]:PORT; 0.0.0.0:PORT exposes the hub to the
    /// network and is only used when given here.
    #[arg(long, default_value = "127.0.0.1:5000")]
    listen: SocketAddr,
    /// Browser origins (`scheme://host[:port]`) allowed to use the hub besides its own
    /// (repeatable). Pages of other origins are refused on every transport; `*` is refused.
    #[arg(long = "cors-origin")]
    cors_origins: Vec<String>,
    /// Most connections served at once.
    #[arg(long, default_value_t = hubbub_hub::HubOptions::default().max_connections)]
    max_connections: usize,
    /// Largest hub message accepted from a client, in bytes.
    #[arg(long, default_value_t = hubbub_hub::HubOptions::default().max_message_size)]
    max_message_size: usize,
    /// Hub messages per second handled from one connection (bursts of twice that pass); a
    /// connection over it is slowed down (read no further until it is back under), not closed.
    #[arg(long, default_value_t = hubbub_hub::HubOptions::default().max_messages_per_second)]
    max_messages_per_second: u32,
    /// Negotiated connections one client address may hold before using them; more
    /// negotiations from it are refused (429) until it connects or they expire (15 s).
    #[arg(long, default_value_t = hubbub_hub::HubOptions::default().max_pending_per_address)]
    max_pending_per_address: usize,
    /// TCP connections held at once, all clients together (default: the open-file limit less a
    /// tenth, at least 64, kept for the hub's own files); more are closed as they arrive.
    #[arg(long)]
    max_tcp_connections: Option<usize>,
    /// TCP connections held at once from one client IP address (default: half of
    /// --max-tcp-connections); more are closed as they arrive.
    #[arg(long)]
    max_tcp_connections_per_address: Option<usize>,
    /// Seconds a client has to send a request's headers, and may stay idle on a connection
    /// without sending a request; then the connection is closed.
    #[arg(long, value_name = "SECONDS", default_value_t = hubbub_hub::TcpLimits::default().header_read_timeout.as_secs_f64())]
    header_read_timeout: f64,
    /// Seconds a client may take nothing of what the hub writes to it (a socket, an event
    /// stream, a hub method's replies waiting in its queue) before it is closed as too slow;
    /// a write of N bytes gets a second more per 16 KiB.
    #[arg(long, value_name = "SECONDS", default_value_t = hubbub_hub::TcpLimits::default().write_stall_timeout.as_secs_f64())]
    write_stall_timeout: f64,
    /// Histories (a scope's, a room's, another user's inbox) one sender may start per minute;
    /// more are refused with an error saying so (with a backplane: counted per node, a history
    /// that exists in the fleet costs nothing).
    #[arg(long, default_value_t = hubbub_hub::ChatLimits::default().new_histories_per_minute)]
    max_new_histories_per_minute: u32,
    /// Seconds an inbox of a user who never connected to this hub (or to its fleet) is kept
    /// after its last direct message (default: 7 days); then it is deleted.
    #[arg(long, value_name = "SECONDS", default_value_t = hubbub_hub::ChatLimits::default().unclaimed_inbox_ttl.as_secs())]
    unclaimed_inbox_ttl: u64,
    /// Bytes queued for one connection (its messages not yet written to it) before it counts
    /// as too slow and is closed; one larger message still goes to an empty queue.
    #[arg(long, value_name = "BYTES", default_value_t = hubbub_hub::HubOptions::default().send_queue_bytes)]
    max_send_queue_bytes: usize,
    /// Bytes of client-to-server stream items one connection may have waiting for its hub
    /// methods to read them; a client that sends faster is closed as too slow.
    #[arg(long, value_name = "BYTES", default_value_t = hubbub_hub::HubOptions::default().stream_buffer_bytes)]
    max_stream_buffer_bytes: usize,
    /// Require HS256 JWTs signed with this secret (read from HUBBUB_JWT_SECRET when not given).
    #[arg(
        long,
        env = "HUBBUB_JWT_SECRET",
        hide_env_values = true,
        conflicts_with = "jwt_public_key"
    )]
    jwt_secret: Option<String>,
    /// Require RS256 JWTs that verify with this RSA public key (a PEM file).
    #[arg(long)]
    jwt_public_key: Option<std::path::PathBuf>,
    /// Require per-user keys instead of JWTs: a file of `user key` lines (`#` comments; keys
    /// of 16 bytes or more, one user each). A client sends its user's key as its bearer token
    /// (`--token`, `accessTokenFactory`) and is that user; no identity provider needed.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["jwt_secret", "jwt_public_key"])]
    user_keys: Option<std::path::PathBuf>,
    /// With JWT auth: also require this issuer (a token without `iss` is refused). Needs
    /// --jwt-secret or --jwt-public-key.
    #[arg(long)]
    jwt_issuer: Option<String>,
    /// With JWT auth: also require this audience (a token without `aud` is refused). Needs
    /// --jwt-secret or --jwt-public-key.
    #[arg(long)]
    jwt_audience: Option<String>,
    /// With JWT auth: each connection's scope (the chat's `?scope=`, its tenant) is this claim
    /// of its token, not the client's choice; a request for another scope is refused (403).
    #[arg(long, value_name = "CLAIM")]
    scope_claim: Option<String>,
    /// Keep the chat history in this SQLite file, across restarts and crashes; `memory` keeps
    /// it in memory only (lost when the hub stops). Default: `hub-history.sqlite3` in the
    /// platform's data directory (`$XDG_DATA_HOME/hubbub/` on Linux). With --redis or
    /// --postgres the history is the fleet's, in Redis or PostgreSQL.
    #[arg(long, value_name = "FILE|memory", conflicts_with_all = ["redis", "postgres"])]
    history: Option<std::path::PathBuf>,
    /// Join a fleet of hub nodes through this Redis (redis://HOST:PORT): messages, rooms,
    /// direct messages, presence, message ids and the chat history are shared by every node.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Put this in front of every Redis channel and key (several fleets can share one Redis).
    #[arg(long, default_value = "hubbub:", requires = "redis")]
    redis_prefix: String,
    /// Seconds after which a node that stopped renewing its heartbeat (a crashed node) leaves
    /// everyone's presence.
    #[arg(long, default_value_t = 6.0, requires = "redis")]
    redis_node_ttl: f64,
    /// Join a fleet of hub nodes through this PostgreSQL database instead of Redis
    /// (postgres://USER[:PASSWORD]@HOST[:PORT]/DB; no TLS: loopback or a private network):
    /// the same sharing, over LISTEN/NOTIFY and tables the hub creates and migrates itself.
    #[arg(long, value_name = "URL", conflicts_with = "redis")]
    postgres: Option<String>,
    /// Put this in front of the hub's name in every PostgreSQL row and channel (several fleets
    /// can share one database).
    #[arg(long, default_value = "hubbub:", requires = "postgres")]
    postgres_prefix: String,
    /// As --redis-node-ttl, for the PostgreSQL backplane.
    #[arg(long, default_value_t = 6.0, requires = "postgres")]
    postgres_node_ttl: f64,
    /// Serve this folder at / (index.html for a directory), same origin as the hub: a page
    /// built like the classic tutorial (jQuery, jquery.signalR, /signalr/hubs) works unchanged.
    #[arg(long = "static", value_name = "DIR")]
    static_dir: Option<std::path::PathBuf>,
    /// Where classic ASP.NET SignalR 2.x clients connect.
    #[arg(long, default_value = "/signalr")]
    classic_path: String,
    /// Serve no classic ASP.NET SignalR 2.x clients.
    #[arg(long, conflicts_with = "classic_path")]
    no_classic: bool,
    /// The secret that protects classic connection and groups tokens (read from
    /// HUBBUB_CLASSIC_KEY when not given); every node of a fleet needs the same one. Without
    /// it each process makes its own, and its tokens die with it.
    #[arg(long, env = "HUBBUB_CLASSIC_KEY", hide_env_values = true)]
    classic_key: Option<String>,
    /// Serve HTTPS and WSS (every transport) with this PEM certificate chain, on the same port;
    /// with --tls-key. SIGHUP reads both files again without dropping connections.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// How stderr's log lines are written: `text` for people, `json` for log collectors (one
    /// JSON object per line: `timestamp`, `level`, `target`, `fields` with the `message`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// `hubbub hub --log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum LogFormat {
    /// Lines for people: time, level, target, message and fields.
    Text,
    /// One JSON object per line (tracing-subscriber's JSON format).
    Json,
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // The hub's config file is read before logging starts: it may set the log format. Its
    // errors are said on stderr as every other start error is.
    let mut hub_settings = None;
    if let Command::Hub(args) = &mut cli.command {
        if let Some(hub_matches) = matches.subcommand_matches("hub") {
            match config::apply(args, hub_matches) {
                Ok(settings) => hub_settings = Some(settings),
                Err(message) => {
                    eprintln!("hubbub: {message}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    // The hub logs its life at info; the client commands keep stderr for what they print
    // themselves (each connection event said once, in words) and errors. A non-empty RUST_LOG
    // overrides both (RUST_LOG=warn shows the engine's own warnings too).
    let (default_level, log_format) = match &cli.command {
        Command::Hub(args) => ("info", args.log_format),
        _ => ("error", LogFormat::Text),
    };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log_format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hubbub: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Hub(args) => hub(*args, hub_settings.unwrap_or_default()).await,
            Command::Chat(args) => client::chat(args).await,
            Command::Listen(args) => client::listen(args).await,
            Command::Send(args) => client::send(args).await,
            Command::Invoke(args) => client::invoke(args).await,
        }
    });
    // Everything has been stopped and flushed by now. The one thing the runtime would still
    // wait for is the blocking read of stdin (the terminal chat's input), which never ends on
    // its own when the input is a terminal or a pipe nobody closes.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A collector reading JSON lines gets the reason the hub stopped as one of them.
        Err(message) if log_format == LogFormat::Json => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
        Err(message) => {
            eprintln!("hubbub: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Serves the hub with `args` (the config file already applied; `settings` says where each
/// came from).
async fn hub(args: HubArgs, settings: config::Settings) -> Result<(), String> {
    // Installed first, so SIGTERM and Ctrl-C end the command at every stage (binding, and
    // setting up a Redis backplane, included) and an early one still shuts down cleanly.
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let mut reload = reload_signal();
    tracing::info!("settings: {}", settings.summary(&args));
    let options = hubbub_hub::HubOptions {
        max_connections: args.max_connections,
        max_message_size: args.max_message_size,
        max_messages_per_second: args.max_messages_per_second,
        max_pending_per_address: args.max_pending_per_address,
        send_queue_bytes: args.max_send_queue_bytes,
        stream_buffer_bytes: args.max_stream_buffer_bytes,
        write_stall_timeout: std::time::Duration::from_secs_f64(args.write_stall_timeout),
        ..hubbub_hub::HubOptions::default()
    };
    let auth = match (&args.jwt_secret, &args.jwt_public_key) {
        (Some(secret), _) => {
            Some(hubbub_hub::JwtAuth::hs256(secret.as_bytes()).map_err(|e| e.to_string())?)
        }
        (None, Some(path)) => {
            let pem =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Some(hubbub_hub::JwtAuth::rs256_pem(&pem).map_err(|e| e.to_string())?)
        }
        (None, None) => None,
    };
    // Claims to check without a key to check them with would start a hub with no auth at all.
    if auth.is_none() {
        for (given, flag) in [
            (args.jwt_issuer.is_some(), "--jwt-issuer"),
            (args.jwt_audience.is_some(), "--jwt-audience"),
            (args.scope_claim.is_some(), "--scope-claim"),
        ] {
            if given {
                return Err(format!(
                    "{flag} needs JWT auth: give --jwt-secret (or HUBBUB_JWT_SECRET) or --jwt-public-key"
                ));
            }
        }
    }
    for (value, key) in [
        (args.header_read_timeout, "header-read-timeout"),
        (args.write_stall_timeout, "write-stall-timeout"),
    ] {
        if !(value > 0.0 && value.is_finite()) {
            return Err(format!(
                "{key}{} must be a number of seconds above 0",
                settings.at(key)
            ));
        }
    }
    let mut builder = hubbub_hub::ServerBuilder::new()
        .options(options)
        .tcp_limits(hubbub_hub::TcpLimits {
            max_connections: args.max_tcp_connections,
            max_connections_per_address: args.max_tcp_connections_per_address,
            header_read_timeout: std::time::Duration::from_secs_f64(args.header_read_timeout),
            write_stall_timeout: std::time::Duration::from_secs_f64(args.write_stall_timeout),
        })
        .hub("/chathub", chat_hub(&args)?)
        .cors_origins(args.cors_origins);
    if args.no_classic {
        builder = builder.without_classic();
    } else {
        if args.classic_key.as_ref().is_some_and(|k| k.len() < 16) {
            return Err(format!(
                "--classic-key{} needs at least 16 characters",
                settings.at("classic-key")
            ));
        }
        builder = builder.classic(hubbub_hub::ClassicOptions {
            path: args.classic_path.clone(),
            key: args.classic_key.as_ref().map(|k| k.as_bytes().to_vec()),
            ..hubbub_hub::ClassicOptions::default()
        });
    }
    if let Some(dir) = &args.static_dir {
        if !dir.is_dir() {
            return Err(format!(
                "--static {}{}: not a folder",
                dir.display(),
                settings.at("static")
            ));
        }
        builder = builder.static_dir(dir);
    }
    if let Some(url) = &args.redis {
        if !(args.redis_node_ttl.is_finite() && args.redis_node_ttl >= 0.3) {
            return Err(format!(
                "--redis-node-ttl{} must be at least 0.3 seconds",
                settings.at("redis-node-ttl")
            ));
        }
        let ttl = std::time::Duration::from_secs_f64(args.redis_node_ttl);
        builder = builder.redis(hubbub_hub::RedisOptions {
            prefix: args.redis_prefix.clone(),
            node_ttl: ttl,
            heartbeat: ttl / 3,
            ..hubbub_hub::RedisOptions::new(url)
        });
    }
    if let Some(url) = &args.postgres {
        if !(args.postgres_node_ttl.is_finite() && args.postgres_node_ttl >= 0.3) {
            return Err(format!(
                "--postgres-node-ttl{} must be at least 0.3 seconds",
                settings.at("postgres-node-ttl")
            ));
        }
        let ttl = std::time::Duration::from_secs_f64(args.postgres_node_ttl);
        builder = builder.postgres(hubbub_hub::PostgresOptions {
            prefix: args.postgres_prefix.clone(),
            node_ttl: ttl,
            heartbeat: ttl / 3,
            ..hubbub_hub::PostgresOptions::new(url)
        });
    }
    let user_keys = match &args.user_keys {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Some(
                hubbub_hub::UserKeys::parse(&text)
                    .map_err(|e| format!("{}: {e}", path.display()))?,
            )
        }
        None => None,
    };
    if auth.is_none() && user_keys.is_none() {
        // Said at start: on a trusted network this may be what is wanted, elsewhere it is not.
        tracing::warn!(
            "no authentication: anyone who can reach {} is whoever they say they are (?name=): they can send as any user, read any user's inbox (direct messages, sent and received) and every scope's and room's history; keep this hub on a trusted network, or require per-user keys (--user-keys FILE) or JWTs (--jwt-secret, --jwt-public-key)",
            args.listen
        );
    }
    if let Some(keys) = user_keys {
        builder = builder.user_keys(keys);
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        builder = builder.tls(hubbub_hub::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        });
    }
    if let Some(mut auth) = auth {
        if let Some(issuer) = &args.jwt_issuer {
            auth = auth.issuer(issuer);
        }
        if let Some(audience) = &args.jwt_audience {
            auth = auth.audience(audience);
        }
        if let Some(claim) = &args.scope_claim {
            auth = auth.scope_claim(claim);
        }
        builder = builder.auth(auth);
    }
    let server = tokio::select! {
        bound = builder.bind(args.listen) => bound.map_err(|e| match e.kind() {
            // A backplane that cannot be set up (a Redis URL that does not parse), a TLS
            // certificate or key that cannot be used.
            std::io::ErrorKind::InvalidInput => e.to_string(),
            _ => format!("cannot listen on {}: {e}", args.listen),
        })?,
        () = &mut shutdown => return Ok(()),
    };
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = reload.recv() => match server.reload_tls() {
                Ok(()) if args.tls_cert.is_some() => {
                    tracing::info!("SIGHUP: TLS certificate and key read again; new connections use them");
                }
                Ok(()) => tracing::info!("SIGHUP: no TLS certificate to read again"),
                Err(e) => tracing::error!("SIGHUP: {e}; the certificate in use stays"),
            },
        }
    }
    tracing::info!("shutting down: closing every connection (clients may reconnect)");
    server.shutdown().await.map_err(|e| e.to_string())
}

/// The default history file: `hub-history.sqlite3` in the platform's data directory.
fn default_history() -> Option<std::path::PathBuf> {
    Some(dirs::data_dir()?.join("hubbub").join("hub-history.sqlite3"))
}

/// The chat hub with the history `--history` asks for (see [`HubArgs::history`]).
fn chat_hub(args: &HubArgs) -> Result<hubbub_hub::Hub, String> {
    let limits = hubbub_hub::ChatLimits {
        new_histories_per_minute: args.max_new_histories_per_minute,
        unclaimed_inbox_ttl: std::time::Duration::from_secs(args.unclaimed_inbox_ttl),
    };
    if args.redis.is_some() || args.postgres.is_some() {
        // The fleet's history, in Redis or PostgreSQL (the limits apply to it too).
        return Ok(hubbub_hub::chat_hub_with_limits(
            hubbub_hub::ChatHistory::in_memory(),
            limits,
        ));
    }
    let path = match &args.history {
        Some(path) if path.as_os_str() == "memory" => {
            tracing::info!("chat history in memory: lost when the hub stops");
            return Ok(hubbub_hub::chat_hub_with_limits(
                hubbub_hub::ChatHistory::in_memory(),
                limits,
            ));
        }
        Some(path) => path.clone(),
        None => {
            let path = default_history().ok_or(
                "no data directory for the chat history: give --history FILE or --history memory",
            )?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            path
        }
    };
    let history =
        hubbub_hub::ChatHistory::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    tracing::info!(file = %path.display(), "chat history in a SQLite file");
    Ok(hubbub_hub::chat_hub_with_limits(history, limits))
}

/// SIGHUP, each time it comes (never, where there is no such signal). Installed when called, so
/// a SIGHUP no longer ends the hub from then on.
struct ReloadSignal(#[cfg(unix)] Option<tokio::signal::unix::Signal>);

impl ReloadSignal {
    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.0 {
            if signal.recv().await.is_some() {
                return;
            }
        }
        std::future::pending::<()>().await;
    }
}

fn reload_signal() -> ReloadSignal {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        ReloadSignal(signal(SignalKind::hangup()).ok())
    }
    #[cfg(not(unix))]
    {
        ReloadSignal()
    }
}

/// Ctrl-C or SIGTERM. The handlers are installed when this is called, not when the future is
/// first polled: a signal that arrives in between (say, right after "chatting as ..." is shown)
/// would otherwise find no handler and kill the process with the default action.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let int = signal(SignalKind::interrupt());
        let term = signal(SignalKind::terminate());
        async move {
            match (int, term) {
                (Ok(mut int), Ok(mut term)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                (Ok(mut one), Err(_)) | (Err(_), Ok(mut one)) => {
                    one.recv().await;
                }
                (Err(_), Err(_)) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let ctrl_c = tokio::signal::ctrl_c();
        async move {
            let _ = ctrl_c.await;
        }
    }
}
