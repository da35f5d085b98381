//! Clients that never read what the hub writes to them: every wait of the hub on them has a
//! limit (`HubOptions::write_stall_timeout`), past which the client is closed as too slow
//! (reason `queue_full`) and what waited on it ends. Each client here is a raw socket with a
//! small receive buffer that sends its requests and never reads a byte of its event stream.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::request;

use hubbub_hub::{ClassicOptions, HubOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Short, so the tests are quick: the stall limit is this plus a second per 16 KiB written.
const STALL: Duration = Duration::from_millis(300);

async fn hub(options: HubOptions, classic: ClassicOptions) -> hubbub_hub::RunningServer {
    hubbub_hub::ServerBuilder::new()
        .options(options)
        .classic(classic)
        .hub("/chathub", hubbub_hub::chat_hub())
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .expect("the hub binds a loopback port")
}

/// Opens an event stream at `path_and_query` on a socket with a small receive buffer, reads
/// until `until` has come (so the hub has taken the request), and never reads from it again
/// (the socket is kept open by the caller).
async fn unread_event_stream(
    hub: &hubbub_hub::RunningServer,
    path_and_query: &str,
    until: &str,
) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream =
        tokio::time::timeout(Duration::from_secs(10), socket.connect(hub.local_addr()))
            .await
            .expect("connected within 10 s")
            .expect("the hub accepts the socket");
    let request = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    );
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.write_all(request.as_bytes()),
    )
    .await
    .expect("request written within 10 s")
    .unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(until) {
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{until:?} not received within 10 s: {}",
                    String::from_utf8_lossy(&seen)
                )
            })
            .unwrap();
        assert!(
            n > 0,
            "the event stream ended: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    stream
}

/// Waits (at most `limit`) until the hub has no connection open, then checks that the one it
/// had was closed as too slow (`queue_full`); panics with `what` otherwise.
async fn closed_as_too_slow(hub: &hubbub_hub::RunningServer, limit: Duration, what: &str) {
    until_closed(hub, limit, what).await;
    let (closes, text) = metric(hub, "hubbub_disconnects_total", "reason=\"queue_full\"").await;
    assert_eq!(closes, 1.0, "closed as too slow: {text}");
}

/// Opens a WebSocket to `url` (`ws://…` on the hub) on a socket with a small receive buffer,
/// which the caller then never reads (past what it reads itself).
async fn unread_websocket(
    hub: &hubbub_hub::RunningServer,
    url: &str,
) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let (unread, _) = tokio::time::timeout(Duration::from_secs(10), async {
        let stream = socket.connect(hub.local_addr()).await.unwrap();
        tokio_tungstenite::client_async(url, stream).await
    })
    .await
    .expect("the WebSocket opens within 10 s")
    .expect("the WebSocket opens");
    unread
}

/// A hub whose writes to a client count as stalled after [`STALL`], at the socket
/// (`TcpLimits::write_stall_timeout`) as for the hub's own waits (`options`).
async fn hub_stalling_at_once(
    options: HubOptions,
    classic: ClassicOptions,
) -> hubbub_hub::RunningServer {
    hubbub_hub::ServerBuilder::new()
        .options(HubOptions {
            write_stall_timeout: STALL,
            ..options
        })
        .classic(classic)
        .tcp_limits(hubbub_hub::TcpLimits {
            write_stall_timeout: STALL,
            ..hubbub_hub::TcpLimits::default()
        })
        .hub("/chathub", hubbub_hub::chat_hub())
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .expect("the hub binds a loopback port")
}

/// The sum of `name`'s samples whose labels contain `label` in the hub's `/metrics`.
async fn metric(hub: &hubbub_hub::RunningServer, name: &str, label: &str) -> (f64, String) {
    let (status, text) = request(reqwest::Client::new().get(hub.url("/metrics")), "/metrics").await;
    assert_eq!(status, 200, "{text}");
    let sum = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    (sum, text)
}

/// Waits (at most `limit`) until the hub has no connection open; panics with `what` otherwise.
async fn until_closed(hub: &hubbub_hub::RunningServer, limit: Duration, what: &str) {
    let counters = hub.counters("/chathub").expect("the hub is mounted");
    let deadline = tokio::time::Instant::now() + limit;
    while counters.connections_open.load(Ordering::Relaxed) > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still open after {} s",
            limit.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A classic client whose event stream is never read: the stream's writer waited on the body
/// without limit, so the connection held its transport (and never went idle) for ever. Now it
/// is closed as too slow once nothing is taken within the stall limit, and the method that
/// was writing to it (a `Flood`, answered on the `send` request) ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_event_stream_never_read_is_closed_as_too_slow() {
    let hub = hub(
        HubOptions {
            write_stall_timeout: STALL,
            ..HubOptions::default()
        },
        ClassicOptions {
            // Nothing but the flood is written; everything of it fits the replay buffer, so
            // only the event stream's writer waits on the client.
            keep_alive: None,
            replay_messages: 10_000,
            replay_bytes: 64 << 20,
            ..ClassicOptions::default()
        },
    )
    .await;
    let http = reqwest::Client::new();
    let data = "connectionData=%5B%7B%22name%22%3A%22chathub%22%7D%5D&clientProtocol=2.1";
    let (status, body) = request(
        http.get(hub.url(&format!("/signalr/negotiate?{data}"))),
        "negotiate",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let negotiated: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = negotiated["ConnectionToken"].as_str().unwrap();
    let url = |what: &str| {
        let mut url = reqwest::Url::parse(&hub.url(&format!(
            "/signalr/{what}?transport=serverSentEvents&{data}"
        )))
        .unwrap();
        url.query_pairs_mut().append_pair("connectionToken", token);
        url
    };
    let connect = url("connect");
    let _unread = unread_event_stream(
        &hub,
        &format!("{}?{}", connect.path(), connect.query().unwrap()),
        "data: initialized",
    )
    .await;
    let (status, body) = request(http.get(url("start")), "start").await;
    assert_eq!(status, 200, "{body}");
    // 2,000 messages of 16 KiB: 32 MB, far more than the socket buffers hold.
    let flood = http
        .post(url("send"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            "data=%7B%22H%22%3A%22chathub%22%2C%22M%22%3A%22Flood%22%2C%22A%22%3A%5B2000%2C16384%5D%2C%22I%22%3A%220%22%7D",
        )
        .timeout(Duration::from_secs(60))
        .send();
    let flood = tokio::spawn(flood);

    closed_as_too_slow(
        &hub,
        Duration::from_secs(30),
        "a classic connection whose event stream is never read",
    )
    .await;
    let answer = tokio::time::timeout(Duration::from_secs(30), flood)
        .await
        .expect("the Flood call ends within 30 s of the close")
        .unwrap()
        .expect("the send request is answered");
    assert_eq!(answer.status(), 200);
    hub.shutdown().await.unwrap();
}

/// A Core client that invokes `Flood` and never reads its event stream: `Flood` waited for room
/// in the caller's send queue without limit (`send_to_caller_waiting`), and as the response
/// body that drains the queue was held by the unread socket, for ever. Now the client is
/// closed as too slow once it has taken nothing for the stall limit, and `Flood` ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_to_a_core_event_stream_never_read_ends_and_closes_the_caller() {
    let hub = hub(
        HubOptions {
            write_stall_timeout: STALL,
            // No keep-alive ping (which would find the queue full) and no client timeout in the
            // test's time: only the stall limit may close the connection.
            keep_alive_interval: Duration::from_secs(600),
            client_timeout: Duration::from_secs(1200),
            send_queue_bytes: 1 << 20,
            ..HubOptions::default()
        },
        ClassicOptions::default(),
    )
    .await;
    let _unread = flooded_core_event_stream(&hub).await;

    closed_as_too_slow(
        &hub,
        Duration::from_secs(30),
        "a Core connection flooded while its event stream is never read",
    )
    .await;
    flood_ends(&hub).await;
    hub.shutdown().await.unwrap();
}

/// Waits (at most 30 s) until the Core `Flood` call has ended (its duration is observed when the
/// method returns).
async fn flood_ends(hub: &hubbub_hub::RunningServer) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (ended, text) = metric(
            hub,
            "hubbub_invocation_duration_seconds_count",
            "family=\"core\"",
        )
        .await;
        if ended == 1.0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Flood still waiting 30 s after its caller closed: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Opens a Core connection on an event stream that is never read, and has it invoke
/// `Flood(2000, 16384)`: 32 MB, far more than the socket buffers and the queue hold.
async fn flooded_core_event_stream(hub: &hubbub_hub::RunningServer) -> TcpStream {
    let http = reqwest::Client::new();
    let (status, body) = request(
        http.post(hub.url("/chathub/negotiate?negotiateVersion=1")),
        "negotiate",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let negotiated: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = negotiated["connectionToken"].as_str().unwrap();
    let unread =
        unread_event_stream(hub, &format!("/chathub?id={token}"), "text/event-stream").await;
    let url = hub.url(&format!("/chathub?id={token}"));
    let (status, _) = request(
        http.post(&url)
            .body("{\"protocol\":\"json\",\"version\":1}\u{1e}"),
        "the handshake",
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = request(
        http.post(&url).body(
            "{\"type\":1,\"invocationId\":\"1\",\"target\":\"Flood\",\"arguments\":[2000,16384]}\u{1e}",
        ),
        "the Flood invocation",
    )
    .await;
    assert_eq!(status, 200);
    unread
}

/// A client that never reads its response: hyper waited to write it for ever, holding the
/// socket and, for a Core event stream, the body that drains the connection's queue, so with
/// the hub's own limits out of the way (a long `HubOptions::write_stall_timeout`, no
/// keep-alive, no client timeout) nothing ended the connection. Now the socket is closed once
/// the client has taken nothing for `TcpLimits::write_stall_timeout`: the connection ends and
/// the method writing to it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_takes_nothing_is_closed_after_the_write_stall_limit() {
    let hub = hubbub_hub::ServerBuilder::new()
        .options(HubOptions {
            write_stall_timeout: Duration::from_secs(600),
            keep_alive_interval: Duration::from_secs(600),
            client_timeout: Duration::from_secs(1200),
            send_queue_bytes: 1 << 20,
            ..HubOptions::default()
        })
        .tcp_limits(hubbub_hub::TcpLimits {
            write_stall_timeout: STALL,
            header_read_timeout: Duration::from_secs(600),
            ..hubbub_hub::TcpLimits::default()
        })
        .hub("/chathub", hubbub_hub::chat_hub())
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .expect("the hub binds a loopback port");
    let mut unread = flooded_core_event_stream(&hub).await;
    until_closed(
        &hub,
        Duration::from_secs(30),
        "a Core connection whose socket takes nothing",
    )
    .await;
    flood_ends(&hub).await;
    // The socket is closed: what it holds reads out, then it ends.
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match unread.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the hub still holds the socket after 30 s");
    hub.shutdown().await.unwrap();
}

/// A classic client whose WebSocket takes nothing while a large write to it waits: the socket
/// failed (its write stall limit, `TcpLimits::write_stall_timeout`, ran out) before the write's
/// own limit, which grows a second per 16 KiB, so the connection was left waiting for a
/// reconnect and ended only at the disconnect timeout (30 s), not as too slow. Now a socket
/// that stalls ends its connection as too slow (`queue_full`) at the stall limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_websocket_that_takes_nothing_is_closed_as_too_slow() {
    let hub = hub_stalling_at_once(
        HubOptions::default(),
        ClassicOptions {
            // Only the flood is written; all of it fits the replay buffer, so only the
            // socket's writer waits on the client.
            keep_alive: None,
            replay_messages: 10_000,
            replay_bytes: 64 << 20,
            ..ClassicOptions::default()
        },
    )
    .await;
    let data = "connectionData=%5B%7B%22name%22%3A%22chathub%22%7D%5D&clientProtocol=2.1";
    let (status, body) = request(
        reqwest::Client::new().get(hub.url(&format!("/signalr/negotiate?{data}"))),
        "negotiate",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let negotiated: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut connect =
        reqwest::Url::parse(&hub.url(&format!("/signalr/connect?transport=webSockets&{data}")))
            .unwrap();
    connect.set_scheme("ws").unwrap();
    connect.query_pairs_mut().append_pair(
        "connectionToken",
        negotiated["ConnectionToken"].as_str().unwrap(),
    );
    let mut unread = unread_websocket(&hub, connect.as_str()).await;
    use futures_util::{SinkExt, StreamExt};
    let init = tokio::time::timeout(Duration::from_secs(10), unread.next())
        .await
        .expect("the init message within 10 s");
    assert!(
        matches!(&init, Some(Ok(m)) if m.to_text().is_ok_and(|t| t.contains("\"S\":1"))),
        "{init:?}"
    );
    // 2,000 messages of 16 KiB: 32 MB, far more than the socket buffers hold.
    tokio::time::timeout(
        Duration::from_secs(10),
        unread.send(tokio_tungstenite::tungstenite::Message::text(
            r#"{"H":"chathub","M":"Flood","A":[2000,16384],"I":"0"}"#,
        )),
    )
    .await
    .expect("the Flood request is written within 10 s")
    .unwrap();

    closed_as_too_slow(
        &hub,
        Duration::from_secs(10),
        "a classic connection whose WebSocket takes nothing",
    )
    .await;
    drop(unread);
    hub.shutdown().await.unwrap();
}

/// A Core client whose WebSocket takes nothing, with room in its queue for all it is sent: the
/// socket failed at its write stall limit and the connection ended as if the client had gone
/// (`client_closed`). A client that reads nothing is too slow, as one whose queue fills is:
/// it now ends as `queue_full`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_websocket_that_takes_nothing_is_closed_as_too_slow() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let hub = hub_stalling_at_once(
        HubOptions {
            // Room for the whole flood: only the socket's writer waits on the client.
            send_queue_capacity: 10_000,
            send_queue_bytes: 64 << 20,
            keep_alive_interval: Duration::from_secs(600),
            client_timeout: Duration::from_secs(1200),
            ..HubOptions::default()
        },
        ClassicOptions::default(),
    )
    .await;
    let url = hub.url("/chathub").replacen("http", "ws", 1);
    let mut unread = unread_websocket(&hub, &url).await;
    tokio::time::timeout(Duration::from_secs(10), async {
        unread
            .send(Message::text("{\"protocol\":\"json\",\"version\":1}\u{1e}"))
            .await
            .unwrap();
        let answer = unread.next().await;
        assert!(
            matches!(&answer, Some(Ok(m)) if m.to_text().is_ok_and(|t| t == "{}\u{1e}")),
            "{answer:?}"
        );
        // 2,000 messages of 16 KiB: 32 MB, far more than the socket buffers hold.
        unread
            .send(Message::text(
                "{\"type\":1,\"invocationId\":\"1\",\"target\":\"Flood\",\"arguments\":[2000,16384]}\u{1e}",
            ))
            .await
            .unwrap();
    })
    .await
    .expect("handshake and Flood within 10 s");

    closed_as_too_slow(
        &hub,
        Duration::from_secs(10),
        "a Core connection whose WebSocket takes nothing",
    )
    .await;
    drop(unread);
    hub.shutdown().await.unwrap();
}
