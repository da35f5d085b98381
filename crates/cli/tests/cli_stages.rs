//! The client commands at every stage of a connection, against the real hub and against a
//! stand-in hub that does one thing on purpose: a socket that never answers, a hub that
//! speaks before `listen` has said it is connected, a clean Close, a connection dropped with
//! a call in flight.

// Children are reaped with wait() where the test goes on; a failed assertion kills them
// through `Reap`.
#![allow(clippy::zombie_processes)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::routing::{get, post};

mod support;
use support::hubbub;

/// Kills a child when dropped (a failed assertion must not leave it running).
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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

/// A pipe read line by line on a thread.
fn lines(pipe: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Every line until the pipe closes (the process exited), within `limit`.
fn rest(rx: &Receiver<String>, limit: Duration) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => out.push(line),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return out,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("the output did not end within {limit:?}: {out:?}")
            }
        }
    }
}

/// A TCP listener on 127.0.0.1 that accepts connections and never answers. The receiver
/// hears of each accepted connection.
fn black_hole() -> (u16, Receiver<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().map_while(Result::ok) {
            held.push(stream);
            let _ = tx.send(());
        }
    });
    (port, rx)
}

/// SIGTERM and Ctrl-C end every client command while it is still connecting (here: to a
/// socket that accepts and never answers, where a connect attempt waits up to 15 s).
#[test]
fn sigterm_ends_listen_send_and_chat_while_they_are_still_connecting() {
    let (port, accepted) = black_hole();
    let url = format!("http://127.0.0.1:{port}/chathub");
    let dir = std::env::temp_dir().join(format!("hubbub-cli-stages-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("history.sqlite3").display().to_string();
    let commands: [(&str, Vec<&str>, bool); 3] = [
        ("listen", vec!["listen", "--url", &url], true),
        // Interrupted before the hub confirmed the message: not a success.
        (
            "send",
            vec!["send", "--url", &url, "--name", "x", "hi"],
            false,
        ),
        (
            "chat",
            vec!["chat", "--url", &url, "--name", "x", "--db", &db],
            true,
        ),
    ];
    for (name, args, success) in commands {
        let mut child = Reap(
            hubbub()
                .args(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let stderr = lines(child.0.stderr.take().unwrap());
        accepted
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{name} did not try to connect within 10 s"));
        sigterm(&child.0);
        let status = wait_exit(&mut child.0, Duration::from_secs(5));
        let said = rest(&stderr, Duration::from_secs(5));
        assert_eq!(
            status.success(),
            success,
            "{name} ended with {status}: {said:?}"
        );
    }
}

/// What the stand-in hub does after a handshake.
#[derive(Clone, Copy)]
enum Act {
    /// Sends an invocation in the same frame as the handshake answer, then waits.
    SpeakAtOnce,
    /// Sends a Close without an error.
    CloseCleanly,
    /// Drops the socket once an invocation arrives, without answering it.
    DropOnInvocation,
}

/// Serves a stand-in hub on 127.0.0.1 at `/hub` (negotiate, then WebSockets only); returns
/// its URL. The server lives as long as the test process.
fn stand_in_hub(act: Act) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let negotiate = || async {
                axum::Json(serde_json::json!({
                    "negotiateVersion": 1,
                    "connectionId": "c1",
                    "connectionToken": "t1",
                    "availableTransports": [
                        { "transport": "WebSockets", "transferFormats": ["Text", "Binary"] }
                    ]
                }))
            };
            let app = axum::Router::new()
                .route("/hub/negotiate", post(negotiate))
                .route(
                    "/hub",
                    get(move |ws: WebSocketUpgrade| async move {
                        ws.on_upgrade(move |socket| serve(socket, act))
                    }),
                );
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://127.0.0.1:{port}/hub")
}

async fn serve(mut socket: WebSocket, act: Act) {
    // The handshake request.
    let limit = Duration::from_secs(10);
    if tokio::time::timeout(limit, socket.recv()).await.is_err() {
        return;
    }
    match act {
        Act::SpeakAtOnce => {
            let frame = "{}\u{1e}{\"type\":1,\"target\":\"early\",\"arguments\":[\"hello\"]}\u{1e}";
            let _ = socket.send(Message::Text(frame.into())).await;
            // Until the client leaves (bounded).
            while let Ok(Some(Ok(_))) = tokio::time::timeout(limit, socket.recv()).await {}
        }
        Act::CloseCleanly => {
            let _ = socket.send(Message::Text("{}\u{1e}".into())).await;
            let _ = socket
                .send(Message::Text("{\"type\":7}\u{1e}".into()))
                .await;
            while let Ok(Some(Ok(_))) = tokio::time::timeout(limit, socket.recv()).await {}
        }
        Act::DropOnInvocation => {
            let _ = socket.send(Message::Text("{}\u{1e}".into())).await;
            while let Ok(Some(Ok(message))) = tokio::time::timeout(limit, socket.recv()).await {
                if let Message::Text(text) = message {
                    if text.contains("\"type\":1") {
                        // Gone without a word: no Close message, no close frame.
                        return;
                    }
                }
            }
        }
    }
}

/// A log line without its terminal colours.
fn plain(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An escape sequence runs to its final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// `listen` prints what happened in the order it happened: its own "connected" lines come
/// before the invocation the hub sent right after the handshake.
#[test]
fn listen_prints_events_and_invocations_in_the_order_they_happened() {
    let url = stand_in_hub(Act::SpeakAtOnce);
    let mut listen = Reap(
        hubbub()
            .args(["listen", "--url", &url])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = lines(listen.0.stdout.take().unwrap());
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("\"invocation\"")) {
        let line = stdout
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no invocation within 10 s: {seen:?}"));
        seen.push(line);
    }
    sigterm(&listen.0);
    assert!(wait_exit(&mut listen.0, Duration::from_secs(10)).success());
    let kinds: Vec<String> = seen
        .iter()
        .map(|l| {
            let v = json(l);
            match v["type"].as_str() {
                Some("invocation") => format!("invocation {}", v["target"]),
                _ => format!("{} {}", v["event"], v["new"]),
            }
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "\"stateChanged\" \"Connecting\"",
            "\"stateChanged\" \"Connected\"",
            "\"connected\" null",
            "invocation \"early\"",
        ],
        "{seen:?}"
    );
}

/// A Close from the hub without an error ends `listen` as a success, with a plain notice.
#[test]
fn a_clean_close_from_the_hub_is_not_a_failure() {
    let url = stand_in_hub(Act::CloseCleanly);
    let mut listen = Reap(
        hubbub()
            .args(["listen", "--url", &url])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = lines(listen.0.stdout.take().unwrap());
    let stderr = lines(listen.0.stderr.take().unwrap());
    let status = wait_exit(&mut listen.0, Duration::from_secs(10));
    let out = rest(&stdout, Duration::from_secs(5));
    let err = rest(&stderr, Duration::from_secs(5));
    assert!(status.success(), "{status}: {out:?} {err:?}");
    let last = json(out.last().expect("some output"));
    assert_eq!(last["event"], "closed", "{out:?}");
    assert_eq!(last["reason"], serde_json::Value::Null, "{out:?}");
    assert_eq!(err, ["hubbub: the hub closed the connection"]);
}

/// `send` never reconnects, and says so when its connection is lost with the call in
/// flight: what it logs is true for its own policy.
#[test]
fn send_logs_no_reconnect_when_its_connection_is_lost() {
    let url = stand_in_hub(Act::DropOnInvocation);
    let out = hubbub()
        .args(["send", "--url", &url, "--name", "x", "hi"])
        .env("RUST_LOG", "hubbub_client=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut send = Reap(out);
    let stderr = lines(send.0.stderr.take().unwrap());
    let status = wait_exit(&mut send.0, Duration::from_secs(20));
    let err: Vec<String> = rest(&stderr, Duration::from_secs(5))
        .iter()
        .map(|l| plain(l))
        .collect();
    assert!(!status.success(), "the message was not confirmed: {err:?}");
    let lost: Vec<&String> = err
        .iter()
        .filter(|l| l.contains("connection lost"))
        .collect();
    assert_eq!(lost.len(), 1, "{err:?}");
    assert!(lost[0].contains("reconnect=false"), "{err:?}");
    assert!(
        err.iter().any(|l| l.contains("hubbub: send failed")),
        "{err:?}"
    );
}
