//! The official `@microsoft/signalr` client (npm, in Node) against Hubbub's hub, over every
//! transport × protocol it supports: WebSockets, SSE (JSON only) and long polling × JSON and
//! MessagePack. The scenarios live in `tests/interop/node/official-client.mjs`.

mod support;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_every_transport_and_protocol() {
    let hub = support::start_hub().await;
    let url = hub.url("/chathub");
    let output = support::node("official-client.mjs", &[&url], Duration::from_secs(240)).await;
    let stdout = support::show(&output);
    let results: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let combos = ["ws-json", "ws-msgpack", "sse-json", "lp-json", "lp-msgpack"];
    for combo in combos {
        let ran = results.iter().filter(|r| r["combo"] == combo).count();
        assert!(ran >= 14, "{combo}: only {ran} scenarios ran");
    }
    let failed: Vec<_> = results.iter().filter(|r| r["ok"] != true).collect();
    assert!(failed.is_empty(), "failed scenarios: {failed:#?}");
    assert!(output.status.success());
    let counters = hub.counters("/chathub").unwrap().snapshot();
    assert!(counters["messagesIn"].as_u64().unwrap() > 100, "{counters}");
    hub.shutdown().await.unwrap();
}

/// The official client's stateful reconnect (`withStatefulReconnect`) over WebSockets, JSON and
/// MessagePack: its socket is cut twice mid-stream and it resumes on the same connection with
/// every message exactly once, in order, and no reconnect events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_stateful_reconnect() {
    let hub = support::start_hub().await;
    let url = hub.url("/chathub");
    let output = support::node("stateful.mjs", &[&url], Duration::from_secs(60)).await;
    let stdout = support::show(&output);
    assert_eq!(stdout.lines().count(), 2, "both protocols ran");
    assert!(output.status.success(), "failed: see above");
    hub.shutdown().await.unwrap();
}
