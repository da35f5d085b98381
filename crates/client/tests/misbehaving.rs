//! The client against tiny servers on loopback that behave as real servers may but our hub
//! does not: a long-polling-only server that holds every poll and never pings (issue 12,
//! item 5), a server answering with a Completion that parses but is invalid (item 6), and one
//! that never answers at all.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use futures_util::{SinkExt, StreamExt};
use hubbub_client::{Error, Event, HubConnectionBuilder, State as ConnState, TransportKind};
use tokio::sync::{Notify, broadcast};

const NEGOTIATE_LONG_POLLING: &str = r#"{"negotiateVersion":1,"connectionId":"c","connectionToken":"t","availableTransports":[{"transport":"LongPolling","transferFormats":["Text","Binary"]}]}"#;

/// A long-polling-only server in the manner of ASP.NET Core with no pings: the first poll
/// answers at once, later ones are held until there is data or for `hold`, then answered
/// with an empty 200.
#[derive(Default)]
struct LongPoller {
    hold: Duration,
    outgoing: Mutex<Vec<u8>>,
    ready: Notify,
    polls: Mutex<usize>,
    polled: Notify,
    received: Mutex<Vec<String>>,
}

impl LongPoller {
    fn queue(&self, bytes: &[u8]) {
        self.outgoing.lock().unwrap().extend_from_slice(bytes);
        self.ready.notify_one();
    }
}

async fn long_poller(hold: Duration) -> (String, Arc<LongPoller>) {
    let server = Arc::new(LongPoller {
        hold,
        ..Default::default()
    });
    let app = axum::Router::new()
        .route(
            "/hub/negotiate",
            post(|| async {
                (
                    [("content-type", "application/json")],
                    NEGOTIATE_LONG_POLLING,
                )
            }),
        )
        .route(
            "/hub",
            get(|State(s): State<Arc<LongPoller>>| async move {
                let first = {
                    let mut polls = s.polls.lock().unwrap();
                    *polls += 1;
                    *polls == 1
                };
                s.polled.notify_waiters();
                if !first && s.outgoing.lock().unwrap().is_empty() {
                    let _ = tokio::time::timeout(s.hold, s.ready.notified()).await;
                }
                std::mem::take(&mut *s.outgoing.lock().unwrap())
            })
            .post(|State(s): State<Arc<LongPoller>>, body: Bytes| async move {
                let text = String::from_utf8_lossy(&body).into_owned();
                for record in text.split('\u{1e}').filter(|r| !r.is_empty()) {
                    s.received.lock().unwrap().push(record.to_owned());
                    let message: serde_json::Value = serde_json::from_str(record).unwrap();
                    if message.get("protocol").is_some() {
                        s.queue(b"{}\x1e");
                    } else if message["type"] == 1 && message["target"] == "Echo" {
                        let reply = serde_json::json!({
                            "type": 3,
                            "invocationId": message["invocationId"],
                            "result": message["arguments"][0],
                        });
                        s.queue(format!("{reply}\u{1e}").as_bytes());
                    }
                }
                StatusCode::OK
            })
            .delete(|| async { StatusCode::ACCEPTED }),
        )
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hub"), server)
}

/// Issue 12, item 5: long polling keeps itself alive. With every timer of the client set far
/// below the server's poll hold, the client neither times the server out, nor reports it
/// slow, nor pings it, over many held polls; and calls still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_long_polling_connection_is_kept_without_pings_or_server_timeout() {
    let (url, server) = long_poller(Duration::from_millis(600)).await;
    let conn = HubConnectionBuilder::new(url)
        .transports(&[TransportKind::LongPolling])
        .server_timeout(Duration::from_millis(200))
        .keep_alive_interval(Duration::from_millis(50))
        .with_automatic_reconnect()
        .build()
        .unwrap();
    let mut events = conn.events();
    tokio::time::timeout(Duration::from_secs(10), conn.start())
        .await
        .expect("start within 10 s")
        .expect("connected");
    // Six held polls: 3.6 s of a silent server, 18 server timeouts' worth.
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let polled = server.polled.notified();
            if *server.polls.lock().unwrap() >= 8 {
                break;
            }
            polled.await;
        }
    })
    .await
    .expect("the client keeps polling (8 polls within 20 s)");
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(format!("{event:?}"));
    }
    assert!(
        !seen
            .iter()
            .any(|e| e.contains("Reconnecting") || e.contains("Closed") || e.contains("Slow")),
        "no timeout, reconnect or slow report on an idle long-polling connection: {seen:?}"
    );
    assert_eq!(conn.state(), ConnState::Connected);
    let received = server.received.lock().unwrap().clone();
    assert!(
        !received.iter().any(|m| m.contains("\"type\":6")),
        "no keep-alive pings on long polling: {received:?}"
    );
    let echoed: i64 = tokio::time::timeout(
        Duration::from_secs(10),
        conn.invoke("Echo", vec![hubbub_client::Arg::from_value(7.into())]),
    )
    .await
    .expect("Echo within 10 s")
    .expect("Echo answered");
    assert_eq!(echoed, 7);
    conn.stop().await;
}

/// A WebSocket server (reached with skip-negotiation) that accepts the handshake, then answers
/// each invocation with `answer(invocation id)`, or not at all when that is `None`. It never
/// pings. Returns the URL and the events of what each connection received.
async fn ws_server(answer: fn(&str) -> Option<String>) -> (String, broadcast::Sender<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen, _) = broadcast::channel(64);
    let seen_tx = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let seen = seen_tx.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    let text = message.into_text().unwrap_or_default().to_string();
                    for record in text.split('\u{1e}').filter(|r| !r.is_empty()) {
                        let _ = seen.send(record.to_owned());
                        let value: serde_json::Value = serde_json::from_str(record).unwrap();
                        let reply = if value.get("protocol").is_some() {
                            Some("{}".to_owned())
                        } else if value["type"] == 1 {
                            value["invocationId"].as_str().and_then(answer)
                        } else {
                            None
                        };
                        if let Some(reply) = reply {
                            let frame = format!("{reply}\u{1e}");
                            if ws.send(frame.into()).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (format!("ws://{addr}/hub"), seen)
}

/// Issue 12, item 6: `{"type":3,"invocationId":"0","result":1,"error":"e"}` parses as a frame
/// but is not a valid Completion. The call waiting on it fails at once with a clear error and
/// the connection ends with that reason (as the official clients end it), instead of the
/// message being skipped and the call left waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_with_result_and_error_fails_the_call_and_ends_the_connection() {
    let (url, _seen) = ws_server(|id| {
        Some(format!(
            r#"{{"type":3,"invocationId":"{id}","result":1,"error":"e"}}"#
        ))
    })
    .await;
    let conn = HubConnectionBuilder::new(url)
        .skip_negotiation(true)
        .transports(&[TransportKind::WebSockets])
        .invocation_timeout(None)
        .build()
        .unwrap();
    let mut events = conn.events();
    tokio::time::timeout(Duration::from_secs(10), conn.start())
        .await
        .expect("start within 10 s")
        .expect("connected");
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        conn.invoke::<i64>("Anything", vec![]),
    )
    .await
    .expect("the call is settled, not left waiting (no invocation timeout is set)");
    let error = result.expect_err("an invalid Completion is no answer");
    assert!(
        matches!(&error, Error::InvalidMessage(m) if m.contains("'error' and 'result'")),
        "{error:?}"
    );
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Ok(Event::Closed { reason }) => return reason,
                Ok(_) => {}
                Err(e) => panic!("events ended: {e}"),
            }
        }
    })
    .await
    .expect("the connection ends within 10 s");
    assert!(
        closed
            .as_deref()
            .is_some_and(|r| r.contains("invalid message")),
        "{closed:?}"
    );
}

/// No call waits without bound: a hub that never answers (and never pings, so the connection
/// looks alive until the server timeout) fails the call after the invocation timeout, and the
/// connection stays up for the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_the_hub_never_answers_fails_after_the_invocation_timeout() {
    let (url, _seen) = ws_server(|id| {
        (id != "0").then(|| format!(r#"{{"type":3,"invocationId":"{id}","result":2}}"#))
    })
    .await;
    let conn = HubConnectionBuilder::new(url)
        .skip_negotiation(true)
        .transports(&[TransportKind::WebSockets])
        .invocation_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), conn.start())
        .await
        .expect("start within 10 s")
        .expect("connected");
    let error = tokio::time::timeout(Duration::from_secs(10), conn.invoke::<i64>("Never", vec![]))
        .await
        .expect("the call ends within 10 s")
        .expect_err("no answer");
    assert!(
        matches!(error, Error::InvocationTimeout(limit) if limit == Duration::from_millis(300)),
        "{error:?}"
    );
    let answered =
        tokio::time::timeout(Duration::from_secs(10), conn.invoke::<i64>("Next", vec![]))
            .await
            .expect("the next call ends within 10 s")
            .expect("answered");
    assert_eq!(answered, 2);
    assert_eq!(conn.state(), ConnState::Connected);
    conn.stop().await;
}
