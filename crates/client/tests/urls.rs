//! The query parameters the client adds and checks, seen by a tiny recording HTTP server on
//! loopback: each is a parsed parameter, never found by searching the URL's text (issue 12,
//! item 3).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use hubbub_client::{HubConnectionBuilder, TransportKind};

type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A server that records each request's method and query, offers long polling with the
/// token `tok`, then refuses the transport (so the start ends with an error at once).
async fn recorder() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route(
            "/hub/negotiate",
            post(|State(seen): State<Seen>, RawQuery(q): RawQuery| async move {
                seen.lock().unwrap().push(("negotiate".into(), q.unwrap_or_default()));
                (
                    [("content-type", "application/json")],
                    r#"{"negotiateVersion":1,"connectionId":"public","connectionToken":"tok","availableTransports":[{"transport":"LongPolling","transferFormats":["Text","Binary"]}]}"#,
                )
            }),
        )
        .route(
            "/hub",
            get(|State(seen): State<Seen>, RawQuery(q): RawQuery| async move {
                seen.lock().unwrap().push(("poll".into(), q.unwrap_or_default()));
                StatusCode::INTERNAL_SERVER_ERROR
            })
            .post(|State(seen): State<Seen>, RawQuery(q): RawQuery| async move {
                seen.lock().unwrap().push(("send".into(), q.unwrap_or_default()));
                StatusCode::INTERNAL_SERVER_ERROR
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hub"), seen)
}

/// The `key=value` pairs of a query as sent (these tests use no escapes).
fn pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

async fn start_once(url: String) {
    let conn = HubConnectionBuilder::new(url)
        .transports(&[TransportKind::LongPolling])
        .build()
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(20), conn.start())
        .await
        .expect("start ends within 20 s");
    assert!(result.is_err(), "the recorder refuses the transport");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parameter_value_naming_negotiate_version_still_gets_negotiate_version_1() {
    let (base, seen) = recorder().await;
    start_once(format!("{base}?x=negotiateVersion")).await;
    let seen = seen.lock().unwrap().clone();
    let negotiate = &seen.iter().find(|(what, _)| what == "negotiate").unwrap().1;
    assert_eq!(
        pairs(negotiate),
        [
            ("x".to_owned(), "negotiateVersion".to_owned()),
            ("negotiateVersion".to_owned(), "1".to_owned()),
        ],
        "POST /hub/negotiate?{negotiate}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transport_gets_exactly_one_id_and_no_stateful_reconnect_by_text() {
    let (base, seen) = recorder().await;
    start_once(format!("{base}?id=mine&x=useStatefulReconnect=true")).await;
    let seen = seen.lock().unwrap().clone();
    let negotiate = &seen.iter().find(|(what, _)| what == "negotiate").unwrap().1;
    assert!(
        !pairs(negotiate)
            .iter()
            .any(|(k, _)| k == "useStatefulReconnect"),
        "a value mentioning useStatefulReconnect does not opt in: {negotiate}"
    );
    let transport: Vec<_> = seen
        .iter()
        .filter(|(what, _)| what != "negotiate")
        .collect();
    assert!(!transport.is_empty(), "the transport was tried: {seen:?}");
    for (what, query) in transport {
        let ids: Vec<_> = pairs(query)
            .into_iter()
            .filter(|(k, _)| k == "id")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(ids, ["tok"], "{what} ?{query}");
    }
}
