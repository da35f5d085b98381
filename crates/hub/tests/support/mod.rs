//! What the hub's integration tests share.

use std::time::Duration;

/// Sends `request` (10 s at most) and gives its status and body; panics naming `what`.
pub(crate) async fn request(request: reqwest::RequestBuilder, what: &str) -> (u16, String) {
    let response = request
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}
