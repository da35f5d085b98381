//! `hubbub hub --config FILE`: every flag of `hubbub hub` as a key of a TOML file.
//!
//! Keys are the flags' long names without the dashes in front (`max-messages-per-second = 500`,
//! `cors-origin = ["https://a.example"]`, `static = "site"`, `no-classic = true`). A flag given
//! on the command line wins over the file; the file wins over an environment variable
//! (`HUBBUB_JWT_SECRET`, `HUBBUB_CLASSIC_KEY`), which wins over the default. Relative paths in
//! the file are relative to the file's folder. An unknown key or a value of the wrong type stops
//! the start with the file's name and the line. What is in effect, and where each setting came
//! from, is logged at start with secrets redacted ([`Settings::summary`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::Deserialize;
use toml::Spanned;

use crate::HubArgs;

/// The file's keys: `hubbub hub`'s flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct File {
    listen: Option<Spanned<SocketAddr>>,
    cors_origin: Option<Spanned<Vec<String>>>,
    max_connections: Option<Spanned<usize>>,
    max_message_size: Option<Spanned<usize>>,
    max_messages_per_second: Option<Spanned<u32>>,
    max_pending_per_address: Option<Spanned<usize>>,
    max_tcp_connections: Option<Spanned<usize>>,
    max_tcp_connections_per_address: Option<Spanned<usize>>,
    header_read_timeout: Option<Spanned<f64>>,
    write_stall_timeout: Option<Spanned<f64>>,
    max_new_histories_per_minute: Option<Spanned<u32>>,
    unclaimed_inbox_ttl: Option<Spanned<u64>>,
    max_send_queue_bytes: Option<Spanned<usize>>,
    max_stream_buffer_bytes: Option<Spanned<usize>>,
    jwt_secret: Option<Spanned<String>>,
    jwt_public_key: Option<Spanned<PathBuf>>,
    jwt_issuer: Option<Spanned<String>>,
    jwt_audience: Option<Spanned<String>>,
    scope_claim: Option<Spanned<String>>,
    user_keys: Option<Spanned<PathBuf>>,
    history: Option<Spanned<PathBuf>>,
    redis: Option<Spanned<String>>,
    redis_prefix: Option<Spanned<String>>,
    redis_node_ttl: Option<Spanned<f64>>,
    postgres: Option<Spanned<String>>,
    postgres_prefix: Option<Spanned<String>>,
    postgres_node_ttl: Option<Spanned<f64>>,
    #[serde(rename = "static")]
    static_dir: Option<Spanned<PathBuf>>,
    classic_path: Option<Spanned<String>>,
    no_classic: Option<Spanned<bool>>,
    classic_key: Option<Spanned<String>>,
    tls_cert: Option<Spanned<PathBuf>>,
    tls_key: Option<Spanned<PathBuf>>,
    log_format: Option<Spanned<crate::LogFormat>>,
}

/// Where each setting came from: `flag`, `env`, `default`, or `FILE line N`.
#[derive(Debug, Default)]
pub(crate) struct Settings {
    sources: BTreeMap<&'static str, String>,
}

impl Settings {
    /// ` (FILE line N)` when `key` came from the config file, else nothing: for error messages
    /// about a value.
    pub(crate) fn at(&self, key: &str) -> String {
        match self.sources.get(key) {
            Some(source) if source.contains(" line ") => format!(" ({source})"),
            _ => String::new(),
        }
    }

    /// `key = value (source)` for every setting in effect, secrets redacted.
    pub(crate) fn summary(&self, args: &HubArgs) -> String {
        let mut shown: Vec<(&str, String)> = vec![
            ("listen", args.listen.to_string()),
            ("max-connections", args.max_connections.to_string()),
            ("max-message-size", args.max_message_size.to_string()),
            (
                "max-messages-per-second",
                args.max_messages_per_second.to_string(),
            ),
            (
                "max-pending-per-address",
                args.max_pending_per_address.to_string(),
            ),
            ("header-read-timeout", args.header_read_timeout.to_string()),
            ("write-stall-timeout", args.write_stall_timeout.to_string()),
            (
                "max-new-histories-per-minute",
                args.max_new_histories_per_minute.to_string(),
            ),
            ("unclaimed-inbox-ttl", args.unclaimed_inbox_ttl.to_string()),
            (
                "max-send-queue-bytes",
                args.max_send_queue_bytes.to_string(),
            ),
            (
                "max-stream-buffer-bytes",
                args.max_stream_buffer_bytes.to_string(),
            ),
        ];
        if !args.cors_origins.is_empty() {
            shown.push(("cors-origin", format!("{:?}", args.cors_origins)));
        }
        let redacted = || "<redacted>".to_owned();
        if args.jwt_secret.is_some() {
            shown.push(("jwt-secret", redacted()));
        }
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        for (key, value) in [
            (
                "max-tcp-connections",
                args.max_tcp_connections.map(|n| n.to_string()),
            ),
            (
                "max-tcp-connections-per-address",
                args.max_tcp_connections_per_address.map(|n| n.to_string()),
            ),
            ("jwt-public-key", path(&args.jwt_public_key)),
            ("jwt-issuer", args.jwt_issuer.clone()),
            ("jwt-audience", args.jwt_audience.clone()),
            ("scope-claim", args.scope_claim.clone()),
            ("user-keys", path(&args.user_keys)),
            ("history", path(&args.history)),
            ("redis", args.redis.as_deref().map(redact_url)),
            (
                "postgres",
                args.postgres
                    .as_deref()
                    .map(hubbub_hub::PostgresOptions::redact),
            ),
            ("static", path(&args.static_dir)),
            ("tls-cert", path(&args.tls_cert)),
            ("tls-key", path(&args.tls_key)),
            (
                "log-format",
                clap::ValueEnum::to_possible_value(&args.log_format)
                    .map(|v| v.get_name().to_owned()),
            ),
        ] {
            if let Some(value) = value {
                shown.push((key, value));
            }
        }
        if args.redis.is_some() {
            shown.push(("redis-prefix", args.redis_prefix.clone()));
            shown.push(("redis-node-ttl", args.redis_node_ttl.to_string()));
        }
        if args.postgres.is_some() {
            shown.push(("postgres-prefix", args.postgres_prefix.clone()));
            shown.push(("postgres-node-ttl", args.postgres_node_ttl.to_string()));
        }
        if args.no_classic {
            shown.push(("no-classic", "true".to_owned()));
        } else {
            shown.push(("classic-path", args.classic_path.clone()));
            if args.classic_key.is_some() {
                shown.push(("classic-key", redacted()));
            }
        }
        shown
            .into_iter()
            .map(|(key, value)| {
                let source = self.sources.get(key).map_or("default", String::as_str);
                format!("{key} = {value} ({source})")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A Redis or PostgreSQL URL without its password.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://<redacted>@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Where clap took each flag's value from (`None`: not given and no default).
fn clap_source(matches: &ArgMatches, id: &str) -> Option<&'static str> {
    match matches.value_source(id)? {
        ValueSource::CommandLine => Some("flag"),
        ValueSource::EnvVariable => Some("env"),
        _ => Some("default"),
    }
}

/// Applies `--config FILE` (if given) under the command line's flags, and says where every
/// setting came from. Errors name the file, and the line for a bad key or value.
pub(crate) fn apply(args: &mut HubArgs, matches: &ArgMatches) -> Result<Settings, String> {
    let mut settings = Settings::default();
    for (key, id) in [
        ("listen", "listen"),
        ("cors-origin", "cors_origins"),
        ("max-connections", "max_connections"),
        ("max-message-size", "max_message_size"),
        ("max-messages-per-second", "max_messages_per_second"),
        ("max-pending-per-address", "max_pending_per_address"),
        ("max-tcp-connections", "max_tcp_connections"),
        (
            "max-tcp-connections-per-address",
            "max_tcp_connections_per_address",
        ),
        ("header-read-timeout", "header_read_timeout"),
        ("write-stall-timeout", "write_stall_timeout"),
        (
            "max-new-histories-per-minute",
            "max_new_histories_per_minute",
        ),
        ("unclaimed-inbox-ttl", "unclaimed_inbox_ttl"),
        ("max-send-queue-bytes", "max_send_queue_bytes"),
        ("max-stream-buffer-bytes", "max_stream_buffer_bytes"),
        ("jwt-secret", "jwt_secret"),
        ("jwt-public-key", "jwt_public_key"),
        ("jwt-issuer", "jwt_issuer"),
        ("jwt-audience", "jwt_audience"),
        ("scope-claim", "scope_claim"),
        ("user-keys", "user_keys"),
        ("history", "history"),
        ("redis", "redis"),
        ("redis-prefix", "redis_prefix"),
        ("redis-node-ttl", "redis_node_ttl"),
        ("postgres", "postgres"),
        ("postgres-prefix", "postgres_prefix"),
        ("postgres-node-ttl", "postgres_node_ttl"),
        ("static", "static_dir"),
        ("classic-path", "classic_path"),
        ("no-classic", "no_classic"),
        ("classic-key", "classic_key"),
        ("tls-cert", "tls_cert"),
        ("tls-key", "tls_key"),
        ("log-format", "log_format"),
    ] {
        if let Some(source) = clap_source(matches, id) {
            settings.sources.insert(key, source.to_owned());
        }
    }
    let Some(path) = args.config.clone() else {
        return Ok(settings);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("--config {}: cannot read it: {e}", path.display()))?;
    // toml's message names the line and column, and shows it.
    let file: File = toml::from_str(&text)
        .map_err(|e| format!("--config {}: {}", path.display(), e.to_string().trim_end()))?;
    let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
    let relative = |p: PathBuf| if p.is_relative() { dir.join(p) } else { p };
    let from_flag = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let mut take = |key: &'static str, id: &str, span: std::ops::Range<usize>| -> bool {
        if from_flag(id) {
            return false;
        }
        let line = line_of(&text, span.start);
        settings
            .sources
            .insert(key, format!("{} line {line}", path.display()));
        true
    };
    // The field's name is its clap id.
    macro_rules! set {
        ($field:ident, $key:literal, $convert:expr) => {
            if let Some(value) = file.$field {
                if take($key, stringify!($field), value.span()) {
                    args.$field = $convert(value.into_inner());
                }
            }
        };
    }
    set!(listen, "listen", |v| v);
    if let Some(value) = file.cors_origin {
        if take("cors-origin", "cors_origins", value.span()) {
            args.cors_origins = value.into_inner();
        }
    }
    set!(max_connections, "max-connections", |v| v);
    set!(max_message_size, "max-message-size", |v| v);
    set!(max_messages_per_second, "max-messages-per-second", |v| v);
    set!(max_pending_per_address, "max-pending-per-address", |v| v);
    set!(max_tcp_connections, "max-tcp-connections", Some);
    set!(
        max_tcp_connections_per_address,
        "max-tcp-connections-per-address",
        Some
    );
    set!(header_read_timeout, "header-read-timeout", |v| v);
    set!(write_stall_timeout, "write-stall-timeout", |v| v);
    set!(
        max_new_histories_per_minute,
        "max-new-histories-per-minute",
        |v| v
    );
    set!(unclaimed_inbox_ttl, "unclaimed-inbox-ttl", |v| v);
    set!(max_send_queue_bytes, "max-send-queue-bytes", |v| v);
    set!(max_stream_buffer_bytes, "max-stream-buffer-bytes", |v| v);
    set!(jwt_secret, "jwt-secret", Some);
    set!(jwt_public_key, "jwt-public-key", |v| Some(relative(v)));
    set!(jwt_issuer, "jwt-issuer", Some);
    set!(jwt_audience, "jwt-audience", Some);
    set!(scope_claim, "scope-claim", Some);
    set!(user_keys, "user-keys", |v| Some(relative(v)));
    set!(history, "history", |v: PathBuf| Some(
        if v.as_os_str() == "memory" {
            v
        } else {
            relative(v)
        }
    ));
    set!(redis, "redis", Some);
    set!(redis_prefix, "redis-prefix", |v| v);
    set!(redis_node_ttl, "redis-node-ttl", |v| v);
    set!(postgres, "postgres", Some);
    set!(postgres_prefix, "postgres-prefix", |v| v);
    set!(postgres_node_ttl, "postgres-node-ttl", |v| v);
    if let Some(value) = file.static_dir {
        if take("static", "static_dir", value.span()) {
            args.static_dir = Some(relative(value.into_inner()));
        }
    }
    set!(classic_path, "classic-path", |v| v);
    set!(no_classic, "no-classic", |v| v);
    set!(classic_key, "classic-key", Some);
    set!(tls_cert, "tls-cert", |v| Some(relative(v)));
    set!(tls_key, "tls-key", |v| Some(relative(v)));
    set!(log_format, "log-format", |v| v);
    // What clap checks among flags, checked again with the file's settings in.
    let both = |a: &str, b: &str| {
        format!(
            "{a}{} and {b}{} cannot be used together",
            settings.at(a),
            settings.at(b)
        )
    };
    if args.jwt_secret.is_some() && args.jwt_public_key.is_some() {
        return Err(both("jwt-secret", "jwt-public-key"));
    }
    if args.user_keys.is_some() && (args.jwt_secret.is_some() || args.jwt_public_key.is_some()) {
        let jwt = if args.jwt_secret.is_some() {
            "jwt-secret"
        } else {
            "jwt-public-key"
        };
        return Err(both("user-keys", jwt));
    }
    if args.history.is_some() && args.redis.is_some() {
        return Err(both("history", "redis"));
    }
    if args.history.is_some() && args.postgres.is_some() {
        return Err(both("history", "postgres"));
    }
    if args.redis.is_some() && args.postgres.is_some() {
        return Err(both("redis", "postgres"));
    }
    if args.no_classic
        && settings
            .sources
            .get("classic-path")
            .is_some_and(|s| s != "default")
    {
        return Err(both("no-classic", "classic-path"));
    }
    if args.tls_cert.is_some() != args.tls_key.is_some() {
        return Err(both("tls-cert", "tls-key").replace("cannot be used together", "go together"));
    }
    if args.redis.is_none() {
        for key in ["redis-prefix", "redis-node-ttl"] {
            if settings.sources.get(key).is_some_and(|s| s != "default") {
                return Err(format!("{key}{} needs redis", settings.at(key)));
            }
        }
    }
    if args.postgres.is_none() {
        for key in ["postgres-prefix", "postgres-node-ttl"] {
            if settings.sources.get(key).is_some_and(|s| s != "default") {
                return Err(format!("{key}{} needs postgres", settings.at(key)));
            }
        }
    }
    Ok(settings)
}
