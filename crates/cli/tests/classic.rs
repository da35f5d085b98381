//! Classic ASP.NET SignalR 2.x clients against `hubbub hub` (issue 13): the real jQuery client
//! (npm `signalr@2.4.3` with `jquery@3`) in Chromium on a page served by `--static`, over every
//! transport; node-signalr, an independent classic client; the wire itself with plain HTTP and
//! WebSocket requests, with and without JWT auth; the jQuery client and the official
//! `@microsoft/signalr` client in one chat, on one node and across two nodes sharing a real
//! `redis-server` or a real PostgreSQL. The scenarios live in `tests/interop/classic/*.mjs`.

// Children are killed and reaped on drop.
#![allow(clippy::zombie_processes)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "support/fleet.rs"]
mod fleet;
mod support;

use fleet::{Backend, Kind, free_port};
use support::{BIN, hubbub};

/// A fresh data directory for one `hubbub hub` process (its default history file is there).
fn private_data_dir() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("hubbub-classic-data-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The classic interop package, installed by `scripts/test.sh` (npm ci).
fn classic_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/classic");
    assert!(
        dir.join("node_modules/signalr/jquery.signalR.js").is_file(),
        "the classic interop packages are not installed: run scripts/test.sh (or `npm ci` in {})",
        dir.display()
    );
    dir
}

/// A folder like a classic tutorial's site: the page, jQuery and jquery.signalR (one per test:
/// tests run at once, and each removes its own).
fn site(test: &str) -> PathBuf {
    let dir = classic_dir();
    let site =
        std::env::temp_dir().join(format!("hubbub-classic-site-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&site).unwrap();
    for page in ["index.html", "parts.html"] {
        std::fs::copy(dir.join("page").join(page), site.join(page)).unwrap();
    }
    std::fs::copy(
        dir.join("node_modules/jquery/dist/jquery.js"),
        site.join("jquery.js"),
    )
    .unwrap();
    std::fs::copy(
        dir.join("node_modules/signalr/jquery.signalR.js"),
        site.join("jquery.signalR.js"),
    )
    .unwrap();
    site
}

/// A `hubbub hub` process with its log lines kept.
struct Hub {
    child: Child,
    origin: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Hub {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_on(free_port(), args, env)
    }

    /// A hub on `port` (a restarted node comes back where it was). Without a rate limit in
    /// `args`, one high enough not to slow the test.
    fn start_on(port: u16, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(BIN);
        command
            .args(["hub", "--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            // A history file of its own (a restarted node starts a new one, as before).
            .env("XDG_DATA_HOME", private_data_dir())
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped());
        if !args.contains(&"--max-messages-per-second") {
            command.args(["--max-messages-per-second", "100000"]);
        }
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let hub = Self {
            child,
            origin: format!("http://127.0.0.1:{port}"),
            logs,
        };
        hub.wait_log("listening on");
        hub
    }

    fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.logs.lock().unwrap().iter().any(|l| l.contains(needle)) {
            assert!(
                Instant::now() < deadline,
                "the hub did not log {needle:?}; it logged:\n{}",
                self.logs.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a script of the classic interop package with a time limit.
fn node(script: &str, args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(classic_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs (scripts/test.sh installs it)");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "node {script} did not finish within {limit:?}; it printed:\n{}",
                String::from_utf8_lossy(&out.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// The scenarios a script reported (one JSON object per line), after showing its output.
fn scenarios(output: &Output) -> Vec<serde_json::Value> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!(
        "--- stdout\n{stdout}--- stderr\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

fn assert_all_passed(results: &[serde_json::Value], expected: usize, output: &Output) {
    let failed: Vec<_> = results.iter().filter(|r| r["ok"] != true).collect();
    assert!(failed.is_empty(), "failed scenarios: {failed:#?}");
    assert_eq!(results.len(), expected, "scenarios run: {results:#?}");
    assert!(output.status.success());
}

/// The jQuery 2.4.3 client in Chromium, on a page served by `--static`: over webSockets,
/// serverSentEvents, longPolling and auto, `Send` → `broadcastMessage`, results, hub errors
/// with data, progress; a socket cut mid-chat and every message sent meanwhile arrives after
/// the reconnect, in order; `stop` → `abort` → the disconnected callback at once. Two iframes of
/// a page (one scope) chat, another page's (another scope) do not hear them. Then the jQuery
/// client and the official Core client in one chat (messages both ways, presence, direct
/// messages).
#[test]
fn jquery_client_in_chromium_every_transport_and_mixed_with_core() {
    let site = site("transports");
    let hub = Hub::start(&["--static", site.to_str().unwrap()], &[]);
    let core = format!("{}/chathub", hub.origin);
    let output = node(
        "jquery.mjs",
        &[&hub.origin, "--core", &core],
        Duration::from_secs(300),
    );
    let results = scenarios(&output);
    // Three scenarios per transport (4), the app parts, and the mixed one.
    assert_all_passed(&results, 14, &output);
    let _ = std::fs::remove_dir_all(site);
}

/// node-signalr (npm), a classic client written apart from Microsoft's, chats on the hub.
#[test]
fn node_signalr_client_chats() {
    let hub = Hub::start(&[], &[]);
    let output = node("node-signalr.mjs", &[&hub.origin], Duration::from_secs(60));
    let results = scenarios(&output);
    assert_all_passed(&results, 1, &output);
}

/// The wire as a 2.4.3 server writes it, tokens, bad input, long polling step by step.
#[test]
fn classic_wire_tokens_and_bad_input() {
    let hub = Hub::start(&[], &[]);
    let output = node("protocol.mjs", &[&hub.origin], Duration::from_secs(60));
    let results = scenarios(&output);
    assert_all_passed(&results, 5, &output);
}

/// With JWT auth on, every classic request is checked (query or header), and the user is the
/// token's subject.
#[test]
fn classic_requests_need_the_jwt() {
    let secret = "classic-test-secret-0123456789";
    let hub = Hub::start(&[], &[("HUBBUB_JWT_SECRET", secret)]);
    let output = node(
        "protocol.mjs",
        &[&hub.origin, "--jwt", secret],
        Duration::from_secs(60),
    );
    let results = scenarios(&output);
    assert_all_passed(&results, 6, &output);
}

/// Over the rate limit a classic client is slowed, not refused (a flood past 10 s of waiting
/// is); a client gone without `abort` is announced as left after the 30 s DisconnectTimeout.
#[test]
fn classic_rate_limit_slows_and_disconnect_timeout_announces_the_departure() {
    let hub = Hub::start(&["--max-messages-per-second", "20"], &[]);
    let output = node("limits.mjs", &[&hub.origin], Duration::from_secs(150));
    let results = scenarios(&output);
    assert_all_passed(&results, 4, &output);
}

/// What `resume.mjs join` saved: the connection token, cursor and groups token.
fn join(origin: &str, user: &str) -> String {
    let output = node(
        "resume.mjs",
        &["join", origin, user],
        Duration::from_secs(60),
    );
    let results = scenarios(&output);
    assert_all_passed(&results, 1, &output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("state "))
        .expect("resume.mjs join prints its state")
        .to_owned()
}

fn resume(origin: &str, user: &str, state: &str, extra: &[&str]) {
    let mut args = vec!["resume", origin, user, state];
    args.extend_from_slice(extra);
    let output = node("resume.mjs", &args, Duration::from_secs(60));
    let results = scenarios(&output);
    assert_all_passed(&results, 1, &output);
}

/// A long-polling classic client that comes back to a node that does not know its connection
/// (another node with the same classic key, or its own node restarted) is in its rooms again
/// through its groups token, and gets every message of the new connection although its cursor
/// counted the old node's; without the groups token it is in no room.
#[test]
fn the_groups_token_restores_rooms_on_another_node_and_after_a_restart() {
    let key = [("HUBBUB_CLASSIC_KEY", "one key for the whole fleet")];
    let a = Hub::start(&[], &key);
    let b = Hub::start(&[], &key);
    let state = join(&a.origin, "ann");
    resume(&b.origin, "ann", &state, &[]);

    let state = join(&a.origin, "bea");
    resume(&b.origin, "bea", &state, &["--without-groups"]);

    let state = join(&a.origin, "cy");
    let port: u16 = a.origin.rsplit(':').next().unwrap().parse().unwrap();
    drop(a);
    let a = Hub::start_on(port, &[], &key);
    resume(&a.origin, "cy", &state, &[]);
}

/// Two nodes sharing a real backplane: the jQuery client on one (its page served there) and
/// the official Core client on the other chat, see each other's presence and direct messages.
fn jquery_and_core_clients_chat_across_a_fleet(kind: Kind) {
    let backend = Backend::start(kind);
    let fleet: Vec<String> = backend.hub_args("6");
    let fleet: Vec<&str> = fleet.iter().map(String::as_str).collect();
    let site = site(&format!("fleet-{kind:?}"));
    let key = [("HUBBUB_CLASSIC_KEY", "one key for the whole fleet")];
    let a = Hub::start(
        &[&fleet[..], &["--static", site.to_str().unwrap()]].concat(),
        &key,
    );
    let b = Hub::start(&fleet, &key);
    a.wait_log(&backend.connected_line());
    b.wait_log(&backend.connected_line());
    let core = format!("{}/chathub", b.origin);
    let output = node(
        "jquery.mjs",
        &[&a.origin, "--core", &core, "--only", "mixed"],
        Duration::from_secs(120),
    );
    let results = scenarios(&output);
    assert_all_passed(&results, 1, &output);
    let _ = std::fs::remove_dir_all(site);
}

#[test]
fn jquery_and_core_clients_chat_across_a_redis_fleet() {
    jquery_and_core_clients_chat_across_a_fleet(Kind::Redis);
}

#[test]
fn jquery_and_core_clients_chat_across_a_postgres_fleet() {
    jquery_and_core_clients_chat_across_a_fleet(Kind::Postgres);
}

/// Mistakes a user makes with a classic (or any) hub URL end `chat` at once, exit 1, with one
/// sentence that says what to change, said once; nothing is retried for ever.
#[test]
fn chat_gives_up_at_once_on_a_hub_that_refuses_for_good() {
    let hub = Hub::start(&[], &[]);
    let cases: [(&[&str], &str); 4] = [
        (
            &["--url", &format!("{}/nope", hub.origin)],
            "no SignalR hub at /nope",
        ),
        (
            &[
                "--url",
                &format!("{}/signalr", hub.origin),
                "--hub-name",
                "nohub",
            ],
            "no hub named 'nohub'",
        ),
        (
            &[
                "--url",
                &format!("{}/signalr", hub.origin),
                "--family",
                "core",
            ],
            "let the family be detected",
        ),
        (
            &[
                "--url",
                &format!("{}/chathub", hub.origin),
                "--family",
                "classic",
            ],
            "no classic SignalR endpoint answers at this URL",
        ),
    ];
    for (args, expected) in cases {
        let mut child = hubbub()
            .arg("chat")
            .args(args)
            .args(["--name", "x"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _stdin = child.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("chat {args:?} was still running after 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.matches(expected).count(), 1, "{args:?}: {stderr}");
    }
}
