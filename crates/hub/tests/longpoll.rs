//! Long polling on the hub, request by request (no client library in the way): it keeps itself
//! alive as in ASP.NET Core (issue 12, item 5): no keep-alive pings in the polls, no client
//! timeout for a client that only polls, and a client that stops polling is let go after the
//! disconnect timeout.

mod support;

use std::time::Duration;

use support::request;

use hubbub_hub::HubOptions;

async fn hub(options: HubOptions) -> hubbub_hub::RunningServer {
    hubbub_hub::ServerBuilder::new()
        .options(options)
        .hub("/chathub", hubbub_hub::chat_hub())
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .expect("the hub binds a loopback port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polling_keeps_itself_alive_without_pings_or_client_timeout() {
    // Every timer far below the time the test keeps the connection idle.
    let hub = hub(HubOptions {
        keep_alive_interval: Duration::from_millis(50),
        client_timeout: Duration::from_millis(200),
        poll_timeout: Duration::from_millis(150),
        reconnect_window: Duration::from_millis(600),
        ..Default::default()
    })
    .await;
    let http = reqwest::Client::new();
    let base = hub.url("/chathub");
    let (status, body) = request(
        http.post(format!("{base}/negotiate?negotiateVersion=1")),
        "negotiate",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let negotiated: serde_json::Value = serde_json::from_str(&body).unwrap();
    let url = format!(
        "{base}?id={}",
        negotiated["connectionToken"].as_str().unwrap()
    );
    assert_eq!(
        request(http.get(&url), "the first poll").await,
        (200, String::new())
    );
    let (status, _) = request(
        http.post(&url)
            .body("{\"protocol\":\"json\",\"version\":1}\u{1e}"),
        "the handshake",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        request(http.get(&url), "the handshake answer").await,
        (200, "{}\u{1e}".to_owned())
    );
    // Ten held polls (1.5 s, over seven client timeouts and 30 keep-alive intervals): each
    // comes back empty, never with a Ping, and the connection stays.
    for n in 0..10 {
        assert_eq!(
            request(http.get(&url), "an idle poll").await,
            (200, String::new()),
            "poll {n}: empty, no Ping and no Close"
        );
    }
    let (status, _) = request(
        http.post(&url).body(
            "{\"type\":1,\"invocationId\":\"1\",\"target\":\"Echo\",\"arguments\":[5]}\u{1e}",
        ),
        "an invocation",
    )
    .await;
    assert_eq!(status, 200, "the connection is still there");
    assert_eq!(
        request(http.get(&url), "the Completion").await,
        (
            200,
            "{\"type\":3,\"invocationId\":\"1\",\"result\":5}\u{1e}".to_owned()
        )
    );
    // A client that stops polling is gone after the disconnect timeout: its sends are
    // refused then (404, as ASP.NET Core answers a disposed connection).
    let gone = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (status, _) = request(http.post(&url).body("{\"type\":6}\u{1e}"), "a send").await;
            if status == 404 {
                break;
            }
        }
    })
    .await;
    assert!(
        gone.is_ok(),
        "a long-polling connection with no poll for 600 ms is ended within 10 s"
    );
    hub.shutdown().await.unwrap();
}
