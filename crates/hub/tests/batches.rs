//! A connection handles what it has read in batches, its recipients' writers woken once per
//! batch (issue 19). A batch must not let a recipient's queue (1,024 messages) fill while its
//! writer is held back: a client that pipelines thousands of small invocations at once, on a
//! hub with one worker thread (no other thread to run the writers meanwhile), is served in
//! full and in order, and neither it nor the one watching is closed as too slow.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hubbub_hub::{Context, Hub, HubError, HubOptions, ServerBuilder};
use hubbub_protocol::Arg;
use tokio_tungstenite::tungstenite::Message;

/// Invocations the flooder sends, in WebSocket messages of `PER_FRAME` records each: three
/// times the queue's 1,024 messages, and the sender hears two messages per invocation (its
/// completion and its own broadcast).
const INVOCATIONS: usize = 3_000;
const PER_FRAME: usize = 100;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw client that skipped negotiation and shook hands (JSON).
async fn open(url: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::Text(
        "{\"protocol\":\"json\",\"version\":1}\u{1e}".into(),
    ))
    .await
    .unwrap();
    ws
}

/// Reads records until `done` says the text so far is complete; panics on a Close message
/// (type 7) or after 30 s without it.
async fn read_until(ws: &mut Ws, who: &str, done: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done(&text) {
        let message = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("{who}: not complete within 30 s"));
        match message {
            Some(Ok(Message::Text(t))) => text.push_str(&t),
            Some(Ok(_)) => {}
            other => panic!("{who}: the socket ended: {other:?}"),
        }
        assert!(
            !text.contains("{\"type\":7"),
            "{who} was closed: {}",
            &text[text.find("{\"type\":7").unwrap_or(0)..]
        );
    }
    text
}

#[tokio::test(flavor = "current_thread")]
async fn a_pipelined_burst_on_one_worker_is_served_in_full_without_filling_any_queue() {
    let hub = Hub::new("plain").method(
        "Send",
        |ctx: Context, (name, message): (String, String)| async move {
            ctx.clients().all().send(
                "broadcastMessage",
                vec![Arg::from(name), Arg::from(message)],
            );
            Ok::<(), HubError>(())
        },
    );
    let server = ServerBuilder::new()
        .options(HubOptions {
            max_messages_per_second: 1_000_000,
            ..HubOptions::default()
        })
        .hub("/plain", hub)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = server.url("/plain").replace("http://", "ws://");
    let mut watcher = open(&url).await;
    read_until(&mut watcher, "the watcher's handshake", |t| {
        t.contains('\u{1e}')
    })
    .await;
    let mut flooder = open(&url).await;
    read_until(&mut flooder, "the flooder's handshake", |t| {
        t.contains('\u{1e}')
    })
    .await;

    // Everything at once: the hub reads it in a few socket reads.
    let mut frames = Vec::new();
    for chunk in (0..INVOCATIONS).collect::<Vec<_>>().chunks(PER_FRAME) {
        let mut frame = String::new();
        for i in chunk {
            frame.push_str(&format!(
                "{{\"type\":1,\"invocationId\":\"{i}\",\"target\":\"Send\",\"arguments\":[\"f\",\"m{i}\"]}}\u{1e}"
            ));
        }
        frames.push(Message::Text(frame.into()));
    }
    let mut stream = futures_util::stream::iter(frames.into_iter().map(Ok));
    flooder.send_all(&mut stream).await.unwrap();

    let last = format!("\"m{}\"", INVOCATIONS - 1);
    let seen = read_until(&mut watcher, "the watcher", |t| t.contains(&last)).await;
    let heard = read_until(&mut flooder, "the flooder", |t| {
        t.contains(&format!("\"invocationId\":\"{}\"", INVOCATIONS - 1)) && t.contains(&last)
    })
    .await;
    // In order, each once.
    let order: Vec<String> = seen
        .split('\u{1e}')
        .filter(|r| r.contains("broadcastMessage"))
        .map(|r| {
            r.rsplit("\"m")
                .next()
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    let expected: Vec<String> = (0..INVOCATIONS).map(|i| i.to_string()).collect();
    assert_eq!(order, expected);
    let completions = heard
        .split('\u{1e}')
        .filter(|r| r.starts_with("{\"type\":3"))
        .count();
    assert_eq!(completions, INVOCATIONS);
    server.shutdown().await.unwrap();
}
