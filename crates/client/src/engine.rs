//! The connection actor: one task owns the transport, the timers, the pending calls and the
//! reconnect state machine. Every state change is an explicit step with a `tracing` event and
//! an [`Event`] for the shells.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hubbub_protocol::handshake::{HandshakeRequest, HandshakeResponse};
use hubbub_protocol::negotiate::{self, TransportKind};
use hubbub_protocol::stateful::{Received, Replay};
use hubbub_protocol::{Ack, Arg, Completion, HubMessage, MessageReader, Outcome, Sequence};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};

use crate::classic;
use crate::connection::Shared;
use crate::link::{self, Link, LinkEvent, Outgoing};
use crate::options::{Family, Options};
use crate::retry::RetryContext;
use crate::{Error, Event, SlowReason, State};

pub(crate) enum Command {
    Start(oneshot::Sender<Result<(), Error>>),
    Stop(oneshot::Sender<()>),
    Send {
        message: HubMessage,
        done: oneshot::Sender<Result<(), Error>>,
    },
    Invoke {
        message: HubMessage,
        id: String,
        reply: oneshot::Sender<Result<Outcome, Error>>,
        /// Whether the invocation timeout applies (not to calls with client-to-server streams,
        /// which last as long as their streams).
        bounded: bool,
    },
    Stream {
        message: HubMessage,
        id: String,
        items: mpsc::UnboundedSender<Result<Arg, Error>>,
    },
    Cancel {
        id: String,
    },
    /// An item of a client-to-server stream.
    UploadItem {
        id: String,
        item: Arg,
    },
    /// The end of a client-to-server stream, with an error if it failed.
    UploadEnd {
        id: String,
        error: Option<String>,
    },
    NetworkChanged,
    Suspend,
    Resume,
}

type Commands = mpsc::UnboundedReceiver<Command>;

struct Actor {
    options: Options,
    shared: Arc<Shared>,
    http: reqwest::Client,
    /// For `wss://` with an extra CA.
    wss_tls: Option<Arc<rustls::ClientConfig>>,
    /// The family [`Family::Auto`] found, kept for later connects.
    detected: std::sync::Mutex<Option<Family>>,
    /// A lost classic connection, which `reconnect` may resume until the server's
    /// DisconnectTimeout has passed since `Instant`, on the URL (of the hub's URLs) it was
    /// made at.
    lost_classic: std::sync::Mutex<Option<(classic::Session, Instant, String)>>,
    /// The connection being lost must not be resumed (its credentials were refused).
    not_resumable: std::sync::atomic::AtomicBool,
}

/// How payloads on the link are read and written: the family is a property of the link.
enum Wire {
    /// ASP.NET Core: framed hub messages in the negotiated hub protocol.
    Core(MessageReader),
    /// Classic ASP.NET SignalR 2.x.
    Classic(Box<classic::Wire>),
}

impl Wire {
    fn push(&mut self, data: Bytes) {
        match self {
            Self::Core(reader) => reader.push_bytes(data),
            Self::Classic(wire) => wire.push(data),
        }
    }

    fn next_message(&mut self) -> Result<Option<HubMessage>, hubbub_protocol::Error> {
        match self {
            Self::Core(reader) => reader.next_message(),
            Self::Classic(wire) => wire.next_message(),
        }
    }

    fn classic(&self) -> Option<&classic::Wire> {
        match self {
            Self::Core(_) => None,
            Self::Classic(wire) => Some(wire),
        }
    }
}

/// A live connection.
struct Live {
    link: Link,
    wire: Wire,
    connection_id: Option<String>,
    /// Stateful reconnect, when the hub granted it on a WebSocket.
    resume: Option<Resume>,
}

/// What a stateful connection needs to resume on a new socket.
struct Resume {
    target: link::Target,
    replay: Replay,
    received: Received,
}

/// What woke the connected loop.
enum Wake {
    Link(Option<LinkEvent>),
    Writable(Option<mpsc::OwnedPermit<Outgoing>>),
    AckDue,
    Command(Option<Command>),
    PingDue,
    CallDue,
    Silent,
    Stalled,
    ServerTimeout,
    /// The classic hub answered `ping` with 401 or 403.
    PingRefused(String),
}

/// What one `GET {url}/ping` got.
enum PingAnswer {
    Pong,
    /// 401 or 403: the credentials are refused.
    Refused(reqwest::StatusCode),
    /// Anything else: why.
    Failed(String),
}

async fn ping_request(
    http: &reqwest::Client,
    target: &link::ClassicTarget,
    limit: Duration,
) -> PingAnswer {
    let url = hubbub_protocol::classic::request_url(
        target.base(),
        hubbub_protocol::classic::Action::Ping,
        &hubbub_protocol::classic::RequestParams::default(),
    );
    let answer = tokio::time::timeout(limit, async {
        let response = target
            .request(http, reqwest::Method::GET, &url)
            .send()
            .await
            .map_err(|e| crate::negotiate::without_url(&e))?;
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        Ok::<_, String>((status, body))
    })
    .await;
    match answer {
        Ok(Ok((status, _)))
            if status == reqwest::StatusCode::UNAUTHORIZED
                || status == reqwest::StatusCode::FORBIDDEN =>
        {
            PingAnswer::Refused(status)
        }
        Ok(Ok((status, body))) if status.is_success() && is_response(&body, "pong") => {
            PingAnswer::Pong
        }
        Ok(Ok((status, body))) => PingAnswer::Failed(format!(
            "ping answered {status}: {:?}",
            String::from_utf8_lossy(&body[..body.len().min(100)])
        )),
        Ok(Err(e)) => PingAnswer::Failed(format!("ping failed: {e}")),
        Err(_) => PingAnswer::Failed(format!("no answer to ping within {limit:?}")),
    }
}

/// One ping; `Err` with the reason unless the hub answers `pong` within `limit`.
async fn ping_once(
    http: &reqwest::Client,
    target: &link::ClassicTarget,
    limit: Duration,
) -> Result<(), String> {
    match ping_request(http, target, limit).await {
        PingAnswer::Pong => Ok(()),
        PingAnswer::Refused(status) => Err(format!("ping refused ({status})")),
        PingAnswer::Failed(reason) => Err(reason),
    }
}

/// Pings a classic hub every `every` (`GET {url}/ping`, answered `{ "Response": "pong" }`)
/// until it refuses the connection's credentials (401 or 403), and returns that reason. Other
/// failures (no answer within the interval or 30 s, another status, another body) are logged;
/// the transport's own timers judge the connection, not this.
async fn ping_classic(
    http: &reqwest::Client,
    target: &link::ClassicTarget,
    every: Duration,
) -> String {
    let limit = every
        .min(Duration::from_secs(30))
        .max(Duration::from_secs(5));
    loop {
        tokio::time::sleep(every).await;
        match ping_request(http, target, limit).await {
            PingAnswer::Pong => tracing::trace!("classic ping answered"),
            PingAnswer::Refused(status) => {
                return format!(
                    "the hub refused the connection's credentials ({status} on ping): sign in again"
                );
            }
            PingAnswer::Failed(reason) => tracing::warn!(%reason, "classic ping"),
        }
    }
}

/// Whether a classic answer is `{"Response":expected}` (`pong`, `started`; spaces as a server
/// likes).
fn is_response(body: &[u8], expected: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Response")]
        response: String,
    }
    serde_json::from_slice::<Answer>(body).is_ok_and(|a| a.response == expected)
}

/// How long a classic long-polling `reconnect` must be held by the hub, unanswered and not
/// refused, to count as resumed.
const LONG_POLL_RECONNECT_GRACE: Duration = Duration::from_secs(1);

/// How a live connection ended.
enum End {
    Stopped(oneshot::Sender<()>),
    Lost {
        reason: String,
        reconnect: bool,
        at_once: bool,
    },
    Suspended,
    /// The hub sent a Close without an error that does not allow reconnecting: a plain end,
    /// as the official clients treat it (`onclose` without an error).
    ClosedByHub,
}

impl Actor {
    fn set_state(&self, new: State) {
        let old = std::mem::replace(
            &mut *self.shared.state.lock().unwrap_or_else(|e| e.into_inner()),
            new,
        );
        if old != new {
            tracing::info!(%old, %new, url = %redact(self.url()), "connection state changed");
            self.emit(Event::StateChanged { old, new });
        }
    }

    /// The URL connect attempts go to now.
    fn url(&self) -> &str {
        self.options.url(
            self.shared
                .url_index
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// After a failed connect attempt: the next URL of the hub, if it has several.
    fn next_url(&self) {
        if !self.options.fallback_urls.is_empty() {
            let i = self
                .shared
                .url_index
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(url = %redact(self.options.url(i + 1)), "trying the hub's next URL");
        }
    }

    fn state(&self) -> State {
        *self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, event: Event) {
        let _ = self.shared.events.send(event);
    }

    /// Answers a command that needs a connection while there is none.
    fn reject(&self, command: Command) -> Option<Command> {
        let error = Error::NotConnected(self.state());
        match command {
            Command::Send { done, .. } => {
                let _ = done.send(Err(error));
            }
            Command::Invoke { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Command::Stream { items, .. } => {
                let _ = items.send(Err(error));
            }
            Command::Cancel { .. } | Command::UploadItem { .. } | Command::UploadEnd { .. } => {}
            other => return Some(other),
        }
        None
    }

    async fn token(&self) -> Result<Option<String>, Error> {
        match &self.options.token_provider {
            None => Ok(None),
            // An empty token means none, as in the official clients: no `Bearer ` header.
            Some(provider) => provider()
                .await
                .map(|token| (!token.is_empty()).then_some(token))
                .map_err(Error::Token),
        }
    }

    fn family(&self) -> Family {
        self.detected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or(self.options.family)
    }

    /// One full connect: token, negotiate, transport (with fallback), handshake; for a classic
    /// hub (forced, or found by negotiate), the classic sequence instead.
    async fn connect(&self) -> Result<Live, Error> {
        let family = self.family();
        if family == Family::Classic {
            return self.connect_classic().await;
        }
        let protocol = self.options.protocol;
        let format = protocol.transfer_format();
        if self.options.skip_negotiation {
            let target = link::Target {
                url: negotiate::http_url(self.url())?,
                headers: self.options.headers.clone(),
                token: self.token().await?,
                format,
                open_timeout: self.options.handshake_timeout,
                tls: self.wss_tls.clone(),
            };
            let link = link::open(TransportKind::WebSockets, &target, &self.http).await?;
            return self.handshake(link, None, None).await;
        }
        let mut failures = Vec::new();
        let first = crate::negotiate::negotiate_core(
            &self.http,
            &self.options,
            self.url(),
            self.token().await?,
        )
        .await;
        let first = match first {
            Ok(n) => n,
            Err(refused) if refused.maybe_classic && family == Family::Auto => {
                let classic = crate::negotiate::negotiate_classic(
                    &self.http,
                    &self.options,
                    self.url(),
                    self.token().await?,
                )
                .await;
                let n = match classic {
                    Ok(n) => n,
                    // Not a classic endpoint either (it does not exist, or the request could
                    // not be made): the ASP.NET Core answer is the one to report, unless the
                    // hub did answer the classic way.
                    Err(e) if refused.classic_body || crate::negotiate::classic_answered(&e) => {
                        return Err(e);
                    }
                    Err(_) => return Err(refused.error),
                };
                tracing::info!("the hub speaks classic ASP.NET SignalR");
                *self.detected.lock().unwrap_or_else(|e| e.into_inner()) = Some(Family::Classic);
                return self.connect_classic_with(n).await;
            }
            Err(refused) => return Err(refused.error),
        };
        let mut fresh = Some(first);
        let order: Vec<TransportKind> = fresh
            .as_ref()
            .map(|n| {
                n.response
                    .available_transports
                    .iter()
                    .filter(|t| t.transfer_formats.contains(&format))
                    .map(|t| t.transport)
                    .collect()
            })
            .unwrap_or_default();
        for kind in order
            .into_iter()
            .filter(|k| self.options.transports.contains(k))
        {
            if kind == TransportKind::ServerSentEvents
                && format == negotiate::TransferFormat::Binary
            {
                continue;
            }
            // Each transport after the first gets a fresh negotiate (a new connection).
            let n = match fresh.take() {
                Some(n) => n,
                None => {
                    crate::negotiate::negotiate(
                        &self.http,
                        &self.options,
                        self.url(),
                        self.token().await?,
                    )
                    .await?
                }
            };
            let target = link::Target {
                url: negotiate::connect_url(&n.url, Some(&n.response.connection_token)),
                headers: self.options.headers.clone(),
                token: n.token.clone(),
                format,
                open_timeout: self.options.handshake_timeout,
                tls: self.wss_tls.clone(),
            };
            match link::open(kind, &target, &self.http).await {
                Ok(link) => {
                    let resume = (n.response.use_stateful_reconnect
                        && kind == TransportKind::WebSockets)
                        .then(|| Resume {
                            target: target.clone(),
                            replay: Replay::new(self.options.stateful_buffer),
                            received: Received::default(),
                        });
                    return self
                        .handshake(link, Some(n.response.connection_id.clone()), resume)
                        .await;
                }
                Err(e) => {
                    tracing::debug!(transport = kind.name(), error = %e, "transport failed; trying the next");
                    failures.push(e.to_string());
                }
            }
        }
        if failures.is_empty() {
            return Err(Error::Transport(format!(
                "the server offers no transport that is allowed here and carries {}",
                protocol.name()
            )));
        }
        Err(Error::Transport(failures.join("; ")))
    }

    async fn handshake(
        &self,
        mut link: Link,
        connection_id: Option<String>,
        resume: Option<Resume>,
    ) -> Result<Live, Error> {
        // Version 2 tells the hub this side speaks stateful reconnect.
        let version = if resume.is_some() { 2 } else { 1 };
        let request = HandshakeRequest::new(self.options.protocol, version).encode();
        link.tx
            .send(Outgoing::Data(Bytes::from(request)))
            .await
            .map_err(|_| {
                Error::Transport("the transport closed during the handshake".to_owned())
            })?;
        let deadline = Instant::now() + self.options.handshake_timeout;
        let mut buf = Vec::new();
        loop {
            let event = tokio::select! {
                e = link.rx.recv() => e,
                () = sleep_until(deadline) => return Err(Error::HandshakeTimeout(self.options.handshake_timeout)),
            };
            match event {
                Some(LinkEvent::Data(data)) => buf.extend_from_slice(&data),
                closed => {
                    let reason = match closed {
                        Some(LinkEvent::Closed(r)) => r,
                        _ => None,
                    };
                    return Err(Error::Transport(reason.unwrap_or_else(|| {
                        "the server closed the connection during the handshake".to_owned()
                    })));
                }
            }
            if let Some((response, used)) =
                HandshakeResponse::parse(&buf, self.options.max_message_size)?
            {
                if let Some(error) = response.error {
                    return Err(Error::Handshake(error));
                }
                let mut reader =
                    MessageReader::new(self.options.protocol, self.options.max_message_size);
                reader.push(&buf[used..]);
                return Ok(Live {
                    link,
                    wire: Wire::Core(reader),
                    connection_id,
                    resume,
                });
            }
        }
    }

    /// A classic connect: `reconnect` the lost connection while the server may still hold it
    /// (its DisconnectTimeout), else negotiate a new one.
    async fn connect_classic(&self) -> Result<Live, Error> {
        let lost = self
            .lost_classic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((session, lost_at, url)) = lost {
            if url != self.url() {
                // This attempt goes to another of the hub's URLs, which cannot know the
                // connection: a new one there. The lost one may still be resumed when its
                // URL's turn comes again.
                self.keep_lost(session, lost_at, url);
            } else if session.may_resume(lost_at.elapsed()) {
                match self.reconnect_classic(&session).await {
                    Ok(live) => return Ok(live),
                    Err(e) => {
                        // The hub answers, yet will not take the connection back: it does not
                        // know it (restarted with a new key, or forgot it). A new connection
                        // now, rather than retrying until the DisconnectTimeout.
                        let wait = session.negotiated.transport_connect_timeout();
                        if ping_once(&self.http, &session.target, wait).await.is_ok() {
                            tracing::info!(error = %e, "the hub does not know the lost connection; starting a new one");
                        } else {
                            self.keep_lost(session, lost_at, url);
                            return Err(e);
                        }
                    }
                }
            } else {
                // As the .NET client's reconnect window: the old connection is hopeless. Said,
                // with the reason, before a new connection is made (the chat layer catches up
                // from the hub's history where it has one).
                let message = format!(
                    "the connection could not be resumed within the hub's DisconnectTimeout \
                     ({:?}): the hub has forgotten it and what it buffered; starting a new one",
                    session.negotiated.disconnect_timeout()
                );
                tracing::warn!("{message}");
                self.emit(Event::Error { message });
            }
        }
        let n = crate::negotiate::negotiate_classic(
            &self.http,
            &self.options,
            self.url(),
            self.token().await?,
        )
        .await?;
        self.connect_classic_with(n).await
    }

    /// Opens a transport for a negotiated classic connection: WebSockets (when the server
    /// says `TryWebSockets`), then SSE, then long polling, among the allowed ones; each must
    /// deliver the init message within the server's TransportConnectTimeout. Then `start`.
    async fn connect_classic_with(
        &self,
        n: crate::negotiate::ClassicNegotiated,
    ) -> Result<Live, Error> {
        use hubbub_protocol::classic::Transport;
        let cursor = Arc::new(std::sync::Mutex::new(link::Cursor::default()));
        let connection_data = hubbub_protocol::classic::form::encode_connection_data([self
            .options
            .hub_name
            .as_str()]);
        let wait = n.response.transport_connect_timeout();
        let mut failures = Vec::new();
        for transport in Transport::ALL {
            if !self.options.transports.contains(&kind(transport))
                || (transport == Transport::WebSockets && !n.response.try_web_sockets)
            {
                continue;
            }
            let session = classic::Session {
                target: link::ClassicTarget {
                    base: n.base.clone(),
                    transport,
                    connection_token: n.response.connection_token.clone(),
                    connection_data: connection_data.clone(),
                    headers: self.options.headers.clone(),
                    bearer: n.token.clone(),
                    cursor: cursor.clone(),
                    open_timeout: wait,
                    poll_timeout: n.response.connection_timeout() + Duration::from_secs(10),
                    long_poll_delay: n.response.long_poll_delay(),
                    tls: self.wss_tls.clone(),
                },
                connection_id: n.response.connection_id.clone(),
                hub: self.options.hub_name.clone(),
                negotiated: n.response.clone(),
            };
            let opening = async {
                let mut link = link::open_classic(&session.target, false, &self.http).await?;
                let mut wire =
                    classic::Wire::new(session.clone(), self.shared.caller_state.clone());
                while !wire.initialized {
                    match link.rx.recv().await {
                        Some(LinkEvent::Data(data)) => wire.push(data),
                        Some(LinkEvent::Closed(reason)) => {
                            return Err(Error::Transport(reason.unwrap_or_else(|| {
                                "the server closed the transport before its init message".to_owned()
                            })));
                        }
                        None => {
                            return Err(Error::Transport("the transport closed".to_owned()));
                        }
                    }
                }
                Ok((link, wire))
            };
            let (link, wire) = match tokio::time::timeout(wait, opening).await {
                Ok(Ok(opened)) => opened,
                Ok(Err(e)) => {
                    tracing::debug!(transport = transport.name(), error = %e, "classic transport failed; trying the next");
                    failures.push(format!("{}: {e}", transport.name()));
                    continue;
                }
                Err(_) => {
                    tracing::debug!(
                        transport = transport.name(),
                        "no init message in time; trying the next"
                    );
                    failures.push(format!(
                        "{}: no init message within the TransportConnectTimeout ({wait:?})",
                        transport.name()
                    ));
                    continue;
                }
            };
            if let Err(e) = self.start_classic(&session.target).await {
                abort_classic(&self.http, &session.target).await;
                return Err(e);
            }
            // A new connection replaces any lost one (made at another of the hub's URLs).
            self.lost_classic
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            return Ok(Live {
                link,
                wire: Wire::Classic(Box::new(wire)),
                connection_id: Some(session.connection_id.clone()),
                resume: None,
            });
        }
        if failures.is_empty() {
            return Err(Error::Transport(
                "the classic hub offers no transport that is allowed here".to_owned(),
            ));
        }
        Err(Error::Transport(failures.join("; ")))
    }

    /// `GET start`, which must answer `{ "Response": "started" }` within the handshake timeout.
    async fn start_classic(&self, target: &link::ClassicTarget) -> Result<(), Error> {
        let limit = self.options.handshake_timeout;
        let url = target.url(hubbub_protocol::classic::Action::Start);
        let response = target
            .request(&self.http, reqwest::Method::GET, &url)
            .timeout(limit)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Err(Error::Transport(format!(
                    "the hub did not answer the classic `start` request within {limit:?}"
                )));
            }
            Err(e) => {
                return Err(Error::Transport(format!(
                    "start: {}",
                    crate::negotiate::without_url(&e)
                )));
            }
        };
        if !response.status().is_success() {
            return Err(Error::Transport(
                link::classic_status("start", response).await,
            ));
        }
        let body = tokio::time::timeout(limit, response.bytes())
            .await
            .map_err(|_| {
                Error::Transport(format!(
                    "the hub did not finish answering `start` within {limit:?}"
                ))
            })?
            .map_err(|e| {
                Error::Transport(format!("start: {}", crate::negotiate::without_url(&e)))
            })?;
        if is_response(&body, "started") {
            Ok(())
        } else {
            Err(Error::Transport(format!(
                "the hub answered `start` with {:?}, not {}",
                String::from_utf8_lossy(&body[..body.len().min(100)]),
                hubbub_protocol::classic::START_RESPONSE
            )))
        }
    }

    /// `reconnect`: the same connection on the same transport, with the last cursor and groups
    /// token, so the hub replays what was sent meanwhile. WebSockets count as reconnected once
    /// open, SSE at its `initialized` event, long polling once the request is out (the hub holds
    /// it until there is something to send).
    async fn reconnect_classic(&self, session: &classic::Session) -> Result<Live, Error> {
        use hubbub_protocol::classic::Transport;
        let wait = session.negotiated.transport_connect_timeout();
        let opening = async {
            if session.target.transport == Transport::LongPolling {
                // A held reconnect poll gives no answer to wait for: first make sure the hub
                // answers at all (a network that drops packets would hang the poll unseen).
                ping_once(&self.http, &session.target, wait)
                    .await
                    .map_err(Error::Transport)?;
            }
            let mut link = link::open_classic(&session.target, true, &self.http).await?;
            let mut wire = classic::Wire::new(session.clone(), self.shared.caller_state.clone());
            if session.target.transport == Transport::ServerSentEvents {
                while !wire.initialized {
                    match link.rx.recv().await {
                        Some(LinkEvent::Data(data)) => wire.push(data),
                        Some(LinkEvent::Closed(reason)) => {
                            return Err(Error::Transport(reason.unwrap_or_else(|| {
                                "the server closed the transport during reconnect".to_owned()
                            })));
                        }
                        None => return Err(Error::Transport("the transport closed".to_owned())),
                    }
                }
            }
            if session.target.transport == Transport::LongPolling {
                // The hub holds a reconnect poll until it has something to send, so there is
                // no answer to wait for; a hub that is gone refuses at once. Resumed when the
                // poll is answered or still held after a moment, as the jQuery client counts
                // it reconnected after its `reconnectDelay`.
                match tokio::time::timeout(LONG_POLL_RECONNECT_GRACE, link.rx.recv()).await {
                    Err(_) => {}
                    Ok(Some(LinkEvent::Data(data))) => wire.push(data),
                    Ok(Some(LinkEvent::Closed(reason))) => {
                        return Err(Error::Transport(
                            reason.unwrap_or_else(|| "the hub ended the reconnect poll".to_owned()),
                        ));
                    }
                    Ok(None) => return Err(Error::Transport("the transport closed".to_owned())),
                }
            }
            Ok((link, wire))
        };
        let (link, wire) = tokio::time::timeout(wait, opening).await.map_err(|_| {
            Error::Transport(format!(
                "{}: no answer to reconnect within the TransportConnectTimeout ({wait:?})",
                session.target.transport.name()
            ))
        })??;
        tracing::info!(
            transport = session.target.transport.name(),
            "classic connection resumed"
        );
        Ok(Live {
            link,
            wire: Wire::Classic(Box::new(wire)),
            connection_id: Some(session.connection_id.clone()),
            resume: None,
        })
    }

    /// Keeps a lost classic connection for a later attempt while the hub may still hold it.
    fn keep_lost(&self, session: classic::Session, lost_at: Instant, url: String) {
        if session.may_resume(lost_at.elapsed()) {
            *self.lost_classic.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((session, lost_at, url));
        }
    }

    /// Remembers a lost classic connection for `reconnect` (unless it is not resumable).
    fn lost(&self, live: &Live) {
        if self
            .not_resumable
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            self.lost_classic
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            return;
        }
        if let Some(wire) = live.wire.classic() {
            *self.lost_classic.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((wire.session.clone(), Instant::now(), self.url().to_owned()));
        }
    }

    /// Ends a classic connection on the hub (`abort`), best effort; forgets it either way.
    async fn abort(&self, live: &Live) {
        self.lost_classic
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(wire) = live.wire.classic() {
            abort_classic(&self.http, &wire.session.target).await;
        }
    }

    /// Runs `connect` while still answering commands; `Err(Ok(reply))` when stopped meanwhile.
    async fn connect_answering(
        &self,
        commands: &mut Commands,
    ) -> Result<Live, Result<oneshot::Sender<()>, Error>> {
        let connecting = self.connect();
        tokio::pin!(connecting);
        loop {
            tokio::select! {
                result = &mut connecting => return result.map_err(Err),
                command = commands.recv() => match command {
                    None => return Err(Err(Error::Stopped)),
                    Some(Command::Stop(reply)) => return Err(Ok(reply)),
                    Some(Command::Start(reply)) => { let _ = reply.send(Err(Error::NotConnected(State::Connecting))); }
                    Some(other) => { self.reject(other); }
                },
            }
        }
    }
}

pub(crate) async fn run(options: Options, shared: Arc<Shared>, mut commands: Commands) {
    // The extra CA was checked by the builder.
    let extra_ca = options.extra_ca.as_deref();
    let http = match crate::tls::http_client(extra_ca).and_then(|b| {
        b.connect_timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| crate::Error::Certificate(e.to_string()))
    }) {
        Ok(http) => http,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client");
            return;
        }
    };
    let wss_tls = match extra_ca.map(crate::tls::websocket_config).transpose() {
        Ok(config) => config,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the WebSocket TLS client");
            return;
        }
    };
    let actor = Actor {
        options,
        shared,
        http,
        wss_tls,
        detected: std::sync::Mutex::new(None),
        lost_classic: std::sync::Mutex::new(None),
        not_resumable: std::sync::atomic::AtomicBool::new(false),
    };
    'idle: loop {
        // Disconnected: wait for start.
        let mut start_reply = loop {
            match commands.recv().await {
                None => return,
                Some(Command::Start(reply)) => break Some(reply),
                Some(Command::Stop(reply)) => {
                    let _ = reply.send(());
                }
                Some(Command::Resume) if actor.state() == State::Suspended => break None,
                Some(other) => {
                    actor.reject(other);
                }
            }
        };
        actor.set_state(State::Connecting);
        let mut ever_connected = false;
        let mut retries: u32 = 0;
        let mut episode_start = Instant::now();
        let mut skip_delay = false;
        loop {
            let reason = match actor.connect_answering(&mut commands).await {
                Ok(mut live) => {
                    retries = 0;
                    *actor
                        .shared
                        .connection_id
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = live.connection_id.clone();
                    actor.set_state(State::Connected);
                    if ever_connected || start_reply.is_none() {
                        tracing::info!(connection_id = ?live.connection_id, "reconnected");
                        actor.emit(Event::Reconnected {
                            connection_id: live.connection_id.clone(),
                        });
                    } else {
                        actor.emit(Event::Connected {
                            connection_id: live.connection_id.clone(),
                            transport: live.link.kind.name().to_owned(),
                            family: match live.wire {
                                Wire::Core(_) => Family::Core,
                                Wire::Classic(_) => Family::Classic,
                            },
                        });
                    }
                    ever_connected = true;
                    if let Some(reply) = start_reply.take() {
                        let _ = reply.send(Ok(()));
                    }
                    let end = connected(&actor, &mut live, &mut commands).await;
                    *actor
                        .shared
                        .connection_id
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = None;
                    match end {
                        End::Stopped(reply) => {
                            actor.abort(&live).await;
                            live.link.close().await;
                            actor.set_state(State::Disconnected);
                            actor.emit(Event::Closed { reason: None });
                            let _ = reply.send(());
                            continue 'idle;
                        }
                        End::Suspended => {
                            actor.abort(&live).await;
                            live.link.close().await;
                            actor.set_state(State::Suspended);
                            continue 'idle;
                        }
                        End::ClosedByHub => {
                            live.link.close().await;
                            tracing::info!("the hub closed the connection");
                            actor.set_state(State::Disconnected);
                            actor.emit(Event::Closed { reason: None });
                            continue 'idle;
                        }
                        End::Lost {
                            reason,
                            reconnect,
                            at_once,
                        } => {
                            // What this connection will do, not only what the hub allows: one
                            // without a retry policy never reconnects.
                            let reconnect = reconnect && actor.options.retry.is_some();
                            tracing::warn!(%reason, reconnect, "connection lost");
                            if reconnect {
                                actor.lost(&live);
                            }
                            if !reconnect {
                                actor.set_state(State::Disconnected);
                                actor.emit(Event::Closed {
                                    reason: Some(reason),
                                });
                                continue 'idle;
                            }
                            episode_start = Instant::now();
                            skip_delay = at_once;
                            reason
                        }
                    }
                }
                Err(Ok(stop_reply)) => {
                    actor.set_state(State::Disconnected);
                    actor.emit(Event::Closed { reason: None });
                    if let Some(reply) = start_reply.take() {
                        let _ = reply.send(Err(Error::Stopped));
                    }
                    let _ = stop_reply.send(());
                    continue 'idle;
                }
                Err(Err(error)) => {
                    actor.next_url();
                    // A first start the hub refused for good (no hub there, no hub of that
                    // name, credentials, another family) is not retried: waiting for a hub
                    // that is not up yet is what `retry_first_start` is for, not this.
                    let refused = !ever_connected
                        && start_reply.is_some()
                        && actor.options.fallback_urls.is_empty()
                        && crate::negotiate::is_refusal(&error);
                    let retrying = !refused
                        && (ever_connected
                            || start_reply.is_none()
                            || actor.options.retry_first_start)
                        && actor.options.retry.is_some();
                    if retrying {
                        tracing::warn!(%error, "connect attempt failed");
                    } else {
                        // The caller of start() gets this error; no need to say it twice.
                        tracing::debug!(%error, "connect attempt failed");
                    }
                    if !retrying {
                        actor.set_state(State::Disconnected);
                        actor.emit(Event::Closed {
                            reason: Some(error.to_string()),
                        });
                        if let Some(reply) = start_reply.take() {
                            let _ = reply.send(Err(error));
                        }
                        continue 'idle;
                    }
                    error.to_string()
                }
            };
            // Ask the policy.
            let Some(policy) = actor.options.retry.clone() else {
                continue 'idle;
            };
            let context = RetryContext {
                previous_retry_count: retries,
                elapsed: episode_start.elapsed(),
                reason: reason.clone(),
            };
            let Some(delay) = policy.next_delay(&context) else {
                tracing::warn!(%reason, retries, "giving up reconnecting");
                actor.set_state(State::Disconnected);
                actor.emit(Event::Closed {
                    reason: Some(reason.clone()),
                });
                if let Some(reply) = start_reply.take() {
                    let _ = reply.send(Err(Error::Transport(reason)));
                }
                continue 'idle;
            };
            let delay = if skip_delay { Duration::ZERO } else { delay };
            skip_delay = false;
            retries += 1;
            actor.set_state(State::Reconnecting);
            tracing::info!(attempt = retries, ?delay, %reason, "reconnecting");
            actor.emit(Event::Reconnecting {
                attempt: retries,
                delay,
                reason,
            });
            let wake = Instant::now() + delay;
            loop {
                tokio::select! {
                    () = sleep_until(wake) => break,
                    command = commands.recv() => match command {
                        None => return,
                        Some(Command::Stop(reply)) => {
                            actor.set_state(State::Disconnected);
                            actor.emit(Event::Closed { reason: None });
                            if let Some(r) = start_reply.take() {
                                let _ = r.send(Err(Error::Stopped));
                            }
                            let _ = reply.send(());
                            continue 'idle;
                        }
                        Some(Command::NetworkChanged) => break,
                        Some(Command::Suspend) => {
                            actor.set_state(State::Suspended);
                            continue 'idle;
                        }
                        Some(Command::Start(reply)) => { let _ = reply.send(Err(Error::NotConnected(State::Reconnecting))); }
                        Some(other) => { actor.reject(other); }
                    },
                }
            }
        }
    }
}

/// Serves a live connection until it ends.
async fn connected(actor: &Actor, live: &mut Live, commands: &mut Commands) -> End {
    let options = &actor.options;
    let protocol = options.protocol;
    let mut pending: HashMap<String, oneshot::Sender<Result<Outcome, Error>>> = HashMap::new();
    // When each bounded call times out, in the order they were sent: one timeout for all, so
    // the front is always the next due (entries of calls already answered are skipped then).
    let mut deadlines: VecDeque<(Instant, String)> = VecDeque::new();
    // What pending calls and streams fail with when the connection ends for a reason of their
    // own (an invalid message), instead of "the connection closed".
    let mut calls_fail_with: Option<Error> = None;
    let mut streams: HashMap<String, mpsc::UnboundedSender<Result<Arg, Error>>> = HashMap::new();
    let mut dispatch = crate::connection::Dispatch::default();
    // Messages the transport could not take yet, with when they were queued.
    let mut backlog: VecDeque<(Bytes, Instant)> = VecDeque::new();
    let mut last_heard = Instant::now();
    let mut last_sent = Instant::now();
    let mut slow = false;
    // Long polling keeps itself alive (each poll is an HTTP request the hub answers, empty
    // after its poll timeout): as the official clients (`inherentKeepAlive`), no keep-alive
    // pings and no server timeout there, and no "hub silent" warning either (the classic .NET
    // client's heartbeat skips long polling too). Stalled sends are still reported.
    let inherent_keep_alive = live.link.kind == TransportKind::LongPolling;
    // The family's timers: ASP.NET Core pings and watches for the hub's; a classic client
    // sends nothing and watches the hub's keep-alives (none on long polling).
    let (ping_every, slow_after, server_timeout) = match live.wire.classic() {
        None if inherent_keep_alive => (None, None, None),
        None => (
            Some(options.keep_alive_interval),
            Some(options.slow_after()),
            Some(options.server_timeout),
        ),
        Some(wire) => {
            let (slow, timeout) = wire.session.timers(options.slow_threshold);
            (None, slow, timeout)
        }
    };
    // "Never" for a timer a family does not have.
    let never = Duration::from_secs(86_400 * 365);
    // Sends the hub has not taken for this long count as a slow connection, on any transport.
    let stall_after = slow_after.unwrap_or_else(|| options.slow_after());
    let mut ack_timer = tokio::time::interval(Duration::from_secs(1));
    // A classic connection's periodic `ping` (as the jQuery client's `pingInterval`).
    let ping_target = live
        .wire
        .classic()
        .map(|wire| wire.session.target.clone())
        .zip(options.classic_ping_interval);
    let pinging = ping_target.is_some();
    let classic_ping = async {
        match &ping_target {
            Some((target, every)) => ping_classic(&actor.http, target, *every).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(classic_ping);

    let end = 'serve: loop {
        // Dispatch whatever complete messages are buffered.
        loop {
            let message = match live.wire.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e @ hubbub_protocol::Error::MessageTooLarge { .. }) => {
                    break 'serve End::Lost {
                        reason: e.to_string(),
                        reconnect: true,
                        at_once: false,
                    };
                }
                Err(e) => {
                    // A message that parses as a frame but not as a valid hub message (a
                    // Completion with both `result` and `error`, a missing id...) may be the
                    // answer some call waits for: as the official clients, the connection ends
                    // with the reason, and every call and stream waiting fails with it.
                    let error = Error::InvalidMessage(e.to_string());
                    actor.emit(Event::Error {
                        message: error.to_string(),
                    });
                    let reason = error.to_string();
                    calls_fail_with = Some(error);
                    break 'serve End::Lost {
                        reason,
                        reconnect: true,
                        at_once: false,
                    };
                }
            };
            if let Some(resume) = &mut live.resume {
                match &message {
                    HubMessage::Ack(ack) => {
                        resume.replay.ack(ack.sequence_id);
                        continue;
                    }
                    HubMessage::Sequence(seq) => {
                        if let Err(e) = resume.received.sequence(seq.sequence_id) {
                            break 'serve End::Lost {
                                reason: e.to_owned(),
                                reconnect: true,
                                at_once: false,
                            };
                        }
                        continue;
                    }
                    m if m.is_sequenced() && !resume.received.accept() => continue,
                    _ => {}
                }
            }
            match message {
                HubMessage::Invocation(inv) => {
                    let (observers, handlers) = dispatch.lookup(&actor.shared, &inv.target);
                    for observer in observers {
                        observer(&inv.target, &inv.arguments, &inv.headers);
                    }
                    let mut results: Vec<Arg> = Vec::new();
                    for handler in handlers {
                        if let Some(result) = handler(&inv.arguments) {
                            results.push(result);
                        }
                    }
                    if handlers.is_empty() {
                        tracing::debug!(target = %inv.target, "no handler for hub invocation");
                    }
                    if let Some(id) = inv.invocation_id {
                        let completion = match results.len() {
                            0 => Completion::error(id, "Client didn't provide a result."),
                            1 => Completion::result(id, results.remove(0)),
                            _ => Completion::error(id, "Client provided multiple results."),
                        };
                        let id = completion.invocation_id.clone();
                        if let Err(e) = queue(
                            live,
                            &mut backlog,
                            protocol,
                            &HubMessage::Completion(completion),
                        ) {
                            // The handler's result cannot be written: answer with why instead.
                            let fallback = Completion::error(
                                id,
                                format!("Client result could not be sent: {e}"),
                            );
                            let _ = queue(
                                live,
                                &mut backlog,
                                protocol,
                                &HubMessage::Completion(fallback),
                            );
                        }
                    }
                }
                HubMessage::StreamItem(item) => {
                    if let Some(tx) = streams.get(&item.invocation_id) {
                        let _ = tx.send(Ok(item.item));
                    } else if let Some(reply) = pending.remove(&item.invocation_id) {
                        // An item for a call that is not a stream: the call fails rather than
                        // waiting (the official JavaScript client rejects it the same way).
                        let _ = reply.send(Err(Error::InvalidMessage(format!(
                            "a StreamItem for the non-streaming invocation '{}'",
                            item.invocation_id
                        ))));
                    }
                }
                HubMessage::Completion(c) => {
                    if let Some(reply) = pending.remove(&c.invocation_id) {
                        // A classic HubException's data travels beside the message.
                        let data = match (&mut live.wire, &c.outcome) {
                            (Wire::Classic(wire), Outcome::Error(_)) => {
                                wire.take_error_data(&c.invocation_id)
                            }
                            _ => None,
                        };
                        let _ = reply.send(match (c.outcome, data) {
                            (Outcome::Error(message), Some(data)) => {
                                Err(Error::HubException { message, data })
                            }
                            (outcome, _) => Ok(outcome),
                        });
                    } else if let Some(tx) = streams.remove(&c.invocation_id) {
                        if let Outcome::Error(e) = c.outcome {
                            let _ = tx.send(Err(Error::Hub(e)));
                        }
                    }
                }
                HubMessage::Close(close) => {
                    if close.error.is_none() && !close.allow_reconnect {
                        break 'serve End::ClosedByHub;
                    }
                    let reason = close.error.map_or_else(
                        || "the server closed the connection".to_owned(),
                        |e| format!("Server returned an error on close: {e}"),
                    );
                    break 'serve End::Lost {
                        reason,
                        reconnect: close.allow_reconnect,
                        at_once: false,
                    };
                }
                HubMessage::Ping | HubMessage::Ack(_) | HubMessage::Sequence(_) => {}
                HubMessage::StreamInvocation(_) | HubMessage::CancelInvocation(_) => {}
            }
        }
        let stalled_since = backlog.front().map(|(_, at)| *at);
        // Stateful reconnect: with the replay buffer full, new sends wait for acknowledgements.
        let accepting = live.resume.as_ref().is_none_or(|r| !r.replay.is_full());
        let tx = live.link.tx.clone();
        let wake = tokio::select! {
            event = live.link.rx.recv() => Wake::Link(event),
            permit = tx.reserve_owned(), if !backlog.is_empty() => Wake::Writable(permit.ok()),
            _ = ack_timer.tick(), if live.resume.is_some() => Wake::AckDue,
            command = commands.recv(), if accepting => Wake::Command(command),
            () = sleep_until(last_sent + ping_every.unwrap_or(never)), if ping_every.is_some() => Wake::PingDue,
            () = sleep_until(last_heard + slow_after.unwrap_or(never)), if !slow && slow_after.is_some() => Wake::Silent,
            () = sleep_until(stalled_since.unwrap_or(last_heard) + stall_after), if !slow && stalled_since.is_some() => Wake::Stalled,
            () = sleep_until(last_heard + server_timeout.unwrap_or(never)), if server_timeout.is_some() => Wake::ServerTimeout,
            () = sleep_until(deadlines.front().map_or(last_heard, |(at, _)| *at)), if !deadlines.is_empty() => Wake::CallDue,
            reason = &mut classic_ping, if pinging => Wake::PingRefused(reason),
        };
        match wake {
            Wake::Link(Some(LinkEvent::Data(data))) => {
                last_heard = Instant::now();
                if slow && backlog.is_empty() {
                    slow = false;
                    actor.emit(Event::Recovered);
                }
                live.wire.push(data);
            }
            Wake::Link(closed) => {
                let reason = match closed {
                    Some(LinkEvent::Closed(r)) => r,
                    _ => None,
                };
                if live.resume.is_some() && resume(actor, live, &mut backlog).await {
                    last_heard = Instant::now();
                    continue;
                }
                break End::Lost {
                    reason: reason.unwrap_or_else(|| "the server closed the connection".to_owned()),
                    reconnect: true,
                    at_once: false,
                };
            }
            Wake::Writable(Some(permit)) => {
                if let Some((bytes, _)) = backlog.pop_front() {
                    permit.send(Outgoing::Data(bytes));
                    last_sent = Instant::now();
                }
                if slow && backlog.is_empty() && slow_after.is_none_or(|s| last_heard.elapsed() < s)
                {
                    slow = false;
                    actor.emit(Event::Recovered);
                }
            }
            Wake::Writable(None) => {
                // The transport's writer is gone; its reader reports why next.
                if live.resume.is_none() {
                    break End::Lost {
                        reason: "the transport closed".to_owned(),
                        reconnect: true,
                        at_once: false,
                    };
                }
            }
            Wake::AckDue => {
                if let Some(id) = live.resume.as_mut().and_then(|r| r.received.to_ack()) {
                    let _ = queue(
                        live,
                        &mut backlog,
                        protocol,
                        &HubMessage::Ack(Ack { sequence_id: id }),
                    );
                }
            }
            Wake::Command(command) => match command {
                None => break End::Stopped(oneshot::channel().0),
                Some(Command::Stop(reply)) => {
                    // Best effort, as the official clients: tell the hub before leaving, so it
                    // learns at once even on transports where it cannot see a socket close.
                    let _ = queue(
                        live,
                        &mut backlog,
                        protocol,
                        &HubMessage::Close(Default::default()),
                    );
                    break End::Stopped(reply);
                }
                Some(Command::Suspend) => {
                    let _ = queue(
                        live,
                        &mut backlog,
                        protocol,
                        &HubMessage::Close(Default::default()),
                    );
                    break End::Suspended;
                }
                Some(Command::NetworkChanged) => {
                    break End::Lost {
                        reason: "the network changed".to_owned(),
                        reconnect: true,
                        at_once: true,
                    };
                }
                Some(Command::Resume) => {}
                Some(Command::Start(reply)) => {
                    let _ = reply.send(Ok(()));
                }
                Some(Command::Send { message, done }) => {
                    let _ = done.send(queue(live, &mut backlog, protocol, &message));
                    last_sent = Instant::now();
                }
                Some(Command::Invoke {
                    message,
                    id,
                    reply,
                    bounded,
                }) => match queue(live, &mut backlog, protocol, &message) {
                    Ok(()) => {
                        if let (true, Some(limit)) = (bounded, options.invocation_timeout) {
                            deadlines.push_back((Instant::now() + limit, id.clone()));
                        }
                        pending.insert(id, reply);
                        last_sent = Instant::now();
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                },
                Some(Command::Stream { message, id, items }) => {
                    match queue(live, &mut backlog, protocol, &message) {
                        Ok(()) => {
                            streams.insert(id, items);
                            last_sent = Instant::now();
                        }
                        Err(e) => {
                            let _ = items.send(Err(e));
                        }
                    }
                }
                Some(Command::UploadItem { id, item }) => {
                    let message = HubMessage::StreamItem(hubbub_protocol::StreamItem {
                        headers: Default::default(),
                        invocation_id: id,
                        item,
                    });
                    let _ = queue(live, &mut backlog, protocol, &message);
                    last_sent = Instant::now();
                }
                Some(Command::UploadEnd { id, error }) => {
                    let completion = match error {
                        None => Completion::void(id),
                        Some(e) => Completion::error(id, e),
                    };
                    let _ = queue(
                        live,
                        &mut backlog,
                        protocol,
                        &HubMessage::Completion(completion),
                    );
                    last_sent = Instant::now();
                }
                Some(Command::Cancel { id }) => {
                    if streams.remove(&id).is_some() {
                        let cancel =
                            HubMessage::CancelInvocation(hubbub_protocol::CancelInvocation {
                                headers: Default::default(),
                                invocation_id: id,
                            });
                        let _ = queue(live, &mut backlog, protocol, &cancel);
                    }
                }
            },
            Wake::PingDue => {
                let _ = queue(live, &mut backlog, protocol, &HubMessage::Ping);
                last_sent = Instant::now();
            }
            Wake::CallDue => {
                let now = Instant::now();
                while let Some((at, _)) = deadlines.front() {
                    if *at > now {
                        break;
                    }
                    let Some((_, id)) = deadlines.pop_front() else {
                        break;
                    };
                    if let (Some(reply), Some(limit)) =
                        (pending.remove(&id), options.invocation_timeout)
                    {
                        tracing::debug!(%id, ?limit, "invocation timed out");
                        let _ = reply.send(Err(Error::InvocationTimeout(limit)));
                    }
                }
            }
            Wake::Silent => {
                slow = true;
                tracing::warn!(silent_for = ?slow_after.unwrap_or_default(), "connection slow: the hub has been silent");
                actor.emit(Event::Slow {
                    reason: SlowReason::HubSilent,
                });
            }
            Wake::Stalled => {
                slow = true;
                tracing::warn!("connection slow: sends are not draining");
                actor.emit(Event::Slow {
                    reason: SlowReason::SendsStalled,
                });
            }
            Wake::PingRefused(reason) => {
                // The future is done: leaving the loop, it is never polled again. With a token
                // provider a new connection may get a fresh token (negotiated anew: the refused
                // token is the lost connection's); without one, the credentials are gone.
                let renew = options.token_provider.is_some();
                actor
                    .not_resumable
                    .store(renew, std::sync::atomic::Ordering::SeqCst);
                break End::Lost {
                    reason,
                    reconnect: renew,
                    at_once: renew,
                };
            }
            Wake::ServerTimeout => {
                break End::Lost {
                    reason: match live.wire {
                        Wire::Core(_) => {
                            "Server timeout elapsed without receiving a message from the server."
                                .to_owned()
                        }
                        Wire::Classic(_) => format!(
                            "no keep-alive from the hub within its KeepAliveTimeout ({:?})",
                            server_timeout.unwrap_or_default()
                        ),
                    },
                    reconnect: true,
                    at_once: false,
                };
            }
        }
    };
    // Nothing pending survives the connection.
    let close_error = match &end {
        End::Lost { reason, .. } => Error::Hub(reason.clone()),
        _ => Error::ConnectionClosed,
    };
    for (_, reply) in pending.drain() {
        let _ = reply.send(Err(match (&calls_fail_with, &close_error) {
            (Some(error), _) => error.clone(),
            (None, Error::Hub(reason))
                if reason.starts_with("Server returned an error on close") =>
            {
                close_error.clone()
            }
            _ => Error::ConnectionClosed,
        }));
    }
    for (_, tx) in streams.drain() {
        let _ = tx.send(Err(calls_fail_with
            .clone()
            .unwrap_or(Error::ConnectionClosed)));
    }
    end
}

/// Encodes a message and hands it to the transport (or the backlog when the transport is busy).
fn queue(
    live: &mut Live,
    backlog: &mut VecDeque<(Bytes, Instant)>,
    protocol: hubbub_protocol::Protocol,
    message: &HubMessage,
) -> Result<(), Error> {
    let bytes = match &mut live.wire {
        Wire::Core(_) => Bytes::from(protocol.encode_to_vec(message)?),
        Wire::Classic(wire) => match wire.encode(message)? {
            Some(bytes) => bytes,
            None => return Ok(()),
        },
    };
    if let Some(resume) = &mut live.resume
        && message.is_sequenced()
    {
        // Kept until the hub acknowledges it, to replay after a dropped socket.
        resume.replay.record(bytes.clone());
    }
    push(live, backlog, bytes)
}

/// Hands encoded bytes to the transport, or to the backlog while the transport is busy.
fn push(live: &Live, backlog: &mut VecDeque<(Bytes, Instant)>, bytes: Bytes) -> Result<(), Error> {
    if !backlog.is_empty() {
        backlog.push_back((bytes, Instant::now()));
        return Ok(());
    }
    match live.link.tx.try_send(Outgoing::Data(bytes)) {
        Ok(()) => Ok(()),
        Err(mpsc::error::TrySendError::Full(Outgoing::Data(bytes))) => {
            backlog.push_back((bytes, Instant::now()));
            Ok(())
        }
        Err(_) => Err(Error::ConnectionClosed),
    }
}

/// Stateful reconnect: reopens the WebSocket once, with the same connection token and no new
/// negotiate, then sends `Sequence` and replays what the hub has not acknowledged. No events
/// fire and the state stays Connected; `false` when the reopen failed.
async fn resume(actor: &Actor, live: &mut Live, backlog: &mut VecDeque<(Bytes, Instant)>) -> bool {
    let Some(resume) = &mut live.resume else {
        return false;
    };
    tracing::debug!("socket dropped; resuming the stateful connection");
    let link = match link::open(TransportKind::WebSockets, &resume.target, &actor.http).await {
        Ok(link) => link,
        Err(e) => {
            tracing::info!(error = %e, "stateful reconnect failed");
            return false;
        }
    };
    live.link = link;
    live.wire = Wire::Core(MessageReader::new(
        actor.options.protocol,
        actor.options.max_message_size,
    ));
    resume.received.resumed();
    // Everything sequenced in the backlog is in the replay buffer too; the rest (pings, acks)
    // is not worth resending.
    backlog.clear();
    let sequence = HubMessage::Sequence(Sequence {
        sequence_id: resume.replay.resend_from(),
    });
    let Ok(mut payload) = actor.options.protocol.encode_to_vec(&sequence) else {
        return false;
    };
    for bytes in resume.replay.pending() {
        payload.extend_from_slice(bytes);
    }
    push(live, backlog, Bytes::from(payload)).is_ok()
}

/// The URL without its query (which may hold an access token), for logs.
fn redact(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// The transport kind of a classic transport (the one enum shells see).
fn kind(transport: hubbub_protocol::classic::Transport) -> TransportKind {
    use hubbub_protocol::classic::Transport;
    match transport {
        Transport::WebSockets => TransportKind::WebSockets,
        Transport::ServerSentEvents => TransportKind::ServerSentEvents,
        Transport::LongPolling => TransportKind::LongPolling,
    }
}

/// `POST abort`: the hub ends the connection at once (its disconnected callback runs).
/// Best effort, bounded by 2 s.
async fn abort_classic(http: &reqwest::Client, target: &link::ClassicTarget) {
    let url = target.url(hubbub_protocol::classic::Action::Abort);
    let sent = target
        .request(http, reqwest::Method::POST, &url)
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => tracing::debug!("classic connection aborted"),
        Ok(r) => tracing::debug!(status = %r.status(), "classic abort refused"),
        Err(e) => {
            tracing::debug!(error = %crate::negotiate::without_url(&e), "classic abort failed")
        }
    }
}
