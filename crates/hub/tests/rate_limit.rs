//! The hub's rate limit, seen from a raw WebSocket client (no client library in the way): a
//! connection over the limit is slowed down, not closed; everything it sent is handled, in
//! order; other connections are served meanwhile.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hubbub_client::HubConnectionBuilder;
use tokio_tungstenite::tungstenite::Message;

const RATE: u32 = 50;
/// Twice the burst the limit lets through at once (2 × RATE): most of the flood must wait.
const FLOOD: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_flooding_client_is_slowed_not_closed_and_others_keep_being_served() {
    let hub = hubbub_hub::ServerBuilder::new()
        .options(hubbub_hub::HubOptions {
            max_messages_per_second: RATE,
            ..Default::default()
        })
        .hub("/chathub", hubbub_hub::chat_hub())
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();

    // A well-behaved client that watches the broadcasts.
    let calm = HubConnectionBuilder::new(hub.url("/chathub?name=calm"))
        .build()
        .unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    calm.on("broadcastMessage", {
        let seen = seen.clone();
        move |args| {
            if let (Some(name), Some(text)) = (args.first(), args.get(1)) {
                if name.decode::<String>().ok().as_deref() == Some("flood") {
                    let text = text.decode::<String>().unwrap_or_default();
                    seen.lock().unwrap().push(text);
                }
            }
            None
        }
    });
    calm.start().await.unwrap();
    // Answered after the hub ran its connect hook: calm is in the scope's group now.
    let echoed: String = calm.invoke("Echo", vec!["ready".into()]).await.unwrap();
    assert_eq!(echoed, "ready");

    // The flooder: skips negotiation, shakes hands, then writes as fast as it can.
    let url = hub.url("/chathub?name=flood").replace("http://", "ws://");
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let (mut sink, mut stream) = ws.split();
    sink.send(Message::Text(
        "{\"protocol\":\"json\",\"version\":1}\u{1e}".into(),
    ))
    .await
    .unwrap();
    // Everything the hub sends the flooder, read all along (a client that does not read is
    // another matter: its send queue fills and it is closed for that).
    let received: Arc<Mutex<String>> = Arc::default();
    let reader = tokio::spawn({
        let received = received.clone();
        async move {
            while let Some(Ok(message)) = stream.next().await {
                match message {
                    Message::Text(text) => received.lock().unwrap().push_str(&text),
                    Message::Close(_) => break,
                    _ => {}
                }
            }
        }
    });
    let writer = tokio::spawn(async move {
        for i in 0..FLOOD {
            let frame = format!(
                "{{\"type\":1,\"target\":\"Send\",\"arguments\":[\"flood\",\"m{i}\"]}}\u{1e}"
            );
            sink.send(Message::Text(frame.into())).await.unwrap();
        }
        // Then one invocation that asks for an answer: the connection is still served.
        sink.send(Message::Text(
            "{\"type\":1,\"invocationId\":\"last\",\"target\":\"Echo\",\"arguments\":[\"still here\"]}\u{1e}"
                .into(),
        ))
        .await
        .unwrap();
        sink
    });

    // Meanwhile the calm client is answered, while most of the flood still waits its turn.
    for i in 0..5 {
        let echoed: String = tokio::time::timeout(
            Duration::from_secs(10),
            calm.invoke("Echo", vec![format!("calm {i}").into()]),
        )
        .await
        .expect("the calm client is answered within 10 s during the flood")
        .unwrap();
        assert_eq!(echoed, format!("calm {i}"));
    }
    let during = seen.lock().unwrap().len();
    assert!(
        during < FLOOD,
        "the calm client was answered before the flood was through ({during} of {FLOOD} relayed)"
    );

    // Every flood message is handled, once, in order; and the flooder gets its answer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let relayed = seen.lock().unwrap().len();
        let answered = received
            .lock()
            .unwrap()
            .contains("\"invocationId\":\"last\"");
        if relayed >= FLOOD && answered {
            break;
        }
        let got = received.lock().unwrap().clone();
        assert!(
            !got.contains("\"type\":7"),
            "the flooder was closed after {relayed} of {FLOOD}: {}",
            &got[got.find("{\"type\":7").unwrap_or(0)..]
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "within 60 s: {relayed} of {FLOOD} relayed, answered: {answered}; the flooder got: {}",
            received
                .lock()
                .unwrap()
                .chars()
                .take(500)
                .collect::<String>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let expected: Vec<String> = (0..FLOOD).map(|i| format!("m{i}")).collect();
    assert_eq!(*seen.lock().unwrap(), expected);
    let got = received.lock().unwrap().clone();
    assert!(
        got.contains("{\"type\":3,\"invocationId\":\"last\",\"result\":\"still here\"}"),
        "{got}"
    );
    assert!(
        !got.contains("\"type\":7"),
        "the flooder was not closed: {got}"
    );
    let counters = hub.counters("/chathub").unwrap().snapshot();
    assert!(
        counters["rateLimitPauses"].as_u64().unwrap() > 0,
        "the flood was slowed by the limit: {counters}"
    );

    let _sink = tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .expect("the flooder's writes went through")
        .unwrap();
    calm.stop().await;
    hub.shutdown().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), reader).await;
}
