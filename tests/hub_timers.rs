//! The hub's timers and handshake rules, seen from a raw WebSocket (no client library in the
//! way): handshake timeout, keep-alive pings, client timeout, handshake errors worded as the
//! official server words them.

mod support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn socket(hub: &hubbub_hub::RunningServer) -> Ws {
    let url = hub.url("/chathub").replace("http://", "ws://");
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

async fn next_text(ws: &mut Ws, limit: Duration) -> Option<String> {
    loop {
        match tokio::time::timeout(limit, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(t.to_string()),
            Ok(Some(Ok(Message::Binary(b)))) => {
                return Some(String::from_utf8_lossy(&b).into_owned());
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
            Ok(Some(Ok(_))) => {}
        }
    }
}

fn options() -> hubbub_hub::HubOptions {
    hubbub_hub::HubOptions {
        handshake_timeout: Duration::from_millis(300),
        keep_alive_interval: Duration::from_millis(150),
        client_timeout: Duration::from_millis(800),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_handshake_is_refused_in_time() {
    let hub = support::start_hub_with(options()).await;
    let mut ws = socket(&hub).await;
    let started = Instant::now();
    let text = next_text(&mut ws, Duration::from_secs(5))
        .await
        .expect("an answer");
    assert_eq!(text, "{\"error\":\"Handshake was canceled.\"}\u{1e}");
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(
        next_text(&mut ws, Duration::from_secs(2)).await.is_none(),
        "then the socket closes"
    );
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_errors_are_worded_as_the_official_server_words_them() {
    let hub = support::start_hub_with(options()).await;
    for (request, expected) in [
        (
            "{\"protocol\":\"xml\",\"version\":1}\u{1e}",
            "The protocol 'xml' is not supported.",
        ),
        (
            "{\"protocol\":\"json\",\"version\":7}\u{1e}",
            "The server does not support version 7 of the 'json' protocol.",
        ),
        (
            "{\"version\":1}\u{1e}",
            "Missing required property 'protocol'.",
        ),
    ] {
        let mut ws = socket(&hub).await;
        ws.send(Message::Text(request.into())).await.unwrap();
        let text = next_text(&mut ws, Duration::from_secs(5))
            .await
            .expect("an answer");
        let answer: serde_json::Value =
            serde_json::from_str(text.trim_end_matches('\u{1e}')).unwrap();
        assert!(
            answer["error"].as_str().unwrap().contains(expected),
            "{request}: {answer}"
        );
    }
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_flow_and_a_silent_client_is_closed_with_a_reason() {
    let hub = support::start_hub_with(options()).await;
    let mut ws = socket(&hub).await;
    ws.send(Message::Text(
        "{\"protocol\":\"json\",\"version\":1}\u{1e}".into(),
    ))
    .await
    .unwrap();
    assert_eq!(
        next_text(&mut ws, Duration::from_secs(2)).await.unwrap(),
        "{}\u{1e}"
    );
    let started = Instant::now();
    let mut pings = 0;
    let close = loop {
        let text = next_text(&mut ws, Duration::from_secs(5))
            .await
            .expect("the hub talks until it closes");
        if text == "{\"type\":6}\u{1e}" {
            pings += 1;
        } else {
            break text;
        }
    };
    assert!(
        pings >= 3,
        "pings every 150 ms while the client is silent ({pings})"
    );
    assert!(
        close.starts_with(
            "{\"type\":7,\"error\":\"Connection closed: nothing arrived from the client"
        ),
        "{close}"
    );
    assert!(started.elapsed() >= Duration::from_millis(700));
    hub.shutdown().await.unwrap();
}
