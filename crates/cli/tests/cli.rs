//! The `hubbub` binary, run as a user runs it.

// Children are reaped with wait() where the test goes on; on a failed assertion the test
// process ends and takes them along.
#![allow(clippy::zombie_processes)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::hubbub;

/// Starts `hubbub hub` on a free port of `host` and waits for its "listening on" line.
fn start_hub(host: &str, extra: &[&str]) -> (Child, String) {
    let port = std::net::TcpListener::bind(format!("{host}:0"))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut child = hubbub()
        .args(["hub", "--listen", &listen])
        .args(extra)
        .env("XDG_DATA_HOME", support::private_data_dir())
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
            .recv_timeout(deadline - Instant::now())
            .expect("the hub logs that it listens");
        if let Some(i) = line.find("listening on http://") {
            let url = line[i + "listening on ".len()..].trim().to_owned();
            assert_eq!(url, format!("http://{listen}"));
            return (child, url);
        }
    }
}

/// A fresh history database path for one test.
fn temp_db(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("hubbub-cli-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("history.sqlite3").display().to_string()
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn hub_serves_then_sigterm_closes_connections_allowing_reconnect_and_exits_0() {
    let (mut hub, url) = start_hub("127.0.0.1", &[]);
    let health = Command::new("curl")
        .args(["-sf", &format!("{url}/healthz")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&health.stdout), "ok");
    // A listener sees the Close that allows reconnecting.
    let mut listen = hubbub()
        .args([
            "listen",
            "--url",
            &format!("{url}/chathub"),
            "--name",
            "watcher",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(listen.stdout.take().unwrap()).lines();
    let connected = lines.next().unwrap().unwrap();
    assert!(connected.contains("Connecting"), "{connected}");
    let line = lines.next().unwrap().unwrap();
    assert!(line.contains("\"new\":\"Connected\""), "{line}");
    sigterm(&hub);
    assert!(
        wait_exit(&mut hub, Duration::from_secs(10)).success(),
        "the hub exits 0 on SIGTERM"
    );
    let mut reconnecting = None;
    for line in lines.by_ref().take(10) {
        let line = line.unwrap();
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        if event["event"] == "reconnecting" {
            reconnecting = Some(event);
            break;
        }
    }
    let reconnecting = reconnecting.expect("the listener reconnects after the hub's Close");
    assert!(
        reconnecting["reason"]
            .as_str()
            .unwrap()
            .contains("shutting down"),
        "{reconnecting}"
    );
    let _ = listen.kill();
    let _ = listen.wait();
}

#[test]
fn hub_listens_on_ipv6_loopback() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback on this machine");
        return;
    }
    let (mut hub, url) = start_hub("::1", &[]);
    let out = hubbub()
        .args([
            "send",
            "--url",
            &format!("{url}/chathub"),
            "--name",
            "v6",
            "hello over ::1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sigterm(&hub);
    assert!(wait_exit(&mut hub, Duration::from_secs(10)).success());
}

#[test]
fn send_listen_and_piped_chat() {
    let (mut hub, url) = start_hub("127.0.0.1", &[]);
    let hub_url = format!("{url}/chathub");
    let mut listen = hubbub()
        .args(["listen", "--url", &hub_url, "--transport", "sse"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = listen.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Wait until the listener is connected.
    loop {
        let line = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        if line.contains("\"event\":\"connected\"") {
            break;
        }
    }
    let out = hubbub()
        .args([
            "send",
            "--url",
            &hub_url,
            "--name",
            "ann",
            "<script>hi</script>",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Piped input: each line is one message, in order; output is one line per message.
    let mut chat = hubbub()
        .args([
            "chat",
            "--url",
            &hub_url,
            "--name",
            "bob",
            "--protocol",
            "msgpack",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    chat.stdin
        .take()
        .unwrap()
        .write_all(b"one\ntwo\nthree\n")
        .unwrap();
    let chat_out = chat.wait_with_output().unwrap();
    assert!(chat_out.status.success());
    let shown = String::from_utf8(chat_out.stdout).unwrap();
    // The scope's history first (what ann said before bob arrived), then bob's lines.
    assert_eq!(
        shown,
        "ann: <script>hi</script>\nbob: one\nbob: two\nbob: three\n"
    );
    let mut broadcasts = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while broadcasts.len() < 4 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let v: serde_json::Value =
                serde_json::from_str(&line).expect("one JSON object per line");
            if v["type"] == "invocation" && v["target"] == "broadcastMessage" {
                broadcasts.push(v["arguments"].clone());
            }
        }
    }
    assert_eq!(
        broadcasts,
        vec![
            serde_json::json!(["ann", "<script>hi</script>"]),
            serde_json::json!(["bob", "one"]),
            serde_json::json!(["bob", "two"]),
            serde_json::json!(["bob", "three"]),
        ]
    );
    let _ = listen.kill();
    let _ = listen.wait();
    sigterm(&hub);
    assert!(wait_exit(&mut hub, Duration::from_secs(10)).success());
}

#[test]
fn send_to_nothing_fails_with_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = hubbub()
        .args([
            "send",
            "--url",
            &format!("http://127.0.0.1:{port}/chathub"),
            "--name",
            "x",
            "hi",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect") && err.contains("Connection refused"),
        "{err}"
    );
    let out = hubbub()
        .args(["send", "--url", "ftp://x/hub", "--name", "x", "hi"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid hub URL"));
}

#[test]
fn chat_without_url_runs_an_embedded_hub() {
    let mut chat = hubbub()
        .args(["chat", "--name", "solo", "--db", &temp_db("embedded")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    chat.stdin
        .take()
        .unwrap()
        .write_all(b"talking to myself\n")
        .unwrap();
    let out = chat.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "solo: talking to myself\n"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("a hub runs here: http://127.0.0.1:"));
}

/// SIGTERM ends a chat whose input is still open (a terminal, or a pipe nobody closes), and
/// it exits 0: the blocking read of stdin does not hold the process.
#[test]
fn sigterm_ends_a_chat_waiting_for_input() {
    let mut chat = hubbub()
        .args(["chat", "--name", "idle", "--db", &temp_db("sigterm")])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _input = chat.stdin.take().unwrap(); // kept open
    let stderr = chat.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("chatting as idle"));
    assert!(started, "the chat did not start");
    sigterm(&chat);
    let status = wait_exit(&mut chat, Duration::from_secs(10));
    assert!(status.success(), "{status}");
}

/// Lines read by a chat are durable: a chat killed with SIGKILL in the middle of sending picks
/// its outbox up on the next start, and every stored line reaches the hub exactly once, in the
/// order typed.
#[test]
fn sigkill_while_sending_then_restart_delivers_everything_once_in_order() {
    let (mut hub, url) = start_hub("127.0.0.1", &["--max-messages-per-second", "100000"]);
    let hub_url = format!("{url}/chathub");
    let db = temp_db("sigkill");
    let mut listen = hubbub()
        .args(["listen", "--url", &hub_url])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = listen.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        if rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap()
            .contains("\"event\":\"connected\"")
        {
            break;
        }
    }

    // A chat reading a steady stream of lines, killed without warning part way through.
    let mut chat = hubbub()
        .args(["chat", "--url", &hub_url, "--name", "ann", "--db", &db])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = chat.stdin.take().unwrap();
    for i in 0..400 {
        if writeln!(stdin, "line {i:03}").is_err() {
            break;
        }
    }
    // Kill it once the hub has relayed a few of its messages: mid-sending.
    let mut early = Vec::new();
    while early.len() < 5 {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the chat starts sending");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["target"] == "broadcastMessage" {
            early.push(v);
        }
    }
    Command::new("kill")
        .args(["-KILL", &chat.id().to_string()])
        .status()
        .unwrap();
    let _ = chat.wait();
    drop(stdin);

    // What the killed process had accepted: every line it stored.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (stored, unsent): (Vec<(String, String)>, usize) = runtime.block_on(async {
        let store = hubbub_store::Store::open(&db).await.unwrap();
        let hub = store.hubs().await.unwrap()[0].id;
        let conv = store
            .conversation(hub, hubbub_store::ConversationKind::Broadcast)
            .await
            .unwrap();
        let all = store.newest(conv, 10_000).await.unwrap();
        let unsent = store.outbox(hub).await.unwrap().len();
        (
            all.into_iter()
                .filter(|m| m.outgoing)
                .map(|m| (m.msg_id, m.body))
                .collect(),
            unsent,
        )
    });
    assert!(
        stored.len() > 10,
        "the chat had stored some lines before it was killed ({})",
        stored.len()
    );
    assert!(
        unsent > 0,
        "the kill left messages in the outbox ({} stored, all sent)",
        stored.len()
    );

    // Restarted with nothing to type: it sends what is left and exits.
    let status = hubbub()
        .args(["chat", "--url", &hub_url, "--name", "ann", "--db", &db])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());

    // The hub delivered each stored line once, in the order typed.
    let mut delivered: Vec<(String, String)> = early
        .iter()
        .map(|v| {
            (
                v["headers"]["hubbub-msg-id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                v["arguments"][1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while delivered.len() < stored.len() && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v["target"] == "broadcastMessage" && v["arguments"][0] == "ann" {
                let id = v["headers"]["hubbub-msg-id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                delivered.push((id, v["arguments"][1].as_str().unwrap().to_owned()));
            }
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    while let Ok(line) = rx.try_recv() {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["target"] == "broadcastMessage" {
            delivered.push((
                "late".to_owned(),
                v["arguments"][1].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    assert_eq!(delivered, stored, "every stored line, once, in order");
    let bodies: Vec<&String> = stored.iter().map(|(_, b)| b).collect();
    let mut sorted = bodies.clone();
    sorted.sort();
    assert_eq!(bodies, sorted, "stored in the order typed");
    let _ = listen.kill();
    let _ = listen.wait();
    sigterm(&hub);
    assert!(wait_exit(&mut hub, Duration::from_secs(10)).success());
}

#[test]
fn a_damaged_history_is_reported_and_recovered_only_when_asked() {
    let (mut hub, url) = start_hub("127.0.0.1", &[]);
    let db = temp_db("damaged");
    std::fs::write(&db, b"definitely not SQLite").unwrap();
    let out = hubbub()
        .args([
            "chat",
            "--url",
            &format!("{url}/chathub"),
            "--name",
            "x",
            "--db",
            &db,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("damaged") && err.contains("--recover-db"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        b"definitely not SQLite",
        "nothing was wiped"
    );
    let out = hubbub()
        .args([
            "chat",
            "--url",
            &format!("{url}/chathub"),
            "--name",
            "x",
            "--db",
            &db,
            "--recover-db",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("moved to"));
    let dir = std::path::Path::new(&db).parent().unwrap();
    let aside: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "the damaged file was kept aside");
    assert_eq!(
        std::fs::read(aside[0].path()).unwrap(),
        b"definitely not SQLite"
    );
    sigterm(&hub);
    assert!(wait_exit(&mut hub, Duration::from_secs(10)).success());
}

/// Starts `hubbub listen` on `hub_url` and waits until it is connected; its stdout lines come
/// through the receiver.
fn start_listener(hub_url: &str, extra: &[&str]) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut listen = hubbub()
        .args(["listen", "--url", hub_url])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = listen.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the listener connects within 10 s");
        if line.contains("\"event\":\"connected\"") {
            return (listen, rx);
        }
    }
}

/// Issue 12, item 7: 1,000 lines piped into `hubbub chat` against `hubbub hub` with its default
/// rate limit (200 messages a second per connection). The hub used to close the sender for
/// good after about half of them; now the outbox paces itself, the hub would slow it rather
/// than close it, and a listener sees every line exactly once, in order.
#[test]
fn a_thousand_piped_lines_all_arrive_once_under_the_hubs_default_rate_limit() {
    const LINES: usize = 1_000;
    let (mut hub, url) = start_hub("127.0.0.1", &[]);
    let hub_url = format!("{url}/chathub");
    let (mut listen, rx) = start_listener(&hub_url, &[]);
    let mut chat = hubbub()
        .args([
            "chat",
            "--url",
            &hub_url,
            "--name",
            "sender",
            "--db",
            &temp_db("burst"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input: String = (1..=LINES).map(|i| format!("burst-{i}\n")).collect();
    let mut stdin = chat.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    let stderr = chat.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());

    let mut delivered = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while delivered.len() < LINES && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v["target"] == "broadcastMessage" && v["arguments"][0] == "sender" {
                delivered.push(v["arguments"][1].as_str().unwrap().to_owned());
            }
        }
    }
    // The chat ends by itself once its outbox is empty, and with success.
    let status = wait_exit(&mut chat, Duration::from_secs(30));
    let stderr = stderr.join().unwrap();
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    // Anything repeated would come now.
    std::thread::sleep(Duration::from_millis(500));
    while let Ok(line) = rx.try_recv() {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["target"] == "broadcastMessage" {
            delivered.push(v["arguments"][1].as_str().unwrap_or_default().to_owned());
        }
    }
    let expected: Vec<String> = (1..=LINES).map(|i| format!("burst-{i}")).collect();
    assert!(
        delivered == expected,
        "{} delivered (expected {LINES}, each once, in order); first difference at {:?}; chat's \
         stderr:\n{stderr}",
        delivered.len(),
        delivered.iter().zip(&expected).position(|(a, b)| a != b)
    );
    assert!(!stderr.contains("disconnected"), "{stderr}");
    let _ = listen.kill();
    let _ = listen.wait();
    sigterm(&hub);
    assert!(wait_exit(&mut hub, Duration::from_secs(10)).success());
}

/// Issue 12, item 8: `hubbub chat` shows a direct message once, marked as direct (it used to
/// show it a second time as if it were a broadcast).
#[test]
fn chat_shows_each_direct_message_once_marked_as_direct() {
    use hubbub_client::{Arg, HubConnectionBuilder, chat::MESSAGE_ID_HEADER};
    let (mut hub, url) = start_hub("127.0.0.1", &[]);
    let hub_url = format!("{url}/chathub");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // ann is there first, and sees bob arrive.
    let (joined_tx, joined) = std::sync::mpsc::channel();
    let ann = runtime.block_on(async {
        let ann = HubConnectionBuilder::new(format!("{hub_url}?name=ann"))
            .build()
            .unwrap();
        ann.on("userJoined", move |args| {
            if args
                .first()
                .and_then(|a| a.decode::<String>().ok())
                .as_deref()
                == Some("bob")
            {
                let _ = joined_tx.send(());
            }
            None
        });
        ann.start().await.unwrap();
        ann
    });
    let mut bob = hubbub()
        .args([
            "chat",
            "--url",
            &hub_url,
            "--name",
            "bob",
            "--db",
            &temp_db("direct"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _input = bob.stdin.take().unwrap(); // kept open: bob stays until SIGTERM
    let stdout = bob.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    joined
        .recv_timeout(Duration::from_secs(10))
        .expect("bob joins within 10 s");
    let mut shown = Vec::new();
    let mut say = |method: &str, args: Vec<Arg>, id: &str, expect: &str| {
        let headers = hubbub_client::Headers::from([(MESSAGE_ID_HEADER.to_owned(), id.to_owned())]);
        runtime
            .block_on(ann.invoke_with_headers::<()>(method, args, headers))
            .unwrap();
        while !shown.iter().any(|l| l == expect) {
            let line = rx
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("bob did not show {expect:?} within 10 s: {shown:?}"));
            shown.push(line);
        }
    };
    say(
        "SendToUser",
        vec!["bob".into(), "psst".into()],
        "direct-1",
        "(direct) ann: psst",
    );
    // A broadcast after it: by the time bob shows it, any second copy of the direct message
    // would have been shown (one connection's messages are handled in order).
    say(
        "Send",
        vec!["ann".into(), "after".into()],
        "broadcast-1",
        "ann: after",
    );
    sigterm(&bob);
    assert!(wait_exit(&mut bob, Duration::from_secs(10)).success());
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
        shown.push(line);
    }
    assert_eq!(shown, ["(direct) ann: psst", "ann: after"]);
    runtime.block_on(ann.stop());
    sigterm(&hub);
    assert!(wait_exit(&mut hub, Duration::from_secs(10)).success());
}

#[test]
fn send_listen_and_chat_on_the_classic_endpoint_over_every_transport() {
    let (mut hub, url) = start_hub("127.0.0.1", &[]);
    // A classic URL names the endpoint; the hub (`chatHub`) is the default `--hub-name`.
    let classic_url = format!("{url}/signalr");
    for transport in ["ws", "sse", "lp"] {
        let (mut listen, rx) = start_listener(&classic_url, &["--transport", transport]);
        let out = hubbub()
            .args([
                "send",
                "--url",
                &classic_url,
                "--transport",
                transport,
                "--name",
                "ann",
                &format!("classic {transport}"),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{transport}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut chat = hubbub()
            .args([
                "chat",
                "--url",
                &classic_url,
                "--family",
                "classic",
                "--hub-name",
                "ChatHub",
                "--transport",
                transport,
                "--name",
                "bob",
                "--db",
                &temp_db(&format!("classic-{transport}")),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        chat.stdin
            .take()
            .unwrap()
            .write_all(format!("one {transport}\ntwo {transport}\n").as_bytes())
            .unwrap();
        assert!(chat.wait().unwrap().success(), "{transport}: chat exits 0");
        let mut broadcasts = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while broadcasts.len() < 3 && Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
                let v: serde_json::Value =
                    serde_json::from_str(&line).expect("one JSON object per line");
                if v["type"] == "invocation" && v["target"] == "broadcastMessage" {
                    broadcasts.push(v["arguments"].clone());
                }
            }
        }
        assert_eq!(
            broadcasts,
            vec![
                serde_json::json!(["ann", format!("classic {transport}")]),
                serde_json::json!(["bob", format!("one {transport}")]),
                serde_json::json!(["bob", format!("two {transport}")]),
            ],
            "{transport}"
        );
        let _ = listen.kill();
        let _ = listen.wait();
    }
    // A hub name the endpoint does not have is a sentence to act on.
    let out = hubbub()
        .args([
            "send",
            "--url",
            &classic_url,
            "--hub-name",
            "nosuch",
            "--name",
            "ann",
            "x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nosuch"), "{err}");
    sigterm(&hub);
    assert!(wait_exit(&mut hub, Duration::from_secs(10)).success());
}
