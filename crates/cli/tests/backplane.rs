//! Scale-out: a real `redis-server` and several `hubbub hub --redis` nodes on loopback, with
//! Hubbub's client and the official JavaScript client spread over them. Every scope, presence
//! and message ids across nodes; a node killed with SIGKILL; Redis killed and restarted.

// Children are killed and reaped on drop.
#![allow(clippy::zombie_processes)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hubbub_client::store::{ConversationKind, Store};
use hubbub_client::{Arg, Chat, Delays, Headers, HubConnection, HubConnectionBuilder};

mod support;
use support::hubbub;
/// Node liveness for these tests: a killed node leaves presence within TTL + TTL/3.
const NODE_TTL: &str = "1.5";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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

/// A `redis-server` of the test's own on a loopback port, without persistence.
struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    fn start() -> Self {
        let mut redis = Self {
            port: free_port(),
            child: None,
        };
        redis.launch();
        redis
    }

    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/setup.sh test installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() {
                    assert_eq!(&buf, b"+PONG\r\n");
                    return;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: Redis vanishes with everything it held.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child);
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One `hubbub hub --redis` node, with its log lines kept.
struct Node {
    child: Child,
    url: String,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Node {
    fn start(redis: &Redis) -> Self {
        let port = free_port();
        let mut child = hubbub()
            .args(["hub", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--redis", &redis.url(), "--redis-node-ttl", NODE_TTL])
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
        node.wait_log("listening on", Duration::from_secs(20));
        node.wait_log("Redis backplane connected", Duration::from_secs(20));
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

    fn wait_log(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.logged(needle) == 0 {
            assert!(
                Instant::now() < deadline,
                "the node did not log {needle:?}; it logged:\n{}",
                self.logs.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
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

async fn eventually(limit: Duration, what: &str, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
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
        conn.start().await.unwrap();
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
        self.conn.invoke(method, args).await.unwrap()
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
    stdin: ChildStdin,
    lines: Arc<Mutex<Vec<serde_json::Value>>>,
    next: u32,
}

impl Js {
    fn start(node: &Node, name: &str) -> Self {
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
            stdin,
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
            std::thread::sleep(Duration::from_millis(20));
        }
        js
    }

    async fn invoke(&mut self, method: &str, args: serde_json::Value) -> serde_json::Value {
        self.next += 1;
        let id = self.next;
        let cmd = serde_json::json!({ "id": id, "invoke": method, "args": args });
        writeln!(self.stdin, "{cmd}").unwrap();
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

impl Drop for Js {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_broadcast_rooms_direct_messages_presence_and_ids() {
    let redis = Redis::start();
    let nodes = [
        Node::start(&redis),
        Node::start(&redis),
        Node::start(&redis),
    ];
    // ann has a connection on A and one on B; bob is on C; the official client (jo) on B.
    let ann_a = Client::connect(&nodes[0], "ann").await;
    let ann_b = Client::connect(&nodes[1], "ann").await;
    let bob_c = Client::connect(&nodes[2], "bob").await;
    let mut jo_b = Js::start(&nodes[1], "jo");

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
        client.conn.invoke("Inbox", args).await.unwrap()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_clients_fail_over_losing_nothing_and_it_leaves_presence() {
    let dir = std::env::temp_dir().join(format!("hubbub-backplane-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let redis = Redis::start();
    let mut nodes = [
        Node::start(&redis),
        Node::start(&redis),
        Node::start(&redis),
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
    let killed = Instant::now();
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

    // eve's node is gone: within the node TTL (1.5 s) plus a heartbeat, presence forgets her,
    // and the surviving nodes announce that she left (she had no chance to say goodbye).
    dan.online_is(&[("cat", 1), ("dan", 1)]).await;
    let forgotten = killed.elapsed();
    assert!(
        forgotten < Duration::from_secs(6),
        "presence took {forgotten:?}"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_nodes_serve_locally_then_resubscribe_and_resume() {
    let dir = std::env::temp_dir().join(format!("hubbub-backplane-r-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut redis = Redis::start();
    let nodes = [Node::start(&redis), Node::start(&redis)];
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

    // Redis dies. Both nodes say so and go on serving their own connections.
    redis.kill();
    for node in &nodes {
        node.wait_log("Redis backplane unavailable", Duration::from_secs(5));
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

    // Redis is back (empty) on the same port: nodes resubscribe and restore presence.
    redis.launch();
    for node in &nodes {
        node.wait_log("Redis backplane back", Duration::from_secs(10));
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
    // Nobody left: a Redis restart (every node's heartbeat gone with it) announces no one.
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

/// After a Redis restart each node comes back after its own reconnect delay. One that comes
/// back a little later than the others is not a crashed one: nobody is announced as left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_late_back_after_a_redis_restart_is_not_taken_for_lost() {
    let mut redis = Redis::start();
    let nodes = [Node::start(&redis), Node::start(&redis)];
    let x = Client::connect(&nodes[0], "x").await;
    let z = Client::connect(&nodes[1], "z").await;
    x.online_is(&[("x", 1), ("z", 1)]).await;
    redis.kill();
    for node in &nodes {
        node.wait_log("Redis backplane unavailable", Duration::from_secs(5));
    }
    // Node B is held back (SIGSTOP) while A rejoins and renews its heartbeat a few times.
    signal(&nodes[1].child, "STOP");
    redis.launch();
    nodes[0].wait_log("Redis backplane back", Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    signal(&nodes[1].child, "CONT");
    nodes[1].wait_log("Redis backplane back", Duration::from_secs(10));
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

/// Issue 18 #3 with a backplane: a message id is its sender's across the fleet. Another
/// sender's message with an id bob's message holds is refused (on any node), bob's own repeat
/// is a repeat, and the fleet's history holds the id once, bob's. (Before, with `--redis` the
/// id check was not applied: both messages were recorded and delivered with one id, and
/// receivers that drop repeats by id lost one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_senders_message_id_is_refused_across_the_fleet() {
    let redis = Redis::start();
    let (a, b) = (Node::start(&redis), Node::start(&redis));
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
