//! The HTTP side: negotiate, and the three transports that carry a connection's bytes.
//!
//! | request | handled by |
//! |---|---|
//! | `POST {hub}/negotiate` | [`negotiate`] |
//! | `GET {hub}` with a WebSocket upgrade | [`ws`] |
//! | `GET {hub}` with `Accept: text/event-stream` | [`sse`] |
//! | other `GET {hub}` | [`longpoll`] |
//! | `POST {hub}?id=` | data from an SSE or long-polling client |
//! | `DELETE {hub}?id=` | long polling: the client stops |

pub(crate) mod longpoll;
pub(crate) mod sse;
pub(crate) mod ws;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Query, Request, State, WebSocketUpgrade};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hubbub_protocol::negotiate::{AvailableTransport, NegotiateResponse, TransportKind};
use hubbub_protocol::{Protocol, negotiate};
use tokio::sync::{Mutex, Notify};

use crate::connection::{self, Inbound};
use crate::frame::Outbound;
use crate::queue::QueueRx;
use crate::state::HubState;

/// A negotiated (or directly opened) connection, seen from HTTP.
#[derive(Debug)]
pub(crate) struct HttpConnection {
    pub(crate) id: String,
    pub(crate) token: String,
    pub(crate) user: String,
    pub(crate) query: Arc<connection::QueryParams>,
    pub(crate) transport: OnceLock<TransportKind>,
    /// Fires when the first transport request sets `transport`.
    pub(crate) transport_set: Notify,
    pub(crate) protocol: OnceLock<Protocol>,
    pub(crate) inbound: crate::queue::LaneTx<Inbound>,
    pub(crate) outbound: Mutex<QueueRx>,
    /// Fires when the connection's task has finished.
    pub(crate) ended: crate::latch::Latch,
    /// Long polling's state, made at the first poll (a connection on another transport has
    /// none).
    polls: OnceLock<Box<Polls>>,
    /// Negotiated with stateful reconnect (the client asked and the hub allows it).
    pub(crate) stateful: AtomicBool,
    /// How many WebSockets this connection has had (a new one resumes a stateful connection).
    pub(crate) ws_generation: AtomicU64,
    /// Tells a socket that a newer one replaced it.
    pub(crate) ws_replaced: Notify,
    /// Stateful reconnect, once in force for this connection (made at the handshake: most
    /// connections never have it).
    resumable: OnceLock<Box<Resumable>>,
    /// Counts the connection among its address's pending ones (negotiated, no transport
    /// request yet) until the first transport request or its end.
    pending: std::sync::Mutex<Option<Pending>>,
}

/// A connection's stateful reconnect (negotiated, protocol version 2, WebSockets).
#[derive(Debug)]
pub(crate) struct Resumable {
    /// Sent messages kept until acknowledged.
    pub(crate) replay: std::sync::Mutex<hubbub_protocol::stateful::Replay>,
    /// Wakes a writer waiting for acknowledgements to free buffer space.
    pub(crate) acked: Notify,
}

/// One negotiated connection not yet used, counted against its client address's budget
/// (`HubOptions::max_pending_per_address`) while it lives.
#[derive(Debug)]
pub(crate) struct Pending {
    counts: Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Pending {
    /// A pending slot for `ip`, unless it holds `max` already.
    fn take(
        counts: &Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>,
        ip: IpAddr,
        max: usize,
    ) -> Option<Self> {
        let mut held = counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Self {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut held = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

/// The client's IP address, when the server knows it (`ConnectInfo`); IPv4 mapped into IPv6
/// as the IPv4 address.
fn client_ip(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    let addr = extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()?;
    Some(match addr.0.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    })
}

/// A long-polling connection's polls.
#[derive(Debug)]
pub(crate) struct Polls {
    pub(crate) generation: AtomicU64,
    pub(crate) superseded: Notify,
    /// Long polls being answered now, and when the last one ended: long polling's liveness
    /// (the connection's task ends one that stops polling, see [`HttpConnection::poll_idle_for`]).
    pub(crate) open: AtomicU64,
    pub(crate) last: std::sync::Mutex<tokio::time::Instant>,
}

fn random_id() -> String {
    let mut bytes = [0u8; 16];
    // The OS random source failing is not recoverable in any useful way.
    getrandom::fill(&mut bytes).expect("the OS random number generator works");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The user of a new connection: the token's subject, else the `name` query parameter, else
/// one made from the id.
pub(crate) fn identify(
    authenticated: Option<String>,
    query: &HashMap<String, String>,
    id: &str,
) -> String {
    if let Some(user) = authenticated {
        return user;
    }
    query
        .get("name")
        .or_else(|| query.get("user"))
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
        .map(|n| n.chars().take(64).collect())
        .unwrap_or_else(|| format!("guest-{}", &id[..6]))
}

/// Creates a connection record and starts its task (which waits for the handshake).
fn open(
    state: &Arc<HubState>,
    query: HashMap<String, String>,
    negotiate_version: u32,
    user: Option<String>,
    stateful: bool,
    pending: Option<Pending>,
) -> Arc<HttpConnection> {
    let id = random_id();
    let token = if negotiate_version >= 1 {
        random_id()
    } else {
        id.clone()
    };
    let (inbound_tx, inbound_rx) = crate::queue::lane(64);
    let (outbound_tx, outbound_rx) = crate::queue::queue(
        state.options.send_queue_capacity,
        state.options.send_queue_bytes,
    );
    let http = Arc::new(HttpConnection {
        user: identify(user, &query, &id),
        id,
        token: token.clone(),
        query: Arc::new(query.into()),
        transport: OnceLock::new(),
        transport_set: Notify::new(),
        protocol: OnceLock::new(),
        inbound: inbound_tx,
        outbound: Mutex::new(outbound_rx),
        ended: crate::latch::Latch::new(),
        polls: OnceLock::new(),
        stateful: AtomicBool::new(stateful),
        ws_generation: AtomicU64::new(0),
        ws_replaced: Notify::new(),
        resumable: OnceLock::new(),
        pending: std::sync::Mutex::new(pending),
    });
    state.http.insert(token.clone(), http.clone());
    let task_state = state.clone();
    let task_http = http.clone();
    state.tasks.spawn(async move {
        connection::run(
            task_state.clone(),
            task_http.clone(),
            inbound_rx,
            outbound_tx,
        )
        .await;
        task_http.used();
        // Long polling learns of the end from its next poll (204); keep the record until then.
        if task_http.transport.get() == Some(&TransportKind::LongPolling) {
            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
        }
        task_state.http.remove(&token);
    });
    http
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

fn over_capacity(state: &HubState) -> bool {
    state.http.len() >= state.options.max_connections
}

/// Checks the request's token when the hub requires one (`auth`), for either protocol family
/// (`family`, a log label): `Ok(Some(user))` (with the query's `scope` bound to the token's when
/// a scope claim is configured), `Ok(None)` without auth, or the 401 (403 for a scope not the
/// token's) to answer.
pub(crate) fn authenticate(
    auth: Option<&crate::auth::Auth>,
    family: &'static str,
    headers: &HeaderMap,
    query: &mut HashMap<String, String>,
) -> Result<Option<String>, NotAdmitted> {
    let Some(auth) = auth else {
        return Ok(None);
    };
    auth.authenticate(headers, query)
        .map(Some)
        .map_err(|denied| match denied {
            crate::auth::Denied::Unauthorized(reason) => {
                tracing::debug!(%reason, family, "request refused");
                NotAdmitted::Unauthorized
            }
            crate::auth::Denied::OtherScope => NotAdmitted::OtherScope,
        })
}

/// A request its token does not admit: 401, or 403 for a scope not the token's.
#[derive(Debug)]
pub(crate) enum NotAdmitted {
    Unauthorized,
    OtherScope,
}

impl IntoResponse for NotAdmitted {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthorized => Unauthorized.into_response(),
            Self::OtherScope => text(StatusCode::FORBIDDEN, crate::auth::OTHER_SCOPE),
        }
    }
}

/// A 401 that asks for a bearer token.
#[derive(Debug)]
pub(crate) struct Unauthorized;

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        (
            StatusCode::UNAUTHORIZED,
            [
                (header::WWW_AUTHENTICATE, "Bearer"),
                (header::CONTENT_TYPE, "text/plain"),
            ],
            "Unauthorized",
        )
            .into_response()
    }
}

/// `POST {hub}/negotiate`.
pub(crate) async fn negotiate(
    State(state): State<Arc<HubState>>,
    method: Method,
    headers: HeaderMap,
    Query(mut query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    if method != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    let user = match authenticate(state.auth.as_ref(), "core", &headers, &mut query) {
        Ok(user) => user,
        Err(response) => return response.into_response(),
    };
    let requested = query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("negotiateVersion"))
        .map(|(_, v)| v.as_str());
    let version = match negotiate::requested_version(requested, 0) {
        Ok(v) => v,
        Err(e) => {
            return (
                [(header::CONTENT_TYPE, "application/json")],
                negotiate::error_body(&e.to_string()),
            )
                .into_response();
        }
    };
    if over_capacity(&state) {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is at its connection limit.",
        );
    }
    // Negotiated connections not used yet have a budget per client address of their own, so
    // one client that only negotiates cannot fill the connection limit.
    let pending = match client_ip(request.extensions()) {
        Some(ip) => {
            match Pending::take(&state.pending, ip, state.options.max_pending_per_address) {
                Some(pending) => Some(pending),
                None => {
                    tracing::debug!(%ip, "negotiate refused: too many pending connections");
                    state.counters.prom.negotiations_refused.inc();
                    return text(
                        StatusCode::TOO_MANY_REQUESTS,
                        "Too many negotiated connections from this address are not connected yet.",
                    );
                }
            }
        }
        None => None,
    };
    let stateful = state.options.allow_stateful_reconnect
        && query
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("useStatefulReconnect") && v == "true");
    let http = open(&state, query, version, user, stateful, pending);
    let body = NegotiateResponse {
        negotiate_version: version,
        connection_id: http.id.clone(),
        connection_token: http.token.clone(),
        available_transports: TransportKind::ALL
            .iter()
            .map(|&t| AvailableTransport {
                transport: t,
                transfer_formats: t.transfer_formats().to_vec(),
            })
            .collect(),
        use_stateful_reconnect: stateful,
    };
    ([(header::CONTENT_TYPE, "application/json")], body.to_json()).into_response()
}

/// A refused request: a status and a plain-text reason.
#[derive(Debug)]
pub(crate) struct Refusal(StatusCode, &'static str);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        text(self.0, self.1)
    }
}

fn lookup(
    state: &HubState,
    query: &HashMap<String, String>,
) -> Result<Arc<HttpConnection>, Refusal> {
    let Some(token) = query.get("id") else {
        return Err(Refusal(StatusCode::BAD_REQUEST, "Connection ID required"));
    };
    state
        .http
        .get(token)
        .map(|c| c.clone())
        .ok_or(Refusal(StatusCode::NOT_FOUND, "No Connection with that ID"))
}

/// Claims the connection for `kind`: the first request decides the transport.
fn claim(http: &HttpConnection, kind: TransportKind) -> Result<(), Refusal> {
    http.used();
    match http.transport.get() {
        None => {
            if http.transport.set(kind).is_ok() {
                http.transport_set.notify_waiters();
            }
            if http.transport.get() == Some(&kind) {
                Ok(())
            } else {
                Err(Refusal(
                    StatusCode::BAD_REQUEST,
                    "Cannot change transports mid-connection.",
                ))
            }
        }
        Some(k) if *k == kind => Ok(()),
        Some(_) => Err(Refusal(
            StatusCode::BAD_REQUEST,
            "Cannot change transports mid-connection.",
        )),
    }
}

/// `GET`, `POST` and `DELETE` on the hub path.
pub(crate) async fn connect(
    State(state): State<Arc<HubState>>,
    Query(mut query): Query<HashMap<String, String>>,
    request: Request,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let method = parts.method.clone();
    let headers = parts.headers.clone();
    let user = match authenticate(state.auth.as_ref(), "core", &headers, &mut query) {
        Ok(user) => user,
        Err(response) => return response.into_response(),
    };
    // A token must belong to the user the connection was negotiated for.
    if let (Some(user), Some(token)) = (&user, query.get("id")) {
        if let Some(http) = state.http.get(token) {
            if http.user != *user {
                return text(StatusCode::FORBIDDEN, "The token is for another user.");
            }
        }
    }
    match method {
        Method::GET => {
            let is_upgrade = headers
                .get(header::UPGRADE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
            if is_upgrade {
                let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
                    Ok(upgrade) => upgrade,
                    Err(rejection) => return rejection.into_response(),
                };
                let http = match query.get("id") {
                    Some(_) => match lookup(&state, &query) {
                        Ok(http) => http,
                        Err(r) => return r.into_response(),
                    },
                    // Without an id the client skipped negotiation: the connection starts here.
                    None => {
                        if over_capacity(&state) {
                            return text(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "The server is at its connection limit.",
                            );
                        }
                        open(&state, query.clone(), 1, user.clone(), false, None)
                    }
                };
                if http.transport.get() == Some(&TransportKind::WebSockets) {
                    // A stateful connection may come back on a new socket, even before the
                    // hub has seen the old one drop: the new socket replaces it.
                    let resumable = http.stateful.load(Ordering::SeqCst)
                        && !http.ended.is_cancelled()
                        && http.resumable().is_some();
                    if !resumable {
                        return text(StatusCode::CONFLICT, "Connection already has a WebSocket.");
                    }
                    let generation = http.ws_generation.fetch_add(1, Ordering::SeqCst) + 1;
                    http.ws_replaced.notify_waiters();
                    return ws::upgrade(&state, upgrade, http, generation);
                }
                if let Err(r) = claim(&http, TransportKind::WebSockets) {
                    return r.into_response();
                }
                let generation = http.ws_generation.fetch_add(1, Ordering::SeqCst) + 1;
                return ws::upgrade(&state, upgrade, http, generation);
            }
            let http = match lookup(&state, &query) {
                Ok(http) => http,
                Err(r) => return r.into_response(),
            };
            let wants_sse = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("text/event-stream"));
            if wants_sse {
                if let Err(r) = claim(&http, TransportKind::ServerSentEvents) {
                    return r.into_response();
                }
                sse::stream(http)
            } else {
                let first = http.transport.get().is_none();
                if let Err(r) = claim(&http, TransportKind::LongPolling) {
                    return r.into_response();
                }
                longpoll::poll(&state, http, first).await
            }
        }
        Method::POST => {
            let http = match lookup(&state, &query) {
                Ok(http) => http,
                Err(r) => return r.into_response(),
            };
            // A POST may carry several messages; allow a few times the message limit.
            let limit = state
                .options
                .max_message_size
                .saturating_mul(4)
                .max(1 << 20);
            let body: Bytes = match axum::body::to_bytes(body, limit).await {
                Ok(body) => body,
                Err(_) => {
                    return text(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "The request body is too large.",
                    );
                }
            };
            // As in ASP.NET Core, data may arrive before the first poll or event-stream request
            // that picks the transport.
            if http.transport.get() == Some(&TransportKind::WebSockets) {
                return text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "POST requests are not allowed for WebSocket connections.",
                );
            }
            if http.inbound.send(Inbound::Data(body)).await.is_err() {
                return text(StatusCode::NOT_FOUND, "No Connection with that ID");
            }
            StatusCode::OK.into_response()
        }
        Method::DELETE => {
            let http = match lookup(&state, &query) {
                Ok(http) => http,
                Err(r) => return r.into_response(),
            };
            if http.transport.get() != Some(&TransportKind::LongPolling) {
                return text(
                    StatusCode::BAD_REQUEST,
                    "Cannot terminate this connection using the DELETE endpoint.",
                );
            }
            longpoll::delete(&state, &http);
            StatusCode::ACCEPTED.into_response()
        }
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
    }
}

impl HttpConnection {
    /// The connection is no longer pending: a transport request came, or it ended.
    pub(crate) fn used(&self) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    /// Stateful reconnect, if in force.
    pub(crate) fn resumable(&self) -> Option<&Resumable> {
        self.resumable.get().map(|r| &**r)
    }

    /// Puts stateful reconnect in force, with a replay buffer of `limit` bytes.
    pub(crate) fn make_resumable(&self, limit: usize) {
        let mut replay = hubbub_protocol::stateful::Replay::new(limit);
        replay.active = true;
        let _ = self.resumable.set(Box::new(Resumable {
            replay: std::sync::Mutex::new(replay),
            acked: Notify::new(),
        }));
    }

    /// Long polling's state (made on first use).
    pub(crate) fn polls(&self) -> &Polls {
        self.polls.get_or_init(|| {
            Box::new(Polls {
                generation: AtomicU64::new(0),
                superseded: Notify::new(),
                open: AtomicU64::new(0),
                last: std::sync::Mutex::new(tokio::time::Instant::now()),
            })
        })
    }

    /// How long this long-polling connection has had no poll open (zero while one is).
    pub(crate) fn poll_idle_for(&self) -> std::time::Duration {
        let polls = self.polls();
        if polls.open.load(Ordering::SeqCst) > 0 {
            return std::time::Duration::ZERO;
        }
        polls
            .last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }

    /// Marks a new long poll; the previous one (if any) answers 204.
    pub(crate) fn next_poll(&self) -> u64 {
        let polls = self.polls();
        let generation = polls.generation.fetch_add(1, Ordering::SeqCst) + 1;
        polls.superseded.notify_waiters();
        generation
    }
}

/// Appends what `out` asks to write to `buf`; `false` once the stream has ended.
pub(crate) fn write_outbound(out: Outbound, protocol: Option<Protocol>, buf: &mut Vec<u8>) -> bool {
    match out {
        Outbound::Raw(bytes) => buf.extend_from_slice(&bytes),
        Outbound::Message(frame) => {
            if let Some(bytes) = protocol.and_then(|p| frame.bytes(p)) {
                buf.extend_from_slice(bytes);
            }
        }
        Outbound::End => return false,
    }
    true
}

/// How much a writer gathers into one write when several messages are waiting.
pub(crate) const BATCH_BYTES: usize = 64 * 1024;
