//! The client against a classic ASP.NET SignalR 2.x server (a small one written here, speaking
//! the bytes of §8a): detection, every transport, calls, errors, cursors across a cut,
//! keep-alive, abort.

mod classic_server;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use classic_server::{ClassicServer, Settings};
use hubbub_client::{
    Delays, Error, Event, Family, HubConnection, HubConnectionBuilder, SlowReason, State,
    TransportKind,
};
use tokio::sync::broadcast;

const TRANSPORTS: [TransportKind; 3] = [
    TransportKind::WebSockets,
    TransportKind::ServerSentEvents,
    TransportKind::LongPolling,
];

const LIMIT: Duration = Duration::from_secs(20);

fn builder(server: &ClassicServer, transport: TransportKind) -> HubConnectionBuilder {
    HubConnectionBuilder::new(server.url())
        .transports(&[transport])
        .hub_name("chatHub")
}

async fn expect_event(
    events: &mut broadcast::Receiver<Event>,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) -> Event {
    tokio::time::timeout(LIMIT, async {
        loop {
            match events.recv().await {
                Ok(e) if pred(&e) => return e,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("event stream ended: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} event within {LIMIT:?}"))
}

fn inbox(conn: &HubConnection, method: &str) -> Arc<Mutex<Vec<(String, String)>>> {
    let inbox = Arc::new(Mutex::new(Vec::new()));
    let sink = inbox.clone();
    conn.on(method, move |args| {
        sink.lock().unwrap().push((
            args[0].decode::<String>().unwrap(),
            args[1].decode::<String>().unwrap(),
        ));
        None
    });
    inbox
}

async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < LIMIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classic_hub_is_detected_and_chats_over_every_transport() {
    let server = ClassicServer::start(Settings::default()).await;
    for transport in TRANSPORTS {
        // No family set: the negotiate answer tells.
        let alice = builder(&server, transport).build().unwrap();
        let bob = builder(&server, transport).build().unwrap();
        let mut events = alice.events();
        // The hub's `broadcastMessage` reaches a handler registered in another casing.
        let got = inbox(&bob, "BroadcastMessage");
        // Hubbub's `Headers` extension on server calls reaches observers as headers.
        let headers = Arc::new(Mutex::new(Vec::new()));
        let sink = headers.clone();
        bob.on_any(move |_, _, h| sink.lock().unwrap().push(h.clone()));
        alice.start().await.unwrap();
        bob.start().await.unwrap();
        let connected = expect_event(&mut events, "connected", |e| {
            matches!(e, Event::Connected { .. })
        })
        .await;
        let Event::Connected {
            transport: name,
            connection_id,
            family,
        } = connected
        else {
            unreachable!()
        };
        assert_eq!(name, transport.name());
        assert_eq!(family, Family::Classic);
        assert_eq!(connection_id, alice.connection_id());
        assert!(connection_id.unwrap().starts_with("00000000-"));

        alice
            .invoke::<()>(
                "Send",
                vec!["alice".into(), format!("hi over {name}").into()],
            )
            .await
            .unwrap();
        wait_until("bob hears alice", || !got.lock().unwrap().is_empty()).await;
        assert_eq!(
            got.lock().unwrap()[0],
            ("alice".to_owned(), format!("hi over {name}"))
        );
        // `send` (no waiting) goes through the same counter.
        bob.send("send", vec!["bob".into(), "fire and forget".into()])
            .await
            .unwrap();
        wait_until("bob hears himself", || got.lock().unwrap().len() == 2).await;
        assert_eq!(
            headers.lock().unwrap()[0]
                .get("hubbub-test")
                .map(String::as_str),
            Some("from the hub")
        );

        let echoed: serde_json::Value = alice
            .invoke(
                "Echo",
                vec![serde_json::json!({"a": [1, "ü"]}).to_string().into()],
            )
            .await
            .unwrap();
        assert_eq!(echoed, serde_json::json!({"a": [1, "ü"]}).to_string());
        match alice.invoke::<()>("Fail", vec![]).await.unwrap_err() {
            Error::HubException { message, data } => {
                assert_eq!(message, "nope");
                assert_eq!(
                    data.decode::<serde_json::Value>().unwrap(),
                    serde_json::json!({"code": 42})
                );
            }
            other => panic!("{transport:?}: expected a hub exception, got {other:?}"),
        }
        let err = alice.invoke::<()>("Missing", vec![]).await.unwrap_err();
        assert!(
            matches!(&err, Error::Hub(m) if m.contains("could not be resolved")),
            "{err:?}"
        );
        alice.stop().await;
        bob.stop().await;
    }
    let seen = server.seen();
    // Each start tried the ASP.NET Core negotiate first (auto), then the classic one.
    assert_eq!(seen.core_negotiates, 6, "{seen:?}");
    assert_eq!(seen.negotiates, 6, "{seen:?}");
    assert_eq!(seen.starts, 6, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_sends_abort_on_every_transport() {
    let server = ClassicServer::start(Settings::default()).await;
    for transport in TRANSPORTS {
        let conn = builder(&server, transport)
            .family(Family::Classic)
            .build()
            .unwrap();
        conn.start().await.unwrap();
        let id = conn.connection_id().unwrap();
        conn.stop().await;
        assert_eq!(conn.state(), State::Disconnected);
        assert!(
            server.seen().aborts.contains(&id),
            "{transport:?}: no abort for {id}: {:?}",
            server.seen()
        );
    }
    // Forced classic: no ASP.NET Core negotiate at all.
    assert_eq!(server.seen().core_negotiates, 0);
}

/// While connected, the client pings the server (`GET …/ping`, as the jQuery client's
/// `pingInterval`) over every transport; when a ping is refused (401: the sign-in expired) the
/// connection ends with that reason and does not reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_while_connected_and_a_refused_ping_ends_the_connection() {
    let server = ClassicServer::start(Settings::default()).await;
    for transport in TRANSPORTS {
        let before = server.seen().pings.len();
        let conn = builder(&server, transport)
            .classic_ping_interval(Duration::from_millis(200))
            .build()
            .unwrap();
        conn.start().await.unwrap();
        wait_until("three pings", || server.seen().pings.len() >= before + 3).await;
        let ping = server.seen().pings[before].clone();
        assert_eq!(ping.get("clientProtocol").map(String::as_str), Some("2.1"));
        assert!(!ping.contains_key("connectionToken"), "{ping:?}");
        assert_eq!(conn.state(), State::Connected);
        conn.stop().await;
        // Stopped: no more pings.
        let after_stop = server.seen().pings.len();
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(server.seen().pings.len(), after_stop, "{transport:?}");
    }

    server.settings.lock().unwrap().refuse_pings = true;
    let conn = builder(&server, TransportKind::WebSockets)
        .classic_ping_interval(Duration::from_millis(200))
        .with_automatic_reconnect()
        .build()
        .unwrap();
    let mut events = conn.events();
    conn.start().await.unwrap();
    let closed = expect_event(&mut events, "closed", |e| matches!(e, Event::Closed { .. })).await;
    let Event::Closed { reason } = closed else {
        unreachable!()
    };
    let error = reason.expect("a reason");
    assert!(
        error.contains("401") && error.contains("sign in again"),
        "{error}"
    );
    assert_eq!(conn.state(), State::Disconnected);

    // With a token provider, a refused ping negotiates a new connection (a fresh token)
    // instead of stopping.
    let negotiates = server.seen().negotiates;
    let conn = builder(&server, TransportKind::WebSockets)
        .classic_ping_interval(Duration::from_millis(200))
        .access_token(|| async { Ok("renewed".to_owned()) })
        .with_automatic_reconnect()
        .build()
        .unwrap();
    let mut events = conn.events();
    conn.start().await.unwrap();
    let reconnecting = expect_event(&mut events, "reconnecting", |e| {
        matches!(e, Event::Reconnecting { .. })
    })
    .await;
    assert!(
        matches!(&reconnecting, Event::Reconnecting { reason, .. } if reason.contains("401")),
        "{reconnecting:?}"
    );
    expect_event(&mut events, "reconnected", |e| {
        matches!(e, Event::Reconnected { .. })
    })
    .await;
    assert!(
        server.seen().negotiates >= negotiates + 2,
        "negotiated anew: {:?}",
        server.seen()
    );
    conn.stop().await;
}

/// A reconnect that cannot succeed is given up once the server's DisconnectTimeout has passed
/// (it has forgotten the connection): the client says so, with the reason, and starts a new
/// connection instead of resuming the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hopeless_reconnect_ends_at_the_disconnect_timeout_with_a_reason() {
    let server = ClassicServer::start(Settings {
        disconnect_timeout: 1.0,
        ..Settings::default()
    })
    .await;
    let conn = builder(&server, TransportKind::WebSockets)
        .retry_policy(Delays(vec![Duration::from_millis(100); 100]))
        .build()
        .unwrap();
    let mut events = conn.events();
    conn.start().await.unwrap();
    let first = conn.connection_id().unwrap();
    let negotiates = server.seen().negotiates;
    // The hub cannot be reached for the connection: reconnects refused and no pong either
    // (a hub that answers ping but refuses the reconnect gets a new connection at once).
    {
        let mut settings = server.settings.lock().unwrap();
        settings.refuse_reconnects = true;
        settings.refuse_pings = true;
    }
    server.cut_all();
    let error = expect_event(
        &mut events,
        "the DisconnectTimeout error",
        |e| matches!(e, Event::Error { message } if message.contains("DisconnectTimeout")),
    )
    .await;
    assert!(server.seen().refused_reconnects >= 1, "{:?}", server.seen());
    let Event::Error { message } = error else {
        unreachable!()
    };
    assert!(message.contains("1s"), "{message}");
    expect_event(&mut events, "reconnected", |e| {
        matches!(e, Event::Reconnected { .. })
    })
    .await;
    assert_ne!(conn.connection_id().unwrap(), first);
    assert_eq!(server.seen().negotiates, negotiates + 1);
    conn.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_mid_chat_loses_nothing_the_cursor_replays_it() {
    let server = ClassicServer::start(Settings {
        poll_hold: Duration::from_millis(500),
        ..Settings::default()
    })
    .await;
    for transport in TRANSPORTS {
        let bob = builder(&server, transport)
            .family(Family::Classic)
            .retry_policy(Delays(vec![Duration::from_millis(300); 20]))
            .build()
            .unwrap();
        let got = inbox(&bob, "broadcastMessage");
        let mut events = bob.events();
        bob.start().await.unwrap();
        let id = bob.connection_id().unwrap();
        server.broadcast("broadcastMessage", vec!["hub".into(), "before".into()]);
        wait_until("the first message", || got.lock().unwrap().len() == 1).await;

        server.cut_all();
        expect_event(&mut events, "reconnecting", |e| {
            matches!(e, Event::Reconnecting { .. })
        })
        .await;
        // Sent while bob is away: the hub keeps them for his connection.
        for i in 0..5 {
            server.broadcast(
                "broadcastMessage",
                vec!["hub".into(), format!("during {i}").into()],
            );
        }
        let back = expect_event(&mut events, "reconnected", |e| {
            matches!(e, Event::Reconnected { .. })
        })
        .await;
        // The same connection, resumed: no new negotiate.
        assert_eq!(
            back,
            Event::Reconnected {
                connection_id: Some(id.clone())
            }
        );
        server.broadcast("broadcastMessage", vec!["hub".into(), "after".into()]);
        wait_until("every message", || got.lock().unwrap().len() >= 7).await;
        let texts: Vec<String> = got.lock().unwrap().iter().map(|(_, t)| t.clone()).collect();
        assert_eq!(
            texts,
            [
                "before", "during 0", "during 1", "during 2", "during 3", "during 4", "after"
            ],
            "{transport:?}: nothing lost, nothing doubled, in order"
        );
        let seen = server.seen();
        let (_, message_id) = seen
            .reconnects
            .iter()
            .find(|(c, _)| *c == id)
            .unwrap_or_else(|| panic!("{transport:?}: no reconnect request: {seen:?}"));
        assert_eq!(
            message_id.as_deref(),
            Some("d-1"),
            "{transport:?}: the cursor was sent"
        );
        bob.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_hub_is_slow_at_two_thirds_then_reconnects_at_keep_alive_timeout() {
    let server = ClassicServer::start(Settings {
        keep_alive_timeout: Some(1.5),
        keep_alive_every: Duration::from_millis(200),
        ..Settings::default()
    })
    .await;
    for transport in [TransportKind::WebSockets, TransportKind::ServerSentEvents] {
        server
            .keep_alives
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let conn = builder(&server, transport)
            .family(Family::Classic)
            .retry_policy(Delays(vec![Duration::from_millis(100); 20]))
            .build()
            .unwrap();
        let mut events = conn.events();
        conn.start().await.unwrap();
        let id = conn.connection_id().unwrap();
        server
            .keep_alives
            .store(false, std::sync::atomic::Ordering::SeqCst);
        expect_event(&mut events, "slow", |e| {
            *e == Event::Slow {
                reason: SlowReason::HubSilent,
            }
        })
        .await;
        let Event::Reconnecting { reason, .. } = expect_event(&mut events, "reconnecting", |e| {
            matches!(e, Event::Reconnecting { .. })
        })
        .await
        else {
            unreachable!()
        };
        assert!(reason.contains("KeepAliveTimeout"), "{reason}");
        server
            .keep_alives
            .store(true, std::sync::atomic::Ordering::SeqCst);
        expect_event(&mut events, "reconnected", |e| {
            matches!(e, Event::Reconnected { .. })
        })
        .await;
        assert!(
            server.seen().reconnects.iter().any(|(c, _)| *c == id),
            "{transport:?}: reconnected through /reconnect"
        );
        conn.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_and_caller_state() {
    let server = ClassicServer::start(Settings::default()).await;
    let conn = builder(&server, TransportKind::WebSockets).build().unwrap();
    conn.start().await.unwrap();
    // A method reporting progress streams its updates, then its return value.
    use futures_util::StreamExt;
    let items: Vec<serde_json::Value> = conn
        .stream::<serde_json::Value>("Progress", vec![])
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(
        items,
        serde_json::json!([0, 1, 2, "done"])
            .as_array()
            .unwrap()
            .clone()
    );
    // `invoke` of the same method waits for the result only.
    let done: String = conn.invoke("Progress", vec![]).await.unwrap();
    assert_eq!(done, "done");

    conn.set_caller_state("name", "ann".into());
    let name: String = conn.invoke("Rename", vec![]).await.unwrap();
    assert_eq!(name, "ann");
    assert_eq!(
        conn.caller_state()["name"],
        "ann!",
        "the hub's change is kept"
    );
    let name: String = conn.invoke("Rename", vec![]).await.unwrap();
    assert_eq!(name, "ann!", "and sent back");
    conn.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_a_user_can_act_on() {
    let server = ClassicServer::start(Settings::default()).await;
    // A hub the endpoint does not have.
    let conn = HubConnectionBuilder::new(server.url())
        .family(Family::Classic)
        .hub_name("nosuchhub")
        .build()
        .unwrap();
    let err = conn.start().await.unwrap_err().to_string();
    assert!(err.contains("no hub named 'nosuchhub'"), "{err}");
    // The same through detection.
    let conn = HubConnectionBuilder::new(server.url())
        .hub_name("nosuchhub")
        .build()
        .unwrap();
    let err = conn.start().await.unwrap_err().to_string();
    assert!(err.contains("no hub named 'nosuchhub'"), "{err}");

    // Forced ASP.NET Core on a classic hub says so.
    let conn = HubConnectionBuilder::new(server.url())
        .family(Family::Core)
        .build()
        .unwrap();
    let err = conn.start().await.unwrap_err().to_string();
    assert!(err.contains("classic ASP.NET SignalR server"), "{err}");

    // Credentials refused, then accepted.
    server.settings.lock().unwrap().require_token = Some("secret".into());
    let conn = HubConnectionBuilder::new(server.url())
        .family(Family::Classic)
        .access_token(|| async { Ok("wrong".to_owned()) })
        .build()
        .unwrap();
    let err = conn.start().await.unwrap_err().to_string();
    assert!(err.contains("refused the credentials"), "{err}");
    let conn = HubConnectionBuilder::new(server.url())
        .access_token(|| async { Ok("secret".to_owned()) })
        .transports(&[TransportKind::LongPolling])
        .build()
        .unwrap();
    conn.start().await.unwrap();
    let echoed: String = conn
        .invoke("Echo", vec!["authorized".into()])
        .await
        .unwrap();
    assert_eq!(echoed, "authorized");
    conn.stop().await;
    server.settings.lock().unwrap().require_token = None;

    // A hub that never answers `start`.
    server.settings.lock().unwrap().start_hangs = true;
    let conn = HubConnectionBuilder::new(server.url())
        .family(Family::Classic)
        .handshake_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let err = conn.start().await.unwrap_err().to_string();
    assert!(err.contains("did not answer the classic `start`"), "{err}");
    assert_eq!(conn.state(), State::Disconnected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_try_web_sockets_the_client_falls_back_to_sse() {
    let server = ClassicServer::start(Settings {
        try_web_sockets: false,
        ..Settings::default()
    })
    .await;
    let conn = HubConnectionBuilder::new(server.url()).build().unwrap();
    let mut events = conn.events();
    conn.start().await.unwrap();
    let Event::Connected { transport, .. } = expect_event(&mut events, "connected", |e| {
        matches!(e, Event::Connected { .. })
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!(transport, "ServerSentEvents");
    conn.stop().await;
}

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("hubbub-classic-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("history.sqlite3")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_layer_on_a_classic_hub_loses_nothing_across_a_cut() {
    use hubbub_client::Chat;
    use hubbub_client::store::Store;
    let server = ClassicServer::start(Settings {
        poll_hold: Duration::from_millis(500),
        ..Settings::default()
    })
    .await;
    for transport in TRANSPORTS {
        let open = |name: &'static str| {
            let server = server.clone();
            async move {
                let store = Store::open(temp_db(&format!("{}-{name}", transport.name())))
                    .await
                    .unwrap();
                let conn = builder(&server, transport)
                    .retry_policy(Delays(vec![Duration::from_millis(200); 100]))
                    .build()
                    .unwrap();
                let chat = Chat::open(conn.clone(), store, &server.url(), name)
                    .await
                    .unwrap();
                conn.start().await.unwrap();
                chat
            }
        };
        let ann = open("ann").await;
        let bob = open("bob").await;
        let received = |chat: &Chat| {
            let store = chat.store().clone();
            let conversation = chat.conversation();
            async move {
                store
                    .newest(conversation, 100)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|m| (m.sender, m.body))
                    .collect::<Vec<_>>()
            }
        };
        ann.send("hello bob").await.unwrap();
        let start = std::time::Instant::now();
        while received(&bob).await.is_empty() {
            assert!(start.elapsed() < LIMIT, "{transport:?}: bob got nothing");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Typed while the transports are cut: kept in the outbox, sent after the reconnect.
        server.cut_all();
        ann.send("while cut").await.unwrap();
        ann.send("still cut").await.unwrap();
        let start = std::time::Instant::now();
        loop {
            let got = received(&bob).await;
            let mut bodies: Vec<&str> = got.iter().map(|(_, b)| b.as_str()).collect();
            bodies.sort_unstable();
            if bodies.len() >= 3 {
                assert_eq!(
                    bodies,
                    ["hello bob", "still cut", "while cut"],
                    "{transport:?}: each once"
                );
                assert!(got.iter().all(|(sender, _)| sender == "ann"), "{got:?}");
                break;
            }
            assert!(start.elapsed() < LIMIT, "{transport:?}: bob has {got:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let start = std::time::Instant::now();
        while ann.pending().await.unwrap() > 0 {
            assert!(
                start.elapsed() < LIMIT,
                "{transport:?}: the outbox never drained"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ann.connection().stop().await;
        bob.connection().stop().await;
    }
}
