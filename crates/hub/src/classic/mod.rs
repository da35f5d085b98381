//! The classic family: ASP.NET SignalR 2.x clients (the jQuery client with `/signalr/hubs`,
//! the .NET `Microsoft.AspNet.SignalR.Client`, and others) at `/signalr`, beside the Core
//! endpoints, on the same hubs.
//!
//! | request | handled by |
//! |---|---|
//! | `GET {path}/negotiate` (any method) | [`negotiate`]: a protected `ConnectionToken` and the timeouts (§8a) |
//! | `GET {path}/connect`, `{path}/reconnect` | WebSockets (upgrade), Server-Sent Events, long polling (`transport=`) |
//! | `POST {path}/poll` | long polling: the messages after `messageId`, held up to `ConnectionTimeout` |
//! | `GET {path}/start` | `{ "Response": "started" }` once the hubs' connected callbacks ran |
//! | `POST {path}/send` | `data=<hub request>`, answered with the hub result |
//! | `POST {path}/abort` | the client stops: the hubs' disconnected callbacks run now |
//! | `GET {path}/ping` | `{ "Response": "pong" }` |
//! | `GET {path}/hubs`, `{path}/js` | the generated JavaScript proxy |
//!
//! A classic connection is a [`session::Session`]: for every hub in its `connectionData` it
//! holds a [`Connection`](crate::connection::Connection) registered with that hub's router
//! like any Core connection, so groups, users, presence and the backplane treat both families
//! alike. What the hub sends it is rendered once per message as a `{"H","M","A"}` item
//! ([`Frame::classic_item`](crate::frame::Frame)), numbered in the session's replay buffer,
//! and written by whichever transport request is attached, in `{"C","M"}` envelopes. Hub
//! requests go through the same dispatch as Core invocations
//! ([`prepare`](crate::connection::prepare)).
//!
//! Deviations from a 2.4.3 server: the cursor `C` (`d-<stream>-B,<n>`, opaque to clients) counts
//! one connection's messages rather than message-bus streams; `foreverFrame` is refused; a hub invoked over a connection whose
//! `connectionData` does not list it can be called but does not deliver to it (as in 2.x);
//! `abort` always runs the disconnected callbacks at once.

mod gate;
pub(crate) mod protect;
mod proxy;
mod replay;
pub(crate) mod session;
mod transport;
pub(crate) mod wire;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::routing::{any, get};
use dashmap::DashMap;
use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Auth;
use crate::options::HubOptions;
use crate::state::HubState;

use self::protect::Protector;
use self::session::Session;

/// Settings of the classic endpoint. The defaults are ASP.NET SignalR 2.4's.
#[derive(Clone)]
pub struct ClassicOptions {
    /// Where it is served (`/signalr`).
    pub path: String,
    /// The key that protects connection and groups tokens. Nodes of a fleet need the same key
    /// to accept each other's tokens; `None` makes a random one for this process.
    pub key: Option<Vec<u8>>,
    /// How long a connection without any transport lives on before the hubs' disconnected
    /// callbacks run (30 s).
    pub disconnect_timeout: Duration,
    /// How often a keep-alive `{}` is written on WebSockets and SSE (10 s, a third of the
    /// disconnect timeout); `None` turns keep-alives off (negotiate then answers
    /// `KeepAliveTimeout: null`). Clients take twice this as their timeout.
    pub keep_alive: Option<Duration>,
    /// How long a long poll is held open without messages (110 s).
    pub connection_timeout: Duration,
    /// How long a client waits for a transport to connect (5 s; negotiate tells clients).
    pub transport_connect_timeout: Duration,
    /// Messages kept per connection for clients that reconnect or poll again (1,000, the 2.x
    /// `DefaultMessageBufferSize`).
    pub replay_messages: usize,
    /// Bytes of messages kept per connection at most (4 MiB): the oldest go first.
    pub replay_bytes: usize,
}

impl std::fmt::Debug for ClassicOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ClassicOptions")
            .field("path", &self.path)
            .field("key", &self.key.as_ref().map(|_| "…"))
            .field("disconnect_timeout", &self.disconnect_timeout)
            .field("keep_alive", &self.keep_alive)
            .field("connection_timeout", &self.connection_timeout)
            .field("transport_connect_timeout", &self.transport_connect_timeout)
            .field("replay_messages", &self.replay_messages)
            .field("replay_bytes", &self.replay_bytes)
            .finish()
    }
}

impl Default for ClassicOptions {
    fn default() -> Self {
        Self {
            path: "/signalr".to_owned(),
            key: None,
            disconnect_timeout: Duration::from_secs(30),
            keep_alive: Some(Duration::from_secs(10)),
            connection_timeout: Duration::from_secs(110),
            transport_connect_timeout: Duration::from_secs(5),
            replay_messages: 1000,
            replay_bytes: 4 << 20,
        }
    }
}

pub(crate) use hubbub_protocol::classic::Transport;

/// A hub as classic clients see it.
#[derive(Debug)]
pub(crate) struct ClassicHub {
    /// Its classic name (`ChatHub`): the `H` of what it sends.
    pub(crate) name: String,
    pub(crate) state: Arc<HubState>,
    /// Its `hubbub_received_bytes_total` counter per classic transport and its
    /// `hubbub_messages_received_total` counter for the classic family, looked up in their
    /// families on first use and kept: a lookup hashes its labels, twice per hub request.
    received_bytes: [OnceLock<Counter>; 3],
    messages_received: OnceLock<Counter>,
}

impl ClassicHub {
    fn new(name: String, state: Arc<HubState>) -> Self {
        Self {
            name,
            state,
            received_bytes: Default::default(),
            messages_received: OnceLock::new(),
        }
    }

    /// The bytes received over `transport` for this hub (`hubbub_received_bytes_total`).
    pub(crate) fn received_bytes(&self, transport: Transport) -> &Counter {
        let slot = match transport {
            Transport::WebSockets => 0,
            Transport::ServerSentEvents => 1,
            Transport::LongPolling => 2,
        };
        self.received_bytes[slot].get_or_init(|| {
            self.state
                .counters
                .prom
                .received_bytes
                .get_or_create(&crate::metrics::ConnLabels::classic(transport.name()))
                .clone()
        })
    }

    /// The hub requests received from classic clients (`hubbub_messages_received_total`).
    pub(crate) fn messages_received(&self) -> &Counter {
        self.messages_received.get_or_init(|| {
            self.state
                .counters
                .prom
                .messages_received
                .get_or_create(&crate::metrics::FamilyLabel { family: "classic" })
                .clone()
        })
    }
}

/// Everything the classic endpoint shares between its connections.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub(crate) options: ClassicOptions,
    pub(crate) hub_options: HubOptions,
    pub(crate) hubs: Vec<ClassicHub>,
    pub(crate) protector: Protector,
    pub(crate) sessions: DashMap<String, Arc<Session>>,
    /// Connections their clients stopped (`abort`), and when: a poll still on its way after
    /// the abort must not open the connection again (§8a: it is answered with an empty body).
    /// Kept for the disconnect timeout.
    pub(crate) stopped: DashMap<String, std::time::Instant>,
    pub(crate) auth: Option<Auth>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
    proxy: String,
}

impl Endpoint {
    /// Notes that the client stopped connection `id`, forgetting stops older than the
    /// disconnect timeout.
    pub(crate) fn note_stopped(&self, id: &str) {
        let keep = self.options.disconnect_timeout;
        self.stopped.retain(|_, at| at.elapsed() < keep);
        self.stopped
            .insert(id.to_owned(), std::time::Instant::now());
    }

    /// Whether the client stopped connection `id` within the disconnect timeout.
    pub(crate) fn was_stopped(&self, id: &str) -> bool {
        self.stopped
            .get(id)
            .is_some_and(|at| at.elapsed() < self.options.disconnect_timeout)
    }

    pub(crate) fn new(
        options: ClassicOptions,
        hub_options: HubOptions,
        hubs: &[Arc<HubState>],
        auth: Option<Auth>,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Arc<Self> {
        let mut options = options;
        options.path = format!("/{}", options.path.trim_matches('/'));
        let hubs: Vec<ClassicHub> = hubs
            .iter()
            .map(|state| ClassicHub::new(state.hub.classic_name_or_default(), state.clone()))
            .collect();
        let proxy = proxy::generate(
            &options.path,
            &hubs
                .iter()
                .map(|h| (h.name.clone(), h.state.hub.method_names.clone()))
                .collect::<Vec<_>>(),
        );
        Arc::new(Self {
            protector: Protector::new(options.key.as_deref()),
            options,
            hub_options,
            hubs,
            sessions: DashMap::new(),
            stopped: DashMap::new(),
            auth,
            shutdown,
            tasks,
            proxy,
        })
    }

    /// The hub a classic client names (`chatHub`, `chathub`, `ChatHub`: case does not matter).
    pub(crate) fn hub_index(&self, name: &str) -> Option<usize> {
        self.hubs
            .iter()
            .position(|h| h.name.eq_ignore_ascii_case(name))
    }

    /// The routes under the endpoint's path.
    pub(crate) fn router(self: &Arc<Self>) -> Router {
        let path = self.options.path.clone();
        let proxy = self.proxy.clone();
        let js = move || {
            let proxy = proxy.clone();
            async move {
                (
                    [
                        (
                            axum::http::header::CONTENT_TYPE,
                            "application/javascript; charset=UTF-8",
                        ),
                        (axum::http::header::CACHE_CONTROL, "no-cache"),
                    ],
                    proxy,
                )
            }
        };
        Router::new()
            // Any method, as 2.x's `PersistentConnection` (it matches the path alone): an
            // ASP.NET Core client's `POST …/negotiate` gets the classic answer, whose
            // `ProtocolVersion` tells it what it reached (§8), rather than a bare 405.
            .route(&format!("{path}/negotiate"), any(transport::negotiate))
            .route(&format!("{path}/connect"), any(transport::connect))
            .route(&format!("{path}/reconnect"), any(transport::reconnect))
            .route(&format!("{path}/poll"), any(transport::poll))
            .route(&format!("{path}/start"), get(transport::start))
            .route(&format!("{path}/send"), any(transport::send))
            .route(&format!("{path}/abort"), any(transport::abort))
            .route(&format!("{path}/ping"), get(transport::ping))
            .route(&format!("{path}/hubs"), get(js.clone()))
            .route(&format!("{path}/js"), get(js))
            .with_state(self.clone())
    }
}

/// The negotiate response, keys in the order a 2.4.3 server writes them (§8a), for the
/// answered `ProtocolVersion` (`clientProtocol` clamped to [1.2, 2.0]).
pub(crate) fn negotiate_body(
    options: &ClassicOptions,
    token: &str,
    connection_id: &str,
    client_protocol: Option<&str>,
) -> String {
    hubbub_protocol::classic::NegotiateResponse {
        url: options.path.clone(),
        connection_token: token.to_owned(),
        connection_id: connection_id.to_owned(),
        keep_alive_timeout: options.keep_alive.map(|k| (k * 2).as_secs_f64()),
        disconnect_timeout: options.disconnect_timeout.as_secs_f64(),
        connection_timeout: options.connection_timeout.as_secs_f64(),
        try_web_sockets: true,
        protocol_version: hubbub_protocol::classic::answered_protocol_version(client_protocol),
        transport_connect_timeout: options.transport_connect_timeout.as_secs_f64(),
        long_poll_delay: 0.0,
    }
    .to_json()
}

/// Query parameters of a request.
pub(crate) type Query = HashMap<String, String>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiate_writes_the_2_4_keys_in_order() {
        let body = negotiate_body(&ClassicOptions::default(), "tok+/=", "id-1", Some("2.1"));
        assert_eq!(
            body,
            r#"{"Url":"/signalr","ConnectionToken":"tok+/=","ConnectionId":"id-1","KeepAliveTimeout":20.0,"DisconnectTimeout":30.0,"ConnectionTimeout":110.0,"TryWebSockets":true,"ProtocolVersion":"2.0","TransportConnectTimeout":5.0,"LongPollDelay":0.0}"#
        );
        let off = ClassicOptions {
            keep_alive: None,
            ..ClassicOptions::default()
        };
        let body = negotiate_body(&off, "t", "i", Some("1.5"));
        assert!(body.contains(r#""KeepAliveTimeout":null,"#), "{body}");
        assert!(body.contains(r#""ProtocolVersion":"1.5","#), "{body}");
    }
}
