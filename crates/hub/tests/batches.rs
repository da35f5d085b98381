//! A connection handles what it has read in batches, its recipients' writers woken once per
//! batch (issue 19). A batch must not let a recipient's queue (1,024 messages) fill while its
//! writer is held back: a client that pipelines thousands of small invocations at once, on a
//! hub with one worker thread (no other thread to run the writers meanwhile), is served in
//! full and in order, and neither it nor the one watching is closed as too slow. Nor may
//! batches starve the connection's timers: a client that keeps every batch full still hears
//! its keep-alive pings.

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

/// A raw client that skipped negotiation and shook hands (JSON), within 10 s.
async fn open(url: &str) -> Ws {
    tokio::time::timeout(Duration::from_secs(10), async {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        ws.send(Message::Text(
            "{\"protocol\":\"json\",\"version\":1}\u{1e}".into(),
        ))
        .await
        .unwrap();
        ws
    })
    .await
    .expect("connected and the handshake sent within 10 s")
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
            Some(Ok(Message::Text(t))) => {
                assert!(!t.contains("{\"type\":7"), "{who} was closed: {t}");
                text.push_str(&t);
            }
            Some(Ok(_)) => {}
            other => panic!("{who}: the socket ended: {other:?}"),
        }
    }
    text
}

/// A hub whose `Send` broadcasts to everyone and whose `Noop` does nothing, with no rate
/// limit to speak of.
async fn plain_hub(options: HubOptions) -> hubbub_hub::RunningServer {
    let hub = Hub::new("plain")
        .method(
            "Send",
            |ctx: Context, (name, message): (String, String)| async move {
                ctx.clients().all().send(
                    "broadcastMessage",
                    vec![Arg::from(name), Arg::from(message)],
                );
                Ok::<(), HubError>(())
            },
        )
        .method("Noop", |_ctx: Context, (): ()| async move {
            Ok::<(), HubError>(())
        });
    ServerBuilder::new()
        .options(HubOptions {
            max_messages_per_second: 1_000_000,
            ..options
        })
        .hub("/plain", hub)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// A client that keeps every batch full (far more invocations ready than a batch takes, for
/// 3 s) still hears the hub's keep-alive pings meanwhile: the timers are not starved by the
/// batches (nor are the end, shutdown and a too-slow close, which the same check sees to).
#[tokio::test(flavor = "current_thread")]
async fn a_client_that_keeps_every_batch_full_still_gets_its_pings() {
    let server = plain_hub(HubOptions {
        keep_alive_interval: Duration::from_millis(200),
        ..HubOptions::default()
    })
    .await;
    let url = server.url("/plain").replace("http://", "ws://");
    let flooder = open(&url).await;
    let (mut sink, mut stream) = flooder.split();
    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = tokio::spawn({
        let flooding = flooding.clone();
        async move {
            let frame: String = (0..200)
                .map(|_| "{\"type\":1,\"target\":\"Noop\",\"arguments\":[]}\u{1e}")
                .collect();
            let until = tokio::time::Instant::now() + Duration::from_secs(3);
            while tokio::time::Instant::now() < until {
                let sent = tokio::time::timeout(
                    Duration::from_secs(10),
                    sink.send(Message::Text(frame.clone().into())),
                )
                .await;
                if !matches!(sent, Ok(Ok(()))) {
                    break;
                }
            }
            flooding.store(false, std::sync::atomic::Ordering::SeqCst);
            sink
        }
    });
    // The handshake's answer, then a ping while the flood goes on.
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let pinged_while_flooding = loop {
        let message = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("a ping within 10 s");
        match message {
            Some(Ok(Message::Text(t))) => text.push_str(&t),
            Some(Ok(_)) => {}
            other => panic!("the socket ended: {other:?}"),
        }
        if text.contains("{\"type\":6}") {
            break flooding.load(std::sync::atomic::Ordering::SeqCst);
        }
    };
    assert!(
        pinged_while_flooding,
        "the first ping came only after the 3 s flood: {text}"
    );
    let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_pipelined_burst_on_one_worker_is_served_in_full_without_filling_any_queue() {
    let server = plain_hub(HubOptions::default()).await;
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
    tokio::time::timeout(Duration::from_secs(30), flooder.send_all(&mut stream))
        .await
        .expect("the burst is written within 30 s")
        .unwrap();

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
