//! Issue 18, hub hardening: each finding of the attacker's probes, replayed against a real
//! `hubbub hub` process on 127.0.0.1, beside a well-behaved official client (Hubbub's own) that
//! must keep working. The attacker speaks the wire itself (a raw WebSocket) and sends what the
//! official clients never do.

// Children are killed and reaped on drop.
#![allow(clippy::zombie_processes)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hubbub_client::HubConnectionBuilder;
use tokio_tungstenite::tungstenite::Message;

mod support;
use support::{free_port, hubbub};

/// The record separator that ends every JSON hub message.
const RS: char = '\u{1e}';

/// A `hubbub hub` process with its log lines kept; killed when dropped.
struct Hub {
    child: Child,
    origin: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Hub {
    /// Starts `hubbub hub` on a free port with `args` and waits for "listening on" (20 s).
    fn start(args: &[&str]) -> Self {
        let port = free_port();
        let mut command = hubbub();
        command
            .args(["hub", "--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            // A default history file of its own: parallel hubs on one file wait for its lock.
            .env("XDG_DATA_HOME", support::private_data_dir());
        Self::launch(command, port)
    }

    /// Starts `hubbub hub` as [`start`](Self::start) does, with the open-file limit of its
    /// process lowered to `files` (`ulimit -n`).
    fn start_with_file_limit(files: u32, args: &[&str]) -> Self {
        let port = free_port();
        let mut command = std::process::Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {files} && exec \"$0\" \"$@\""))
            .arg(support::BIN)
            .args(["hub", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--history", "memory"])
            .args(args);
        Self::launch(command, port)
    }

    /// Runs `command` (a hub listening on `port`), keeps its log lines and waits for
    /// "listening on" (20 s).
    fn launch(mut command: std::process::Command, port: u16) -> Self {
        let mut child = command
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
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
        let deadline = Instant::now() + Duration::from_secs(20);
        while !hub
            .logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("listening on"))
        {
            assert!(
                Instant::now() < deadline,
                "the hub did not start; it logged:\n{}",
                hub.logs.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        hub
    }

    /// The hub process's resident memory, in KiB (Linux `/proc`).
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// Whether the process is still running.
    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw JSON-protocol WebSocket peer: it sends whatever it is told, as text frames.
struct Raw {
    ws: Socket,
    pending: String,
}

impl Raw {
    /// Connects to `url` (ws://…, negotiation skipped) and completes the JSON handshake.
    async fn connect(url: &str) -> Self {
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(url),
        )
        .await
        .expect("the WebSocket connects within 10 s")
        .expect("the WebSocket upgrade is accepted");
        let mut raw = Self {
            ws,
            pending: String::new(),
        };
        raw.send(r#"{"protocol":"json","version":1}"#).await;
        let answer = raw.next().await;
        assert_eq!(answer, serde_json::json!({}), "the handshake succeeds");
        raw
    }

    /// Sends one message (the record separator is added).
    async fn send(&mut self, message: &str) {
        self.ws
            .send(Message::text(format!("{message}{RS}")))
            .await
            .expect("the hub takes the message");
    }

    /// The next message from the hub (pings included), within 10 s.
    async fn next(&mut self) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(end) = self.pending.find(RS) {
                let message: String = self.pending.drain(..=end).collect();
                return serde_json::from_str(&message[..end]).unwrap();
            }
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("a message from the hub within 10 s")
                .expect("the socket stays open")
                .expect("the socket reads");
            if let Message::Text(text) = frame {
                self.pending.push_str(&text);
            }
        }
    }

    /// The Completion of invocation `id` (other messages are skipped), within 10 s.
    async fn completion(&mut self, id: &str) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let message = tokio::time::timeout_at(deadline, self.next())
                .await
                .unwrap_or_else(|_| panic!("no Completion for invocation {id} within 10 s"));
            if message["type"] == 3 && message["invocationId"] == id {
                return message;
            }
            assert_ne!(
                message["type"], 7,
                "the hub closed the connection: {message}"
            );
        }
    }
}

/// The well-behaved client: Hubbub's own, connected as `name` to the hub's chat.
async fn official(hub: &Hub, name: &str) -> hubbub_client::HubConnection {
    let conn = HubConnectionBuilder::new(format!("{}/chathub?name={name}", hub.origin))
        .build()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), conn.start())
        .await
        .expect("the official client connects within 10 s")
        .expect("the official client connects");
    conn
}

/// The official client still gets answers.
async fn still_works(conn: &hubbub_client::HubConnection, step: &str) {
    let echoed: String = tokio::time::timeout(
        Duration::from_secs(10),
        conn.invoke("Echo", vec![step.into()]),
    )
    .await
    .unwrap_or_else(|_| panic!("{step}: the official client got no answer within 10 s"))
    .unwrap_or_else(|e| panic!("{step}: the official client failed: {e}"));
    assert_eq!(echoed, step);
}

/// Finding 6: `streamIds` opened a channel each before the method was even looked up, kept for
/// the connection's life; a few hundred frames took the hub to gigabytes and it aborted.
/// Now: ids for a method that takes no stream, for an unknown method, or more than the method
/// takes are refused and open nothing; a connection holds at most 32 streams open; the hub's
/// memory stays bounded and the official client connected throughout keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_ids_are_bounded_and_refused_for_methods_without_streams() {
    let mut hub = Hub::start(&["--max-messages-per-second", "100000"]);
    let bob = official(&hub, "bob").await;
    still_works(&bob, "before").await;
    let ws_url = format!("{}/chathub?name=mallory", hub.origin.replace("http", "ws"));
    let mut mallory = Raw::connect(&ws_url).await;

    // A method that takes no stream.
    mallory
        .send(r#"{"type":1,"invocationId":"send","target":"Send","arguments":["mallory","hi"],"streamIds":["x1"]}"#)
        .await;
    let refused = mallory.completion("send").await;
    assert_eq!(
        refused["error"],
        "Failed to invoke 'Send' due to an error on the server. Client sent 1 stream(s), Hub method expects 0.",
        "{refused}"
    );
    // More streams than the method takes.
    mallory
        .send(r#"{"type":1,"invocationId":"two","target":"Collect","arguments":[],"streamIds":["y1","y2"]}"#)
        .await;
    let refused = mallory.completion("two").await;
    assert_eq!(
        refused["error"],
        "Failed to invoke 'Collect' due to an error on the server. Client sent 2 stream(s), Hub method expects 1.",
        "{refused}"
    );

    // The crash, bounded: frames of 1,000 new ids each for an unknown method and for one that
    // takes no stream (before: ~2 KiB per id kept, +284 MiB over these 150 frames). Each is
    // refused and opens nothing, so the hub's memory does not grow with them.
    let before = hub.rss_kib();
    const FRAMES: usize = 150;
    for k in 0..FRAMES {
        // Every id new (ids already open would only replace each other).
        let ids: Vec<String> = (0..1000).map(|i| format!("s{k}-{i}")).collect();
        let ids = serde_json::to_string(&ids).unwrap();
        let target = if k % 2 == 0 { "NoSuchMethod" } else { "Send" };
        mallory
            .send(&format!(
                r#"{{"type":1,"invocationId":"f{k}","target":"{target}","arguments":["a","b"],"streamIds":{ids}}}"#
            ))
            .await;
    }
    // Every one is answered with an error, in order.
    for k in 0..FRAMES {
        let completion = mallory.completion(&format!("f{k}")).await;
        assert!(
            completion["error"].is_string(),
            "f{k} is refused: {completion}"
        );
    }
    let grown_mib = hub.rss_kib().saturating_sub(before) / 1024;
    println!("hub RSS grew by {grown_mib} MiB over {FRAMES} frames of 1,000 stream ids");
    assert!(
        grown_mib < 64,
        "the hub's memory grew by {grown_mib} MiB for refused stream ids (bound: 64 MiB)"
    );
    still_works(&bob, "after the flood of ids").await;

    // At most 32 streams open per connection: 32 uploads that never end are accepted (their
    // invocations wait), the 33rd is refused at once, and a repeated open id is refused too.
    for k in 0..32 {
        mallory
            .send(&format!(
                r#"{{"type":1,"invocationId":"c{k}","target":"Collect","arguments":[],"streamIds":["u{k}"]}}"#
            ))
            .await;
    }
    mallory
        .send(r#"{"type":1,"invocationId":"c32","target":"Collect","arguments":[],"streamIds":["u32"]}"#)
        .await;
    let refused = mallory.completion("c32").await;
    assert_eq!(
        refused["error"],
        "Too many open streams: a connection may have at most 32 client-to-server streams open at once.",
        "{refused}"
    );
    // The first upload ends: its invocation completes, which frees its stream.
    mallory
        .send(r#"{"type":2,"invocationId":"u0","item":7}"#)
        .await;
    mallory.send(r#"{"type":3,"invocationId":"u0"}"#).await;
    let done = mallory.completion("c0").await;
    assert_eq!(done["result"], serde_json::json!([7]), "{done}");
    mallory
        .send(r#"{"type":1,"invocationId":"again","target":"Collect","arguments":[],"streamIds":["u1"]}"#)
        .await;
    let refused = mallory.completion("again").await;
    assert_eq!(
        refused["error"], "Stream ID 'u1' is already in use.",
        "{refused}"
    );

    assert!(hub.alive(), "the hub process is still running");
    still_works(&bob, "at the end").await;
    bob.stop().await;
}

const SECRET: &str = "hardening-test-secret-0123456789";

/// An HS256 token for `sub`, valid for an hour, with these extra claims.
fn token_with(sub: &str, extra: serde_json::Value) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut claims = serde_json::json!({ "sub": sub, "exp": now + 3600 });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn num(n: u64) -> hubbub_client::Arg {
    hubbub_client::Arg::from_value(hubbub_client::Value::from(n))
}

fn token(sub: &str) -> String {
    token_with(sub, serde_json::json!({}))
}

/// An official client of `url` (`/chathub…` or the classic `/signalr`) with `token`.
async fn official_with_token(
    url: &str,
    token: String,
    family: hubbub_client::Family,
) -> hubbub_client::HubConnection {
    let conn = HubConnectionBuilder::new(url)
        .access_token(move || {
            let token = token.clone();
            async move { Ok(token) }
        })
        .family(family)
        .build()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), conn.start())
        .await
        .expect("the official client connects within 10 s")
        .expect("the official client connects");
    conn
}

/// Every call of `method` the hub makes on `conn`, its arguments as strings.
fn received(
    conn: &hubbub_client::HubConnection,
    method: &str,
) -> tokio::sync::mpsc::UnboundedReceiver<Vec<String>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    conn.on(method, move |args| {
        let texts = args
            .iter()
            .map(|a| a.decode::<String>().unwrap_or_default())
            .collect();
        let _ = tx.send(texts);
        None
    });
    rx
}

/// The next call in `rx` whose last argument is `text`, within 10 s.
async fn next_with_text(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<String>>,
    text: &str,
) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let args = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{text:?} did not arrive within 10 s"))
            .expect("the client is still there");
        if args.last().map(String::as_str) == Some(text) {
            return args;
        }
    }
}

/// The names a history answer (`{epoch, messages: [{name, message, …}]}`) gives `text`.
fn names_of(history: &serde_json::Value, text: &str) -> Vec<String> {
    history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["message"] == text)
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Finding 1: with mallory's valid token, `Send("alice", …)` reached everyone as alice and was
/// recorded so. Now, with JWT auth on, what is delivered and recorded names the token's
/// subject, over the ASP.NET Core endpoint and the classic one alike, for `Send` and
/// `SendToRoom`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_on_messages_carry_the_authenticated_users_name() {
    let hub = Hub::start(&[
        "--jwt-secret",
        SECRET,
        "--max-messages-per-second",
        "100000",
    ]);
    let chathub = format!("{}/chathub", hub.origin);
    let core = hubbub_client::Family::Core;
    let bob = official_with_token(&chathub, token("bob"), core).await;
    let mut broadcasts = received(&bob, "broadcastMessage");
    let mut room_messages = received(&bob, "roomMessage");
    let mallory = official_with_token(&chathub, token("mallory"), core).await;

    let phish = "Please rotate your password at https://example.invalid";
    mallory
        .invoke::<()>("Send", vec!["alice".into(), phish.into()])
        .await
        .unwrap();
    let got = next_with_text(&mut broadcasts, phish).await;
    assert_eq!(got, ["mallory", phish], "the broadcast names the sender");
    let history: serde_json::Value = bob
        .invoke("History", vec!["".into(), num(0)])
        .await
        .unwrap();
    assert_eq!(names_of(&history, phish), ["mallory"], "{history}");

    for conn in [&bob, &mallory] {
        conn.invoke::<u64>("JoinRoom", vec!["ops".into()])
            .await
            .unwrap();
    }
    let in_room = "in the room, as alice";
    mallory
        .invoke::<()>(
            "SendToRoom",
            vec!["ops".into(), "alice".into(), in_room.into()],
        )
        .await
        .unwrap();
    let got = next_with_text(&mut room_messages, in_room).await;
    assert_eq!(got, ["ops", "mallory", in_room]);
    let history: serde_json::Value = bob
        .invoke("RoomHistory", vec!["ops".into(), "".into(), num(0)])
        .await
        .unwrap();
    assert_eq!(names_of(&history, in_room), ["mallory"], "{history}");

    // The classic endpoint dispatches through the same hub: the same holds there.
    let classic = official_with_token(
        &format!("{}/signalr", hub.origin),
        token("mallory"),
        hubbub_client::Family::Classic,
    )
    .await;
    let via_classic = "via classic, as alice";
    classic
        .invoke::<()>("Send", vec!["alice".into(), via_classic.into()])
        .await
        .unwrap();
    let got = next_with_text(&mut broadcasts, via_classic).await;
    assert_eq!(got, ["mallory", via_classic]);
    classic
        .invoke::<u64>("JoinRoom", vec!["ops".into()])
        .await
        .unwrap();
    let classic_room = "classic room message, as alice";
    classic
        .invoke::<()>(
            "SendToRoom",
            vec!["ops".into(), "alice".into(), classic_room.into()],
        )
        .await
        .unwrap();
    let got = next_with_text(&mut room_messages, classic_room).await;
    assert_eq!(got, ["ops", "mallory", classic_room]);

    // Its own name is of course fine.
    mallory
        .invoke::<()>("Send", vec!["mallory".into(), "hello".into()])
        .await
        .unwrap();
    assert_eq!(
        next_with_text(&mut broadcasts, "hello").await,
        ["mallory", "hello"]
    );
    for conn in [classic, mallory, bob] {
        conn.stop().await;
    }
}

/// An official client connected as `name` in `scope` (no auth).
async fn in_scope(hub: &Hub, name: &str, scope: &str) -> hubbub_client::HubConnection {
    official(hub, &format!("{name}&scope={scope}")).await
}

/// Finding 2: rooms were keyed `room:{scope}:{room}`, so from scope `acme` the room `corp:x`
/// was room `x` of scope `acme:corp` (its history readable, messages injected live), and
/// `SendToUser` reached the user's connections in every scope. Now keys cannot collide, a
/// direct message reaches only the caller's scope, and `RoomHistory` needs the room joined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_isolate_rooms_direct_messages_and_room_histories() {
    let hub = Hub::start(&["--max-messages-per-second", "100000"]);
    let alice = in_scope(&hub, "alice", "acme").await;
    let mut alice_rooms = received(&alice, "roomMessage");
    let eve = in_scope(&hub, "eve", "acme:corp").await;

    alice
        .invoke::<u64>("JoinRoom", vec!["corp:x".into()])
        .await
        .unwrap();
    alice
        .invoke::<()>(
            "SendToRoom",
            vec!["corp:x".into(), "alice".into(), "the plan".into()],
        )
        .await
        .unwrap();
    next_with_text(&mut alice_rooms, "the plan").await;
    eve.invoke::<u64>("JoinRoom", vec!["x".into()])
        .await
        .unwrap();
    let history: serde_json::Value = eve
        .invoke("RoomHistory", vec!["x".into(), "".into(), num(0)])
        .await
        .unwrap();
    assert!(
        names_of(&history, "the plan").is_empty(),
        "another scope's room read: {history}"
    );
    eve.invoke::<()>(
        "SendToRoom",
        vec!["x".into(), "eve".into(), "injected".into()],
    )
    .await
    .unwrap();
    // What alice's room gets next, after eve's call completed, is her own marker: nothing
    // of eve's came before it.
    alice
        .invoke::<()>(
            "SendToRoom",
            vec!["corp:x".into(), "alice".into(), "marker".into()],
        )
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), alice_rooms.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        next.last().unwrap(),
        "marker",
        "eve's message reached alice's room: {next:?}"
    );

    // Direct messages stay in the sender's scope.
    let bob = in_scope(&hub, "bob", "globex").await;
    let mut bob_direct = received(&bob, "directMessage");
    let carol = in_scope(&hub, "carol", "globex").await;
    eve.invoke::<()>(
        "SendToUser",
        vec!["bob".into(), "from another scope".into()],
    )
    .await
    .unwrap();
    carol
        .invoke::<()>("SendToUser", vec!["bob".into(), "dm marker".into()])
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), bob_direct.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        next,
        ["carol", "dm marker"],
        "a direct message crossed scopes"
    );

    // A room's history is for its members.
    let refused = alice
        .invoke::<serde_json::Value>("RoomHistory", vec!["elsewhere".into(), "".into(), num(0)])
        .await
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "Join the room 'elsewhere' before reading its history."
    );
    for conn in [alice, eve, bob, carol] {
        conn.stop().await;
    }
}

/// With `--scope-claim tenant` the scope is the token's `tenant`: a client that asks for
/// another tenant's scope is refused (Core and classic endpoints), one that asks for none is in
/// its tenant's scope, and a token without the claim is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scope_claim_binds_each_connection_to_its_tenant() {
    let hub = Hub::start(&[
        "--jwt-secret",
        SECRET,
        "--scope-claim",
        "tenant",
        "--max-messages-per-second",
        "100000",
    ]);
    let chathub = format!("{}/chathub", hub.origin);
    let core = hubbub_client::Family::Core;
    let acme = |sub: &str| token_with(sub, serde_json::json!({ "tenant": "acme" }));
    let globex = |sub: &str| token_with(sub, serde_json::json!({ "tenant": "globex" }));
    let bob = official_with_token(&format!("{chathub}?scope=acme"), acme("bob"), core).await;
    let mut broadcasts = received(&bob, "broadcastMessage");

    for (url, family) in [
        (format!("{chathub}?scope=acme"), core),
        (
            format!("{}/signalr?scope=acme", hub.origin),
            hubbub_client::Family::Classic,
        ),
    ] {
        let t = globex("mallory");
        let conn = HubConnectionBuilder::new(url.as_str())
            .access_token(move || {
                let t = t.clone();
                async move { Ok(t) }
            })
            .family(family)
            .build()
            .unwrap();
        let refused = tokio::time::timeout(Duration::from_secs(10), conn.start())
            .await
            .expect("an answer within 10 s");
        let error = refused
            .expect_err("another tenant's scope is refused")
            .to_string();
        assert!(error.contains("403"), "{family:?}: {error}");
    }
    let no_claim = HubConnectionBuilder::new(chathub.as_str())
        .access_token(|| async { Ok(token("mallory")) })
        .build()
        .unwrap();
    let error = tokio::time::timeout(Duration::from_secs(10), no_claim.start())
        .await
        .expect("an answer within 10 s")
        .expect_err("a token without the claim is refused")
        .to_string();
    assert!(error.contains("401"), "{error}");

    // Asking for no scope is being in the token's.
    let dave = official_with_token(&chathub, acme("dave"), core).await;
    dave.invoke::<()>("Send", vec!["dave".into(), "same tenant".into()])
        .await
        .unwrap();
    assert_eq!(
        next_with_text(&mut broadcasts, "same tenant").await,
        ["dave", "same tenant"]
    );
    for conn in [dave, bob] {
        conn.stop().await;
    }
}

/// The `hubbub-msg-id` of every `broadcastMessage` `conn` receives, with its text.
fn broadcast_ids(conn: &hubbub_client::HubConnection) -> Arc<Mutex<Vec<(String, String)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    conn.on_any(move |method, args, headers| {
        if method == "broadcastMessage" {
            let text = args
                .get(1)
                .and_then(|a| a.decode::<String>().ok())
                .unwrap_or_default();
            let id = headers.get("hubbub-msg-id").cloned().unwrap_or_default();
            sink.lock().unwrap().push((id, text));
        }
    });
    seen
}

fn with_id(id: &str) -> hubbub_client::Headers {
    hubbub_client::Headers::from([("hubbub-msg-id".to_owned(), id.to_owned())])
}

/// Finding 3: hub-made ids were `h-{epoch}-{next seq}`, so a client that sent with the next
/// one as its own id made the hub give the next id-less message the same id, and receivers
/// dropped it as a repeat; two senders could also share an id. Now the hub's ids are random and
/// in a prefix clients may not use, and an id another sender's message holds is refused: with
/// the history in memory and in a SQLite file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_ids_are_their_senders_and_never_collide() {
    let dir = std::env::temp_dir().join(format!("hubbub-hardening-ids-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("history.sqlite3").display().to_string();
    for history in [None, Some(file.as_str())] {
        let mut args = vec!["--max-messages-per-second", "100000"];
        if let Some(file) = history {
            args.extend(["--history", file]);
        }
        let hub = Hub::start(&args);
        let bob = official(&hub, "bob").await;
        let ids = broadcast_ids(&bob);
        let mut broadcasts = received(&bob, "broadcastMessage");
        let mallory = official(&hub, "mallory").await;

        // Mallory learns the epoch and predicts the id of the message after hers.
        let page: serde_json::Value = mallory
            .invoke("History", vec!["".into(), num(0)])
            .await
            .unwrap();
        let epoch = page["epoch"].as_str().unwrap().to_owned();
        let next = page["messages"].as_array().unwrap().len() + 2;
        let predicted = format!("h-{epoch}-{next}");
        let squat = mallory
            .invoke_with_headers::<()>(
                "Send",
                vec!["mallory".into(), "squatting".into()],
                with_id(&predicted),
            )
            .await;
        // Bob's client sends without an id; the hub makes one.
        bob.invoke::<()>("Send", vec!["bob".into(), "id-less".into()])
            .await
            .unwrap();
        next_with_text(&mut broadcasts, "id-less").await;
        let seen = ids.lock().unwrap().clone();
        let bobs = seen.iter().find(|(_, t)| t == "id-less").unwrap().0.clone();
        assert!(
            !seen.iter().any(|(id, t)| t != "id-less" && *id == bobs),
            "{history:?}: the id-less message got another message's id: {seen:?}"
        );
        assert_eq!(
            squat.unwrap_err().to_string(),
            "Message ids starting with 'h-' are the hub's: choose another id.",
            "{history:?}"
        );

        // An id another sender's message holds is refused; the sender may repeat its own.
        bob.invoke_with_headers::<()>(
            "Send",
            vec!["bob".into(), "bob's own".into()],
            with_id("shared-1"),
        )
        .await
        .unwrap();
        let taken = mallory
            .invoke_with_headers::<()>(
                "Send",
                vec!["mallory".into(), "taking bob's id".into()],
                with_id("shared-1"),
            )
            .await
            .unwrap_err();
        assert_eq!(
            taken.to_string(),
            "The message id 'shared-1' belongs to another sender's message: choose another id.",
            "{history:?}"
        );
        bob.invoke_with_headers::<()>(
            "Send",
            vec!["bob".into(), "bob's own".into()],
            with_id("shared-1"),
        )
        .await
        .expect("a sender's repeat of its own id completes");
        let page: serde_json::Value = bob
            .invoke("History", vec!["".into(), num(0)])
            .await
            .unwrap();
        let holders: Vec<&serde_json::Value> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["id"] == "shared-1")
            .collect();
        assert_eq!(holders.len(), 1, "{history:?}: {page}");
        assert_eq!(holders[0]["name"], "bob");
        bob.stop().await;
        mallory.stop().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether a client with `token` can connect to `url`: `Ok` or the error's text.
async fn try_connect(url: &str, token: String) -> Result<(), String> {
    let conn = HubConnectionBuilder::new(url)
        .access_token(move || {
            let token = token.clone();
            async move { Ok(token) }
        })
        .build()
        .unwrap();
    let started = tokio::time::timeout(Duration::from_secs(10), conn.start())
        .await
        .expect("an answer within 10 s");
    conn.stop().await;
    started.map_err(|e| e.to_string())
}

/// Finding 4: with `--jwt-issuer`/`--jwt-audience`, a token *without* `iss` or `aud` was
/// accepted, and one whose `nbf` lies in the future too. Now both are refused (401), `nbf`
/// with the usual 60 s of leeway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_issuer_audience_and_not_before_are_enforced() {
    let hub = Hub::start(&[
        "--jwt-secret",
        SECRET,
        "--jwt-issuer",
        "https://id.example",
        "--jwt-audience",
        "hubbub",
    ]);
    let url = format!("{}/chathub", hub.origin);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let both = serde_json::json!({ "iss": "https://id.example", "aud": "hubbub" });
    let with = |extra: serde_json::Value| {
        let mut claims = both.clone();
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        token_with("carol", claims)
    };
    try_connect(&url, with(serde_json::json!({})))
        .await
        .expect("a token with the issuer and audience connects");
    try_connect(&url, with(serde_json::json!({ "nbf": now + 10 })))
        .await
        .expect("a not-before within the leeway connects");
    for (what, token) in [
        ("no iss", with(serde_json::json!({ "iss": null }))),
        ("no aud", with(serde_json::json!({ "aud": null }))),
        (
            "another iss",
            with(serde_json::json!({ "iss": "https://evil.example" })),
        ),
        (
            "nbf in an hour",
            with(serde_json::json!({ "nbf": now + 3600 })),
        ),
    ] {
        let error = try_connect(&url, token).await.expect_err(what);
        assert!(error.contains("401"), "{what}: {error}");
    }
}

/// `--jwt-issuer`, `--jwt-audience` or `--scope-claim` without a secret or key started a hub
/// with no auth at all and no warning; now the hub refuses to start, saying why.
#[test]
fn claims_without_a_key_refuse_to_start() {
    for flag in ["--jwt-issuer", "--jwt-audience", "--scope-claim"] {
        let mut child = hubbub()
            .args(["hub", "--listen", "127.0.0.1:0", flag, "x"])
            .env_remove("HUBBUB_JWT_SECRET")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{flag} without a key: the hub started and still runs after 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(!status.success(), "{flag}: the hub started: {stderr}");
        assert!(
            stderr.contains(&format!("{flag} needs JWT auth")),
            "{flag}: {stderr}"
        );
    }
}

/// A WebSocket upgrade to `url` sent with `Origin: origin` (none when `None`): the HTTP status
/// of a refusal, or 101 when the socket opened.
async fn upgrade_status(url: &str, origin: Option<&str>) -> u16 {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
    }
    let connected = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .expect("an answer to the upgrade within 10 s");
    match connected {
        Ok((mut ws, response)) => {
            let _ = ws.close(None).await;
            response.status().as_u16()
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("the upgrade failed otherwise: {e}"),
    }
}

fn no_store(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get("cache-control")
        .is_some_and(|v| v == "no-store")
}

/// Finding 11: the WebSocket upgrade ignored `Origin`, so any web page could use a hub on the
/// user's machine or LAN. Now every hub request of both families from a browser page of
/// another origin than the hub's own and `--cors-origin`'s is refused (403), `null` included;
/// clients that send no `Origin` (not browsers) are not concerned; negotiate and long-poll
/// answers (they carry tokens) are `Cache-Control: no-store`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_other_origins_are_refused_on_every_transport() {
    let hub = Hub::start(&["--cors-origin", "http://app.example"]);
    let bob = official(&hub, "bob").await;
    let ws = hub.origin.replace("http", "ws");
    let core_ws = format!("{ws}/chathub?name=eve");
    let data = "connectionData=%5B%7B%22name%22%3A%22chathub%22%7D%5D&clientProtocol=2.1";
    let classic_ws = format!("{ws}/signalr/connect?transport=webSockets&connectionToken=x&{data}");
    for url in [&core_ws, &classic_ws] {
        for evil in [
            "http://evil.example",
            "null",
            "http://app.example.evil.example",
        ] {
            assert_eq!(
                upgrade_status(url, Some(evil)).await,
                403,
                "{evil} on {url}"
            );
        }
    }
    for origin in [None, Some("http://app.example"), Some(hub.origin.as_str())] {
        assert_eq!(upgrade_status(&core_ws, origin).await, 101, "{origin:?}");
    }

    let http = reqwest::Client::new();
    let negotiate = format!("{}/chathub/negotiate?negotiateVersion=1", hub.origin);
    let classic_negotiate = format!("{}/signalr/negotiate?{data}", hub.origin);
    let refused = http
        .post(&negotiate)
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let refused = http
        .get(&classic_negotiate)
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    // Negotiate and long-poll answers are not to be cached.
    let answer = http
        .post(&negotiate)
        .header("Origin", "http://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(no_store(&answer), "{:?}", answer.headers());
    let body: serde_json::Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
    let token = body["connectionToken"].as_str().unwrap().to_owned();
    let poll_url = format!("{}/chathub?id={token}", hub.origin);
    let poll = http.get(&poll_url).send().await.unwrap();
    assert_eq!(poll.status(), 200);
    assert!(no_store(&poll), "{:?}", poll.headers());
    let send = http
        .post(&poll_url)
        .header("Origin", "http://evil.example")
        .body("{\"protocol\":\"json\",\"version\":1}\u{1e}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        send.status(),
        403,
        "a long-polling send from another origin"
    );
    let answer = http.get(&classic_negotiate).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert!(no_store(&answer), "{:?}", answer.headers());
    let body: serde_json::Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
    let token = body["ConnectionToken"].as_str().unwrap();
    let mut connect = reqwest::Url::parse(&format!(
        "{}/signalr/connect?transport=longPolling&{data}",
        hub.origin
    ))
    .unwrap();
    connect
        .query_pairs_mut()
        .append_pair("connectionToken", token);
    let poll = http.get(connect).send().await.unwrap();
    assert_eq!(poll.status(), 200);
    assert!(no_store(&poll), "{:?}", poll.headers());

    still_works(&bob, "after the origins").await;
    bob.stop().await;
}

/// `--cors-origin *` reflected any origin, `null` included, with credentials allowed; the hub
/// now refuses to start with it, as ASP.NET Core refuses a wildcard origin with credentials.
#[test]
fn a_wildcard_cors_origin_refuses_to_start() {
    let mut child = hubbub()
        .args(["hub", "--listen", "127.0.0.1:0", "--cors-origin", "*"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("--cors-origin *: the hub started and still runs after 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("wildcard (any) origin and credentials"),
        "{stderr}"
    );
}

/// Finding 5: without auth (the default) the user is whatever `?name=` says, so anyone can send
/// as anyone and read anyone's inbox. The hub now says so at start, and `--user-keys FILE`
/// binds each client to its user's key with no identity provider: a client is the user whose
/// key it sends, whatever name it asks for, over both endpoints; no key or another key is 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_hub_says_so_and_user_keys_bind_each_client_to_its_user() {
    let open = Hub::start(&[]);
    let warned =
        |hub: &Hub| {
            hub.logs.lock().unwrap().iter().any(|l| {
                l.contains("WARN") && l.contains("no authentication") && l.contains("inbox")
            })
        };
    assert!(
        warned(&open),
        "no warning that the hub is open:\n{}",
        open.logs.lock().unwrap().join("\n")
    );
    drop(open);

    let dir = std::env::temp_dir().join(format!("hubbub-hardening-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let keys = dir.join("keys");
    std::fs::write(
        &keys,
        "# who may use the hub\nalice alice-key-0123456789\nbob   bob-key-0123456789abcdef\n",
    )
    .unwrap();
    let hub = Hub::start(&["--user-keys", keys.to_str().unwrap()]);
    assert!(!warned(&hub), "a hub with keys is not open");
    let chathub = format!("{}/chathub", hub.origin);
    let core = hubbub_client::Family::Core;
    let bob = official_with_token(&chathub, "bob-key-0123456789abcdef".to_owned(), core).await;
    let mut broadcasts = received(&bob, "broadcastMessage");
    bob.invoke::<()>("SendToUser", vec!["carol".into(), "for carol only".into()])
        .await
        .unwrap();
    // Asking to be bob with alice's key is being alice: not bob's inbox.
    let alice = official_with_token(
        &format!("{chathub}?name=bob"),
        "alice-key-0123456789".to_owned(),
        core,
    )
    .await;
    alice
        .invoke::<()>("Send", vec!["bob".into(), "who am I".into()])
        .await
        .unwrap();
    assert_eq!(
        next_with_text(&mut broadcasts, "who am I").await,
        ["alice", "who am I"]
    );
    let inbox: serde_json::Value = alice
        .invoke("Inbox", vec!["".into(), num(0)])
        .await
        .unwrap();
    assert_eq!(inbox["messages"], serde_json::json!([]), "{inbox}");
    for (what, key) in [
        ("no key", None),
        ("a wrong key", Some("mallory-key-0123456789")),
    ] {
        let mut builder = HubConnectionBuilder::new(format!("{chathub}?name=bob"));
        if let Some(key) = key {
            builder = builder.access_token(move || async move { Ok(key.to_owned()) });
        }
        let conn = builder.build().unwrap();
        let error = tokio::time::timeout(Duration::from_secs(10), conn.start())
            .await
            .expect("an answer within 10 s")
            .expect_err(what)
            .to_string();
        assert!(error.contains("401"), "{what}: {error}");
    }
    // The classic endpoint takes the same keys.
    let classic = official_with_token(
        &format!("{}/signalr", hub.origin),
        "bob-key-0123456789abcdef".to_owned(),
        hubbub_client::Family::Classic,
    )
    .await;
    classic
        .invoke::<()>("Send", vec!["someone".into(), "classic with a key".into()])
        .await
        .unwrap();
    assert_eq!(
        next_with_text(&mut broadcasts, "classic with a key").await,
        ["bob", "classic with a key"]
    );
    for conn in [classic, alice, bob] {
        conn.stop().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The sum of the series of `/metrics` named `name` whose labels include all of `labels`
/// (`key="value"` each); 0 when there is none.
async fn metric(hub: &Hub, name: &str, labels: &[&str]) -> f64 {
    let scrape = reqwest::get(format!("{}/metrics", hub.origin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    scrape
        .lines()
        .filter(|l| {
            (l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
                && labels.iter().all(|x| l.contains(x))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Samples the hub's RSS every 50 ms until `stop` fires: the largest, in KiB.
fn sample_peak_rss(
    pid: u32,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                let rss = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                    .unwrap_or(0);
                peak = peak.max(rss);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        peak
    })
}

/// Finding 7: outbound queues were bounded in messages only, so 400 cheap `History("", 0)`
/// calls, never read, queued a ~15 MB answer each and took the hub to 5.8 GB. Now each
/// connection's queue is bounded in bytes too (16 MiB by default, `--max-send-queue-bytes`):
/// a client that asks for much and reads nothing is closed as too slow (`queue_full`), on the
/// Core endpoint and the classic one, and the hub's memory stays bounded; the official client
/// connected throughout keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_queues_are_bounded_in_bytes() {
    // A write stall limit of 5 s: a client that takes nothing is closed as too slow by then.
    let hub = Hub::start(&[
        "--history",
        "memory",
        "--max-messages-per-second",
        "100000",
        "--write-stall-timeout",
        "5",
    ]);
    let bob = official(&hub, "bob").await;
    // A full history page: 500 messages of 8 KB, so each `History("", 0)` answers ~4 MB.
    let filler = "x".repeat(8_000);
    for _ in 0..500 {
        bob.invoke::<()>("Send", vec!["bob".into(), filler.as_str().into()])
            .await
            .unwrap();
    }
    still_works(&bob, "history filled").await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = sample_peak_rss(hub.child.id(), stop.clone());
    let before = hub.rss_kib();
    // 150 calls (~600 MB of answers before), none read.
    const CALLS: usize = 150;
    let ws_url = format!("{}/chathub?name=mallory", hub.origin.replace("http", "ws"));
    let mut mallory = Raw::connect(&ws_url).await;
    for k in 0..CALLS {
        mallory
            .send(&format!(
                r#"{{"type":1,"invocationId":"h{k}","target":"History","arguments":["",0]}}"#
            ))
            .await;
    }
    // The classic endpoint too: hub requests over its WebSocket, answers never read.
    let data = "connectionData=%5B%7B%22name%22%3A%22chathub%22%7D%5D&clientProtocol=2.1";
    let negotiated: serde_json::Value = serde_json::from_slice(
        &reqwest::get(format!(
            "{}/signalr/negotiate?{data}&name=trudy",
            hub.origin
        ))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap(),
    )
    .unwrap();
    let mut connect = reqwest::Url::parse(&format!(
        "{}/signalr/connect?transport=webSockets&{data}&name=trudy",
        hub.origin.replace("http", "ws")
    ))
    .unwrap();
    connect.query_pairs_mut().append_pair(
        "connectionToken",
        negotiated["ConnectionToken"].as_str().unwrap(),
    );
    let (mut trudy, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(connect.as_str()),
    )
    .await
    .expect("the classic WebSocket connects within 10 s")
    .expect("the classic WebSocket opens");
    for k in 0..CALLS {
        let request = format!(r#"{{"H":"chathub","M":"History","A":["",0],"I":{k}}}"#);
        if tokio::time::timeout(Duration::from_secs(5), trudy.send(Message::text(request)))
            .await
            .map_or(true, |sent| sent.is_err())
        {
            // The hub stopped reading (its answers wait) or closed the socket: enough.
            break;
        }
    }
    // Both are closed as too slow: the Core one when its queue holds 16 MiB; the classic one
    // when its waiting answers do, or, if the hub stopped reading its requests before (it
    // reads none while an answer waits for the client), when its socket has taken nothing
    // for the write stall limit (5 s here).
    let deadline = Instant::now() + Duration::from_secs(60);
    let closed = |family| {
        let family = format!("family=\"{family}\"");
        let hub = &hub;
        async move {
            metric(
                hub,
                "hubbub_disconnects_total",
                &[&family, "reason=\"queue_full\""],
            )
            .await
        }
    };
    while closed("core").await < 1.0 || closed("classic").await < 1.0 {
        if Instant::now() > deadline {
            let scrape = reqwest::get(format!("{}/metrics", hub.origin))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            panic!(
                "no queue_full disconnect of both families within 60 s:\n{}\n{scrape}",
                hub.logs.lock().unwrap().join("\n"),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    still_works(&bob, "after the unread answers").await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    let grown_mib = peak.saturating_sub(before) / 1024;
    println!("hub RSS peak grew by {grown_mib} MiB under {CALLS} unread History calls per family");
    assert!(
        grown_mib < 256,
        "the hub's memory grew by {grown_mib} MiB for unread answers (bound: 256 MiB)"
    );
    drop(mallory);
    drop(trudy);
    bob.stop().await;
}

/// Finding 7, client-to-server streams: their items waited in an unbounded queue until the
/// method read them. Now a connection's unread items are bounded in bytes (1 MiB by default,
/// `--max-stream-buffer-bytes`): a client that streams into a method not reading (here
/// `Collect`, waiting its turn behind a call that waits for the client) is closed as too
/// slow, saying why; the official client keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_stream_items_waiting_to_be_read_are_bounded() {
    let hub = Hub::start(&["--history", "memory", "--max-messages-per-second", "100000"]);
    let bob = official(&hub, "bob").await;
    let ws_url = format!("{}/chathub?name=mallory", hub.origin.replace("http", "ws"));
    let mut mallory = Raw::connect(&ws_url).await;
    // Holds the connection's turn for 30 s: the hub asks mallory, who never answers.
    mallory
        .send(r#"{"type":1,"invocationId":"ask","target":"AskCaller","arguments":["?"]}"#)
        .await;
    mallory
        .send(
            r#"{"type":1,"invocationId":"c","target":"Collect","arguments":[],"streamIds":["u"]}"#,
        )
        .await;
    // 64 items of 30 KB (~1.9 MB) for a method that cannot read them yet.
    let item = "y".repeat(30_000);
    for _ in 0..64 {
        mallory
            .send(&format!(
                r#"{{"type":2,"invocationId":"u","item":"{item}"}}"#
            ))
            .await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let close = loop {
        let message = tokio::time::timeout_at(deadline, mallory.next())
            .await
            .expect("a Close within 10 s");
        if message["type"] == 7 {
            break message;
        }
    };
    assert_eq!(
        close["error"],
        "Connection closed: client-to-server stream items arrive faster than the hub method reads them.",
        "{close}"
    );
    assert_eq!(
        metric(&hub, "hubbub_disconnects_total", &["reason=\"queue_full\""]).await,
        1.0
    );
    still_works(&bob, "after the stream flood").await;
    bob.stop().await;
}

/// Another loopback address than the official clients' 127.0.0.1: the attacker's, so that
/// budgets per address can tell them apart.
const ATTACKER_IP: &str = "127.0.0.2";

/// Finding 9: negotiations counted as connections, so one client doing nothing but negotiate
/// filled `--max-connections` and new clients got 503 for as long as it went on. Now the
/// connections an address negotiated and has not used have a budget of their own (64 by
/// default, `--max-pending-per-address`; more: 429) and expire with the handshake timeout
/// (15 s); other clients connect throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiations_have_their_own_budget_per_address() {
    let hub = Hub::start(&["--max-connections", "200"]);
    let bob = official(&hub, "bob").await;
    let attacker = reqwest::Client::builder()
        .local_address(ATTACKER_IP.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let negotiate = format!("{}/chathub/negotiate?negotiateVersion=1", hub.origin);
    let before = hub.rss_kib();
    let mut statuses = std::collections::BTreeMap::new();
    let flood = Instant::now();
    for _ in 0..1000 {
        let status =
            tokio::time::timeout(Duration::from_secs(10), attacker.post(&negotiate).send())
                .await
                .expect("a negotiate answered within 10 s")
                .unwrap()
                .status()
                .as_u16();
        *statuses.entry(status).or_insert(0) += 1;
        assert!(
            flood.elapsed() < Duration::from_secs(60),
            "1,000 negotiations take under 60 s"
        );
    }
    println!(
        "hub RSS {} MiB (grew {} MiB) after 1,000 negotiations from one address",
        hub.rss_kib() / 1024,
        hub.rss_kib().saturating_sub(before) / 1024
    );
    assert_eq!(statuses.get(&200), Some(&64), "{statuses:?}");
    assert_eq!(statuses.get(&429), Some(&936), "{statuses:?}");
    assert_eq!(
        metric(&hub, "hubbub_negotiations_refused_total", &[]).await,
        936.0
    );
    // Others still connect, and bob still works.
    let carol = official(&hub, "carol").await;
    still_works(&carol, "a new client during the flood").await;
    still_works(&bob, "after the negotiations").await;
    // The attacker's unused negotiations expire with the handshake timeout (15 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = attacker.post(&negotiate).send().await.unwrap().status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 429);
        assert!(
            Instant::now() < deadline,
            "unused negotiations did not expire within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    carol.stop().await;
    bob.stop().await;
}

/// A TCP connection to `origin` (`http://HOST:PORT`) from `ip`.
async fn tcp_from(ip: &str, origin: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    let addr = origin.trim_start_matches("http://").parse().unwrap();
    tokio::time::timeout(Duration::from_secs(10), socket.connect(addr))
        .await
        .expect("a TCP connection within 10 s")
        .expect("the TCP connection opens")
}

/// Whether the hub closed `socket` (end of stream or reset) within `wait`.
async fn closed_within(socket: &mut tokio::net::TcpStream, wait: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // An answer (a 408 or 400) before the end.
            Ok(Ok(_)) => {}
        }
    }
}

/// Finding 10, slowloris: sockets sending their headers at 1 byte a second were held for ever,
/// and with a 1,024 open-file limit 1,100 idle ones locked everyone out, `/healthz` included.
/// Now (the hub here under a 256 open-file limit) one address holds at most half of the TCP
/// connections the hub takes (the open-file limit less a reserve) and more are closed at once;
/// headers must be complete within `--header-read-timeout`, which also ends idle sockets.
/// `/healthz`, a new official client and the one connected throughout keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_sockets_are_timed_out_and_capped_per_address() {
    use tokio::io::AsyncWriteExt;
    let hub = Hub::start_with_file_limit(256, &["--header-read-timeout", "3"]);
    let bob = official(&hub, "bob").await;
    // 300 idle sockets and 10 that send their headers a byte at a time, all from one address.
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(tcp_from(ATTACKER_IP, &hub.origin).await);
    }
    let mut slow = Vec::new();
    for _ in 0..10 {
        slow.push(tcp_from(ATTACKER_IP, &hub.origin).await);
    }
    println!(
        "hub RSS {} MiB with 310 attacking sockets held or refused",
        hub.rss_kib() / 1024
    );
    let http = reqwest::Client::new();
    let healthz = tokio::time::timeout(
        Duration::from_secs(10),
        http.get(format!("{}/healthz", hub.origin)).send(),
    )
    .await
    .expect("/healthz answers within 10 s while the sockets are held")
    .unwrap();
    assert_eq!(healthz.status(), 200);
    let carol = official(&hub, "carol").await;
    still_works(&carol, "a new client beside the sockets").await;
    still_works(&bob, "beside the sockets").await;
    // The slow ones trickle "GET / HTTP/1.1\r\n…" a byte every 300 ms: closed by the header
    // timeout (3 s), long before their headers end.
    let request =
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let started = Instant::now();
    let mut cut = 0;
    'trickle: for byte in request.iter() {
        for socket in slow.iter_mut() {
            if socket.write_all(&[*byte]).await.is_err() {
                cut += 1;
            }
        }
        if cut > 0 {
            break 'trickle;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for socket in &mut slow {
        assert!(
            closed_within(socket, Duration::from_secs(10)).await,
            "a socket trickling its headers is closed (after {:?})",
            started.elapsed()
        );
    }
    // Every idle one is closed: those over the address's cap at once, the others by the
    // header timeout.
    for (i, socket) in idle.iter_mut().enumerate() {
        assert!(
            closed_within(socket, Duration::from_secs(10)).await,
            "idle socket {i} is closed"
        );
    }
    // Those over the address's cap were counted (the total cap, 192 here, was never reached
    // by the one address; its half, 96, was).
    assert!(
        metric(
            &hub,
            "hubbub_tcp_connections_refused_total",
            &["reason=\"per_address\""]
        )
        .await
            >= 200.0
    );
    assert_eq!(
        metric(
            &hub,
            "hubbub_tcp_connections_refused_total",
            &["reason=\"total\""]
        )
        .await,
        0.0
    );
    still_works(&bob, "after the sockets").await;
    carol.stop().await;
    bob.stop().await;
}

/// Invokes `method` with `args` (JSON) as invocation `id` over the raw socket and returns its
/// Completion.
async fn raw_call(
    raw: &mut Raw,
    id: &str,
    method: &str,
    args: serde_json::Value,
) -> serde_json::Value {
    let call =
        serde_json::json!({"type": 1, "invocationId": id, "target": method, "arguments": args});
    raw.send(&call.to_string()).await;
    raw.completion(id).await
}

/// Finding 8: direct messages to made-up users created a history per name, never freed (+400
/// MB per round in memory; with a history file, a file growing without bound). Now one sender
/// may start at most 30 histories a minute (`--max-new-histories-per-minute`; rooms, scopes,
/// other users' inboxes), and an inbox whose user never connected goes after
/// `--unclaimed-inbox-ttl` without messages; an inbox of a user who connected once stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_for_made_up_users_are_bounded_and_expire() {
    let dir = std::env::temp_dir().join(format!("hubbub-hardening-inboxes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("history.sqlite3");
    let hub = Hub::start(&[
        "--history",
        file.to_str().unwrap(),
        "--unclaimed-inbox-ttl",
        "2",
        "--max-messages-per-second",
        "100000",
    ]);
    // dave has connected once: his inbox is his.
    official(&hub, "dave").await.stop().await;
    let bob = official(&hub, "bob").await;
    let ws_url = format!("{}/chathub?name=mallory", hub.origin.replace("http", "ws"));
    let mut mallory = Raw::connect(&ws_url).await;
    let done = raw_call(
        &mut mallory,
        "d",
        "SendToUser",
        serde_json::json!(["dave", "for dave"]),
    )
    .await;
    assert!(done.get("error").is_none(), "{done}");
    let before = hub.rss_kib();
    let mut refused = 0;
    for i in 0..200 {
        let done = raw_call(
            &mut mallory,
            &format!("g{i}"),
            "SendToUser",
            serde_json::json!([format!("ghost-{i}"), "x".repeat(1000)]),
        )
        .await;
        match done.get("error") {
            None => assert!(i < 29, "ghost-{i} accepted: {done}"),
            Some(error) => {
                assert!(
                    error.as_str().unwrap().starts_with(
                        "Too many new conversations: a sender may start at most 30 a minute"
                    ),
                    "{done}"
                );
                refused += 1;
            }
        }
    }
    println!(
        "hub RSS grew by {} MiB over 200 direct messages of 1 KB to made-up users",
        hub.rss_kib().saturating_sub(before) / 1024
    );
    assert_eq!(refused, 171, "30 new histories a minute for mallory");
    // Bob's budget is his own.
    bob.invoke::<()>("SendToUser", vec!["erin".into(), "for erin".into()])
        .await
        .expect("another sender starts a conversation");
    still_works(&bob, "after the made-up users").await;

    // After the TTL, the made-up users' inboxes are gone; dave's stays.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The sweep runs beside the connect (a connect does not wait for it), before ghost-0's
    // inbox is claimed: empty once it has run (10 s at most).
    let ghost = official(&hub, "ghost-0").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let inbox: serde_json::Value = ghost
            .invoke("Inbox", vec!["".into(), num(0)])
            .await
            .unwrap();
        if inbox["messages"] == serde_json::json!([]) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ghost-0's unclaimed inbox did not expire: {inbox}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ghost.stop().await;
    let dave = official(&hub, "dave").await;
    let inbox: serde_json::Value = dave.invoke("Inbox", vec!["".into(), num(0)]).await.unwrap();
    assert_eq!(names_of(&inbox, "for dave"), ["mallory"], "{inbox}");
    dave.stop().await;
    // What the file holds now: dave's message, mallory's 30 copies of what it sent (its own
    // inbox), bob's copy; erin never connected, so her inbox went too.
    assert_eq!(
        metric(&hub, "hubbub_history_messages", &[]).await,
        32.0,
        "messages kept after the expiry"
    );
    bob.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
