//! The client's classic family against Hubbub's own classic endpoint (`hubbub_hub`, `/signalr`)
//! over every transport: a classic and an ASP.NET Core client in one chat, the chat layer
//! across a cut, keep-alive stopped by a black-holing proxy, stop sending `abort`.

mod proxy;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hubbub_client::store::Store;
use hubbub_client::{
    Chat, Delays, Event, Family, HubConnection, HubConnectionBuilder, SlowReason, TransportKind,
};
use hubbub_hub::ClassicOptions;
use tokio::sync::broadcast;

const TRANSPORTS: [TransportKind; 3] = [
    TransportKind::WebSockets,
    TransportKind::ServerSentEvents,
    TransportKind::LongPolling,
];

const LIMIT: Duration = Duration::from_secs(20);

async fn hub(classic: ClassicOptions) -> hubbub_hub::RunningServer {
    hubbub_hub::ServerBuilder::new()
        .hub("/chathub", hubbub_hub::chat_hub())
        .classic(classic)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
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
            args[0].decode::<String>().unwrap_or_default(),
            args[1]
                .decode::<serde_json::Value>()
                .map(|v| v.to_string())
                .unwrap_or_default(),
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

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "hubbub-classic-hub-test-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("history.sqlite3")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_and_core_clients_share_one_chat_over_every_transport() {
    let server = hub(ClassicOptions::default()).await;
    for transport in TRANSPORTS {
        let scope = format!("mixed-{}", transport.name());
        // No family, no hub name: detected from negotiate, the default hub `chatHub`.
        let ann =
            HubConnectionBuilder::new(server.url(&format!("/signalr?name=ann&scope={scope}")))
                .transports(&[transport])
                .build()
                .unwrap();
        let carol =
            HubConnectionBuilder::new(server.url(&format!("/chathub?name=carol&scope={scope}")))
                .build()
                .unwrap();
        let ann_got = inbox(&ann, "broadcastMessage");
        let carol_got = inbox(&carol, "broadcastMessage");
        let mut events = ann.events();
        ann.start().await.unwrap();
        carol.start().await.unwrap();
        let Event::Connected {
            transport: name, ..
        } = expect_event(&mut events, "connected", |e| {
            matches!(e, Event::Connected { .. })
        })
        .await
        else {
            unreachable!()
        };
        assert_eq!(name, transport.name());

        ann.invoke::<()>("Send", vec!["ann".into(), "from classic".into()])
            .await
            .unwrap();
        carol
            .invoke::<()>("Send", vec!["carol".into(), "from core".into()])
            .await
            .unwrap();
        for (who, got) in [("ann", &ann_got), ("carol", &carol_got)] {
            wait_until(&format!("{who} hears both ({transport:?})"), || {
                let got = got.lock().unwrap();
                got.iter().any(|(s, _)| s == "ann") && got.iter().any(|(s, _)| s == "carol")
            })
            .await;
        }
        let echoed: String = ann.invoke("Echo", vec!["round trip".into()]).await.unwrap();
        assert_eq!(echoed, "round trip");
        ann.stop().await;
        carol.stop().await;
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_layer_loses_nothing_when_the_network_drops_mid_chat() {
    let server = hub(ClassicOptions::default()).await;
    let proxy = proxy::Proxy::start(server.local_addr()).await;
    for transport in TRANSPORTS {
        let scope = format!("cut-{}", transport.name());
        let store = Store::open(temp_db(&format!("ann-{}", transport.name())))
            .await
            .unwrap();
        let url = format!("http://{}/signalr?name=ann&scope={scope}", proxy.addr);
        let conn = HubConnectionBuilder::new(&url)
            .family(Family::Classic)
            .transports(&[transport])
            .retry_policy(Delays(vec![Duration::from_millis(200); 100]))
            .build()
            .unwrap();
        let ann = Chat::open(conn.clone(), store, &url, "ann").await.unwrap();
        conn.start().await.unwrap();
        let bob =
            HubConnectionBuilder::new(server.url(&format!("/chathub?name=bob&scope={scope}")))
                .build()
                .unwrap();
        bob.start().await.unwrap();
        for i in 0..30 {
            bob.invoke::<()>("Send", vec!["bob".into(), format!("m{i}").into()])
                .await
                .unwrap();
            if i == 10 || i == 20 {
                proxy.cut();
            }
        }
        let conversation = ann.conversation();
        let start = std::time::Instant::now();
        let bodies = loop {
            let bodies: Vec<String> = ann
                .store()
                .newest(conversation, 100)
                .await
                .unwrap()
                .into_iter()
                .filter(|m| m.sender == "bob")
                .map(|m| m.body)
                .collect();
            if bodies.len() >= 30 {
                break bodies;
            }
            assert!(
                start.elapsed() < LIMIT,
                "{transport:?}: ann has {} of 30: {bodies:?}",
                bodies.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let mut sorted = bodies.clone();
        sorted.sort_by_key(|b| b[1..].parse::<u32>().unwrap());
        sorted.dedup();
        assert_eq!(sorted.len(), 30, "{transport:?}: each once: {bodies:?}");
        conn.stop().await;
        bob.stop().await;
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_stopped_is_slow_then_reconnects() {
    let server = hub(ClassicOptions {
        // KeepAliveTimeout 1.5 s: slow after 1 s of silence, reconnect at 1.5 s.
        keep_alive: Some(Duration::from_millis(750)),
        ..ClassicOptions::default()
    })
    .await;
    for transport in [TransportKind::WebSockets, TransportKind::ServerSentEvents] {
        let proxy = proxy::Proxy::start(server.local_addr()).await;
        let conn = HubConnectionBuilder::new(format!("http://{}/signalr?name=kay", proxy.addr))
            .transports(&[transport])
            .retry_policy(Delays(vec![Duration::from_millis(200); 100]))
            .build()
            .unwrap();
        let mut events = conn.events();
        conn.start().await.unwrap();
        let id = conn.connection_id();
        proxy.blackhole();
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
        assert!(
            reason.contains("KeepAliveTimeout"),
            "{transport:?}: {reason}"
        );
        proxy.pass();
        let back = expect_event(&mut events, "reconnected", |e| {
            matches!(e, Event::Reconnected { .. })
        })
        .await;
        assert_eq!(
            back,
            Event::Reconnected { connection_id: id },
            "{transport:?}: the same connection, resumed"
        );
        let echoed: String = conn.invoke("Echo", vec!["after".into()]).await.unwrap();
        assert_eq!(echoed, "after");
        conn.stop().await;
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_sends_abort_so_others_see_the_user_leave_at_once() {
    // Without `abort` the hub would wait a DisconnectTimeout (here far longer than the test
    // waits) before anyone hears the user left.
    let server = hub(ClassicOptions {
        disconnect_timeout: Duration::from_secs(600),
        ..ClassicOptions::default()
    })
    .await;
    for transport in TRANSPORTS {
        let scope = format!("abort-{}", transport.name());
        let watcher =
            HubConnectionBuilder::new(server.url(&format!("/chathub?name=wat&scope={scope}")))
                .build()
                .unwrap();
        let left = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = left.clone();
        watcher.on("userLeft", move |args| {
            sink.lock()
                .unwrap()
                .push(args[0].decode().unwrap_or_default());
            None
        });
        watcher.start().await.unwrap();
        let conn =
            HubConnectionBuilder::new(server.url(&format!("/signalr?name=leaver&scope={scope}")))
                .transports(&[transport])
                .build()
                .unwrap();
        conn.start().await.unwrap();
        conn.invoke::<()>("Send", vec!["leaver".into(), "bye".into()])
            .await
            .unwrap();
        conn.stop().await;
        wait_until(&format!("userLeft after stop ({transport:?})"), || {
            left.lock().unwrap().iter().any(|u| u == "leaver")
        })
        .await;
        watcher.stop().await;
    }
    server.shutdown().await.unwrap();
}

/// A flood far larger than the connection's replay buffer (1,000 messages, 4 MiB) reaches a classic
/// client that reads it, whole and in order, over every transport: the hub waits for the
/// transport instead of dropping messages it has not sent yet. The client stops reading for
/// 3 s in the middle (a handler busy, or a loaded machine): long polling then sends no poll
/// for 3 s, and the hub must still count the client as there (it counted it away after 2 s
/// and dropped the messages it had not sent: this test failed on a loaded CI machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_larger_than_the_replay_buffer_arrives_whole_over_every_transport() {
    const MESSAGES: usize = 3_000;
    // 16 KiB each: 48 MiB, twelve times the buffer's bytes, decoded slower than the hub queues.
    const SIZE: u32 = 16 * 1024;
    // Where, and for how long, the client stops reading: well inside the flood, and longer
    // than a long poll's gap ever is when nothing holds the client up.
    const PAUSE_AT: usize = 600;
    const PAUSE: Duration = Duration::from_secs(3);
    let server = hub(ClassicOptions::default()).await;
    for transport in TRANSPORTS {
        let conn = HubConnectionBuilder::new(format!(
            "http://{}/signalr?name=flood&scope=flood-{}",
            server.local_addr(),
            transport.name()
        ))
        .family(Family::Classic)
        .transports(&[transport])
        .build()
        .unwrap();
        let got = Arc::new(Mutex::new(Vec::with_capacity(MESSAGES)));
        let sink = got.clone();
        conn.on("broadcastMessage", move |args| {
            let received = {
                let mut got = sink.lock().unwrap();
                got.push(args[1].decode::<String>().unwrap_or_default());
                got.len()
            };
            if received == PAUSE_AT {
                // The client's connection reads nothing meanwhile (this handler holds it);
                // the runtime's other tasks, the hub's among them, go on on another thread.
                tokio::task::block_in_place(|| std::thread::sleep(PAUSE));
            }
            None
        });
        conn.start().await.unwrap();
        let flood = tokio::time::timeout(
            Duration::from_secs(60),
            conn.invoke::<()>(
                "Flood",
                vec![
                    hubbub_client::Arg::from_value((MESSAGES as u32).into()),
                    hubbub_client::Arg::from_value(SIZE.into()),
                ],
            ),
        )
        .await;
        assert!(
            matches!(flood, Ok(Ok(()))),
            "{transport:?}: Flood: {flood:?}"
        );
        let start = std::time::Instant::now();
        while got.lock().unwrap().len() < MESSAGES {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{transport:?}: only {} of {MESSAGES} messages arrived",
                got.lock().unwrap().len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        {
            let got = got.lock().unwrap();
            assert_eq!(got.len(), MESSAGES, "{transport:?}: messages arrived twice");
            assert!(
                got.iter().all(|m| m.len() == SIZE as usize),
                "{transport:?}: a message arrived cut or empty"
            );
        }
        conn.stop().await;
    }
}

/// On a classic hub as on a Core one: suspend (abort sent, calls refused) and resume, a network
/// change that re-makes the connection at once, and fallback URLs tried in turn when a hub is
/// gone (its connection token means nothing to the next hub: negotiated anew there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_resume_network_change_and_fallback_urls_on_a_classic_hub() {
    use hubbub_client::State;
    for transport in [TransportKind::WebSockets, TransportKind::LongPolling] {
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_url = format!("http://{}/signalr", dead.local_addr().unwrap());
        drop(dead);
        let a = hub(ClassicOptions::default()).await;
        let b = hub(ClassicOptions::default()).await;
        let (a_url, b_url) = (a.url("/signalr?name=sue"), b.url("/signalr?name=sue"));
        let conn = HubConnectionBuilder::new(dead_url)
            .fallback_urls([a_url.clone(), b_url.clone()])
            .transports(&[transport])
            .retry_policy(Delays(vec![Duration::from_millis(50); 40]))
            .retry_first_start(true)
            .build()
            .unwrap();
        let mut events = conn.events();
        conn.start().await.unwrap();
        assert_eq!(conn.url(), a_url, "{transport:?}");
        let first = conn.connection_id().unwrap();

        conn.suspend();
        expect_event(&mut events, "suspended", |e| {
            matches!(
                e,
                Event::StateChanged {
                    new: State::Suspended,
                    ..
                }
            )
        })
        .await;
        assert!(
            matches!(
                conn.invoke::<()>("Echo", vec!["x".into()]).await,
                Err(hubbub_client::Error::NotConnected(State::Suspended))
            ),
            "{transport:?}"
        );
        conn.resume();
        expect_event(&mut events, "reconnected after resume", |e| {
            matches!(e, Event::Reconnected { .. })
        })
        .await;
        assert_ne!(conn.connection_id().unwrap(), first, "{transport:?}");

        conn.notify_network_changed();
        let reconnecting = expect_event(&mut events, "reconnecting", |e| {
            matches!(e, Event::Reconnecting { .. })
        })
        .await;
        assert!(
            matches!(reconnecting, Event::Reconnecting { delay, .. } if delay == Duration::ZERO),
            "{reconnecting:?}"
        );
        expect_event(&mut events, "reconnected after the network change", |e| {
            matches!(e, Event::Reconnected { .. })
        })
        .await;
        let echoed: String = conn.invoke("Echo", vec!["on a".into()]).await.unwrap();
        assert_eq!(echoed, "on a");

        // Hub A goes away: the next URLs are tried until B answers.
        // (A long poll may be answered "reconnect" while A drains, and get back in once more
        // before A is gone: wait for the reconnect that lands on B.)
        a.shutdown().await.unwrap();
        let start = std::time::Instant::now();
        while conn.url() != b_url || conn.state() != State::Connected {
            assert!(
                start.elapsed() < LIMIT,
                "{transport:?}: not reconnected on B; at {} ({:?})",
                conn.url(),
                conn.state()
            );
            let _ = tokio::time::timeout(Duration::from_millis(200), events.recv()).await;
        }
        let echoed: String = conn.invoke("Echo", vec!["on b".into()]).await.unwrap();
        assert_eq!(echoed, "on b");
        conn.stop().await;
        b.shutdown().await.unwrap();
    }
}

/// A hub restarted on the same address (a new process: a new token key, no memory of the
/// connection) refuses the old connection's reconnect; the client starts a new connection at
/// once instead of retrying until the 30 s DisconnectTimeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_hub_gets_a_new_connection_at_once() {
    use hubbub_client::State;
    for transport in TRANSPORTS {
        let first = hub(ClassicOptions::default()).await;
        let addr = first.local_addr();
        let conn = HubConnectionBuilder::new(first.url("/signalr?name=rita"))
            .transports(&[transport])
            .retry_policy(Delays(vec![Duration::from_millis(200); 100]))
            .build()
            .unwrap();
        let mut events = conn.events();
        conn.start().await.unwrap();
        let before = conn.connection_id().unwrap();
        first.shutdown().await.unwrap();
        let second = hubbub_hub::ServerBuilder::new()
            .hub("/chathub", hubbub_hub::chat_hub())
            .classic(ClassicOptions::default())
            .bind(addr)
            .await
            .unwrap();
        // Well within the DisconnectTimeout (30 s) the old connection would be retried for.
        let start = std::time::Instant::now();
        while conn.state() != State::Connected || conn.connection_id().is_none_or(|id| id == before)
        {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "{transport:?}: not reconnected with a new connection ({:?})",
                conn.state()
            );
            let _ = tokio::time::timeout(Duration::from_millis(200), events.recv()).await;
        }
        let echoed: String = conn.invoke("Echo", vec!["back".into()]).await.unwrap();
        assert_eq!(echoed, "back");
        conn.stop().await;
        second.shutdown().await.unwrap();
    }
}

/// A hub method that panics is answered with 2.x's error for a failed invocation, over every
/// transport, and the connection goes on (the panic used to end the classic socket's task:
/// the client lost its socket and the call its answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_hub_method_gets_an_error_result_and_the_connection_goes_on() {
    let methods = hubbub_hub::Hub::new("chat")
        .method("Panics", |_ctx, (): ()| async move {
            if true {
                panic!("a hub method panicked");
            }
            Ok::<(), hubbub_hub::HubError>(())
        })
        .method("Echo", |_ctx, (text,): (String,)| async move {
            Ok::<_, hubbub_hub::HubError>(serde_json::Value::from(text))
        });
    let server = hubbub_hub::ServerBuilder::new()
        .hub("/chathub", methods)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    for transport in TRANSPORTS {
        let conn = HubConnectionBuilder::new(server.url("/signalr"))
            .transports(&[transport])
            .family(Family::Classic)
            .build()
            .unwrap();
        let mut events = conn.events();
        conn.start().await.unwrap();
        let error = tokio::time::timeout(LIMIT, conn.invoke::<()>("Panics", vec![]))
            .await
            .expect("an answer within 20 s")
            .expect_err("a panic is an error");
        assert!(
            error
                .to_string()
                .contains("There was an error invoking Hub method 'ChatHub.Panics'."),
            "{transport:?}: {error}"
        );
        let echoed: String = tokio::time::timeout(LIMIT, conn.invoke("Echo", vec!["after".into()]))
            .await
            .expect("an answer within 20 s")
            .unwrap();
        assert_eq!(echoed, "after");
        assert!(
            !std::iter::from_fn(|| events.try_recv().ok())
                .any(|e| matches!(e, Event::Reconnecting { .. } | Event::Closed { .. })),
            "{transport:?}: the connection stayed up"
        );
        conn.stop().await;
    }
    server.shutdown().await.unwrap();
}
