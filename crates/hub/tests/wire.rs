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

/// Reads messages until the Completion for `id`, checking that nothing else for `id` follows
/// it: an Echo sent after the Completion comes back before anything more for `id` could.
async fn completion_then_quiet(
    ws: &mut Ws,
    reader: &mut JsonReader,
    id: &str,
) -> (serde_json::Value, usize) {
    let mut items = 0;
    let completion = loop {
        let message = reader.next(ws, &format!("the Completion of {id}")).await;
        match message["type"].as_i64() {
            Some(2) if message["invocationId"] == id => items += 1,
            Some(3) if message["invocationId"] == id => break message,
            _ => {}
        }
    };
    send_text(
        ws,
        "{\"type\":1,\"invocationId\":\"after\",\"target\":\"Echo\",\"arguments\":[1]}\u{1e}",
    )
    .await;
    loop {
        let message = reader.next(ws, "the Echo sent after the Completion").await;
        assert_ne!(
            message["invocationId"], id,
            "nothing more for {id} after its Completion: {message}"
        );
        if message["invocationId"] == "after" {
            break;
        }
    }
    (completion, items)
}

/// Issue 12, item 4: a stream cancelled with CancelInvocation ends with
/// `{"type":3,"invocationId":"7"}`, as ASP.NET Core sends it (a Completion without error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_stream_gets_exactly_one_completion() {
    let hub = hub().await;
    let mut ws = json_connection(&hub).await;
    let mut reader = JsonReader::new();
    send_text(
        &mut ws,
        "{\"type\":4,\"invocationId\":\"7\",\"target\":\"Counter\",\"arguments\":[1000,200]}\u{1e}",
    )
    .await;
    for expected in 0..2 {
        let item = reader.next(&mut ws, "a stream item").await;
        assert_eq!(
            item,
            serde_json::json!({"type":2,"invocationId":"7","item":expected})
        );
    }
    send_text(&mut ws, "{\"type\":5,\"invocationId\":\"7\"}\u{1e}").await;
    let (completion, _) = completion_then_quiet(&mut ws, &mut reader, "7").await;
    assert_eq!(completion, serde_json::json!({"type":3,"invocationId":"7"}));
    hub.shutdown().await.unwrap();
}

/// A stream whose items are all ready at once runs beside its connection, not in the
/// connection's loop: a CancelInvocation sent right behind the StreamInvocation is read, and
/// the stream ends with its one Completion (run in the loop, it held the loop until the send
/// queue filled and the client was closed as too slow).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_ready_items_leaves_its_connection_free_to_cancel_it() {
    let hub = hub().await;
    let mut ws = json_connection(&hub).await;
    let mut reader = JsonReader::new();
    send_text(
        &mut ws,
        "{\"type\":4,\"invocationId\":\"8\",\"target\":\"Counter\",\"arguments\":[4294967295,0]}\u{1e}\
         {\"type\":5,\"invocationId\":\"8\"}\u{1e}",
    )
    .await;
    let (completion, _) = completion_then_quiet(&mut ws, &mut reader, "8").await;
    assert_eq!(completion, serde_json::json!({"type":3,"invocationId":"8"}));
    hub.shutdown().await.unwrap();
}

/// The rest of the kind: whatever ends an invocation (an error, a panic, a stream that fails,
/// a client-to-server stream ended with an error, an id already in use, an unknown method) it
/// gets exactly one Completion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invocation_ends_with_exactly_one_completion() {
    use futures_util::StreamExt as _;
    use hubbub_hub::{HubError, Reply};
    use hubbub_protocol::{Arg, Value};
    let methods = hubbub_hub::Hub::new("faults")
        .method("Echo", |_ctx, (v,): (serde_json::Value,)| async move {
            Ok::<_, HubError>(v)
        })
        .method("Fails", |_ctx, (): ()| async move {
            Err::<(), _>(HubError::new("it failed"))
        })
        .method("Panics", |_ctx, (): ()| async move {
            if true {
                panic!("a hub method panicked");
            }
            Ok::<(), HubError>(())
        })
        .method("PanicsWhileStreaming", |_ctx, (): ()| async move {
            let items = futures_util::stream::iter(0..3).map(|i| {
                assert!(i < 1, "a stream panicked");
                Ok(Arg::from_value(Value::from(i)))
            });
            Ok::<_, HubError>(Reply::stream(items))
        })
        .method("FailsWhileStreaming", |_ctx, (): ()| async move {
            let items = futures_util::stream::iter([
                Ok(Arg::from_value(Value::from(1))),
                Err(HubError::new("the stream failed")),
            ]);
            Ok::<_, HubError>(Reply::stream(items))
        })
        .method("Forever", |_ctx, (): ()| async move {
            Ok::<_, HubError>(Reply::stream(futures_util::stream::pending()))
        })
        .method_with_streams("Collect", 1, |ctx, (): ()| async move {
            let mut upload = ctx.upload(0).ok_or_else(|| HubError::new("no stream"))?;
            let mut n = 0_i64;
            while let Some(item) = upload.next().await {
                item?;
                n += 1;
            }
            Ok::<_, HubError>(serde_json::json!(n))
        });
    let hub = hubbub_hub::ServerBuilder::new()
        .hub("/chathub", methods)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut ws = json_connection(&hub).await;
    let mut reader = JsonReader::new();
    let cases: [(&str, &str, &str, serde_json::Value); 7] = [
        (
            "1",
            r#"{"type":1,"invocationId":"1","target":"Fails","arguments":[]}"#,
            "an error",
            serde_json::json!("it failed"),
        ),
        (
            "2",
            r#"{"type":1,"invocationId":"2","target":"Panics","arguments":[]}"#,
            "a panic",
            serde_json::json!("An unexpected error occurred invoking 'Panics' on the server."),
        ),
        (
            "3",
            r#"{"type":4,"invocationId":"3","target":"PanicsWhileStreaming","arguments":[]}"#,
            "a panic while streaming",
            serde_json::json!("An error occurred on the server while streaming results."),
        ),
        (
            "4",
            r#"{"type":4,"invocationId":"4","target":"FailsWhileStreaming","arguments":[]}"#,
            "a stream error",
            serde_json::json!("the stream failed"),
        ),
        (
            "5",
            r#"{"type":4,"invocationId":"5","target":"Nope","arguments":[]}"#,
            "an unknown method",
            serde_json::json!("Unknown hub method 'Nope'"),
        ),
        (
            "6",
            r#"{"type":1,"invocationId":"6","target":"Collect","arguments":[],"streamIds":["s6"]}{"type":2,"invocationId":"s6","item":1}{"type":3,"invocationId":"s6","error":"the upload failed"}"#,
            "a client-to-server stream ended with an error",
            serde_json::json!("the upload failed"),
        ),
        (
            "8",
            r#"{"type":1,"invocationId":"8","target":"Collect","arguments":[],"streamIds":["s8"]}{"type":2,"invocationId":"s8","item":1}{"type":3,"invocationId":"s8"}"#,
            "a client-to-server stream that ends",
            serde_json::Value::Null,
        ),
    ];
    for (id, request, what, error) in cases {
        let framed = request.replace("}{", "}\u{1e}{") + "\u{1e}";
        send_text(&mut ws, &framed).await;
        let (completion, _) = completion_then_quiet(&mut ws, &mut reader, id).await;
        assert_eq!(completion["error"], error, "{what}: {completion}");
    }
    // A stream id already in use is refused (ASP.NET Core's wording); the first one goes on
    // and still ends with one Completion when cancelled.
    send_text(
        &mut ws,
        "{\"type\":4,\"invocationId\":\"9\",\"target\":\"Forever\",\"arguments\":[]}\u{1e}{\"type\":4,\"invocationId\":\"9\",\"target\":\"Forever\",\"arguments\":[]}\u{1e}",
    )
    .await;
    let refused = reader
        .next(&mut ws, "the refusal of a second stream 9")
        .await;
    assert_eq!(
        refused,
        serde_json::json!({"type":3,"invocationId":"9","error":"Invocation ID '9' is already in use."})
    );
    send_text(&mut ws, "{\"type\":5,\"invocationId\":\"9\"}\u{1e}").await;
    let (completion, _) = completion_then_quiet(&mut ws, &mut reader, "9").await;
    assert_eq!(completion, serde_json::json!({"type":3,"invocationId":"9"}));
    hub.shutdown().await.unwrap();
}
