//! The hub's limits: the connection cap; CORS for browser clients. (The rate limit, which slows
//! a flooding client down instead of closing it, is tested in `crates/hub/tests/rate_limit.rs`.)

mod support;

use std::time::Duration;

use hubbub_client::HubConnectionBuilder;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_refuses_with_503() {
    let hub = support::start_hub_with(hubbub_hub::HubOptions {
        max_connections: 2,
        ..Default::default()
    })
    .await;
    let a = HubConnectionBuilder::new(hub.url("/chathub"))
        .build()
        .unwrap();
    let b = HubConnectionBuilder::new(hub.url("/chathub"))
        .build()
        .unwrap();
    a.start().await.unwrap();
    b.start().await.unwrap();
    let c = HubConnectionBuilder::new(hub.url("/chathub"))
        .build()
        .unwrap();
    let err = c.start().await.unwrap_err().to_string();
    assert!(err.contains("503"), "{err}");
    a.stop().await;
    // A freed place is taken again (the record goes when the connection ends).
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.start().await.unwrap();
    b.stop().await;
    c.stop().await;
    hub.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_configured_origins_only() {
    let hub = hubbub_hub::ServerBuilder::new()
        .hub("/chathub", hubbub_hub::chat_hub())
        .cors_origins(vec!["http://app.example".to_owned()])
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        http.request(
            reqwest::Method::OPTIONS,
            hub.url("/chathub/negotiate?negotiateVersion=1"),
        )
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "x-signalr-user-agent, authorization",
        )
        .send()
    };
    let ok = preflight("http://app.example").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "http://app.example"
    );
    assert_eq!(ok.headers()["access-control-allow-credentials"], "true");
    let other = preflight("http://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    hub.shutdown().await.unwrap();
}
