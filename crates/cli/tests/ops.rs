//! Running `hubbub hub` for real (issue 16): `/metrics` in the Prometheus text format, checked
//! by `promtool` and against what a load did.

// Children are killed and reaped on drop.
#![allow(clippy::zombie_processes)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hubbub_client::{Arg, Family, HubConnection, HubConnectionBuilder, Protocol, TransportKind};

mod support;

/// A `hubbub hub` process with a data directory of its own, killed on drop.
struct Hub {
    child: Child,
    url: String,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh, empty folder for one test.
fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hubbub-ops-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts `hubbub hub` on a free port with `XDG_DATA_HOME=data` and waits (20 s at most) for
/// its "listening on" line.
fn start_hub(args: &[&str], data: &std::path::Path) -> Hub {
    let port = support::free_port();
    start_hub_on(port, args, data)
}

/// [`start_hub`] on `port` (a restarted hub comes back where it was).
fn start_hub_on(port: u16, args: &[&str], data: &std::path::Path) -> Hub {
    let mut child = Command::new(support::BIN)
        .args(["hub", "--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .env("XDG_DATA_HOME", data)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the hub logs that it listens within 20 s");
        if let Some(i) = line.find("listening on http://") {
            let url = line[i + "listening on ".len()..].trim().to_owned();
            return Hub { child, url };
        }
    }
}

async fn scrape(hub: &Hub) -> String {
    let response = reqwest::get(format!("{}/metrics", hub.url)).await.unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    response.text().await.unwrap()
}

/// `promtool check metrics` on a scrape: the format and Prometheus' naming conventions.
fn promtool(scrape: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/setup.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n--- scrape ---\n{scrape}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The samples of a scrape: series name and its labels (sorted) to value.
fn samples(scrape: &str) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    let mut all = BTreeMap::new();
    for line in scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split("\",")
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap();
                (k.to_owned(), v.trim_matches('"').to_owned())
            })
            .collect();
        all.insert((name.to_owned(), labels), value.parse().unwrap());
    }
    all
}

/// The sum of the series named `name` whose labels include `with`.
fn value(scrape: &str, name: &str, with: &[(&str, &str)]) -> f64 {
    samples(scrape)
        .iter()
        .filter(|((n, labels), _)| {
            n == name
                && with
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .sum()
}

/// A chat client at `url` that counts the broadcasts it receives.
async fn receiver(
    url: &str,
    family: Family,
    transport: TransportKind,
    protocol: Protocol,
) -> (HubConnection, Arc<AtomicUsize>) {
    let conn = HubConnectionBuilder::new(url)
        .family(family)
        .transports(&[transport])
        .protocol(protocol)
        .build()
        .unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    conn.on("broadcastMessage", move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        None
    });
    tokio::time::timeout(Duration::from_secs(20), conn.start())
        .await
        .expect("connected within 20 s")
        .unwrap();
    (conn, seen)
}

/// Every transport and protocol of both families receives a load of broadcasts; scrapes taken
/// during and after it pass `promtool check metrics`, and the counters say what the load did:
/// messages sent × receivers = deliveries counted, one invocation timed per message, the
/// connections by family, transport and protocol, the history's size; then a message over the
/// size limit closes a connection and is counted as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_under_load_pass_promtool_and_count_every_delivery() {
    const MESSAGES: usize = 300;
    let data = temp_dir("metrics");
    let hub = start_hub(
        &[
            "--max-messages-per-second",
            "100000",
            "--max-message-size",
            "8192",
        ],
        &data,
    );
    let core = format!("{}/chathub", hub.url);
    let classic = format!("{}/signalr", hub.url);
    use TransportKind::{LongPolling, ServerSentEvents, WebSockets};
    let clients = [
        (&core, Family::Core, WebSockets, Protocol::Json),
        (&core, Family::Core, WebSockets, Protocol::MessagePack),
        (&core, Family::Core, ServerSentEvents, Protocol::Json),
        (&core, Family::Core, LongPolling, Protocol::Json),
        (&classic, Family::Classic, WebSockets, Protocol::Json),
        (&classic, Family::Classic, LongPolling, Protocol::Json),
    ];
    let mut receivers = Vec::new();
    for (url, family, transport, protocol) in clients {
        receivers.push(receiver(url, family, transport, protocol).await);
    }
    // Presence news of the connections above has been delivered once every client counts
    // the others: wait for the gauge, then let the last userJoined messages go out.
    let deadline = Instant::now() + Duration::from_secs(10);
    while value(&scrape(&hub).await, "hubbub_connections", &[]) < 6.0 {
        assert!(Instant::now() < deadline, "6 connections within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = scrape(&hub).await;

    let sender = &receivers[0].0;
    let mut during = None;
    for i in 0..MESSAGES {
        sender
            .send("Send", vec!["ann".into(), format!("m{i}").into()])
            .await
            .unwrap();
        if i == MESSAGES / 2 {
            during = Some(scrape(&hub).await);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for (i, (_, seen)) in receivers.iter().enumerate() {
        while seen.load(Ordering::SeqCst) < MESSAGES {
            assert!(
                Instant::now() < deadline,
                "receiver {i} got {} of {MESSAGES} within 30 s",
                seen.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let after = scrape(&hub).await;
    promtool(&during.unwrap());
    promtool(&after);

    let delta =
        |name: &str, with: &[(&str, &str)]| value(&after, name, with) - value(&before, name, with);
    let m = MESSAGES as f64;
    assert_eq!(
        delta("hubbub_messages_received_total", &[("family", "core")]),
        m
    );
    assert_eq!(
        delta("hubbub_messages_sent_total", &[("family", "core")]),
        m * 4.0,
        "each message to the 4 Core connections"
    );
    assert_eq!(
        delta("hubbub_messages_sent_total", &[("family", "classic")]),
        m * 2.0,
        "each message to the 2 classic connections"
    );
    assert_eq!(
        delta(
            "hubbub_invocation_duration_seconds_count",
            &[("family", "core")]
        ),
        m
    );
    assert_eq!(
        value(&after, "hubbub_history_messages", &[("hub", "/chathub")]),
        m
    );
    for (family, transport, protocol) in [
        ("core", "WebSockets", "json"),
        ("core", "WebSockets", "messagepack"),
        ("core", "ServerSentEvents", "json"),
        ("core", "LongPolling", "json"),
        ("classic", "WebSockets", "json"),
        ("classic", "LongPolling", "json"),
    ] {
        let labels = [
            ("hub", "/chathub"),
            ("family", family),
            ("transport", transport),
            ("protocol", protocol),
        ];
        assert_eq!(
            value(&after, "hubbub_connections", &labels),
            1.0,
            "{labels:?}"
        );
        assert!(
            delta("hubbub_sent_bytes_total", &labels) > m * 10.0,
            "bytes sent to {labels:?}"
        );
    }
    assert!(
        delta(
            "hubbub_received_bytes_total",
            &[("transport", "WebSockets")]
        ) > m * 10.0
    );

    // A message over the size limit closes its connection, counted with its reason.
    let (big, _) = receiver(&core, Family::Core, WebSockets, Protocol::Json).await;
    let _ = big
        .send("Send", vec!["big".into(), "x".repeat(20_000).into()])
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = scrape(&hub).await;
        if value(
            &now,
            "hubbub_size_limit_closes_total",
            &[("family", "core")],
        ) == 1.0
        {
            assert_eq!(
                value(
                    &now,
                    "hubbub_disconnects_total",
                    &[("reason", "message_too_large")]
                ),
                1.0
            );
            assert_eq!(value(&now, "hubbub_connections", &[]), 6.0);
            promtool(&now);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the big message closed its connection within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    big.stop().await;
    for (conn, _) in receivers {
        conn.stop().await;
    }
    let _ = std::fs::remove_dir_all(&data);
}

/// A hub started with default settings keeps its history in a SQLite file in the data
/// directory: killed with SIGKILL and restarted the same way, it gives a user who was offline
/// every direct message and broadcast acknowledged before the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_hub_killed_with_sigkill_keeps_every_message_for_an_offline_user() {
    const MESSAGES: usize = 50;
    let data = temp_dir("durable");
    let mut hub = start_hub(&[], &data);
    let port: u16 = hub.url.rsplit(':').next().unwrap().parse().unwrap();
    let ann = HubConnectionBuilder::new(format!("{}/chathub?name=ann", hub.url))
        .build()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), ann.start())
        .await
        .expect("ann connects within 20 s")
        .unwrap();
    for i in 0..MESSAGES {
        // Each acknowledged: recorded by the hub.
        ann.invoke::<serde_json::Value>("SendToUser", vec!["bob".into(), format!("dm {i}").into()])
            .await
            .unwrap();
        ann.invoke::<serde_json::Value>("Send", vec!["ann".into(), format!("all {i}").into()])
            .await
            .unwrap();
    }
    assert!(
        data.join("hubbub/hub-history.sqlite3").is_file(),
        "the history file is in the data directory"
    );
    // SIGKILL: no shutdown, no flush.
    hub.child.kill().unwrap();
    hub.child.wait().unwrap();
    ann.stop().await;

    let _hub = start_hub_on(port, &[], &data);
    let bob = HubConnectionBuilder::new(format!("{}/chathub?name=bob", hub.url))
        .build()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), bob.start())
        .await
        .expect("bob connects within 20 s")
        .unwrap();
    let texts = |page: &serde_json::Value| -> Vec<String> {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["message"].as_str().unwrap().to_owned())
            .collect()
    };
    let inbox: serde_json::Value = bob
        .invoke("Inbox", vec!["".into(), Arg::from_value(0.into())])
        .await
        .unwrap();
    let expected: Vec<String> = (0..MESSAGES).map(|i| format!("dm {i}")).collect();
    assert_eq!(texts(&inbox), expected, "bob's inbox after the kill");
    let history: serde_json::Value = bob
        .invoke("History", vec!["".into(), Arg::from_value(0.into())])
        .await
        .unwrap();
    let expected: Vec<String> = (0..MESSAGES).map(|i| format!("all {i}")).collect();
    assert_eq!(texts(&history), expected, "the broadcasts after the kill");
    bob.stop().await;
    let _ = std::fs::remove_dir_all(&data);
}

/// Runs `hubbub hub ARGS` with `env` until it logs that it listens (then SIGTERM) or exits;
/// returns its exit status (`None`: it was serving) and its log, 20 s at most.
fn run_hub(args: &[&str], env: &[(&str, &str)], data: &std::path::Path) -> (Option<bool>, String) {
    let mut command = Command::new(support::BIN);
    command
        .arg("hub")
        .args(args)
        .env("XDG_DATA_HOME", data)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("HUBBUB_JWT_SECRET")
        .env_remove("HUBBUB_CLASSIC_KEY")
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
                if line.contains("listening on http") {
                    let _ = Command::new("kill")
                        .args(["-TERM", &child.id().to_string()])
                        .status();
                    let _ = child.wait();
                    return (None, log);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return (Some(child.wait().unwrap().success()), log);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("the hub neither listened nor exited within 20 s:\n{log}");
            }
        }
    }
}

/// The line of the settings log.
fn settings_line(log: &str) -> &str {
    log.lines()
        .find(|l| l.contains("settings: "))
        .unwrap_or_else(|| panic!("no settings line in:\n{log}"))
}

/// Every flag of `hubbub hub` set from a config file (two files: some flags exclude others),
/// each in effect and logged with its line; a flag given on the command line wins over the
/// file, the file over an environment variable; secrets never reach the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flag_is_read_from_a_config_file_and_flags_win_over_it() {
    let dir = temp_dir("config");
    std::fs::create_dir_all(dir.join("site")).unwrap();
    std::fs::write(dir.join("site/index.html"), "from the config's site").unwrap();
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/jwt-rs256-public.pem"),
        dir.join("key.pem"),
    )
    .unwrap();
    let port = support::free_port();
    let file = dir.join("hub.toml");
    std::fs::write(
        &file,
        format!(
            r#"# A hub for the test.
listen = "127.0.0.1:{port}"
cors-origin = ["https://a.example"]
max-connections = 50
max-message-size = 4096
max-messages-per-second = 1000
jwt-secret = "file-jwt-secret-0123456789"
jwt-issuer = "the-issuer"
jwt-audience = "the-audience"
history = "hist.sqlite3"
static = "site"
classic-path = "/legacy"
classic-key = "file-classic-key-0123456789"
scope-claim = "tenant"
"#
        ),
    )
    .unwrap();
    let file_arg = file.display().to_string();
    let mut hub = Command::new(support::BIN)
        .args(["hub", "--config", &file_arg, "--max-message-size", "8192"])
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("HUBBUB_CLASSIC_KEY", "env-classic-key-0123456789")
        .env_remove("HUBBUB_JWT_SECRET")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = hub.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log.contains("listening on http://") {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("the hub listens within 20 s:\n{log}"));
        log.push_str(&line);
        log.push('\n');
    }
    let hub = Hub {
        child: hub,
        url: format!("http://127.0.0.1:{port}"),
    };
    assert!(
        log.contains(&format!("listening on http://127.0.0.1:{port}")),
        "{log}"
    );
    let settings = settings_line(&log);
    let at = |line: usize| format!("({file_arg} line {line})");
    for expected in [
        format!("listen = 127.0.0.1:{port} {}", at(2)),
        format!("cors-origin = [\"https://a.example\"] {}", at(3)),
        format!("max-connections = 50 {}", at(4)),
        "max-message-size = 8192 (flag)".to_owned(),
        format!("max-messages-per-second = 1000 {}", at(6)),
        format!("jwt-secret = <redacted> {}", at(7)),
        format!("jwt-issuer = the-issuer {}", at(8)),
        format!("jwt-audience = the-audience {}", at(9)),
        format!(
            "history = {} {}",
            dir.join("hist.sqlite3").display(),
            at(10)
        ),
        format!("static = {} {}", dir.join("site").display(), at(11)),
        format!("classic-path = /legacy {}", at(12)),
        format!("classic-key = <redacted> {}", at(13)),
        format!("scope-claim = tenant {}", at(14)),
    ] {
        assert!(settings.contains(&expected), "{expected:?} in {settings}");
    }
    assert!(
        !log.contains("0123456789"),
        "a secret reached the log:\n{log}"
    );
    // In effect: the history file, the static folder, JWT auth, the classic path, CORS.
    assert!(dir.join("hist.sqlite3").is_file());
    let http = reqwest::Client::new();
    let page = http.get(format!("{}/", hub.url)).send().await.unwrap();
    assert_eq!(page.text().await.unwrap(), "from the config's site");
    let negotiate = http
        .post(format!("{}/chathub/negotiate?negotiateVersion=1", hub.url))
        .header("Origin", "https://a.example")
        .send()
        .await
        .unwrap();
    assert_eq!(negotiate.status(), 401, "JWT required");
    assert_eq!(
        negotiate.headers()["access-control-allow-origin"],
        "https://a.example"
    );
    let classic = http
        .get(format!(
            "{}/legacy/negotiate?clientProtocol=1.5&connectionData=%5B%7B%22name%22%3A%22chathub%22%7D%5D",
            hub.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        classic.status(),
        401,
        "the classic endpoint is at /legacy, with JWT"
    );
    drop(hub);

    // The flags the first file could not hold with the others.
    let other = dir.join("fleet.toml");
    std::fs::write(
        &other,
        r#"redis = "redis://:file-redis-password-0123456789@127.0.0.1:1"
redis-prefix = "test:"
redis-node-ttl = 3
jwt-public-key = "key.pem"
no-classic = true
listen = "127.0.0.1:0"
max-pending-per-address = 7
max-tcp-connections = 900
max-tcp-connections-per-address = 300
header-read-timeout = 12.5
max-send-queue-bytes = 1000000
max-stream-buffer-bytes = 65536
max-new-histories-per-minute = 5
unclaimed-inbox-ttl = 3600
write-stall-timeout = 45
"#,
    )
    .unwrap();
    let other_arg = other.display().to_string();
    let (exit, log) = run_hub(&["--config", &other_arg], &[], &dir.join("data"));
    assert_eq!(exit, None, "the hub serves:\n{log}");
    let settings = settings_line(&log);
    let at = |line: usize| format!("({other_arg} line {line})");
    for expected in [
        format!("redis = redis://<redacted>@127.0.0.1:1 {}", at(1)),
        format!("redis-prefix = test: {}", at(2)),
        format!("redis-node-ttl = 3 {}", at(3)),
        format!(
            "jwt-public-key = {} {}",
            dir.join("key.pem").display(),
            at(4)
        ),
        format!("no-classic = true {}", at(5)),
        format!("max-pending-per-address = 7 {}", at(7)),
        format!("max-tcp-connections = 900 {}", at(8)),
        format!("max-tcp-connections-per-address = 300 {}", at(9)),
        format!("header-read-timeout = 12.5 {}", at(10)),
        format!("max-send-queue-bytes = 1000000 {}", at(11)),
        format!("max-stream-buffer-bytes = 65536 {}", at(12)),
        format!("max-new-histories-per-minute = 5 {}", at(13)),
        format!("unclaimed-inbox-ttl = 3600 {}", at(14)),
        format!("write-stall-timeout = 45 {}", at(15)),
    ] {
        assert!(settings.contains(&expected), "{expected:?} in {settings}");
    }
    assert!(
        !log.contains("0123456789"),
        "a secret reached the log:\n{log}"
    );

    // The PostgreSQL backplane's keys (nothing listens on port 1: the hub serves its own
    // connections meanwhile).
    let pg = dir.join("pgfleet.toml");
    std::fs::write(
        &pg,
        r#"postgres = "postgres://hubbub:file-pg-password-0123456789@127.0.0.1:1/hubbub"
postgres-prefix = "pg:"
postgres-node-ttl = 2.5
listen = "127.0.0.1:0"
"#,
    )
    .unwrap();
    let pg_arg = pg.display().to_string();
    let (exit, log) = run_hub(&["--config", &pg_arg], &[], &dir.join("data"));
    assert_eq!(exit, None, "the hub serves:\n{log}");
    let settings = settings_line(&log);
    let at = |line: usize| format!("({pg_arg} line {line})");
    for expected in [
        format!(
            "postgres = postgres://<redacted>@127.0.0.1:1/hubbub {}",
            at(1)
        ),
        format!("postgres-prefix = pg: {}", at(2)),
        format!("postgres-node-ttl = 2.5 {}", at(3)),
    ] {
        assert!(settings.contains(&expected), "{expected:?} in {settings}");
    }
    assert!(
        !log.contains("0123456789"),
        "a secret reached the log:\n{log}"
    );

    // The password in libpq's other forms: a `password=` key and a `?password=` parameter.
    for (url, shown) in [
        (
            "host=127.0.0.1 port=1 user=hubbub password=kv-pg-password-0123456789 dbname=hubbub",
            "postgres = host=127.0.0.1 port=1 user=hubbub password=<redacted> dbname=hubbub (flag)",
        ),
        (
            "postgres://hubbub@127.0.0.1:1/hubbub?password=query-pg-password-0123456789",
            "postgres = postgres://<redacted>@127.0.0.1:1/hubbub?password=<redacted> (flag)",
        ),
    ] {
        let (exit, log) = run_hub(
            &["--listen", "127.0.0.1:0", "--postgres", url],
            &[],
            &dir.join("data"),
        );
        assert_eq!(exit, None, "the hub serves:\n{log}");
        let settings = settings_line(&log);
        assert!(settings.contains(shown), "{shown:?} in {settings}");
        assert!(
            !log.contains("0123456789"),
            "a secret reached the log:\n{log}"
        );
    }

    // Per-user keys, which no JWT flag may come with.
    std::fs::write(dir.join("keys.txt"), "ann ann-key-0123456789abcdef\n").unwrap();
    let keyed = dir.join("keyed.toml");
    std::fs::write(
        &keyed,
        "listen = \"127.0.0.1:0\"\nuser-keys = \"keys.txt\"\n",
    )
    .unwrap();
    let keyed_arg = keyed.display().to_string();
    let (exit, log) = run_hub(&["--config", &keyed_arg], &[], &dir.join("data"));
    assert_eq!(exit, None, "the hub serves:\n{log}");
    let expected = format!(
        "user-keys = {} ({keyed_arg} line 2)",
        dir.join("keys.txt").display()
    );
    assert!(
        settings_line(&log).contains(&expected),
        "{expected:?} in {log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A typo in a key, a value of the wrong type, and a value the hub refuses each stop the start
/// with the file and the line.
#[test]
fn a_config_file_typo_or_bad_value_stops_the_start_with_its_line() {
    let dir = temp_dir("config-typo");
    let file = dir.join("hub.toml");
    let file_arg = file.display().to_string();
    for (text, expected) in [
        (
            "listen = \"127.0.0.1:0\"\n\nmax-conections = 5\n",
            vec!["line 3", "max-conections", "max-connections"],
        ),
        (
            "listen = \"127.0.0.1:0\"\nmax-connections = \"many\"\n",
            vec!["line 2", "many"],
        ),
        (
            "listen = \"127.0.0.1:0\"\nclassic-key = \"short\"\n",
            vec!["classic-key", "line 2", "at least 16 characters"],
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let (exit, log) = run_hub(&["--config", &file_arg], &[], &dir);
        assert_eq!(exit, Some(false), "refused:\n{log}");
        for part in expected {
            assert!(log.contains(part), "{part:?} in:\n{log}");
        }
        assert!(log.contains(&file_arg), "the file named in:\n{log}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A throw-away certificate authority and server certificates it signs for 127.0.0.1.
struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

impl TestCa {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Hubbub test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            issuer: rcgen::Issuer::new(params, key),
            pem,
        }
    }

    /// A certificate for 127.0.0.1 and localhost: (certificate PEM, key PEM, DER).
    fn server_cert(&self, name: &str) -> (String, String, Vec<u8>) {
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    /// A rustls client configuration that trusts this CA only.
    fn client_config(&self) -> Arc<rustls::ClientConfig> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.pem.as_bytes()).unwrap())
            .unwrap();
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
        )
    }
}

type Wss =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WSS connection to the chat hub (negotiation skipped) after its handshake, and the DER of
/// the certificate the hub presented.
async fn wss_connect(url: &str, ca: &TestCa) -> (Wss, Vec<u8>) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async_tls_with_config(
            url,
            None,
            false,
            Some(tokio_tungstenite::Connector::Rustls(ca.client_config())),
        ),
    )
    .await
    .expect("a WSS connection within 10 s")
    .unwrap();
    let der = match ws.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Rustls(tls) => {
            tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
        }
        _ => panic!("not TLS"),
    };
    ws.send(Message::text("{\"protocol\":\"json\",\"version\":1}\u{1e}"))
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("the handshake's answer within 10 s")
        .unwrap()
        .unwrap();
    assert_eq!(answer.to_text().unwrap(), "{}\u{1e}");
    (ws, der)
}

/// Echo over a raw WSS connection: the connection still works.
async fn wss_echo(ws: &mut Wss, text: &str) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::text(format!(
        "{{\"type\":1,\"invocationId\":\"e\",\"target\":\"Echo\",\"arguments\":[\"{text}\"]}}\u{1e}"
    )))
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let message = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            ws.next(),
        )
        .await
        .expect("the echo within 10 s")
        .unwrap()
        .unwrap();
        let text_in = message.to_text().unwrap();
        if text_in.contains("\"type\":3") {
            assert!(
                text_in.contains(&format!("\"result\":\"{text}\"")),
                "{text_in}"
            );
            return;
        }
    }
}

/// A hub process whose log lines are kept, killed on drop.
struct LoggedHub {
    child: Child,
    logs: Arc<std::sync::Mutex<Vec<String>>>,
}

impl LoggedHub {
    fn start(args: &[&str], data: &std::path::Path) -> Self {
        let mut child = Command::new(support::BIN)
            .arg("hub")
            .args(args)
            .env("XDG_DATA_HOME", data)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = logs.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, logs }
    }

    /// Waits (20 s at most) for a log line containing `text` beyond the first `after` lines;
    /// returns the number of lines seen then.
    fn wait_for(&self, text: &str, after: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            {
                let logs = self.logs.lock().unwrap();
                if logs.iter().skip(after).any(|l| l.contains(text)) {
                    return logs.len();
                }
            }
            assert!(
                Instant::now() < deadline,
                "no {text:?} in the hub's log within 20 s:\n{}",
                self.logs.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for LoggedHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--tls-cert/--tls-key`: the official client connects over https:// and wss:// with every
/// transport (the CA from NODE_EXTRA_CA_CERTS), and `hubbub send --ca-cert` with every
/// transport of both families (and fails without it); a certificate swapped and SIGHUP sent is what
/// new connections get while a WSS connection opened before goes on working; a broken file at
/// the next SIGHUP leaves the certificate in use; a key that is not the certificate's, or an
/// unreadable file, stops the start with a clear message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_every_transport_and_sighup_swaps_the_certificate_under_live_connections() {
    let dir = temp_dir("tls");
    let ca = TestCa::new();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let (first_pem, first_key, first_der) = ca.server_cert("first");
    let (second_pem, second_key, second_der) = ca.server_cert("second");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &first_pem).unwrap();
    std::fs::write(&key, &first_key).unwrap();
    let (cert_arg, key_arg) = (cert.display().to_string(), key.display().to_string());

    // Refused at start: a key that is not the certificate's, a missing file.
    let wrong_key = dir.join("wrong-key.pem");
    std::fs::write(&wrong_key, &second_key).unwrap();
    let wrong_arg = wrong_key.display().to_string();
    let (exit, log) = run_hub(
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            &cert_arg,
            "--tls-key",
            &wrong_arg,
        ],
        &[],
        &dir.join("data"),
    );
    assert_eq!(exit, Some(false), "a mismatched key is refused:\n{log}");
    assert!(log.contains("cannot be used together"), "{log}");
    assert!(log.contains(&wrong_arg), "{log}");
    let missing = dir.join("missing.pem").display().to_string();
    let (exit, log) = run_hub(
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            &missing,
            "--tls-key",
            &key_arg,
        ],
        &[],
        &dir.join("data"),
    );
    assert_eq!(
        exit,
        Some(false),
        "a missing certificate is refused:\n{log}"
    );
    assert!(log.contains(&format!("cannot read {missing}")), "{log}");

    let port = support::free_port();
    let hub = LoggedHub::start(
        &[
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--tls-cert",
            &cert_arg,
            "--tls-key",
            &key_arg,
        ],
        &dir.join("data"),
    );
    let seen = hub.wait_for(&format!("listening on https://127.0.0.1:{port}"), 0);
    let https = format!("https://127.0.0.1:{port}/chathub");

    // The official client, every transport.
    let node = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/node");
    assert!(
        node.join("node_modules/@microsoft/signalr").is_dir(),
        "run `npm ci` in tests/interop/node (scripts/test.sh does)"
    );
    let output = Command::new("node")
        .arg(node.join("tls.mjs"))
        .arg(&https)
        .env("NODE_EXTRA_CA_CERTS", &ca_file)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the official client over TLS:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // Our client with --ca-cert, every transport of both families; refused without it.
    let ca_arg = ca_file.display().to_string();
    let classic_url = format!("https://127.0.0.1:{port}/signalr");
    for url in [&https, &classic_url] {
        for transport in ["ws", "sse", "lp"] {
            let output = support::hubbub()
                .args(["send", "--url", url, "--transport", transport])
                .args(["--ca-cert", &ca_arg, "--name", "cli", "over tls"])
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "hubbub send --ca-cert over {transport} to {url}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    let output = support::hubbub()
        .args([
            "send",
            "--url",
            &https,
            "--transport",
            "ws",
            "--name",
            "cli",
            "no ca",
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && said.contains("certificate") && said.contains("not trusted"),
        "without --ca-cert the hub's certificate is not trusted, and said so: {said}"
    );

    // A connection that stays while the certificate is swapped.
    let wss = format!("wss://127.0.0.1:{port}/chathub");
    let (mut live, der) = wss_connect(&wss, &ca).await;
    assert_eq!(der, first_der);
    std::fs::write(&cert, &second_pem).unwrap();
    std::fs::write(&key, &second_key).unwrap();
    hub.signal("HUP");
    let seen = hub.wait_for("TLS certificate and key read again", seen);
    let (mut fresh, der) = wss_connect(&wss, &ca).await;
    assert_eq!(der, second_der, "a new connection gets the new certificate");
    wss_echo(&mut live, "still here").await;
    wss_echo(&mut fresh, "new").await;

    // A broken file at the next SIGHUP: reported, and the certificate in use stays.
    std::fs::write(&key, "not a key").unwrap();
    hub.signal("HUP");
    hub.wait_for("the certificate in use stays", seen);
    let (_third, der) = wss_connect(&wss, &ca).await;
    assert_eq!(der, second_der);
    wss_echo(&mut live, "through it all").await;
    drop(hub);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Parses every log line as tracing-subscriber's JSON format: an object with `level`, `target`
/// and `fields` (an object); returns them.
fn json_lines(logs: &[String]) -> Vec<serde_json::Value> {
    logs.iter()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\nin:\n{}", logs.join("\n")));
            for key in ["level", "target"] {
                assert!(value[key].is_string(), "{key} in {line}");
            }
            assert!(value["fields"].is_object(), "fields in {line}");
            value
        })
        .collect()
}

/// The first JSON log line whose `fields.message` contains `text`.
fn json_line<'a>(lines: &'a [serde_json::Value], text: &str) -> &'a serde_json::Value {
    lines
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(text))
        })
        .unwrap_or_else(|| panic!("no {text:?} among {lines:#?}"))
}

/// Waits (20 s at most) for the hub to exit after SIGTERM, and for its log to be read to the
/// end; returns the lines.
fn stop_logged(mut hub: LoggedHub) -> Vec<String> {
    hub.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    while hub.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the hub exits within 20 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The reader thread holds the last lines for a moment after the pipe closes.
    while Arc::strong_count(&hub.logs) > 1 {
        assert!(
            Instant::now() < deadline,
            "the hub's stderr closes within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    hub.logs.lock().unwrap().clone()
}

/// `--log-format json` (and `log-format = "json"` in the config file): every line the hub
/// writes to stderr, from the settings at start through connections to the shutdown, is one
/// JSON object with `level`, `target` and `fields`; the settings line is among them, saying
/// where the format came from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_from_start_to_shutdown() {
    let dir = temp_dir("json-logs");
    let port = support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let hub = LoggedHub::start(
        &[
            "--listen",
            &listen,
            "--history",
            "memory",
            "--log-format",
            "json",
        ],
        &dir,
    );
    hub.wait_for("listening on http://", 0);
    let conn = HubConnectionBuilder::new(format!("http://{listen}/chathub"))
        .build()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), conn.start())
        .await
        .expect("connected within 20 s")
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), conn.stop())
        .await
        .expect("stopped within 20 s");
    hub.wait_for("disconnected", 0);
    let logs = stop_logged(hub);
    let lines = json_lines(&logs);
    let settings = &json_line(&lines, "settings: ")["fields"]["message"];
    assert!(
        settings
            .as_str()
            .unwrap()
            .contains("log-format = json (flag)"),
        "{settings}"
    );
    json_line(&lines, "listening on http://");
    json_line(&lines, "shutting down");
    assert_eq!(json_line(&lines, "no authentication")["level"], "WARN");
    let connected = lines
        .iter()
        .find(|l| l["fields"]["message"] == "connected")
        .unwrap_or_else(|| panic!("a connect among {lines:#?}"));
    assert_eq!(connected["level"], "INFO");
    assert!(
        connected["fields"]["connection"].is_string() && connected["fields"]["user"].is_string(),
        "the connect's fields: {connected}"
    );
    assert!(
        connected["target"]
            .as_str()
            .unwrap()
            .starts_with("hubbub_hub"),
        "{connected}"
    );

    // From the config file, read before logging starts.
    let file = dir.join("hub.toml");
    std::fs::write(
        &file,
        format!("listen = \"{listen}\"\nlog-format = \"json\"\nhistory = \"memory\"\n"),
    )
    .unwrap();
    let file_arg = file.display().to_string();
    let hub = LoggedHub::start(&["--config", &file_arg], &dir);
    hub.wait_for("listening on http://", 0);
    let logs = stop_logged(hub);
    let lines = json_lines(&logs);
    let settings = &json_line(&lines, "settings: ")["fields"]["message"];
    let expected = format!("log-format = json ({file_arg} line 2)");
    assert!(
        settings.as_str().unwrap().contains(&expected),
        "{expected:?} in {settings}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The example config the `.deb` installs as /etc/hubbub/hub.toml (packaging/deb/hub.toml):
/// `hubbub hub --config` accepts it as shipped (its listen address and history file overridden
/// by flags, as this test may use neither), and every key it shows commented out is a flag of
/// `hubbub hub`.
#[test]
fn the_packaged_example_config_is_accepted_and_names_only_real_keys() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../packaging/deb/hub.toml")
        .canonicalize()
        .unwrap();
    let example_arg = example.display().to_string();
    let dir = temp_dir("example-config");
    let (exit, log) = run_hub(
        &[
            "--config",
            &example_arg,
            "--listen",
            "127.0.0.1:0",
            "--history",
            "memory",
        ],
        &[],
        &dir,
    );
    assert_eq!(exit, None, "the hub serves with the example config:\n{log}");
    let help = support::hubbub().args(["hub", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let text = std::fs::read_to_string(&example).unwrap();
    let mut keys = 0;
    for line in text.lines() {
        let line = line.trim_start_matches('#').trim();
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        if key.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
            assert!(
                help.contains(&format!("--{key} ")) || help.contains(&format!("--{key}\n")),
                "{key} (in {example_arg}) is a flag of hubbub hub:\n{help}"
            );
            keys += 1;
        }
    }
    assert!(keys >= 20, "the example shows the keys ({keys} found)");
    let _ = std::fs::remove_dir_all(&dir);
}
