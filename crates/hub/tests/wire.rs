//! The hub's wire behaviour seen from a raw WebSocket on loopback (no client library in the
//! way), where it must match what ASP.NET Core sends: handshake versions, and one Completion
//! for every invocation whatever ends it.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const RS: char = '\u{1e}';

async fn hub() -> hubbub_hub::RunningServer {
    hubbub_hub::ServerBuilder::new()
        .hub("/chathub", hubbub_hub::chat_hub())
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .expect("the hub binds a loopback port")
}

async fn socket(hub: &hubbub_hub::RunningServer) -> Ws {
    let url = hub.url("/chathub").replace("http://", "ws://");
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .expect("the WebSocket opens within 10 s")
    .expect("the WebSocket opens")
    .0
}

/// The next data frame as bytes; `None` when the socket closes or nothing comes within `limit`.
async fn next_frame(ws: &mut Ws, limit: Duration) -> Option<Vec<u8>> {
    loop {
        match tokio::time::timeout(limit, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(t.as_bytes().to_vec()),
            Ok(Some(Ok(Message::Binary(b)))) => return Some(b.to_vec()),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// JSON messages as they arrive (split on the record separator), skipping pings.
struct JsonReader {
    pending: std::collections::VecDeque<serde_json::Value>,
}

impl JsonReader {
    fn new() -> Self {
        Self {
            pending: Default::default(),
        }
    }

    async fn next(&mut self, ws: &mut Ws, what: &str) -> serde_json::Value {
        loop {
            if let Some(v) = self.pending.pop_front() {
                if v["type"] == 6 {
                    continue;
                }
                return v;
            }
            let frame = next_frame(ws, Duration::from_secs(10))
                .await
                .unwrap_or_else(|| panic!("no message within 10 s while waiting for {what}"));
            let text = String::from_utf8(frame).expect("JSON text");
            for record in text.split(RS).filter(|r| !r.is_empty()) {
                self.pending
                    .push_back(serde_json::from_str(record).unwrap());
            }
        }
    }
}

async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.into())).await.unwrap();
}

#[allow(dead_code)] // used by the Completion tests below
async fn json_connection(hub: &hubbub_hub::RunningServer) -> Ws {
    let mut ws = socket(hub).await;
    send_text(&mut ws, "{\"protocol\":\"json\",\"version\":1}\u{1e}").await;
    assert_eq!(
        next_frame(&mut ws, Duration::from_secs(10))
            .await
            .as_deref(),
        Some(&b"{}\x1e"[..]),
        "handshake accepted"
    );
    ws
}

/// ASP.NET Core 8+ accepts any version up to the one it implements (`IsVersionSupported`:
/// `version <= 2`) for both hub protocols; a client sending version 0 must get `{}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_versions_up_to_two_are_accepted_for_both_protocols() {
    let hub = hub().await;
    for protocol in ["json", "messagepack"] {
        for version in [0, -1, 1, 2] {
            let mut ws = socket(&hub).await;
            send_text(
                &mut ws,
                &format!("{{\"protocol\":\"{protocol}\",\"version\":{version}}}\u{1e}"),
            )
            .await;
            let answer = next_frame(&mut ws, Duration::from_secs(10))
                .await
                .unwrap_or_else(|| panic!("{protocol} v{version}: no answer within 10 s"));
            assert_eq!(
                String::from_utf8_lossy(&answer),
                "{}\u{1e}",
                "{protocol} version {version} is accepted"
            );
        }
        let mut ws = socket(&hub).await;
        send_text(
            &mut ws,
            &format!("{{\"protocol\":\"{protocol}\",\"version\":3}}\u{1e}"),
        )
        .await;
        let answer = next_frame(&mut ws, Duration::from_secs(10))
            .await
            .expect("an answer");
        assert_eq!(
            String::from_utf8_lossy(&answer),
            format!(
                "{{\"error\":\"The server does not support version 3 of the '{protocol}' protocol.\"}}\u{1e}"
            ),
        );
    }
    // A version-0 JSON client then works like any other.
    let mut ws = socket(&hub).await;
    send_text(&mut ws, "{\"protocol\":\"json\",\"version\":0}\u{1e}").await;
    let mut reader = JsonReader::new();
    let first = next_frame(&mut ws, Duration::from_secs(10)).await.unwrap();
    assert_eq!(first, b"{}\x1e");
    send_text(
        &mut ws,
        "{\"type\":1,\"invocationId\":\"1\",\"target\":\"Echo\",\"arguments\":[5]}\u{1e}",
    )
    .await;
    let completion = reader.next(&mut ws, "Echo's completion").await;
    assert_eq!(
        completion,
        serde_json::json!({"type":3,"invocationId":"1","result":5})
    );
    hub.shutdown().await.unwrap();
}
