//! The chat hub's scenarios (the ones `tests/interop/node/official-client.mjs` runs with the
//! official client) with Hubbub's own Rust client, over every transport × protocol.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hubbub_client::{
    Arg, Event, HubConnection, HubConnectionBuilder, Protocol, State, TransportKind,
};

type Inbox = Arc<Mutex<Vec<(String, Vec<serde_json::Value>)>>>;

fn connect(url: &str, transport: TransportKind, protocol: Protocol) -> (HubConnection, Inbox) {
    let conn = HubConnectionBuilder::new(url)
        .transports(&[transport])
        .protocol(protocol)
        .build()
        .unwrap();
    let inbox: Inbox = Arc::default();
    let sink = inbox.clone();
    conn.on_any(move |target, args, _headers| {
        let args = args
            .iter()
            .map(|a| a.decode::<serde_json::Value>().unwrap())
            .collect();
        sink.lock().unwrap().push((target.to_owned(), args));
    });
    (conn, inbox)
}

fn got(inbox: &Inbox, target: &str, args: serde_json::Value) -> bool {
    inbox
        .lock()
        .unwrap()
        .iter()
        .any(|(t, a)| t == target && serde_json::Value::Array(a.clone()) == args)
}

async fn wait(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_scenarios_with_the_rust_client() {
    let hub = support::start_hub().await;
    let combos = [
        (TransportKind::WebSockets, Protocol::Json),
        (TransportKind::WebSockets, Protocol::MessagePack),
        (TransportKind::ServerSentEvents, Protocol::Json),
        (TransportKind::LongPolling, Protocol::Json),
        (TransportKind::LongPolling, Protocol::MessagePack),
    ];
    for (transport, protocol) in combos {
        let label = format!("{}/{}", transport.name(), protocol.name());
        let scope = format!("rust-{}-{}", transport.name(), protocol.name());
        let (ann, ann_in) = connect(
            &hub.url(&format!("/chathub?name=ann&scope={scope}")),
            transport,
            protocol,
        );
        let (bob, bob_in) = connect(
            &hub.url(&format!("/chathub?name=bob&scope={scope}")),
            transport,
            protocol,
        );
        let (eve, eve_in) = connect(
            &hub.url(&format!("/chathub?name=eve&scope={scope}-other")),
            transport,
            protocol,
        );
        ann.start().await.unwrap();
        bob.start().await.unwrap();
        eve.start().await.unwrap();
        // Presence: ann hears bob join, with the scope's connection count.
        wait("bob joined", || {
            got(&ann_in, "userJoined", serde_json::json!(["bob", 2]))
        })
        .await;
        // Broadcast reaches the scope, the sender included, and no other scope.
        ann.invoke::<()>("Send", vec!["ann".into(), "hello".into()])
            .await
            .unwrap();
        wait("broadcast", || {
            got(
                &bob_in,
                "broadcastMessage",
                serde_json::json!(["ann", "hello"]),
            ) && got(
                &ann_in,
                "broadcastMessage",
                serde_json::json!(["ann", "hello"]),
            )
        })
        .await;
        // Rooms.
        assert_eq!(
            ann.invoke::<u32>("JoinRoom", vec!["r1".into()])
                .await
                .unwrap(),
            1,
            "{label}"
        );
        assert_eq!(
            bob.invoke::<u32>("JoinRoom", vec!["r1".into()])
                .await
                .unwrap(),
            2,
            "{label}"
        );
        ann.invoke::<()>(
            "SendToRoom",
            vec!["r1".into(), "ann".into(), "in the room".into()],
        )
        .await
        .unwrap();
        wait("room message", || {
            got(
                &bob_in,
                "roomMessage",
                serde_json::json!(["r1", "ann", "in the room"]),
            )
        })
        .await;
        let err = eve
            .invoke::<()>("SendToRoom", vec!["r1".into(), "eve".into(), "x".into()])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("Join the room"), "{label}: {err}");
        // Direct messages reach every connection of the user (and the sender's own).
        ann.invoke::<()>("SendToUser", vec!["bob".into(), "psst".into()])
            .await
            .unwrap();
        wait("direct", || {
            got(&bob_in, "directMessage", serde_json::json!(["ann", "psst"]))
                && got(&ann_in, "directMessage", serde_json::json!(["ann", "psst"]))
        })
        .await;
        // Presence lists users.
        let online: serde_json::Value = ann.invoke("GetOnline", vec![]).await.unwrap();
        assert_eq!(online["connections"], 2, "{label}");
        assert_eq!(
            online["users"],
            serde_json::json!([{"name": "ann", "connections": 1}, {"name": "bob", "connections": 1}]),
            "{label}"
        );
        assert!(
            !eve_in
                .lock()
                .unwrap()
                .iter()
                .any(|(_, a)| a.first() == Some(&serde_json::json!("ann"))),
            "{label}: scopes are isolated"
        );
        // An oversized message closes that connection with the reason; the others go on.
        let (big, _) = connect(
            &hub.url(&format!("/chathub?name=big&scope={scope}-big")),
            transport,
            protocol,
        );
        let mut big_events = big.events();
        big.start().await.unwrap();
        let _ = big
            .send("Send", vec!["big".into(), Arg::from("x".repeat(40_000))])
            .await;
        let reason = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Ok(Event::Closed { reason }) = big_events.recv().await {
                    return reason.unwrap_or_default();
                }
            }
        })
        .await
        .expect("the oversized sender is closed");
        assert!(
            reason.contains("maximum message size of 32768B"),
            "{label}: {reason}"
        );
        bob.stop().await;
        wait(&format!("{label}: bob left"), || {
            got(&ann_in, "userLeft", serde_json::json!(["bob", 1]))
        })
        .await;
        assert_eq!(ann.state(), State::Connected);
        ann.stop().await;
        eve.stop().await;
    }
    hub.shutdown().await.unwrap();
}

/// Exactly-once support: a repeated message id from the same user within the window is
/// completed but not delivered again; the id travels on to receivers in the headers; the same
/// id from another user is refused; a message without an id is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_message_ids_are_delivered_once_and_passed_on() {
    let hub = support::start_hub().await;
    let ann = HubConnectionBuilder::new(hub.url("/chathub?name=ann&scope=dedupe"))
        .build()
        .unwrap();
    let eve = HubConnectionBuilder::new(hub.url("/chathub?name=eve&scope=dedupe"))
        .build()
        .unwrap();
    let bob = HubConnectionBuilder::new(hub.url("/chathub?name=bob&scope=dedupe"))
        .build()
        .unwrap();
    type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    bob.on_any(move |target, args, headers| {
        if target == "broadcastMessage" {
            let text: String = args[1].decode().unwrap();
            sink.lock()
                .unwrap()
                .push((text, headers.get(hubbub_hub::MESSAGE_ID_HEADER).cloned()));
        }
    });
    for c in [&ann, &eve, &bob] {
        c.start().await.unwrap();
    }
    // The hub adds a connection to its scope after the handshake (its on_connected runs then,
    // as in ASP.NET Core) and reads its invocations only after that: an answered call means
    // bob is in the scope and hears what follows.
    let _: String = bob.invoke("Echo", vec!["ready".into()]).await.unwrap();
    let with_id = |id: &str| {
        hubbub_client::Headers::from([(hubbub_hub::MESSAGE_ID_HEADER.to_owned(), id.to_owned())])
    };
    // The same message sent three times (a retry after an ambiguous failure): once delivered,
    // and every attempt completes successfully.
    for _ in 0..3 {
        ann.invoke_with_headers::<()>("Send", vec!["ann".into(), "once".into()], with_id("m-1"))
            .await
            .unwrap();
    }
    // Another user's message with the same id is refused (issue 18: an id never silences
    // another sender's message); no id at all is always delivered.
    let taken = eve
        .invoke_with_headers::<()>(
            "Send",
            vec!["eve".into(), "eve's m-1".into()],
            with_id("m-1"),
        )
        .await;
    assert!(
        matches!(&taken, Err(hubbub_client::Error::Hub(m)) if m.contains("another sender")),
        "{taken:?}"
    );
    ann.invoke::<()>("Send", vec!["ann".into(), "no id".into()])
        .await
        .unwrap();
    ann.invoke::<()>("Send", vec!["ann".into(), "no id".into()])
        .await
        .unwrap();
    wait("deliveries", || seen.lock().unwrap().len() >= 3).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0], ("once".to_owned(), Some("m-1".to_owned())));
    // Without an id of its own, a message gets one from the hub, so receivers can still
    // deduplicate it; two sends without ids are two messages.
    assert_eq!(seen[1].0, "no id");
    assert_eq!(seen[2].0, "no id");
    assert!(
        seen[1].1.as_deref().is_some_and(|id| id.starts_with("h-")),
        "{seen:?}"
    );
    assert_ne!(seen[1].1, seen[2].1);
    for c in [&ann, &eve, &bob] {
        c.stop().await;
    }
    hub.shutdown().await.unwrap();
}
