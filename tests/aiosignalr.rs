//! Hubbub's client against an independent SignalR server nobody here wrote: `aiosignalr`
//! (PyPI), run by `tests/interop/python/aiosignalr_hub.py` on 127.0.0.1.
//!
//! aiosignalr deviates from ASP.NET Core; each deviation is decided and tested here:
//! - JSON arrives in *binary* WebSocket frames: harmless, accepted (frames are bytes to us).
//! - MessagePack headers arrive as an integer (`cc 80`) instead of a map: no header is lost,
//!   accepted as "no headers" (`hubbub-protocol`'s decoder).
//! - The first long poll is held until there is data: accepted, by polling in the background
//!   instead of waiting for the first poll before the handshake.
//! - No Close message is ever sent; a dropped socket is reported as such.

mod support;

use std::process::Stdio;
use std::time::Duration;

use futures_util::StreamExt;
use hubbub_client::{Arg, Event, HubConnectionBuilder, Protocol, State, TransportKind};
use tokio::io::AsyncBufReadExt;

struct PyHub {
    child: tokio::process::Child,
    url: String,
}

impl PyHub {
    async fn start() -> Self {
        let python = std::env::var("HUBBUB_PYTHON").unwrap_or_else(|_| {
            format!(
                "{}/.cache/hubbub/venv/bin/python",
                std::env::var("HOME").unwrap()
            )
        });
        assert!(
            std::path::Path::new(&python).exists(),
            "no Python with aiosignalr at {python}: run scripts/test.sh (it creates the venv)"
        );
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let mut child = tokio::process::Command::new(python)
            .arg(support::root().join("tests/interop/python/aiosignalr_hub.py"))
            .args(["--port", &port.to_string()])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the aiosignalr hub starts");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the aiosignalr hub reports that it listens")
            .unwrap()
            .expect("a line");
        let url = line
            .strip_prefix("listening on ")
            .expect("the listening line")
            .to_owned();
        Self { child, url }
    }
}

const COMBOS: [(TransportKind, Protocol); 5] = [
    (TransportKind::WebSockets, Protocol::Json),
    (TransportKind::WebSockets, Protocol::MessagePack),
    (TransportKind::ServerSentEvents, Protocol::Json),
    (TransportKind::LongPolling, Protocol::Json),
    (TransportKind::LongPolling, Protocol::MessagePack),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_and_protocol_against_aiosignalr() {
    let mut hub = PyHub::start().await;
    for (transport, protocol) in COMBOS {
        let label = format!("{}/{}", transport.name(), protocol.name());
        let build = || {
            HubConnectionBuilder::new(&hub.url)
                .transports(&[transport])
                .protocol(protocol)
                .build()
                .unwrap()
        };
        let ann = build();
        let bob = build();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
        let sink = got.clone();
        bob.on("broadcastMessage", move |args| {
            sink.lock()
                .unwrap()
                .push((args[0].decode().unwrap(), args[1].decode().unwrap()));
            None
        });
        ann.on("ask", |args| {
            Some(Arg::from(format!(
                "answer to {}",
                args[0].decode::<String>().unwrap()
            )))
        });
        let mut events = ann.events();
        tokio::time::timeout(Duration::from_secs(10), ann.start())
            .await
            .expect("start in time")
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        bob.start().await.unwrap();
        assert_eq!(ann.state(), State::Connected);

        let echoed: serde_json::Value = ann
            .invoke(
                "Echo",
                vec![Arg::serialize(&serde_json::json!({"k": [1, 2.5, "x"]})).unwrap()],
            )
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(echoed, serde_json::json!({"k": [1, 2.5, "x"]}), "{label}");
        ann.invoke::<()>(
            "Send",
            vec!["ann".into(), format!("invoked {label}").into()],
        )
        .await
        .unwrap();
        ann.send("Send", vec!["ann".into(), format!("sent {label}").into()])
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while got.lock().unwrap().len() < 2 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            *got.lock().unwrap(),
            vec![
                ("ann".to_owned(), format!("invoked {label}")),
                ("ann".to_owned(), format!("sent {label}"))
            ],
            "{label}"
        );
        let items: Vec<u32> = ann
            .stream::<u32>(
                "Counter",
                vec![Arg::from_value(4.into()), Arg::from_value(5.into())],
            )
            .map(|i| i.unwrap_or_else(|e| panic!("{label}: {e}")))
            .collect()
            .await;
        assert_eq!(items, vec![0, 1, 2, 3], "{label}");
        let answer: String = ann
            .invoke("AskCaller", vec!["q".into()])
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(answer, "answer to q", "{label}");
        let err = ann.invoke::<()>("NoSuchMethod", vec![]).await.unwrap_err();
        assert!(err.to_string().contains("NoSuchMethod"), "{label}: {err}");
        ann.stop().await;
        bob.stop().await;
        assert_eq!(ann.state(), State::Disconnected);
        while let Ok(e) = events.try_recv() {
            assert!(!matches!(e, Event::Error { .. }), "{label}: {e:?}");
        }
    }
    hub.child.start_kill().unwrap();
    let _ = hub.child.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiosignalr_killed_and_restarted_reconnects() {
    let mut hub = PyHub::start().await;
    let url = hub.url.clone();
    let port: u16 = url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let conn = HubConnectionBuilder::new(&url)
        .transports(&[TransportKind::WebSockets])
        .retry_policy(hubbub_client::Delays(vec![Duration::from_millis(300); 30]))
        .build()
        .unwrap();
    let mut events = conn.events();
    conn.start().await.unwrap();
    let first = conn.connection_id();
    hub.child.start_kill().unwrap();
    let _ = hub.child.wait().await;
    let reconnecting = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(Event::Reconnecting { .. }) = events.recv().await {
                break;
            }
        }
    });
    reconnecting.await.expect("reconnecting after the hub died");
    // The same port again.
    let python = std::env::var("HUBBUB_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/hubbub/venv/bin/python",
            std::env::var("HOME").unwrap()
        )
    });
    let mut child = tokio::process::Command::new(python)
        .arg(support::root().join("tests/interop/python/aiosignalr_hub.py"))
        .args(["--port", &port.to_string()])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(Event::Reconnected { .. }) = events.recv().await {
                break;
            }
        }
    })
    .await
    .expect("reconnected once the hub is back");
    assert_ne!(conn.connection_id(), first);
    let echoed: String = conn.invoke("Echo", vec!["back".into()]).await.unwrap();
    assert_eq!(echoed, "back");
    conn.stop().await;
    child.start_kill().unwrap();
    let _ = child.wait().await;
}
