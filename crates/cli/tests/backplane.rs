//! Scale-out: several `hubbub hub` nodes on loopback sharing a real backplane, with Hubbub's
//! client and the official JavaScript client spread over them. Every scope, presence and message
//! ids across nodes; a node killed with SIGKILL; the backplane's server stopped and restarted.
//!
//! One scenario list, run against both backplanes: each scenario is an `async fn` taking the
//! backplane's [`Kind`], and `both!` makes a `redis::NAME` and a `postgres::NAME` test of it, so
//! Redis (a `redis-server`) and PostgreSQL (a cluster of Debian's PostgreSQL in a private data
//! directory, the postmaster a child of the test) cannot drift apart.

// Children are killed and reaped on drop.
#![allow(clippy::zombie_processes)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hubbub_client::store::{ConversationKind, Store};
use hubbub_client::{Arg, Chat, Delays, Headers, HubConnection, HubConnectionBuilder};

mod support;
use support::hubbub;
#[path = "support/fleet.rs"]
mod fleet;
use fleet::{Backend, Kind};
/// Node liveness for these tests: a killed node leaves presence within TTL + TTL/3.
const NODE_TTL: &str = "1.5";

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Each scenario as two tests, `redis::NAME` and `postgres::NAME`.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Kind::Redis).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Kind::Postgres).await
                }
            )*
        }
    };
}

both!(
    three_nodes_share_broadcast_rooms_direct_messages_presence_and_ids,
    the_official_client_on_one_node_reaches_the_others_over_every_transport,
    a_killed_node_clients_fail_over_losing_nothing_and_it_leaves_presence,
    backplane_restart_nodes_serve_locally_then_resubscribe_and_resume,
    a_chat_through_a_backplane_restart_loses_nothing_and_doubles_nothing,
    a_node_late_back_after_a_backplane_restart_is_not_taken_for_lost,
    large_messages_cross_nodes,
    a_crashed_backplane_comes_back_empty_and_nodes_rewrite_their_presence,
    a_scope_history_is_trimmed_to_its_bound,
    another_senders_message_id_is_refused_across_the_fleet,
    a_message_the_backplane_cannot_store_is_refused_for_good,
    a_node_stalled_past_its_ttl_comes_back_with_its_users,
    an_unawaited_burst_of_small_and_large_messages_keeps_its_order,
    a_hung_backplane_server_holds_up_no_local_connect_or_delivery,
    histories_for_made_up_users_are_bounded_and_expire_across_the_fleet,
);

/// One `hubbub hub` node of a fleet, with its log lines kept.
struct Node {
    child: Child,
    url: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Node {
    async fn start(backend: &Backend) -> Self {
        Self::start_with(backend, &[]).await
    }

    /// A node started with `extra` arguments after the usual ones, once it has joined.
    async fn start_with(backend: &Backend, extra: &[&str]) -> Self {
        let mut args = backend.hub_args(NODE_TTL);
        args.extend(extra.iter().map(|a| a.to_string()));
        let node = Self::spawn(&args).await;
        node.wait_log(&backend.connected_line(), Duration::from_secs(20))
            .await;
        node
    }

    /// A node with these backplane arguments, once it listens (joined or not).
    async fn spawn(backplane: &[String]) -> Self {
        let port = fleet::free_port();
        // Through `setpriv --pdeathsig KILL`: a test process killed outright takes its nodes
        // along (the same `XDG_DATA_HOME` as `hubbub()` gives).
        let data = hubbub()
            .get_envs()
            .find_map(|(k, v)| (k == "XDG_DATA_HOME").then(|| v.map(ToOwned::to_owned)))
            .flatten()
            .unwrap();
        let mut child = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--", support::BIN])
            .env("XDG_DATA_HOME", data)
            .args(["hub", "--listen", &format!("127.0.0.1:{port}")])
            .args(backplane)
            .args(["--max-messages-per-second", "100000"])
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
        let node = Self {
            child,
            url: format!("http://127.0.0.1:{port}/chathub"),
            logs,
        };
        node.wait_log("listening on", Duration::from_secs(20)).await;
        node
    }

    fn logged(&self, needle: &str) -> usize {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    async fn wait_log(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.logged(needle) == 0 {
            assert!(
                Instant::now() < deadline,
                "the node did not log {needle:?}; it logged:\n{}",
                self.logs.lock().unwrap().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// The value of the first series of `/metrics` named `name` on `node`.
async fn metric(node: &Node, name: &str) -> f64 {
    let url = format!("{}/metrics", node.url.trim_end_matches("/chathub"));
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .and_then(|l| l.rsplit_once(' '))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// `fut`, or a panic naming `what` after `limit`.
async fn within<T>(limit: Duration, what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {limit:?}"))
}

/// A chat client (Hubbub's `Chat`, its store in `dir`) of `name` on `node`, reconnecting every
/// 100 ms.
async fn open_chat(node: &Node, dir: &std::path::Path, name: &str) -> Chat {
    let conn = HubConnectionBuilder::new(format!("{}?name={name}", node.url))
        .retry_policy(Delays(vec![Duration::from_millis(100); 100]))
        .build()
        .unwrap();
    let store = within(
        Duration::from_secs(10),
        "opening the store",
        Store::open(dir.join(format!("{name}.sqlite3"))),
    )
    .await
    .unwrap();
    let chat = within(
        Duration::from_secs(10),
        "Chat::open",
        Chat::open(conn.clone(), store, "http://fleet/chathub", name),
    )
    .await
    .unwrap();
    within(Duration::from_secs(10), "connecting", conn.start())
        .await
        .unwrap();
    chat
}

/// Probes `ok` every 25 ms until it holds; panics naming `what` after `limit`, including
/// when a probe itself does not finish in time.
async fn eventually(limit: Duration, what: &str, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let probe = tokio::time::timeout_at(deadline, ok()).await;
        match probe {
            Ok(true) => return,
            Ok(false) => {}
            Err(_) => panic!("timed out waiting for {what} (a probe had no answer)"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

type Inbox = Arc<Mutex<Vec<(String, Vec<String>)>>>;

/// A plain client: everything it receives, as (method, string arguments).
struct Client {
    conn: HubConnection,
    inbox: Inbox,
}

impl Client {
    async fn connect(node: &Node, name: &str) -> Self {
        let conn = HubConnectionBuilder::new(format!("{}?name={name}", node.url))
            .build()
            .unwrap();
        let inbox: Inbox = Arc::default();
        let sink = inbox.clone();
        conn.on_any(move |method, args, _headers| {
            let args = args
                .iter()
                .map(|a| {
                    a.decode::<serde_json::Value>()
                        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                        .unwrap_or_default()
                })
                .collect();
            sink.lock().unwrap().push((method.to_owned(), args));
        });
        within(Duration::from_secs(10), "connecting", conn.start())
            .await
            .unwrap();
        Self { conn, inbox }
    }

    fn count(&self, method: &str, args: &[&str]) -> usize {
        self.inbox
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, a)| m == method && a.iter().map(String::as_str).eq(args.iter().copied()))
            .count()
    }

    /// How many `method` invocations had `first` as their first argument.
    fn count_first(&self, method: &str, first: &str) -> usize {
        self.inbox
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, a)| m == method && a.first().is_some_and(|a| a == first))
            .count()
    }

    async fn got(&self, method: &str, args: &[&str]) {
        eventually(
            Duration::from_secs(5),
            &format!("{method}{args:?}"),
            async || self.count(method, args) > 0,
        )
        .await;
    }

    async fn invoke<T: serde::de::DeserializeOwned>(&self, method: &str, args: &[&str]) -> T {
        let args = args.iter().map(|a| Arg::from(*a)).collect();
        within(
            Duration::from_secs(10),
            &format!("invoking {method}"),
            self.conn.invoke(method, args),
        )
        .await
        .unwrap()
    }

    /// `{user: connections}` and the total, as `GetOnline` reports them.
    async fn online(&self) -> (Vec<(String, u64)>, u64) {
        let v: serde_json::Value = self.invoke("GetOnline", &[]).await;
        let users = v["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| {
                (
                    u["name"].as_str().unwrap().to_owned(),
                    u["connections"].as_u64().unwrap(),
                )
            })
            .collect();
        (users, v["connections"].as_u64().unwrap())
    }

    async fn online_is(&self, expected: &[(&str, u64)]) {
        let expected: Vec<(String, u64)> = expected
            .iter()
            .map(|(u, n)| ((*u).to_owned(), *n))
            .collect();
        let total: u64 = expected.iter().map(|(_, n)| n).sum();
        eventually(
            Duration::from_secs(8),
            &format!("presence {expected:?}"),
            async || self.online().await == (expected.clone(), total),
        )
        .await;
    }
}

/// The official JavaScript client (`tests/interop/node/backplane-client.mjs`).
struct Js {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<serde_json::Value>>>,
    next: u32,
}

impl Js {
    async fn start(node: &Node, name: &str) -> Self {
        Self::start_over(node, name, "ws", "json").await
    }

    /// Over one transport (`ws`, `sse` or `lp`) with one protocol (`json` or `msgpack`).
    async fn start_over(node: &Node, name: &str, transport: &str, protocol: &str) -> Self {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/interop/node");
        assert!(
            std::path::Path::new(dir)
                .join("node_modules/@microsoft/signalr")
                .exists(),
            "run `npm ci` in tests/interop/node (scripts/test.sh does)"
        );
        let mut child = Command::new("node")
            .arg("backplane-client.mjs")
            .arg(format!("{}?name={name}", node.url))
            .args([protocol, transport])
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_str(&line).unwrap());
            }
        });
        let js = Self {
            child,
            stdin: Some(stdin),
            lines,
            next: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !js
            .lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l["event"] == "connected")
        {
            assert!(Instant::now() < deadline, "the JS client did not connect");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        js
    }

    async fn invoke(&mut self, method: &str, args: serde_json::Value) -> serde_json::Value {
        self.next += 1;
        let id = self.next;
        let cmd = serde_json::json!({ "id": id, "invoke": method, "args": args });
        writeln!(self.stdin.as_mut().unwrap(), "{cmd}").unwrap();
        let mut reply = None;
        eventually(
            Duration::from_secs(10),
            "the JS client's reply",
            async || {
                reply = self
                    .lines
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|l| l["reply"] == id)
                    .cloned();
                reply.is_some()
            },
        )
        .await;
        let reply = reply.unwrap();
        assert_eq!(reply["ok"], true, "{reply}");
        reply["result"].clone()
    }

    fn count(&self, method: &str, args: serde_json::Value) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l["method"] == method && l["args"] == args)
            .count()
    }

    async fn got(&self, method: &str, args: serde_json::Value) {
        eventually(
            Duration::from_secs(5),
            &format!("JS {method}{args}"),
            async || self.count(method, args.clone()) > 0,
        )
        .await;
    }
}

impl Js {
    /// Ends the client's input: it stops its connection (a goodbye on every transport) and
    /// exits; waits 10 s at most.
    async fn stop(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "the JS client did not stop within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Js {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

async fn three_nodes_share_broadcast_rooms_direct_messages_presence_and_ids(kind: Kind) {
    let backend = Backend::start(kind);
    let nodes = [
        Node::start(&backend).await,
        Node::start(&backend).await,
        Node::start(&backend).await,
    ];
    // ann has a connection on A and one on B; bob is on C; the official client (jo) on B.
    let ann_a = Client::connect(&nodes[0], "ann").await;
    let ann_b = Client::connect(&nodes[1], "ann").await;
    let bob_c = Client::connect(&nodes[2], "bob").await;
    let mut jo_b = Js::start(&nodes[1], "jo").await;

    // Presence is the fleet's, seen alike from every node; arrivals are announced everywhere.
    let everyone = [("ann", 2), ("bob", 1), ("jo", 1)];
    for client in [&ann_a, &ann_b, &bob_c] {
        client.online_is(&everyone).await;
    }
    bob_c.got("userJoined", &["jo", "4"]).await;

    // Broadcast from C reaches A and B (both protocols' encodings travel: JSON here).
    let _: () = bob_c.invoke("Send", &["bob", "hello all"]).await;
    for client in [&ann_a, &ann_b, &bob_c] {
        client.got("broadcastMessage", &["bob", "hello all"]).await;
    }
    jo_b.got("broadcastMessage", serde_json::json!(["bob", "hello all"]))
        .await;
    // ... and from the official client on B to C.
    jo_b.invoke("Send", serde_json::json!(["jo", "from js"]))
        .await;
    bob_c.got("broadcastMessage", &["jo", "from js"]).await;

    // Rooms: membership counts every node; only members hear the room.
    assert_eq!(
        jo_b.invoke("JoinRoom", serde_json::json!(["lobby"])).await,
        1
    );
    let mut members = 0;
    eventually(Duration::from_secs(5), "a room count of 2", async || {
        members = ann_a.invoke::<u64>("JoinRoom", &["lobby"]).await;
        members == 2
    })
    .await;
    let _: () = ann_a
        .invoke("SendToRoom", &["lobby", "ann", "in lobby"])
        .await;
    jo_b.got(
        "roomMessage",
        serde_json::json!(["lobby", "ann", "in lobby"]),
    )
    .await;
    ann_a
        .got("roomMessage", &["lobby", "ann", "in lobby"])
        .await;

    // Direct messages reach every connection of the user, on whichever node.
    let _: () = bob_c.invoke("SendToUser", &["ann", "psst"]).await;
    ann_a.got("directMessage", &["bob", "psst"]).await;
    ann_b.got("directMessage", &["bob", "psst"]).await;
    bob_c.got("directMessage", &["bob", "psst"]).await;

    // One id, sent by the same user through two nodes: delivered once.
    let id = Headers::from([("hubbub-msg-id".to_owned(), "dup-1".to_owned())]);
    for client in [&ann_a, &ann_b] {
        let args = vec![Arg::from("ann"), Arg::from("once")];
        let () = client
            .conn
            .invoke_with_headers("Send", args, id.clone())
            .await
            .unwrap();
    }
    let _: () = ann_a
        .invoke("SendToRoom", &["lobby", "ann", "dup done"])
        .await;
    // A marker after everything above, from the node that sent the room message: whoever has
    // it has everything before it from that node.
    let _: () = ann_a.invoke("Send", &["ann", "marker"]).await;
    for client in [&ann_a, &ann_b, &bob_c] {
        client.got("broadcastMessage", &["ann", "marker"]).await;
        assert_eq!(client.count("broadcastMessage", &["ann", "once"]), 1);
    }
    jo_b.got("broadcastMessage", serde_json::json!(["ann", "marker"]))
        .await;
    assert_eq!(
        jo_b.count("broadcastMessage", serde_json::json!(["ann", "once"])),
        1
    );
    assert_eq!(
        bob_c.count("roomMessage", &["lobby", "ann", "in lobby"]),
        0,
        "not a member"
    );
    assert_eq!(
        ann_b.count("roomMessage", &["lobby", "ann", "in lobby"]),
        0,
        "not a member"
    );
    assert_eq!(
        jo_b.count("directMessage", serde_json::json!(["bob", "psst"])),
        0
    );

    // A connection leaving is seen everywhere.
    ann_b.conn.stop().await;
    bob_c.got("userLeft", &["ann", "3"]).await;
    bob_c.online_is(&[("ann", 1), ("bob", 1), ("jo", 1)]).await;
    jo_b.invoke("LeaveRoom", serde_json::json!(["lobby"])).await;
    assert_eq!(ann_a.invoke::<u64>("JoinRoom", &["lobby"]).await, 1);

    // A direct message to a user nowhere online is kept in the fleet's inbox: sent on node C,
    // found by the user on node A, numbered in their inbox.
    let _: () = bob_c.invoke("SendToUser", &["kim", "for later"]).await;
    let inbox_of = async |client: &Client| -> serde_json::Value {
        let args = vec![Arg::from(""), Arg::from_value(0u64.into())];
        within(
            Duration::from_secs(10),
            "Inbox",
            client.conn.invoke("Inbox", args),
        )
        .await
        .unwrap()
    };
    let kim = Client::connect(&nodes[0], "kim").await;
    let inbox = inbox_of(&kim).await;
    let messages = inbox["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{inbox}");
    assert_eq!(messages[0]["name"], "bob");
    assert_eq!(messages[0]["message"], "for later");
    assert_eq!(messages[0]["to"], "kim");
    assert_eq!(messages[0]["seq"], 1);
    // The sender's inbox has its copy, read from another node.
    let bob_b = Client::connect(&nodes[1], "bob").await;
    let own = inbox_of(&bob_b).await;
    assert!(
        own["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["message"] == "for later" && m["to"] == "kim"),
        "{own}"
    );
}

async fn a_killed_node_clients_fail_over_losing_nothing_and_it_leaves_presence(kind: Kind) {
    let dir =
        std::env::temp_dir().join(format!("hubbub-backplane-{kind:?}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let backend = Backend::start(kind);
    let mut nodes = [
        Node::start(&backend).await,
        Node::start(&backend).await,
        Node::start(&backend).await,
    ];
    let dan = Client::connect(&nodes[2], "dan").await;
    let eve = Client::connect(&nodes[0], "eve").await;
    // cat chats through the outbox, on node A, knowing the other nodes' URLs.
    let conn = HubConnectionBuilder::new(format!("{}?name=cat", nodes[0].url))
        .fallback_urls([
            format!("{}?name=cat", nodes[1].url),
            format!("{}?name=cat", nodes[2].url),
        ])
        .retry_policy(Delays(vec![Duration::from_millis(100); 100]))
        .build()
        .unwrap();
    let store = Store::open(dir.join("cat.sqlite3")).await.unwrap();
    let cat = Chat::open(conn.clone(), store, "http://fleet/chathub", "cat")
        .await
        .unwrap();
    conn.start().await.unwrap();
    dan.online_is(&[("cat", 1), ("dan", 1), ("eve", 1)]).await;
    cat.send("before").await.unwrap();
    dan.got("broadcastMessage", &["cat", "before"]).await;
    assert_eq!(eve.count("broadcastMessage", &["cat", "before"]), 1);

    // Node A dies without a word. cat types on; dan talks meanwhile on C.
    kill(&mut nodes[0].child);
    cat.send("typed meanwhile").await.unwrap();
    let _: () = dan.invoke("Send", &["dan", "while cat was away"]).await;

    // cat lands on another node; its outbox delivers, and its history catches up.
    dan.got("broadcastMessage", &["cat", "typed meanwhile"])
        .await;
    assert!(
        conn.url() == format!("{}?name=cat", nodes[1].url)
            || conn.url() == format!("{}?name=cat", nodes[2].url),
        "cat moved to a live node: {}",
        conn.url()
    );
    let mut bodies = Vec::new();
    eventually(
        Duration::from_secs(10),
        "cat's history complete",
        async || {
            let store = cat.store();
            let hub = store.hubs().await.unwrap()[0].id;
            let conv = store
                .conversation(hub, ConversationKind::Broadcast)
                .await
                .unwrap();
            let rows = store.newest(conv, 100).await.unwrap();
            bodies = rows.into_iter().map(|m| m.body).collect();
            bodies.sort();
            cat.pending().await.unwrap() == 0 && bodies.len() >= 3
        },
    )
    .await;
    assert_eq!(
        bodies,
        ["before", "typed meanwhile", "while cat was away"],
        "each exactly once"
    );

    // eve's node is gone: once its liveness lapses (node TTL 1.5 s) the survivors forget it,
    // deleting what it left in the backplane, presence forgets her, and the surviving nodes
    // announce that she left (she had no chance to say goodbye).
    eventually(
        Duration::from_secs(8),
        "the killed node gone from the backplane",
        async || backend.node_count() == 2,
    )
    .await;
    dan.online_is(&[("cat", 1), ("dan", 1)]).await;
    eventually(
        Duration::from_secs(5),
        "userLeft(eve) on node C",
        async || dan.count_first("userLeft", "eve") > 0,
    )
    .await;
    // cat's connection on A was lost too: announced like any departure, with the count after.
    dan.got("userLeft", &["cat", "2"]).await;
    let _: () = dan.invoke("Send", &["dan", "marker"]).await;
    dan.got("broadcastMessage", &["dan", "marker"]).await;
    assert_eq!(
        dan.count("broadcastMessage", &["cat", "typed meanwhile"]),
        1,
        "exactly once"
    );
    // Each client hears it once: only its own node tells it.
    assert_eq!(dan.count_first("userLeft", "eve"), 1);
    assert_eq!(dan.count("userLeft", &["eve", "2"]), 1);
    drop(cat);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The backplane's server goes away (Redis killed, losing everything; PostgreSQL stopped with
/// its fast shutdown, SIGINT) and comes back on the same port.
async fn backplane_restart_nodes_serve_locally_then_resubscribe_and_resume(kind: Kind) {
    let dir = std::env::temp_dir().join(format!(
        "hubbub-backplane-r-{kind:?}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut backend = Backend::start(kind);
    let nodes = [Node::start(&backend).await, Node::start(&backend).await];
    let x = Client::connect(&nodes[0], "x").await;
    let y = Client::connect(&nodes[0], "y").await;
    let z = Client::connect(&nodes[1], "z").await;
    let conn = HubConnectionBuilder::new(format!("{}?name=w", nodes[0].url))
        .retry_policy(Delays(vec![Duration::from_millis(100); 100]))
        .build()
        .unwrap();
    let store = Store::open(dir.join("w.sqlite3")).await.unwrap();
    let w = Chat::open(conn.clone(), store, "http://fleet/chathub", "w")
        .await
        .unwrap();
    conn.start().await.unwrap();
    let _: u64 = x.invoke("JoinRoom", &["r"]).await;
    let _: u64 = z.invoke("JoinRoom", &["r"]).await;
    z.online_is(&[("w", 1), ("x", 1), ("y", 1), ("z", 1)]).await;
    // /metrics: the backplane is connected and has published (the joins above).
    assert_eq!(metric(&nodes[0], "hubbub_backplane_connected").await, 1.0);
    assert!(metric(&nodes[0], "hubbub_backplane_publish_duration_seconds_count").await > 0.0);

    // The backplane dies. Both nodes say so and go on serving their own connections.
    backend.stop();
    for node in &nodes {
        node.wait_log(&backend.unavailable_line(), Duration::from_secs(5))
            .await;
        assert_eq!(metric(node, "hubbub_backplane_connected").await, 0.0);
    }
    // A broadcast is recorded in the fleet's history before it is delivered: refused for now,
    // so a client can send it again; Hubbub's chat layer keeps it in its outbox and does.
    let refused = x
        .conn
        .invoke::<()>("Send", vec![Arg::from("x"), Arg::from("outage broadcast")])
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("Unavailable:"), "{refused}");
    // So are room and direct messages: kept in the room's history and in both users' inboxes
    // before they are delivered.
    let refused = x
        .conn
        .invoke::<()>(
            "SendToRoom",
            vec![Arg::from("r"), Arg::from("x"), Arg::from("outage room")],
        )
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("Unavailable:"), "{refused}");
    let refused = x
        .conn
        .invoke::<()>(
            "SendToUser",
            vec![Arg::from("y"), Arg::from("outage direct")],
        )
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("Unavailable:"), "{refused}");
    assert_eq!(y.count("directMessage", &["x", "outage direct"]), 0);
    w.send("typed in outage").await.unwrap();
    assert_eq!(w.pending().await.unwrap(), 1);

    // The backplane is back on the same port (Redis empty): nodes resubscribe and restore
    // presence.
    backend.launch();
    for node in &nodes {
        node.wait_log(&backend.back_line(), Duration::from_secs(10))
            .await;
        assert_eq!(metric(node, "hubbub_backplane_connected").await, 1.0);
    }
    z.got("broadcastMessage", &["w", "typed in outage"]).await;
    eventually(Duration::from_secs(5), "w's outbox empty", async || {
        w.pending().await.unwrap() == 0
    })
    .await;
    let _: () = x.invoke("SendToRoom", &["r", "x", "after restart"]).await;
    z.got("roomMessage", &["r", "x", "after restart"]).await;
    let _: () = z.invoke("SendToUser", &["x", "cross again"]).await;
    x.got("directMessage", &["z", "cross again"]).await;
    z.online_is(&[("w", 1), ("x", 1), ("y", 1), ("z", 1)]).await;
    x.online_is(&[("w", 1), ("x", 1), ("y", 1), ("z", 1)]).await;
    // Nobody left: a backplane restart (every node's heartbeat stopped with it) announces no one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (who, client) in [("x", &x), ("y", &y), ("z", &z)] {
        let left: Vec<_> = client
            .inbox
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, _)| m == "userLeft")
            .cloned()
            .collect();
        assert!(left.is_empty(), "{who} heard {left:?}");
    }
    // What was refused during the outage was delivered nowhere.
    assert_eq!(z.count("roomMessage", &["r", "x", "outage room"]), 0);
    assert_eq!(x.count("roomMessage", &["r", "x", "outage room"]), 0);
    assert_eq!(z.count("broadcastMessage", &["w", "typed in outage"]), 1);
    assert_eq!(y.count("broadcastMessage", &["w", "typed in outage"]), 1);
    drop(w);
    let _ = std::fs::remove_dir_all(&dir);
}

/// After a backplane restart each node comes back after its own reconnect delay. One that comes
/// back a little later than the others is not a crashed one: nobody is announced as left.
async fn a_node_late_back_after_a_backplane_restart_is_not_taken_for_lost(kind: Kind) {
    let mut backend = Backend::start(kind);
    let nodes = [Node::start(&backend).await, Node::start(&backend).await];
    let x = Client::connect(&nodes[0], "x").await;
    let z = Client::connect(&nodes[1], "z").await;
    x.online_is(&[("x", 1), ("z", 1)]).await;
    backend.stop();
    for node in &nodes {
        node.wait_log(&backend.unavailable_line(), Duration::from_secs(5))
            .await;
    }
    // Node B is held back (SIGSTOP) while A rejoins and renews its heartbeat a few times.
    signal(&nodes[1].child, "STOP");
    backend.launch();
    nodes[0]
        .wait_log(&backend.back_line(), Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    signal(&nodes[1].child, "CONT");
    nodes[1]
        .wait_log(&backend.back_line(), Duration::from_secs(10))
        .await;
    x.online_is(&[("x", 1), ("z", 1)]).await;
    z.online_is(&[("x", 1), ("z", 1)]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        nodes[0].logged("connections of a lost backplane node are gone"),
        0
    );
    assert_eq!(x.count_first("userLeft", "z"), 0, "x heard z leave");
    assert_eq!(z.count_first("userLeft", "x"), 0, "z heard x leave");
}

/// The official JavaScript client on node A, over each transport in turn (and with MessagePack
/// where the transport carries binary), reaches Hubbub's clients on nodes B and C (broadcast,
/// room, direct message) and hears them back.
async fn the_official_client_on_one_node_reaches_the_others_over_every_transport(kind: Kind) {
    const LINKS: [(&str, &str); 5] = [
        ("ws", "json"),
        ("sse", "json"),
        ("lp", "json"),
        ("ws", "msgpack"),
        ("lp", "msgpack"),
    ];
    let backend = Backend::start(kind);
    let nodes = [
        Node::start(&backend).await,
        Node::start(&backend).await,
        Node::start(&backend).await,
    ];
    let bea_b = Client::connect(&nodes[1], "bea").await;
    let cy_c = Client::connect(&nodes[2], "cy").await;
    let _: u64 = cy_c.invoke("JoinRoom", &["den"]).await;
    for (transport, protocol) in LINKS {
        let name = format!("js-{transport}-{protocol}");
        let mut js = Js::start_over(&nodes[0], &name, transport, protocol).await;
        bea_b
            .online_is(&[("bea", 1), ("cy", 1), (name.as_str(), 1)])
            .await;
        let text = format!("over {transport} {protocol}");
        js.invoke("Send", serde_json::json!([name, text])).await;
        bea_b.got("broadcastMessage", &[&name, &text]).await;
        cy_c.got("broadcastMessage", &[&name, &text]).await;
        js.invoke("JoinRoom", serde_json::json!(["den"])).await;
        js.invoke("SendToRoom", serde_json::json!(["den", name, text]))
            .await;
        cy_c.got("roomMessage", &["den", &name, &text]).await;
        js.invoke("SendToUser", serde_json::json!(["bea", text]))
            .await;
        bea_b.got("directMessage", &[&name, &text]).await;
        // And back: from B and C to the client on A.
        let back = format!("to {transport} {protocol}");
        let _: () = bea_b.invoke("SendToUser", &[&name, &back]).await;
        js.got("directMessage", serde_json::json!(["bea", back]))
            .await;
        let _: () = cy_c.invoke("SendToRoom", &["den", "cy", &back]).await;
        js.got("roomMessage", serde_json::json!(["den", "cy", back]))
            .await;
        let _: () = cy_c.invoke("Send", &["cy", &back]).await;
        js.got("broadcastMessage", serde_json::json!(["cy", back]))
            .await;
        assert_eq!(
            bea_b.count("roomMessage", &["den", &name, &text]),
            0,
            "not a member"
        );
        js.stop().await;
        bea_b.online_is(&[("bea", 1), ("cy", 1)]).await;
    }
    // Everything once.
    for (transport, protocol) in LINKS {
        let name = format!("js-{transport}-{protocol}");
        let text = format!("over {transport} {protocol}");
        assert_eq!(bea_b.count("broadcastMessage", &[&name, &text]), 1);
        assert_eq!(cy_c.count("broadcastMessage", &[&name, &text]), 1);
        assert_eq!(bea_b.count("directMessage", &[&name, &text]), 1);
    }
}

/// A chat (`ink`, Hubbub's chat layer with its outbox) sends a stream of messages through node
/// A while the backplane's server is stopped and started again; `pat`, a chat on node B, ends
/// with each message exactly once in its store (what it missed live it catches up from the
/// fleet's history, as numbers show the gap), the outbox empties, a plain client on node B never
/// gets one twice, and the fleet's history holds each once.
///
/// A restarted Redis is empty (no persistence here): a message recorded in the instant before
/// it went is gone with it, so on Redis only "nothing doubled" is asserted; PostgreSQL keeps
/// what it committed, so there nothing acknowledged may be missing either.
async fn a_chat_through_a_backplane_restart_loses_nothing_and_doubles_nothing(kind: Kind) {
    let dir = std::env::temp_dir().join(format!(
        "hubbub-backplane-s-{kind:?}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut backend = Backend::start(kind);
    let nodes = [Node::start(&backend).await, Node::start(&backend).await];
    let watcher = Client::connect(&nodes[1], "watcher").await;
    let chat = async |node: &Node, name: &str| open_chat(node, &dir, name).await;
    let ink = chat(&nodes[0], "ink").await;
    let pat = chat(&nodes[1], "pat").await;
    watcher
        .online_is(&[("ink", 1), ("pat", 1), ("watcher", 1)])
        .await;
    const COUNT: usize = 40;
    let texts: Vec<String> = (0..COUNT).map(|i| format!("m{i:02}")).collect();
    for (i, text) in texts.iter().enumerate() {
        ink.send(text).await.unwrap();
        if i == 10 {
            backend.stop();
        }
        if i == 25 {
            backend.launch();
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    for node in &nodes {
        node.wait_log(&backend.back_line(), Duration::from_secs(10))
            .await;
    }
    eventually(Duration::from_secs(20), "ink's outbox empty", async || {
        ink.pending().await.unwrap() == 0
    })
    .await;
    // A last message after the stream, once everything before it is recorded: pat gets it
    // live, and its number shows pat any gap before it.
    ink.send("last").await.unwrap();
    let bodies_of = async |chat: &Chat| -> Vec<String> {
        let store = chat.store();
        let hub = store.hubs().await.unwrap()[0].id;
        let conv = store
            .conversation(hub, ConversationKind::Broadcast)
            .await
            .unwrap();
        let mut bodies: Vec<String> = store
            .newest(conv, 200)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.body)
            .collect();
        bodies.sort();
        bodies
    };
    let mut bodies = Vec::new();
    eventually(
        Duration::from_secs(20),
        "pat has the last message",
        async || {
            bodies = bodies_of(&pat).await;
            bodies.iter().any(|b| b == "last")
        },
    )
    .await;
    let mut expected: Vec<String> = texts.clone();
    expected.push("last".to_owned());
    expected.sort();
    if kind == Kind::Postgres {
        eventually(
            Duration::from_secs(10),
            "pat's store complete",
            async || {
                bodies = bodies_of(&pat).await;
                bodies == expected
            },
        )
        .await;
    }
    let mut unique = bodies.clone();
    unique.dedup();
    assert_eq!(bodies, unique, "nothing doubled in pat's store");
    for text in &texts {
        assert!(
            watcher.count("broadcastMessage", &["ink", text]) <= 1,
            "{text} reached the plain client twice"
        );
    }
    // The fleet's history, read by a newcomer on node B: each message once (PostgreSQL keeps
    // the ones before the restart too; a restarted Redis is empty: a new epoch).
    let newcomer = Client::connect(&nodes[1], "newcomer").await;
    let args = vec![Arg::from(""), Arg::from_value(0u64.into())];
    let history: serde_json::Value = within(
        Duration::from_secs(10),
        "History",
        newcomer.conn.invoke("History", args),
    )
    .await
    .unwrap();
    let mut recorded: Vec<String> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"] == "ink")
        .map(|m| m["message"].as_str().unwrap().to_owned())
        .collect();
    recorded.sort();
    let mut unique = recorded.clone();
    unique.dedup();
    assert_eq!(recorded, unique, "nothing doubled in the history");
    if kind == Kind::Postgres {
        assert_eq!(recorded, expected, "every message in the history");
    }
    drop((ink, pat));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A message too large for one notification of PostgreSQL (8,000 bytes) crosses nodes whole,
/// in order with the small ones around it.
async fn large_messages_cross_nodes(kind: Kind) {
    let backend = Backend::start(kind);
    let nodes = [Node::start(&backend).await, Node::start(&backend).await];
    let a = Client::connect(&nodes[0], "a").await;
    let b = Client::connect(&nodes[1], "b").await;
    b.online_is(&[("a", 1), ("b", 1)]).await;
    let big = "x".repeat(20_000);
    let _: () = a.invoke("Send", &["a", "before"]).await;
    let _: () = a.invoke("Send", &["a", &big]).await;
    let _: () = a.invoke("Send", &["a", "after"]).await;
    b.got("broadcastMessage", &["a", "after"]).await;
    let order: Vec<String> = b
        .inbox
        .lock()
        .unwrap()
        .iter()
        .filter(|(m, _)| m == "broadcastMessage")
        .map(|(_, args)| args[1].chars().take(6).collect())
        .collect();
    assert_eq!(order, ["before", "xxxxxx", "after"]);
    assert_eq!(b.count("broadcastMessage", &["a", &big]), 1);
    if kind == Kind::Postgres {
        // It went through the table (announced by its id), the small ones did not.
        assert_eq!(backend.psql("SELECT count(*) FROM hubbub_payloads"), "1");
    }
    // A presence record too large for one notification (a connection in 40 rooms with long
    // names) reaches the other node too: the room counts there include it.
    let rooms: Vec<String> = (0..40)
        .map(|i| format!("r{i:02}-{}", "y".repeat(200)))
        .collect();
    for room in &rooms {
        let _: u64 = a.invoke("JoinRoom", &[room]).await;
    }
    let mut members = 0;
    eventually(Duration::from_secs(5), "a room count of 2", async || {
        members = b.invoke::<u64>("JoinRoom", &[&rooms[39]]).await;
        members == 2
    })
    .await;
}

/// The backplane's server crashes (Redis killed; PostgreSQL stopped with `-m immediate`, so
/// crash recovery empties its UNLOGGED presence and liveness tables) and comes back: the nodes
/// write their presence afresh, and every node sees everyone again; nobody is announced as left.
async fn a_crashed_backplane_comes_back_empty_and_nodes_rewrite_their_presence(kind: Kind) {
    let mut backend = Backend::start(kind);
    let nodes = [Node::start(&backend).await, Node::start(&backend).await];
    let x = Client::connect(&nodes[0], "x").await;
    let z = Client::connect(&nodes[1], "z").await;
    let _: u64 = z.invoke("JoinRoom", &["r"]).await;
    x.online_is(&[("x", 1), ("z", 1)]).await;
    // Every schema step applied once, whatever their number.
    let schema = "SELECT count(*) || ' ' || max(version) FROM hubbub_schema";
    let version = if kind == Kind::Postgres {
        presence_rows_are(&backend, 2).await;
        let version = backend.psql(schema);
        let (count, max) = version.split_once(' ').unwrap();
        assert_eq!(count, max, "one row per step");
        assert_ne!(max, "0");
        version
    } else {
        String::new()
    };
    backend.crash();
    for node in &nodes {
        node.wait_log(&backend.unavailable_line(), Duration::from_secs(5))
            .await;
    }
    // Back empty of presence (PostgreSQL: its UNLOGGED tables reset by crash recovery; the
    // schema and its version survive): only the nodes' rewriting brings everyone back.
    backend.launch();
    for node in &nodes {
        node.wait_log(&backend.back_line(), Duration::from_secs(10))
            .await;
    }
    x.online_is(&[("x", 1), ("z", 1)]).await;
    z.online_is(&[("x", 1), ("z", 1)]).await;
    // The room membership came back with the presence: a room message from x reaches z.
    let _: u64 = x.invoke("JoinRoom", &["r"]).await;
    let _: () = x.invoke("SendToRoom", &["r", "x", "after the crash"]).await;
    z.got("roomMessage", &["r", "x", "after the crash"]).await;
    let members: u64 = z.invoke("JoinRoom", &["r"]).await;
    assert_eq!(members, 2, "both in the room, counted across nodes");
    if kind == Kind::Postgres {
        presence_rows_are(&backend, 2).await;
        assert_eq!(
            backend.psql(schema),
            version,
            "the schema survived the crash"
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(x.count_first("userLeft", "z"), 0, "x heard z leave");
    assert_eq!(z.count_first("userLeft", "x"), 0, "z heard x leave");
}

/// A scope's history keeps the newest 10,000 messages (`MEMORY_CAPACITY`): with 10,000 already
/// there, one more sent through a node drops the oldest, on either backplane.
async fn a_scope_history_is_trimmed_to_its_bound(kind: Kind) {
    let backend = Backend::start(kind);
    let nodes = [Node::start(&backend).await, Node::start(&backend).await];
    // The tenant `trim`: its broadcasts are the history `scope:trim`.
    let t = Client::connect(&nodes[0], "t&scope=trim").await;
    backend.seed_history("scope:trim", 10_000);
    let _: () = t.invoke("Send", &["t", "newest"]).await;
    let reader = Client::connect(&nodes[1], "r&scope=trim").await;
    let page = async |epoch: &str, after: u64| -> serde_json::Value {
        let args = vec![Arg::from(epoch), Arg::from_value(after.into())];
        within(
            Duration::from_secs(10),
            "History",
            reader.conn.invoke("History", args),
        )
        .await
        .unwrap()
    };
    let first = page("", 0).await;
    let epoch = first["epoch"]
        .as_str()
        .expect("History gives its epoch")
        .to_owned();
    let messages = first["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 500, "a full page");
    assert_eq!(messages[0]["seq"], 2, "the oldest is gone");
    assert_eq!(messages[0]["message"], "m2");
    let last = page(&epoch, 9_999).await;
    let messages: Vec<_> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["seq"].as_u64().unwrap(),
                m["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        messages,
        [(10_000, "m10000".to_owned()), (10_001, "newest".to_owned())]
    );
}

/// Issue 18 #3 with a backplane: a message id is its sender's across the fleet. Another
/// sender's message with an id bob's message holds is refused (on any node), bob's own repeat
/// is a repeat, and the fleet's history holds the id once, bob's. (Before, with `--redis` the
/// id check was not applied: both messages were recorded and delivered with one id, and
/// receivers that drop repeats by id lost one.)
async fn another_senders_message_id_is_refused_across_the_fleet(kind: Kind) {
    let backend = Backend::start(kind);
    let (a, b) = (Node::start(&backend).await, Node::start(&backend).await);
    let bob = Client::connect(&a, "bob").await;
    let mallory = Client::connect(&b, "mallory").await;
    let with_id = |id: &str| Headers::from([("hubbub-msg-id".to_owned(), id.to_owned())]);
    bob.conn
        .invoke_with_headers::<()>(
            "Send",
            vec!["bob".into(), "bob's message".into()],
            with_id("shared-1"),
        )
        .await
        .unwrap();
    for (method, args) in [
        (
            "Send",
            vec![Arg::from("mallory"), Arg::from("taking bob's id")],
        ),
        (
            "SendToUser",
            vec![Arg::from("bob"), Arg::from("a direct one")],
        ),
    ] {
        let taken = mallory
            .conn
            .invoke_with_headers::<()>(method, args, with_id("shared-1"))
            .await
            .unwrap_err();
        assert_eq!(
            taken.to_string(),
            "The message id 'shared-1' belongs to another sender's message: choose another id.",
            "{method}"
        );
    }
    bob.conn
        .invoke_with_headers::<()>(
            "Send",
            vec!["bob".into(), "bob's message".into()],
            with_id("shared-1"),
        )
        .await
        .expect("a sender's repeat of its own id completes");
    let page: serde_json::Value = mallory
        .conn
        .invoke(
            "History",
            vec!["".into(), Arg::from_value(hubbub_client::Value::from(0u64))],
        )
        .await
        .unwrap();
    let holders: Vec<&serde_json::Value> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["id"] == "shared-1")
        .collect();
    assert_eq!(holders.len(), 1, "{page}");
    assert_eq!(holders[0]["name"], "bob");
    bob.conn.stop().await;
    mallory.conn.stop().await;
}

/// A message PostgreSQL cannot store (text with U+0000) is refused with a plain error, not
/// `Unavailable:` (which would keep it in the sender's outbox, sent again for ever, holding up
/// everything after it): the message after it goes through, and the node stays joined. Redis
/// stores any bytes: there both arrive.
async fn a_message_the_backplane_cannot_store_is_refused_for_good(kind: Kind) {
    let dir = std::env::temp_dir().join(format!(
        "hubbub-backplane-nul-{kind:?}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let backend = Backend::start(kind);
    let nodes = [Node::start(&backend).await, Node::start(&backend).await];
    let watcher = Client::connect(&nodes[1], "watcher").await;
    let plain = Client::connect(&nodes[0], "plain").await;
    let answer = within(
        Duration::from_secs(10),
        "Send with U+0000",
        plain
            .conn
            .invoke::<()>("Send", vec![Arg::from("plain"), Arg::from("nul\0here")]),
    )
    .await;
    match kind {
        Kind::Postgres => {
            let reason = answer.expect_err("refused").to_string();
            assert!(!reason.contains("Unavailable:"), "{reason}");
            assert!(reason.contains("U+0000"), "{reason}");
        }
        Kind::Redis => answer.unwrap(),
    }
    let ink = open_chat(&nodes[0], &dir, "ink").await;
    ink.send("bad\0text").await.unwrap();
    ink.send("good").await.unwrap();
    watcher.got("broadcastMessage", &["ink", "good"]).await;
    eventually(Duration::from_secs(10), "ink's outbox empty", async || {
        ink.pending().await.unwrap() == 0
    })
    .await;
    let stored = usize::from(kind == Kind::Redis);
    assert_eq!(
        watcher.count("broadcastMessage", &["ink", "bad\0text"]),
        stored
    );
    assert_eq!(metric(&nodes[0], "hubbub_backplane_connected").await, 1.0);
    drop(ink);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A database a node cannot use is refused with the server's reason, SQLSTATE included: one
/// not in UTF8 (chat text is Unicode), and a role without the CREATE privilege on the schema
/// (PostgreSQL 15 and later no longer grant it on `public`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_database_a_node_cannot_use_is_refused_with_the_reason() {
    let backend = Backend::start(Kind::Postgres);
    backend.psql("CREATE DATABASE ascii TEMPLATE template0 ENCODING 'SQL_ASCII'");
    backend.psql("CREATE ROLE weak LOGIN");
    let url = |user: &str, db: &str| format!("postgres://{user}@127.0.0.1:{}/{db}", backend.port);
    let ascii = Node::spawn(&["--postgres".into(), url("postgres", "ascii")]).await;
    ascii
        .wait_log("encoding is SQL_ASCII, not UTF8", Duration::from_secs(10))
        .await;
    let weak = Node::spawn(&["--postgres".into(), url("weak", "postgres")]).await;
    weak.wait_log("SQLSTATE 42501", Duration::from_secs(10))
        .await;
    assert_eq!(ascii.logged("PostgreSQL backplane connected"), 0);
    assert_eq!(weak.logged("PostgreSQL backplane connected"), 0);
}

/// A node stalled (SIGSTOP) longer than its TTL is forgotten by the others, its users
/// announced as left; resumed, it finds itself forgotten and writes its presence afresh: its
/// users are counted on the other node again, and its room memberships with them.
async fn a_node_stalled_past_its_ttl_comes_back_with_its_users(kind: Kind) {
    let backend = Backend::start(kind);
    let nodes = [Node::start(&backend).await, Node::start(&backend).await];
    let a = Client::connect(&nodes[0], "a").await;
    let b = Client::connect(&nodes[1], "b").await;
    let _: u64 = a.invoke("JoinRoom", &["r"]).await;
    b.online_is(&[("a", 1), ("b", 1)]).await;
    signal(&nodes[0].child, "STOP");
    let forgotten = async || {
        eventually(
            Duration::from_secs(10),
            "a forgotten on b's node",
            async || b.count_first("userLeft", "a") > 0,
        )
        .await;
        b.online_is(&[("b", 1)]).await;
    };
    let resume = || signal(&nodes[0].child, "CONT");
    // Resumed whatever happens, so that the node's drop can reap it.
    struct Cont<F: Fn()>(F);
    impl<F: Fn()> Drop for Cont<F> {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    let cont = Cont(resume);
    forgotten().await;
    drop(cont);
    b.online_is(&[("a", 1), ("b", 1)]).await;
    let members: u64 = b.invoke("JoinRoom", &["r"]).await;
    assert_eq!(members, 2, "a's room membership came back with it");
}

/// A burst sent without waiting for answers, every size from well under to well over what one
/// PostgreSQL notification holds (a message of 2,650 to 2,900 characters is published as a
/// text of about 7,600 to 8,300 bytes, both encodings in base64: it crosses 7,900, where the
/// publisher switches to `hubbub_payloads`, and 8,000, NOTIFY's own limit, in steps of 2 or 3
/// bytes), with 20 KB messages among them: the other node gets each once, in the order sent.
async fn an_unawaited_burst_of_small_and_large_messages_keeps_its_order(kind: Kind) {
    let backend = Backend::start(kind);
    let nodes = [Node::start(&backend).await, Node::start(&backend).await];
    let a = Client::connect(&nodes[0], "a").await;
    let b = Client::connect(&nodes[1], "b").await;
    b.online_is(&[("a", 1), ("b", 1)]).await;
    let mut texts: Vec<String> = Vec::new();
    for (i, len) in (2_650..2_900).enumerate() {
        let size = if i % 50 == 0 { 20_000 } else { len };
        let tag = format!("{i:04}-");
        texts.push(format!("{tag}{}", "z".repeat(size - tag.len())));
        if i % 7 == 0 {
            texts.push(format!("small {i}"));
        }
    }
    for text in &texts {
        within(
            Duration::from_secs(5),
            "handing a send to the transport",
            a.conn
                .send("Send", vec![Arg::from("a"), Arg::from(text.as_str())]),
        )
        .await
        .unwrap();
    }
    let received = || -> Vec<String> {
        b.inbox
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, _)| m == "broadcastMessage")
            .map(|(_, args)| args[1].clone())
            .collect()
    };
    eventually(
        Duration::from_secs(30),
        "the whole burst on b",
        async || received().len() >= texts.len(),
    )
    .await;
    let got = received();
    assert_eq!(got.len(), texts.len(), "each once");
    for (i, (got, sent)) in got.iter().zip(&texts).enumerate() {
        assert!(
            got == sent,
            "message {i} out of order: got {:.12}…, sent {:.12}…",
            got,
            sent
        );
    }
    if kind == Kind::Postgres {
        // Both paths were taken: some through the table, most not.
        let stored: usize = backend
            .psql("SELECT count(*) FROM hubbub_payloads")
            .parse()
            .unwrap();
        assert!(stored > 8 && stored < texts.len(), "{stored} stored");
    }
}

/// PostgreSQL: `hubbub_presence` holds `n` rows, within 5 s (writes are asynchronous).
async fn presence_rows_are(backend: &Backend, n: usize) {
    let n = n.to_string();
    eventually(
        Duration::from_secs(5),
        &format!("{n} presence rows"),
        async || backend.psql("SELECT count(*) FROM hubbub_presence") == n,
    )
    .await;
}

/// Three nodes starting at once on a fresh cluster: one creates the schema under the
/// migration lock while the others wait for it; every node joins on its first attempt, each
/// step is recorded once, and the three share presence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_three_nodes_starting_at_once_on_a_fresh_cluster_share_one_schema() {
    let backend = Backend::start(Kind::Postgres);
    let args = backend.hub_args(NODE_TTL);
    let (a, b, c) = tokio::join!(Node::spawn(&args), Node::spawn(&args), Node::spawn(&args));
    let nodes = [a, b, c];
    for node in &nodes {
        node.wait_log(&backend.connected_line(), Duration::from_secs(20))
            .await;
        assert_eq!(node.logged("cannot join"), 0, "a node had to retry");
    }
    let schema = backend.psql("SELECT count(*) || ' ' || max(version) FROM hubbub_schema");
    let (count, max) = schema.split_once(' ').unwrap();
    assert_eq!(count, max, "each step recorded once");
    assert_eq!(
        nodes
            .iter()
            .map(|n| n.logged("backplane schema migrated"))
            .sum::<usize>(),
        max.parse::<usize>().unwrap(),
        "each step applied by one node"
    );
    let clients = [
        Client::connect(&nodes[0], "a").await,
        Client::connect(&nodes[1], "b").await,
        Client::connect(&nodes[2], "c").await,
    ];
    for client in &clients {
        client.online_is(&[("a", 1), ("b", 1), ("c", 1)]).await;
    }
}

/// A batch of the publisher that PostgreSQL refuses for one bad operation loses that one only:
/// a trigger (the test's own) holds one batch for 0.6 s, once (a heartbeat queued behind it
/// stays within the 2 s call limit, even on a loaded machine) and refuses the presence row of
/// user `poison`; the presence writes queued with it meanwhile, of five other users, still
/// reach the other node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_refused_operation_loses_only_itself_not_its_batch() {
    let backend = Backend::start(Kind::Postgres);
    let nodes = [Node::start(&backend).await, Node::start(&backend).await];
    let watcher = Client::connect(&nodes[1], "watcher").await;
    watcher.online_is(&[("watcher", 1)]).await;
    backend.psql(
        "CREATE TABLE trap_once (held boolean); \
         CREATE FUNCTION trap() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.record LIKE '%\"u\":\"slow\"%' AND NOT EXISTS (SELECT 1 FROM trap_once) \
             THEN INSERT INTO trap_once VALUES (true); PERFORM pg_sleep(0.6); END IF; \
           IF NEW.record LIKE '%\"u\":\"poison\"%' THEN RAISE EXCEPTION 'poisoned'; END IF; \
           RETURN NEW; END $$; \
         CREATE TRIGGER trap BEFORE INSERT OR UPDATE ON hubbub_presence \
           FOR EACH ROW EXECUTE FUNCTION trap()",
    );
    let slow = Client::connect(&nodes[0], "slow").await;
    // Queued while the batch with slow's row is held: one batch with poison's row.
    let poison = Client::connect(&nodes[0], "poison").await;
    let mut others = Vec::new();
    for name in ["c1", "c2", "c3", "c4", "c5"] {
        others.push(Client::connect(&nodes[0], name).await);
    }
    watcher
        .online_is(&[
            ("c1", 1),
            ("c2", 1),
            ("c3", 1),
            ("c4", 1),
            ("c5", 1),
            ("slow", 1),
            ("watcher", 1),
        ])
        .await;
    assert!(
        nodes[0].logged("sending its operations one by one") > 0,
        "poison's row was in a batch with others"
    );
    drop((slow, poison, others));
}

/// A node's presence rewrite (after the backplane's server restarted) in which PostgreSQL
/// refuses one row for good (a trigger of the test's own refuses user `poison`'s) leaves that
/// row out, with a warning naming its connection and the reason, and writes the rest: the node
/// is back and the other node sees its other user and gets its messages. (Before, the whole
/// rewrite failed and the node retried it for ever, cut off from the fleet.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_presence_rewrite_leaves_out_a_refused_row_and_writes_the_rest() {
    let mut backend = Backend::start(Kind::Postgres);
    let nodes = [Node::start(&backend).await, Node::start(&backend).await];
    let watcher = Client::connect(&nodes[1], "watcher").await;
    let kept = Client::connect(&nodes[0], "kept").await;
    let poison = Client::connect(&nodes[0], "poison").await;
    watcher
        .online_is(&[("kept", 1), ("poison", 1), ("watcher", 1)])
        .await;
    backend.psql(
        "CREATE FUNCTION trap() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.record LIKE '%\"u\":\"poison\"%' THEN RAISE EXCEPTION 'poisoned'; END IF; \
           RETURN NEW; END $$; \
         CREATE TRIGGER trap BEFORE INSERT OR UPDATE ON hubbub_presence \
           FOR EACH ROW EXECUTE FUNCTION trap()",
    );
    backend.stop();
    for node in &nodes {
        node.wait_log(&backend.unavailable_line(), Duration::from_secs(5))
            .await;
    }
    backend.launch();
    for node in &nodes {
        node.wait_log(&backend.back_line(), Duration::from_secs(10))
            .await;
    }
    let id = poison.conn.connection_id().unwrap();
    let refused = format!("connection={id}");
    nodes[0]
        .wait_log("refused this connection's presence", Duration::from_secs(5))
        .await;
    let line = nodes[0]
        .logs
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.contains("refused this connection's presence"))
        .cloned()
        .unwrap();
    assert!(
        line.contains(&refused) && line.contains("SQLSTATE P0001: poisoned"),
        "{line}"
    );
    watcher.online_is(&[("kept", 1), ("watcher", 1)]).await;
    let _: () = kept.invoke("Send", &["kept", "after the restart"]).await;
    watcher
        .got("broadcastMessage", &["kept", "after the restart"])
        .await;
    // The rewrite itself went through: no whole failure, no retry.
    assert_eq!(nodes[0].logged("cannot write this node's presence"), 0);
}

/// PostgreSQL: a session of the test's own (`psql`, application name `hubbub-test-lock`) that
/// holds the row locks of every row of a table (`SELECT … FOR UPDATE` in an open transaction)
/// until [`release`](Self::release)d; killed on drop.
struct RowLock {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl RowLock {
    /// Locks the rows of `table`, once `pg_stat_activity` shows the session holding them (within
    /// 10 s).
    fn hold(backend: &Backend, table: &str) -> Self {
        let mut child = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &backend.port.to_string()])
            .args([
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .env("PGAPPNAME", "hubbub-test-lock")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("psql is installed (with the postgresql package)");
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "BEGIN; SELECT * FROM {table} FOR UPDATE;").unwrap();
        stdin.flush().unwrap();
        let lock = Self {
            child,
            stdin: Some(stdin),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while backend.psql(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = 'hubbub-test-lock' AND state = 'idle in transaction'",
        ) != "1"
        {
            assert!(
                Instant::now() < deadline,
                "the test's session did not lock {table} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        lock
    }

    /// Commits (the locks go) and waits for the session to end (within 10 s).
    fn release(mut self) {
        let mut stdin = self.stdin.take().unwrap();
        writeln!(stdin, "COMMIT;").unwrap();
        drop(stdin);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "the test's locking session did not end within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RowLock {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// PostgreSQL: a trigger of the test's own on `table` that, for rows matching `condition`
/// (PL/pgSQL, on `NEW`), waits for the row lock of `trap_lock`: while a [`RowLock`] holds it,
/// such a write waits until the node's `lock_timeout` (¾ of its call limit) ends it with
/// SQLSTATE 55P03 (lock not available), as a real lock wait ends in production. Each such write is counted first
/// (a sequence: kept when the write fails; see [`trap_tries`]).
fn trap_behind_a_lock(backend: &Backend, table: &str, condition: &str) {
    backend.psql(&format!(
        "CREATE TABLE trap_lock (id int); INSERT INTO trap_lock VALUES (1); \
         CREATE SEQUENCE trap_tries; \
         CREATE FUNCTION trap() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF {condition} THEN PERFORM nextval('trap_tries'); \
             PERFORM 1 FROM trap_lock FOR UPDATE; END IF; \
           RETURN NEW; END $$; \
         CREATE TRIGGER trap BEFORE INSERT OR UPDATE ON {table} \
           FOR EACH ROW EXECUTE FUNCTION trap()"
    ));
}

/// How many writes reached the trap of [`trap_behind_a_lock`] so far.
fn trap_tries(backend: &Backend) -> u64 {
    backend
        .psql("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM trap_tries")
        .parse()
        .unwrap()
}

/// What a node logs when its presence rewrite fails after the other nodes forgot it.
const REWRITE_FAILED: &str = "cannot rewrite this node's presence after the other nodes forgot it";

/// Stalls `node` (SIGSTOP) until `watcher`, on the other node, hears user `a` (on `node`)
/// leave, resumes it, and waits for its warning that the presence rewrite failed. Returns that
/// line, and how many outages `node` had logged by then: a call in flight when it was stopped
/// may time out on resuming (its answer not yet read), an outage before the rewrite is tried.
async fn forgotten_and_resumed(
    backend: &Backend,
    node: &Node,
    watcher: &Client,
) -> (String, usize) {
    signal(&node.child, "STOP");
    // Resumed whatever happens, so that the node's drop can reap it.
    struct Cont<'a>(&'a Child);
    impl Drop for Cont<'_> {
        fn drop(&mut self) {
            signal(self.0, "CONT");
        }
    }
    let cont = Cont(&node.child);
    eventually(
        Duration::from_secs(10),
        "a forgotten on b's node",
        async || watcher.count_first("userLeft", "a") > 0,
    )
    .await;
    drop(cont);
    node.wait_log(REWRITE_FAILED, Duration::from_secs(10)).await;
    let outages = node.logged(&backend.unavailable_line());
    let line = node
        .logs
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.contains(REWRITE_FAILED))
        .cloned()
        .unwrap();
    (line, outages)
}

/// Once what failed `node`'s rewrite is gone: `watcher` sees `a` again, and `node` says its
/// presence is rewritten, with no outage after the `outages` it had logged on resuming (it
/// came back without reconnecting) and one warning (then throttled).
async fn back_without_reconnecting(
    backend: &Backend,
    node: &Node,
    watcher: &Client,
    outages: usize,
) {
    watcher.online_is(&[("a", 1), ("b", 1)]).await;
    node.wait_log(
        "presence rewritten: the other nodes see its connections again",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        node.logged(&backend.unavailable_line()),
        outages,
        "the node came back without reconnecting"
    );
    assert_eq!(
        node.logged(REWRITE_FAILED),
        1,
        "warned once, then throttled"
    );
}

/// A node the others forgot (stalled past its TTL) whose presence rewrite then fails with an
/// error that is no outage (user `a`'s row meets a lock another session holds: SQLSTATE 55P03,
/// see [`trap_behind_a_lock`]) keeps trying, with a warning naming the reason, and stays up:
/// once the lock is gone, the other node sees `a` again, without `a`'s node reconnecting.
/// (Before, the failure was logged at debug level and never tried again: the heartbeat had
/// already put the node's liveness row back, so it did not find itself forgotten again, and
/// `a` stayed missing from the fleet's presence until the node reconnected.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_forgotten_node_whose_presence_rewrite_fails_keeps_trying_until_it_is_back() {
    let backend = Backend::start(Kind::Postgres);
    let nodes = [Node::start(&backend).await, Node::start(&backend).await];
    let _a = Client::connect(&nodes[0], "a").await;
    let b = Client::connect(&nodes[1], "b").await;
    b.online_is(&[("a", 1), ("b", 1)]).await;
    trap_behind_a_lock(
        &backend,
        "hubbub_presence",
        r#"NEW.record LIKE '%"u":"a"%'"#,
    );
    let lock = RowLock::hold(&backend, "trap_lock");
    let (line, outages) = forgotten_and_resumed(&backend, &nodes[0], &b).await;
    assert!(line.contains("SQLSTATE 55P03"), "{line}");
    eventually(
        Duration::from_secs(30),
        "three more rewrites tried (each waits for the lock for 1.5 s)",
        async || trap_tries(&backend) >= 4,
    )
    .await;
    b.online_is(&[("b", 1)]).await;
    lock.release();
    back_without_reconnecting(&backend, &nodes[0], &b, outages).await;
}

/// Redis: how many calls of `command` (lower case) the server rejected before running them
/// (`rejected_calls` in `INFO commandstats`: an ACL denial is one).
fn rejected_calls(backend: &Backend, command: &str) -> u64 {
    let stats = backend.redis_cli(&["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("cmdstat_{command}:")))
        .and_then(|l| l.split(',').find_map(|f| f.strip_prefix("rejected_calls=")))
        .map_or(0, |n| n.parse().unwrap())
}

/// Redis: a node the others forgot (stalled past its TTL) whose presence rewrite then fails
/// with an error that is no outage (the ACL user the node connects as may not run `HSET`, the
/// command the rewrite writes each connection with: `NOPERM`, shown as `NoPerm`; its
/// heartbeat's commands are still allowed, so its `SADD` puts it back in the set of nodes)
/// keeps trying, with a warning naming the reason, and stays up: once `HSET` is allowed again,
/// the other node sees `a` again, without `a`'s node reconnecting. (Before, the failure was
/// logged at debug level and never tried again: the node was back in the set, so no later
/// heartbeat found it forgotten, and `a` stayed missing from the fleet's presence until the
/// node reconnected.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_forgotten_node_whose_presence_rewrite_fails_keeps_trying_until_it_is_back() {
    let backend = Backend::start(Kind::Redis);
    let user = "hubbub-node-a";
    backend.redis_cli(&["ACL", "SETUSER", user, "on", ">secret", "~*", "&*", "+@all"]);
    let mut args = backend.hub_args(NODE_TTL);
    args[1] = format!("redis://{user}:secret@127.0.0.1:{}", backend.port);
    let a_node = Node::spawn(&args).await;
    a_node
        .wait_log(&backend.connected_line(), Duration::from_secs(20))
        .await;
    let nodes = [a_node, Node::start(&backend).await];
    let _a = Client::connect(&nodes[0], "a").await;
    let b = Client::connect(&nodes[1], "b").await;
    b.online_is(&[("a", 1), ("b", 1)]).await;
    backend.redis_cli(&["ACL", "SETUSER", user, "-hset"]);
    let (line, outages) = forgotten_and_resumed(&backend, &nodes[0], &b).await;
    assert!(line.contains("NoPerm") && line.contains("'hset'"), "{line}");
    eventually(
        Duration::from_secs(10),
        "three more rewrites tried",
        async || rejected_calls(&backend, "hset") >= 4,
    )
    .await;
    b.online_is(&[("b", 1)]).await;
    backend.redis_cli(&["ACL", "SETUSER", user, "+hset"]);
    back_without_reconnecting(&backend, &nodes[0], &b, outages).await;
}

/// Redis: a node whose presence rewrite after reconnecting is refused (the ACL user it connects
/// as may not run `HSET`: `NOPERM`; connecting and subscribing are allowed, and `CLIENT KILL`
/// closes its connections) warns, naming the step and the reason, once (then throttled), and
/// keeps trying with backoff, down meanwhile; once `HSET` is allowed again it is back and the
/// other node sees `a` again. Stopped (SIGTERM) while in that loop, it exits at once (within
/// 10 s, a bound on the wait), without the hub's "did not finish closing" warning. (Before, it
/// retried for ever every 100 ms, logging nothing, in a sleep shutdown did not end.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_node_whose_rewrite_after_reconnecting_is_refused_warns_retries_and_stops_on_sigterm()
 {
    let backend = Backend::start(Kind::Redis);
    let user = "hubbub-node-a";
    backend.redis_cli(&["ACL", "SETUSER", user, "on", ">secret", "~*", "&*", "+@all"]);
    let mut args = backend.hub_args(NODE_TTL);
    args[1] = format!("redis://{user}:secret@127.0.0.1:{}", backend.port);
    let a_node = Node::spawn(&args).await;
    a_node
        .wait_log(&backend.connected_line(), Duration::from_secs(20))
        .await;
    let mut nodes = [a_node, Node::start(&backend).await];
    let _a = Client::connect(&nodes[0], "a").await;
    let b = Client::connect(&nodes[1], "b").await;
    b.online_is(&[("a", 1), ("b", 1)]).await;
    let refused = "cannot rejoin the Redis backplane: Redis refused a command";
    for round in 1..=2 {
        backend.redis_cli(&["ACL", "SETUSER", user, "-hset"]);
        let before = rejected_calls(&backend, "hset");
        backend.redis_cli(&["CLIENT", "KILL", "USER", user]);
        eventually(
            Duration::from_secs(10),
            &format!("warning {round} about the refused rewrite"),
            async || nodes[0].logged(refused) >= round,
        )
        .await;
        let line = nodes[0]
            .logs
            .lock()
            .unwrap()
            .iter()
            .rfind(|l| l.contains(refused))
            .cloned()
            .unwrap();
        assert!(
            line.contains("NoPerm") && line.contains("'hset'") && line.contains("presence rewrite"),
            "{line}"
        );
        eventually(
            Duration::from_secs(15),
            "three more rewrites tried",
            async || rejected_calls(&backend, "hset") >= before + 4,
        )
        .await;
        assert_eq!(
            nodes[0].logged(refused),
            round,
            "warned once, then throttled"
        );
        if round == 1 {
            b.online_is(&[("b", 1)]).await;
            backend.redis_cli(&["ACL", "SETUSER", user, "+hset"]);
            b.online_is(&[("a", 1), ("b", 1)]).await;
            nodes[0]
                .wait_log(&backend.back_line(), Duration::from_secs(5))
                .await;
        }
    }
    signal(&nodes[0].child, "TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = nodes[0].child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the node in its rejoin loop did not exit within 10 s of SIGTERM; it logged:\n{}",
            nodes[0].logs.lock().unwrap().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");
    nodes[0]
        .wait_log("shutting down", Duration::from_secs(2))
        .await;
    assert_eq!(
        nodes[0].logged("did not finish closing"),
        0,
        "every task ended on shutdown"
    );
}

/// A message whose recording meets a lock another session holds (SQLSTATE 55P03, lock not
/// available: see [`trap_behind_a_lock`]) is refused as one that may pass (`Unavailable:`, so
/// Hubbub's chat keeps it in its outbox and sends it again), and the node stays up: once the
/// lock is gone, the chat's message reaches the other node once. (Before, 55P03 counted as a
/// refusal for good: "The message could not be recorded", and the outbox gave the message up.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_lock_not_available_is_transient_and_the_message_goes_through_after_it() {
    let dir = std::env::temp_dir().join(format!("hubbub-backplane-lock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let backend = Backend::start(Kind::Postgres);
    let nodes = [Node::start(&backend).await, Node::start(&backend).await];
    let watcher = Client::connect(&nodes[1], "watcher").await;
    let plain = Client::connect(&nodes[0], "plain").await;
    let ink = open_chat(&nodes[0], &dir, "ink").await;
    trap_behind_a_lock(&backend, "hubbub_history", "true");
    let lock = RowLock::hold(&backend, "trap_lock");
    let answer = within(
        Duration::from_secs(10),
        "Send while the history is locked",
        plain
            .conn
            .invoke::<()>("Send", vec![Arg::from("plain"), Arg::from("held")]),
    )
    .await;
    let reason = answer.expect_err("refused while locked").to_string();
    assert!(reason.contains("Unavailable:"), "{reason}");
    assert!(reason.contains("SQLSTATE 55P03"), "{reason}");
    ink.send("through the lock").await.unwrap();
    eventually(
        Duration::from_secs(20),
        "ink's message tried while locked",
        async || trap_tries(&backend) >= 2,
    )
    .await;
    assert_eq!(ink.pending().await.unwrap(), 1, "kept in the outbox");
    lock.release();
    watcher
        .got("broadcastMessage", &["ink", "through the lock"])
        .await;
    eventually(Duration::from_secs(10), "ink's outbox empty", async || {
        ink.pending().await.unwrap() == 0
    })
    .await;
    assert_eq!(
        watcher.count("broadcastMessage", &["ink", "through the lock"]),
        1
    );
    assert_eq!(nodes[0].logged(&backend.unavailable_line()), 0);
    assert_eq!(metric(&nodes[0], "hubbub_backplane_connected").await, 1.0);
    drop(ink);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `hubbub_backplane_large_payloads_total{outcome}` of `node`.
async fn large_payloads(node: &Node, outcome: &str) -> f64 {
    let url = format!("{}/metrics", node.url.trim_end_matches("/chathub"));
    let text = reqwest::get(url).await.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| {
            l.starts_with("hubbub_backplane_large_payloads_total{")
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .and_then(|l| l.rsplit_once(' '))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or_else(|| panic!("no large payloads {outcome} in:\n{text}"))
}

/// A payload too large for a notification is announced with its scope: a node fetches it only
/// when it has recipients for it. A room message of 20,000 characters to a room whose only
/// member is on node A is not fetched by node B; a broadcast of the same size (the scope's
/// group, members on both nodes) is, and reaches everyone. Announcements in the previous
/// form (no scope, as older nodes of a mixed fleet send them) are still fetched and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_large_payload_is_fetched_only_by_nodes_with_its_recipients() {
    let backend = Backend::start(Kind::Postgres);
    let nodes = [Node::start(&backend).await, Node::start(&backend).await];
    let a = Client::connect(&nodes[0], "a").await;
    let b = Client::connect(&nodes[1], "b").await;
    b.online_is(&[("a", 1), ("b", 1)]).await;
    let _: u64 = a.invoke("JoinRoom", &["big"]).await;
    let (room, all) = ("r".repeat(20_000), "x".repeat(20_000));
    let _: () = a.invoke("SendToRoom", &["big", "a", &room]).await;
    let _: () = a.invoke("Send", &["a", &all]).await;
    // Handled in order: once b has the broadcast, node B has seen the room message's
    // announcement too.
    b.got("broadcastMessage", &["a", &all]).await;
    a.got("roomMessage", &["big", "a", &room]).await;
    a.got("broadcastMessage", &["a", &all]).await;
    assert_eq!(b.count_first("roomMessage", "big"), 0);
    assert_eq!(
        backend.psql("SELECT count(*) FROM hubbub_payloads"),
        "2",
        "both went through the table"
    );
    assert_eq!(
        large_payloads(&nodes[1], "fetched").await,
        1.0,
        "node B fetched the broadcast only"
    );
    assert_eq!(large_payloads(&nodes[1], "skipped").await, 1.0);
    // Both announced again in the previous form, `r{origin} {number} {id}`: node B fetches
    // both (it cannot tell their scope) and b gets the broadcast a second time.
    backend.psql(
        "SELECT pg_notify('hubbub_' || left(encode(sha256(convert_to('hubbub:chat', 'UTF8')), \
         'hex'), 16), 'rold-node ' || id || ' ' || id) FROM hubbub_payloads ORDER BY id",
    );
    eventually(Duration::from_secs(5), "the broadcast twice", async || {
        b.count("broadcastMessage", &["a", &all]) == 2
    })
    .await;
    assert_eq!(large_payloads(&nodes[1], "fetched").await, 3.0);
    assert_eq!(large_payloads(&nodes[1], "skipped").await, 1.0);
    assert_eq!(b.count_first("roomMessage", "big"), 0);
    // A route that names what node B serves is fetched there: the room once b is in it (a
    // group route), a direct message to b (a user route).
    let _: u64 = b.invoke("JoinRoom", &["big"]).await;
    let (room2, direct) = ("s".repeat(20_000), "d".repeat(20_000));
    let _: () = a.invoke("SendToRoom", &["big", "a", &room2]).await;
    b.got("roomMessage", &["big", "a", &room2]).await;
    let _: () = a.invoke("SendToUser", &["b", &direct]).await;
    b.got("directMessage", &["a", &direct]).await;
    assert_eq!(large_payloads(&nodes[1], "fetched").await, 5.0);
}

/// The backplane's server hangs (SIGSTOP: connections open, no answers). The nodes notice
/// (no answer within the call limit) and serve their own connections meanwhile: a client
/// connects, the others on its node hear it join, `GetOnline` answers, and a chat message is
/// refused with `Unavailable:` (not hung); resumed, everything works across nodes again.
async fn a_hung_backplane_server_holds_up_no_local_connect_or_delivery(kind: Kind) {
    let backend = Backend::start(kind);
    let nodes = [Node::start(&backend).await, Node::start(&backend).await];
    let x = Client::connect(&nodes[0], "x").await;
    let far = Client::connect(&nodes[1], "far").await;
    x.online_is(&[("far", 1), ("x", 1)]).await;
    let frozen = backend.freeze();
    // Something to wait on: presence writes and a heartbeat time out.
    let _: u64 = x.invoke("JoinRoom", &["r"]).await;
    for node in &nodes {
        node.wait_log(&backend.unavailable_line(), Duration::from_secs(10))
            .await;
    }
    let y = Client::connect(&nodes[0], "y").await;
    eventually(Duration::from_secs(5), "x hears y join", async || {
        x.count_first("userJoined", "y") > 0
    })
    .await;
    let (users, _) = x.online().await;
    assert!(users.iter().any(|(u, _)| u == "y"), "{users:?}");
    let refused = within(
        Duration::from_secs(10),
        "Send while the backplane hangs",
        y.conn
            .invoke::<()>("Send", vec![Arg::from("y"), Arg::from("now")]),
    )
    .await
    .expect_err("refused while the backplane hangs")
    .to_string();
    assert!(refused.contains("Unavailable:"), "{refused}");
    drop(frozen);
    for node in &nodes {
        node.wait_log(&backend.back_line(), Duration::from_secs(15))
            .await;
    }
    far.online_is(&[("far", 1), ("x", 1), ("y", 1)]).await;
    let _: () = y.invoke("Send", &["y", "after"]).await;
    far.got("broadcastMessage", &["y", "after"]).await;
}

/// Issue 18 #8 on a fleet: a sender starts at most 30 histories a minute (the same refusal as
/// one hub gives), whether a history exists is the fleet's answer (one started through the other
/// node costs nothing), and an inbox whose user never connected anywhere in the fleet is gone
/// after `--unclaimed-inbox-ttl` while a claimed one stays. (Before, with a backplane neither
/// applied: every made-up name kept a history for ever.)
async fn histories_for_made_up_users_are_bounded_and_expire_across_the_fleet(kind: Kind) {
    let backend = Backend::start(kind);
    let ttl = ["--unclaimed-inbox-ttl", "3"];
    let (a, b) = (
        Node::start_with(&backend, &ttl).await,
        Node::start_with(&backend, &ttl).await,
    );
    // dave has connected once (through b): his inbox is his.
    let dave = Client::connect(&b, "dave").await;
    dave.conn.stop().await;
    // carol, on b, spends her budget first.
    let carol = Client::connect(&b, "carol").await;
    for i in 0..30 {
        let _: () = carol
            .invoke("SendToUser", &[&format!("phantom-{i}"), "x"])
            .await;
    }
    let mallory = Client::connect(&a, "mallory").await;
    let _: () = mallory.invoke("SendToUser", &["dave", "for dave"]).await;
    let mut refused = 0;
    for i in 0..40 {
        let sent = mallory
            .conn
            .invoke::<()>(
                "SendToUser",
                vec![Arg::from(format!("ghost-{i}").as_str()), Arg::from("x")],
            )
            .await;
        match sent {
            Ok(()) => assert!(i < 29, "ghost-{i} accepted"),
            Err(error) => {
                assert!(
                    error.to_string().starts_with(
                        "Too many new conversations: a sender may start at most 30 a minute"
                    ),
                    "{error}"
                );
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 11, "30 new histories a minute for mallory");
    // ghost-0's inbox exists in the fleet: carol, out of budget on b, may write to it.
    let _: () = carol.invoke("SendToUser", &["ghost-0", "from carol"]).await;
    let refused = carol
        .conn
        .invoke::<()>("SendToUser", vec![Arg::from("phantom-new"), Arg::from("x")])
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .starts_with("Too many new conversations"),
        "{refused}"
    );

    // After the TTL, the made-up users' inboxes are gone (through either node); dave's stays.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (node, name) in [(&b, "ghost-0"), (&a, "ghost-1"), (&a, "phantom-0")] {
        // The sweep runs beside the connect (a connect does not wait for it), before the
        // inbox is claimed: empty once it has run.
        let ghost = Client::connect(node, name).await;
        eventually(
            Duration::from_secs(10),
            &format!("{name}'s unclaimed inbox expired"),
            async || {
                let inbox: serde_json::Value = ghost
                    .conn
                    .invoke(
                        "Inbox",
                        vec!["".into(), Arg::from_value(hubbub_client::Value::from(0u64))],
                    )
                    .await
                    .unwrap();
                inbox["messages"] == serde_json::json!([])
            },
        )
        .await;
        ghost.conn.stop().await;
    }
    let dave = Client::connect(&a, "dave").await;
    let inbox: serde_json::Value = dave
        .conn
        .invoke(
            "Inbox",
            vec!["".into(), Arg::from_value(hubbub_client::Value::from(0u64))],
        )
        .await
        .unwrap();
    let messages = inbox["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{inbox}");
    assert_eq!(messages[0]["message"], "for dave");
    assert_eq!(messages[0]["name"], "mallory");
    // The senders' own inboxes are claimed: their copies stay.
    let sent: serde_json::Value = mallory
        .conn
        .invoke(
            "Inbox",
            vec!["".into(), Arg::from_value(hubbub_client::Value::from(0u64))],
        )
        .await
        .unwrap();
    assert_eq!(sent["messages"].as_array().unwrap().len(), 30, "{sent}");
    for c in [dave, carol, mallory] {
        c.conn.stop().await;
    }
}
