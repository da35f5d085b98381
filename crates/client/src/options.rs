//! How a connection is set up: the builder.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hubbub_protocol::Protocol;
use hubbub_protocol::negotiate::TransportKind;

use crate::retry::{Delays, RetryPolicy};
use crate::{Error, HubConnection};

/// An async source of access tokens, called before every negotiate and reconnect.
pub type TokenProvider =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> + Send + Sync>;

/// Which SignalR protocol family a connection speaks. Serialized in lower case (`auto`,
/// `core`, `classic`), as in [`crate::Event::Connected`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Decided by the negotiate response (the default): classic ASP.NET SignalR answers carry
    /// `ProtocolVersion`; a hub that refuses the ASP.NET Core negotiate (404, 405) is asked the
    /// classic way. The decision is kept for the connection's later reconnects.
    #[default]
    Auto,
    /// ASP.NET Core SignalR only.
    Core,
    /// Classic ASP.NET SignalR 2.x only (`shared/reference/signalr-protocol.md` §8).
    Classic,
}

/// The hub name a classic connection asks for unless told otherwise (a classic URL names the
/// endpoint, `…/signalr`, not the hub).
pub const DEFAULT_CLASSIC_HUB: &str = "chatHub";

/// Everything a connection needs to know. Build with [`HubConnectionBuilder`].
#[derive(Clone)]
pub(crate) struct Options {
    pub(crate) url: String,
    /// Other URLs of the same hub (other nodes of a fleet), tried in turn after `url`.
    pub(crate) fallback_urls: Vec<String>,
    pub(crate) transports: Vec<TransportKind>,
    pub(crate) protocol: Protocol,
    pub(crate) token_provider: Option<TokenProvider>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) skip_negotiation: bool,
    pub(crate) handshake_timeout: Duration,
    pub(crate) keep_alive_interval: Duration,
    pub(crate) server_timeout: Duration,
    pub(crate) invocation_timeout: Option<Duration>,
    pub(crate) slow_threshold: Option<Duration>,
    pub(crate) retry: Option<Arc<dyn RetryPolicy>>,
    pub(crate) retry_first_start: bool,
    pub(crate) max_message_size: usize,
    pub(crate) stateful_reconnect: bool,
    pub(crate) stateful_buffer: usize,
    pub(crate) family: Family,
    /// The hub a classic connection talks to (`connectionData`, `H`).
    pub(crate) hub_name: String,
    /// PEM certificates trusted besides the system's roots (a private CA).
    pub(crate) extra_ca: Option<Vec<u8>>,
    /// How often a classic connection GETs `{url}/ping` (`None`: never).
    pub(crate) classic_ping_interval: Option<Duration>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token, nor header values (they may hold credentials).
        f.debug_struct("Options")
            .field("url", &self.url)
            .field("transports", &self.transports)
            .field("protocol", &self.protocol)
            .field("token_provider", &self.token_provider.is_some())
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("skip_negotiation", &self.skip_negotiation)
            .field("family", &self.family)
            .field("hub_name", &self.hub_name)
            .finish_non_exhaustive()
    }
}

impl Options {
    /// The hub's URLs: the first one given, then the fallbacks.
    pub(crate) fn url(&self, index: usize) -> &str {
        let all = 1 + self.fallback_urls.len();
        match index % all {
            0 => &self.url,
            i => &self.fallback_urls[i - 1],
        }
    }

    /// The slow-connection threshold: as set, else ⅔ of the server timeout (as the classic
    /// .NET and jQuery clients warn at ⅔ of their keep-alive timeout).
    pub(crate) fn slow_after(&self) -> Duration {
        self.slow_threshold
            .unwrap_or(self.server_timeout.mul_f64(2.0 / 3.0))
    }
}

/// How often a classic connection pings its server by default (300 s, the jQuery client's
/// `pingInterval`). See [`HubConnectionBuilder::classic_ping_interval`].
pub const DEFAULT_CLASSIC_PING_INTERVAL: Duration = Duration::from_secs(300);

/// How long a call waits for its Completion by default (60 s): long enough for any chat
/// call on a slow link, short enough that a hub that never answers does not hold a caller
/// for ever. See [`HubConnectionBuilder::invocation_timeout`].
pub const DEFAULT_INVOCATION_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds a [`HubConnection`].
///
/// ```no_run
/// # async fn f() -> Result<(), hubbub_client::Error> {
/// use hubbub_client::HubConnectionBuilder;
/// let hub = HubConnectionBuilder::new("http://127.0.0.1:5000/chathub?name=ann")
///     .with_automatic_reconnect()
///     .build()?;
/// hub.start().await?;
/// hub.invoke::<()>("Send", vec!["ann".into(), "hello".into()]).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct HubConnectionBuilder {
    options: Options,
}

impl HubConnectionBuilder {
    /// A connection to the hub at `url` (http, https, ws or wss), JSON over any transport.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            options: Options {
                url: url.into(),
                fallback_urls: Vec::new(),
                transports: TransportKind::ALL.to_vec(),
                protocol: Protocol::Json,
                token_provider: None,
                headers: Vec::new(),
                skip_negotiation: false,
                handshake_timeout: Duration::from_secs(15),
                keep_alive_interval: Duration::from_secs(15),
                server_timeout: Duration::from_secs(30),
                invocation_timeout: Some(DEFAULT_INVOCATION_TIMEOUT),
                classic_ping_interval: Some(DEFAULT_CLASSIC_PING_INTERVAL),
                slow_threshold: None,
                retry: None,
                retry_first_start: false,
                max_message_size: 1 << 20,
                stateful_reconnect: false,
                stateful_buffer: hubbub_protocol::stateful::DEFAULT_BUFFER_SIZE,
                family: Family::Auto,
                hub_name: DEFAULT_CLASSIC_HUB.to_owned(),
                extra_ca: None,
            },
        }
    }

    /// Other URLs of the same hub, such as the other nodes of a fleet behind a Redis
    /// backplane. Each failed connect attempt moves on to the next URL (after the last, back to
    /// the first); a lost connection tries the URL it was on first. Negotiate redirects still
    /// apply per URL.
    pub fn fallback_urls<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.options.fallback_urls = urls.into_iter().map(Into::into).collect();
        self
    }

    /// The transports allowed, tried in the server's order.
    pub fn transports(mut self, transports: &[TransportKind]) -> Self {
        self.options.transports = transports.to_vec();
        self
    }

    /// The hub protocol.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.options.protocol = protocol;
        self
    }

    /// An async token source, called before every negotiate and reconnect.
    pub fn access_token<F, Fut>(mut self, provider: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        self.options.token_provider = Some(Arc::new(move || Box::pin(provider())));
        self
    }

    /// An extra HTTP header on every request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.headers.push((name.into(), value.into()));
        self
    }

    /// Connect straight to the WebSocket, without negotiate (WebSockets only).
    pub fn skip_negotiation(mut self, skip: bool) -> Self {
        self.options.skip_negotiation = skip;
        self
    }

    /// How long the handshake may take (15 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.options.handshake_timeout = timeout;
        self
    }

    /// Ping after this long without sending (15 s). Not on long polling, which keeps itself
    /// alive (as in the official clients).
    pub fn keep_alive_interval(mut self, interval: Duration) -> Self {
        self.options.keep_alive_interval = interval;
        self
    }

    /// Give up on a hub that has sent nothing for this long (30 s). Not on long polling: a
    /// hub holds each poll up to its poll timeout (90 s in ASP.NET Core) and sends no pings
    /// there; a failed or refused poll ends the connection instead (as in the official
    /// clients).
    pub fn server_timeout(mut self, timeout: Duration) -> Self {
        self.options.server_timeout = timeout;
        self
    }

    /// How long a call ([`HubConnection::invoke`] and the other `invoke` forms) waits for
    /// the hub's Completion before failing with [`Error::InvocationTimeout`]
    /// ([`DEFAULT_INVOCATION_TIMEOUT`], 60 s, unless set); `None` waits until the connection
    /// ends, as the official clients do. Counted from when the invocation is sent; not for
    /// calls with client-to-server streams, which last as long as their streams, nor for
    /// server-to-client streams, whose items may be far apart. The hub is not told: a late
    /// answer is ignored, and a method that changes state may still have run.
    pub fn invocation_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.options.invocation_timeout = timeout.into();
        self
    }

    /// How often a connection to a classic hub GETs `{url}/ping` while connected
    /// ([`DEFAULT_CLASSIC_PING_INTERVAL`], 300 s, unless set; `None`: never), as the jQuery
    /// 2.x client does (`pingInterval`) to keep the server's session and sign-in alive on
    /// hosts that expire idle ones. An answer of 401 or 403 ends the connection with that
    /// reason: with a token provider it reconnects at once (negotiating anew, with a fresh
    /// token); without one it stops (the credentials are gone, as the jQuery client stops).
    /// Other failures are logged and the next ping tries again. A zero interval means never.
    /// No effect on ASP.NET Core hubs.
    pub fn classic_ping_interval(mut self, every: impl Into<Option<Duration>>) -> Self {
        // Zero would ping in a loop: it means never.
        self.options.classic_ping_interval = every.into().filter(|d| !d.is_zero());
        self
    }

    /// Report the connection as slow after this long without hearing from the hub, or with
    /// sends stuck (default ⅔ of the server timeout). On long polling only stuck sends count:
    /// a quiet hub is normal there.
    pub fn slow_threshold(mut self, threshold: Duration) -> Self {
        self.options.slow_threshold = Some(threshold);
        self
    }

    /// Reconnect with the official default delays: 0, 2, 10, 30 s, then give up.
    pub fn with_automatic_reconnect(self) -> Self {
        self.retry_policy(Delays::default())
    }

    /// Reconnect with this policy.
    pub fn retry_policy(mut self, policy: impl RetryPolicy + 'static) -> Self {
        self.options.retry = Some(Arc::new(policy));
        self
    }

    /// Retry a failed first `start` with the same policy (no official client can).
    pub fn retry_first_start(mut self, retry: bool) -> Self {
        self.options.retry_first_start = retry;
        self
    }

    /// Ask for stateful reconnect (WebSockets): a dropped socket is reopened once with the same
    /// connection, and unacknowledged messages are replayed both ways, with no reconnect events.
    pub fn with_stateful_reconnect(mut self) -> Self {
        self.options.stateful_reconnect = true;
        self
    }

    /// The bytes of unacknowledged messages kept for replay (100,000); when full, sends wait.
    pub fn stateful_reconnect_buffer(mut self, bytes: usize) -> Self {
        self.options.stateful_buffer = bytes;
        self
    }

    /// The protocol family ([`Family::Auto`] by default: decided by the negotiate response).
    pub fn family(mut self, family: Family) -> Self {
        self.options.family = family;
        self
    }

    /// The hub a classic connection talks to ([`DEFAULT_CLASSIC_HUB`], `chatHub`, by default).
    /// A classic URL names the endpoint (`http://host/signalr`); the hub is named in
    /// `connectionData` and in every call. Names match without regard to case. Ignored by
    /// ASP.NET Core hubs, whose URL names the hub.
    pub fn hub_name(mut self, name: impl Into<String>) -> Self {
        self.options.hub_name = name.into();
        self
    }

    /// The largest message accepted from the hub (1 MiB).
    pub fn max_message_size(mut self, size: usize) -> Self {
        self.options.max_message_size = size;
        self
    }

    /// Trusts the certificates in `pem` (one or more PEM `CERTIFICATE` blocks: a private CA)
    /// besides the system's roots, for `https://` and `wss://` on every transport. A PEM with
    /// no certificate, or one that cannot be used, fails [`build`](Self::build) with
    /// [`Error::Certificate`] ([`crate::check_extra_ca_pem`] checks one beforehand).
    pub fn extra_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.options.extra_ca = Some(pem.into());
        self
    }

    /// Builds the connection (it starts with [`HubConnection::start`]).
    pub fn build(self) -> Result<HubConnection, Error> {
        for url in std::iter::once(&self.options.url).chain(&self.options.fallback_urls) {
            hubbub_protocol::negotiate::http_url(url).map_err(|e| Error::Url(e.to_string()))?;
        }
        if self.options.skip_negotiation && self.options.family == Family::Classic {
            return Err(Error::Url(
                "classic ASP.NET SignalR always negotiates; skip-negotiation is for ASP.NET Core \
                 hubs"
                    .to_owned(),
            ));
        }
        if self.options.hub_name.trim().is_empty() {
            return Err(Error::Url("the classic hub name is empty".to_owned()));
        }
        if self.options.skip_negotiation && self.options.transports != [TransportKind::WebSockets] {
            return Err(Error::Url(
                "skip-negotiation works only with the WebSockets transport alone".to_owned(),
            ));
        }
        if let Some(pem) = &self.options.extra_ca {
            crate::tls::check_extra_ca_pem(pem)?;
        }
        Ok(HubConnection::new(self.options))
    }
}

/// `url` with its query parameter `key` set to `value`, percent-encoded (how a chat hub learns a
/// connection's user name: `?name=…`). The query is parsed, not searched: a `key` already there
/// is replaced, the other parameters are kept as written
/// ([`hubbub_protocol::negotiate::set_query_param`]).
pub fn with_query(url: &str, key: &str, value: &str) -> String {
    hubbub_protocol::negotiate::set_query_param(url, key, value)
}
