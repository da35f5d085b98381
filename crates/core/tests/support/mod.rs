//! What the core's test files share: a new account with no settings, and waiting for an event.

use std::time::Duration;

use hubbub_core::*;
use tokio::sync::broadcast;

/// How long a test waits for any one event.
pub(crate) const LIMIT: Duration = Duration::from_secs(20);

/// An account on `url` as a user adds it with no other setting.
pub(crate) fn new_account(url: &str, name: &str) -> NewAccount {
    NewAccount {
        url: Some(url.to_owned()),
        display_name: name.to_owned(),
        token: None,
        protocol: ProtocolChoice::Json,
        transport: TransportChoice::Auto,
        family: FamilyChoice::Auto,
        hub_name: None,
        ca_pem: None,
    }
}

/// Waits (at most [`LIMIT`]) for an event that `pick` accepts.
pub(crate) async fn expect<T>(
    rx: &mut broadcast::Receiver<AppEvent>,
    what: &str,
    mut pick: impl FnMut(&AppEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .expect("event stream");
        if let Some(found) = pick(&event) {
            return found;
        }
    }
}
