//! The classic requests over HTTP: negotiate, the three transports, start, send, abort, ping.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;

use axum::body::{Body, Bytes};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use axum::extract::{FromRequestParts, Query, Request, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::replay::read_cursor;
use super::session::{self, DispatchError, Session};
use super::{Endpoint, Query as Params, Transport, negotiate_body};

/// How much one envelope carries at most when many messages wait.
const ENVELOPE_BYTES: usize = 64 * 1024;

const START_RESPONSE: &str = r#"{ "Response": "started" }"#;
const PING_RESPONSE: &str = r#"{ "Response": "pong" }"#;
const JSON: &str = "application/json; charset=UTF-8";

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=UTF-8")],
        body.into(),
    )
        .into_response()
}

fn json(body: impl Into<Body>) -> Response {
    ([(header::CONTENT_TYPE, JSON)], body.into()).into_response()
}

/// A refused request.
#[derive(Debug)]
enum Refusal {
    /// 401, asking for a bearer token.
    Unauthorized,
    /// A status and a plain-text reason.
    Text(StatusCode, String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthorized => crate::transport::Unauthorized.into_response(),
            Self::Text(status, reason) => text(status, reason),
        }
    }
}

fn refuse(status: StatusCode, reason: impl Into<String>) -> Refusal {
    Refusal::Text(status, reason.into())
}

/// The user a request's token names (`Ok(None)` without auth), or the 401 (403 for a scope not
/// the token's): the Core endpoint's check (`transport::authenticate`), answered as a refusal.
fn authenticate(
    endpoint: &Endpoint,
    headers: &HeaderMap,
    query: &mut Params,
) -> Result<Option<String>, Refusal> {
    crate::transport::authenticate(endpoint.auth.as_ref(), "classic", headers, query).map_err(
        |refused| match refused {
            crate::transport::NotAdmitted::Unauthorized => Refusal::Unauthorized,
            crate::transport::NotAdmitted::OtherScope => {
                refuse(StatusCode::FORBIDDEN, crate::auth::OTHER_SCOPE)
            }
        },
    )
}

/// The hubs a `connectionData` names, by index; a clear 400 for one not served.
fn hubs(endpoint: &Endpoint, query: &Params) -> Result<Vec<usize>, Refusal> {
    let Some(data) = query.get("connectionData").filter(|d| !d.is_empty()) else {
        return Ok(Vec::new());
    };
    let names = hubbub_protocol::classic::form::parse_connection_data(data)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, e.to_string()))?;
    let mut hubs = Vec::new();
    for name in names {
        let Some(i) = endpoint.hub_index(&name) else {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                format!("'{name}' Hub could not be resolved."),
            ));
        };
        if !hubs.contains(&i) {
            hubs.push(i);
        }
    }
    Ok(hubs)
}

/// What every request after negotiate carries, checked.
struct Checked {
    id: String,
    user: String,
    transport: Transport,
    hubs: Vec<usize>,
}

/// Checks a request after negotiate: its JWT (with auth on), its connection token (400 when
/// missing or not genuine, 403 when issued to another user), its transport and hubs.
fn check(endpoint: &Endpoint, headers: &HeaderMap, query: &mut Params) -> Result<Checked, Refusal> {
    let authenticated = authenticate(endpoint, headers, query)?;
    let Some(token) = query.get("connectionToken").filter(|t| !t.is_empty()) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "Protocol error: Missing connection token.",
        ));
    };
    let Some((id, user)) = endpoint.protector.open_connection_token(token) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "The connection token is not valid (it was not issued by this hub, or was altered).",
        ));
    };
    // The user the request comes from: the token's subject with auth on, else the name it
    // gives (clients repeat their query string on every request).
    let claimed = authenticated.or_else(|| {
        query
            .get("name")
            .or_else(|| query.get("user"))
            .map(|n| n.trim().chars().take(64).collect::<String>())
            .filter(|n| !n.is_empty())
    });
    if claimed.is_some_and(|c| c != user) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "Unrecognized user identity. The user identity cannot change during an active SignalR connection.",
        ));
    }
    let transport = match query.get("transport").map(String::as_str) {
        Some(name) => match Transport::from_name(name) {
            Some(t) => t,
            None if name == "foreverFrame" => {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "The foreverFrame transport is not supported by this hub: use webSockets, serverSentEvents or longPolling.",
                ));
            }
            None => {
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "Protocol error: Unknown transport.",
                ));
            }
        },
        None => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "Protocol error: Unknown transport.",
            ));
        }
    };
    Ok(Checked {
        id,
        user,
        transport,
        hubs: hubs(endpoint, query)?,
    })
}

/// `GET {path}/negotiate`.
pub(crate) async fn negotiate(
    State(endpoint): State<Arc<Endpoint>>,
    headers: HeaderMap,
    Query(mut query): Query<Params>,
) -> Response {
    let authenticated = match authenticate(&endpoint, &headers, &mut query) {
        Ok(user) => user,
        Err(refusal) => return refusal.into_response(),
    };
    if let Err(response) = hubs(&endpoint, &query) {
        return response.into_response();
    }
    if endpoint.sessions.len() >= endpoint.hub_options.max_connections {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is at its connection limit.",
        );
    }
    let id = super::protect::new_connection_id();
    let user = crate::transport::identify(authenticated, &query, &id);
    let token = endpoint.protector.connection_token(&id, &user);
    json(negotiate_body(
        &endpoint.options,
        &token,
        &id,
        query.get("clientProtocol").map(String::as_str),
    ))
}

/// `GET {path}/ping`.
pub(crate) async fn ping(
    State(endpoint): State<Arc<Endpoint>>,
    headers: HeaderMap,
    Query(mut query): Query<Params>,
) -> Response {
    if let Err(response) = authenticate(&endpoint, &headers, &mut query) {
        return response.into_response();
    }
    json(PING_RESPONSE)
}

/// `{path}/connect`: the transport's first request.
pub(crate) async fn connect(
    State(endpoint): State<Arc<Endpoint>>,
    Query(query): Query<Params>,
    request: Request,
) -> Response {
    open_transport(endpoint, query, request, false).await
}

/// `{path}/reconnect`: a transport back after a drop, with the client's cursor.
pub(crate) async fn reconnect(
    State(endpoint): State<Arc<Endpoint>>,
    Query(query): Query<Params>,
    request: Request,
) -> Response {
    open_transport(endpoint, query, request, true).await
}

/// `POST {path}/poll`: long polling's next request.
pub(crate) async fn poll(
    State(endpoint): State<Arc<Endpoint>>,
    Query(query): Query<Params>,
    request: Request,
) -> Response {
    open_transport(endpoint, query, request, true).await
}

/// The form fields of a body (`messageId`, `groupsToken`, `data`), or a clear 400.
async fn form(endpoint: &Endpoint, body: Body) -> Result<Params, Refusal> {
    let limit = endpoint
        .hub_options
        .max_message_size
        .saturating_mul(4)
        .max(64 * 1024);
    let bytes: Bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "The request body is too large.",
        )
    })?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| refuse(StatusCode::BAD_REQUEST, "The form body is not UTF-8."))?;
    let fields = hubbub_protocol::classic::form::parse_form(text)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok(fields.into_iter().collect())
}

async fn open_transport(
    endpoint: Arc<Endpoint>,
    mut query: Params,
    request: Request,
    reconnecting: bool,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let checked = match check(&endpoint, &parts.headers, &mut query) {
        Ok(checked) => checked,
        Err(refusal) => return refusal.into_response(),
    };
    // Long polling posts its cursor and groups token in the body; the others use the query.
    let mut fields = query.clone();
    if checked.transport == Transport::LongPolling {
        match form(&endpoint, body).await {
            Ok(body) => fields.extend(body),
            Err(refusal) => return refusal.into_response(),
        }
    }
    let cursor = match fields.get("messageId").filter(|m| !m.is_empty()) {
        None => None,
        Some(text_cursor) => match read_cursor(text_cursor) {
            Some(c) => Some(c),
            None => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "Protocol error: messageId is not a cursor this hub issued.",
                );
            }
        },
    };
    let session = match live_session(&endpoint, &checked.id) {
        Some(session) => {
            session.set_transport(checked.transport);
            session
        }
        None if endpoint.was_stopped(&checked.id) => {
            // Stopped by its client: a poll or reconnect still on its way must not open it
            // again (§8a: a poll after abort returns at once with an empty body).
            return match checked.transport {
                Transport::LongPolling => json(""),
                _ => text(
                    StatusCode::BAD_REQUEST,
                    "The connection was stopped by its client: negotiate a new one.",
                ),
            };
        }
        None => {
            if endpoint.sessions.len() >= endpoint.hub_options.max_connections {
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The server is at its connection limit.",
                );
            }
            // Back after this node forgot the connection (the disconnect timeout passed, or
            // another node served it): it starts again under the same id, in the groups its
            // groups token names.
            let groups = if reconnecting {
                fields
                    .get("groupsToken")
                    .and_then(|t| endpoint.protector.open_groups_token(&checked.id, t))
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            session::open(
                &endpoint,
                checked.id,
                checked.user,
                query,
                checked.transport,
                checked.hubs,
                groups,
            )
        }
    };
    let cursor = cursor.map(|c| session.position(c));
    match checked.transport {
        Transport::WebSockets => {
            let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &endpoint).await {
                Ok(upgrade) => upgrade,
                Err(_) => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "The webSockets transport needs a WebSocket upgrade request.",
                    );
                }
            };
            let limit = endpoint
                .hub_options
                .max_message_size
                .saturating_mul(4)
                .max(1 << 20);
            let tasks = endpoint.tasks.clone();
            upgrade
                .read_buffer_size(4096)
                .write_buffer_size(0)
                .max_message_size(limit)
                .max_frame_size(limit)
                .on_upgrade(move |socket| {
                    tasks.track_future(websocket(
                        endpoint,
                        session,
                        socket,
                        reconnecting.then_some(cursor).flatten(),
                    ))
                })
        }
        Transport::ServerSentEvents => event_stream(
            &endpoint,
            session,
            reconnecting.then_some(cursor).flatten(),
            reconnecting,
        ),
        Transport::LongPolling if !reconnecting => {
            // The connect request of long polling answers at once with the init message.
            let (init, _) = session.init_message();
            json(init)
        }
        Transport::LongPolling => long_poll(&endpoint, session, cursor).await,
    }
}

/// Serves one WebSocket of a connection until it closes, the connection ends, or a newer
/// transport request takes over.
async fn websocket(
    endpoint: Arc<Endpoint>,
    session: Arc<Session>,
    socket: WebSocket,
    resume_from: Option<u64>,
) {
    let (_attached, generation) = session.attach();
    let stall = endpoint.hub_options.write_stall_timeout;
    let (mut sink, mut stream) = socket.split();
    let mut cursor = match resume_from {
        Some(cursor) => cursor,
        None => {
            let (init, cursor) = session.init_message();
            if !send_or_end(&session, generation, &mut sink, stall, init).await {
                return;
            }
            cursor
        }
    };
    // Hub results come back from the calls' tasks through here, bounded in bytes as the
    // outbound queue of a Core connection is (results waiting for a client that does not read
    // end the connection as too slow).
    let (results_tx, mut results_rx) = mpsc::channel::<Vec<u8>>(64);
    let results = Results {
        tx: results_tx,
        queued: Arc::default(),
        max: endpoint.hub_options.send_queue_bytes,
    };
    // Over the rate limit: nothing more is read until the held call's turn, so the client's
    // sends wait in its socket (slowed, not queued here; as on Core).
    let mut paused: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    let mut keep_alive = endpoint
        .options
        .keep_alive
        .map(|every| tokio::time::interval_at(Instant::now() + every, every));
    // The waits are made once, not per message (each costs locks to make and to drop). A
    // newer transport request taking over wakes `next_message`.
    let ended = session.ended.cancelled();
    let shutdown = endpoint.shutdown.cancelled();
    tokio::pin!(ended, shutdown);
    // Everything but new messages is polled only after it woke the task (see `Gate`).
    let gate = super::gate::Gate::new();
    let close = loop {
        while let Some((envelope, next)) =
            session.envelope_after(cursor, ENVELOPE_BYTES, &endpoint.protector)
        {
            if !send_or_end(&session, generation, &mut sink, stall, envelope).await {
                return;
            }
            cursor = next;
        }
        if session.is_superseded(generation) {
            break None;
        }
        let mut new_message = session.next_message(generation, cursor);
        let woke = std::future::poll_fn(|cx| {
            let rare = gate.poll(cx, |cx| {
                if ended.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Woke::Ended);
                }
                if shutdown.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Woke::Shutdown);
                }
                if let Poll::Ready(Some(result)) = results_rx.poll_recv(cx) {
                    return Poll::Ready(Woke::Result(result));
                }
                // Before the socket: a client whose requests are always ready (a flood) still
                // gets its keep-alives.
                if let Some(keep_alive) = keep_alive.as_mut()
                    && keep_alive.poll_tick(cx).is_ready()
                {
                    return Poll::Ready(Woke::KeepAlive);
                }
                match paused.as_mut() {
                    Some(sleep) => {
                        if sleep.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Woke::Unpaused);
                        }
                    }
                    None => {
                        if let Poll::Ready(message) = stream.poll_next_unpin(cx) {
                            return Poll::Ready(Woke::Message(message));
                        }
                    }
                }
                Poll::Pending
            });
            if rare.is_ready() {
                return rare;
            }
            std::pin::Pin::new(&mut new_message)
                .poll(cx)
                .map(|()| Woke::NewMessage)
        })
        .await;
        match woke {
            Woke::Ended => break Some((1000, "the connection has ended")),
            Woke::Shutdown => break Some((1001, "the server is shutting down")),
            Woke::NewMessage => {}
            Woke::Result(result) => {
                results
                    .queued
                    .fetch_sub(result.len(), std::sync::atomic::Ordering::AcqRel);
                if !send_or_end(&session, generation, &mut sink, stall, result).await {
                    return;
                }
            }
            Woke::Unpaused => paused = None,
            Woke::Message(message) => {
                // The requests the socket has read already are handled in one go, up to
                // `BATCH_REQUESTS`, and their recipients woken once at the end (`DeferWakes`;
                // no await in the block): one request per wake of every recipient made each
                // delivery its own write (issue 19). The socket is polled with the gate's
                // waker, as the loop polls it, without taking the note of what else woke the
                // task (a hub result, the end): the loop polls those next.
                let (end, full) = {
                    let _batch = crate::queue::DeferWakes::begin();
                    let mut message = message;
                    let mut handled = 0;
                    loop {
                        if let Some(end) =
                            on_request(&endpoint, &session, message, &mut paused, &results)
                        {
                            break (Some(end), false);
                        }
                        handled += 1;
                        if paused.is_some() {
                            break (None, false);
                        }
                        if handled == BATCH_REQUESTS {
                            break (None, true);
                        }
                        match gate.poll_now(|cx| stream.poll_next_unpin(cx)) {
                            Poll::Ready(next) => message = next,
                            Poll::Pending => break (None, false),
                        }
                    }
                };
                if let Some(end) = end {
                    break end;
                }
                if full {
                    // The pumps it woke get their turn (on this worker too) before the next
                    // batch, so no recipient's queue takes more than a batch meanwhile.
                    tokio::task::yield_now().await;
                }
            }
            Woke::KeepAlive => {
                if !send_or_end(
                    &session,
                    generation,
                    &mut sink,
                    stall,
                    hubbub_protocol::classic::KEEP_ALIVE.to_vec(),
                )
                .await
                {
                    return;
                }
            }
        }
    };
    // At most 5 s for a client that reads nothing.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        if let Some((code, reason)) = close {
            let _ = sink
                .send(Message::Close(Some(CloseFrame {
                    code,
                    reason: Utf8Bytes::from_static(reason),
                })))
                .await;
        }
        let _ = sink.close().await;
    })
    .await;
}

/// The most hub requests a classic WebSocket handles in one batch.
const BATCH_REQUESTS: usize = 64;

/// Where the hub results of a classic WebSocket's calls go, and their bytes' bound.
struct Results {
    tx: mpsc::Sender<Vec<u8>>,
    /// Bytes of results waiting to be sent.
    queued: Arc<std::sync::atomic::AtomicUsize>,
    /// `HubOptions::send_queue_bytes`: past it, the client is too slow.
    max: usize,
}

/// Handles what a classic WebSocket read: a hub request is begun (in arrival order) and run
/// (inline as far as it goes, see `run_inline_first`); over the rate limit, `paused` says until
/// when nothing more is read. `Some` ends the socket, with the Close to send, if any.
fn on_request(
    endpoint: &Arc<Endpoint>,
    session: &Arc<Session>,
    message: Option<Result<Message, axum::Error>>,
    paused: &mut Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    results: &Results,
) -> Option<Option<(u16, &'static str)>> {
    match message {
        Some(Ok(Message::Text(data))) => match session::begin(endpoint, session, data.as_bytes()) {
            Ok(call) => {
                *paused = call
                    .not_before()
                    .map(|at| Box::pin(tokio::time::sleep_until(at)));
                let (endpoint, session, tx) =
                    (endpoint.clone(), session.clone(), results.tx.clone());
                let (queued, max_results_bytes) = (results.queued.clone(), results.max);
                let tasks = endpoint.tasks.clone();
                crate::state::run_inline_first(&tasks, async move {
                    if let Some(result) = call.run(&endpoint, &session).await {
                        let size = result.len();
                        let before = queued.fetch_add(size, std::sync::atomic::Ordering::AcqRel);
                        if before > 0 && before + size > max_results_bytes {
                            queued.fetch_sub(size, std::sync::atomic::Ordering::AcqRel);
                            session.close_too_slow();
                            return;
                        }
                        if tx.send(result).await.is_err() {
                            queued.fetch_sub(size, std::sync::atomic::Ordering::AcqRel);
                        }
                    }
                });
                None
            }
            Err(DispatchError::Malformed(reason)) => {
                tracing::debug!(connection = %session.id, %reason, "malformed hub request");
                Some(Some((1007, "malformed hub request")))
            }
            Err(DispatchError::TooMany(_)) => Some(Some((1008, "too many messages per second"))),
        },
        Some(Ok(Message::Binary(_))) => Some(Some((
            1003,
            "binary messages are not part of the classic protocol",
        ))),
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => None,
        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => Some(None),
    }
}

/// What woke a classic WebSocket's loop.
enum Woke {
    Ended,
    Shutdown,
    NewMessage,
    /// A hub result to send.
    Result(Vec<u8>),
    /// The rate limit's pause is over.
    Unpaused,
    /// What the socket read.
    Message(Option<Result<Message, axum::Error>>),
    KeepAlive,
}

/// Sends `payload` as a text message, given up when the connection ends meanwhile. The client is too slow, and the
/// connection ends as such (reason label `queue_full`), when it takes nothing of the write for
/// the socket's write stall limit (`TcpLimits::write_stall_timeout`, see
/// [`crate::listener::is_write_stall`]) or has not taken all of it within `stall`
/// (`HubOptions::write_stall_timeout`, 30 s, plus a second per 16 KiB): while it waits, the
/// socket's requests are not read, and a client that reads nothing would otherwise hold the
/// socket, and what is being written, for ever. Unless a newer transport request of the client
/// (`generation` is this socket's) took over meanwhile: the client is back, on that one.
async fn send_or_end(
    session: &Session,
    generation: u64,
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    stall: std::time::Duration,
    payload: Vec<u8>,
) -> bool {
    let Ok(text) = Utf8Bytes::try_from(payload) else {
        return false;
    };
    let limit = crate::transport::ws::write_stall_limit(stall, text.len());
    let mut send = sink.send(Message::Text(text));
    // Most writes complete at once (the socket has room): no timer for those, and the wait
    // for the others is boxed, so that this future stays small (it is made, and moved, once
    // per envelope).
    let first =
        std::future::poll_fn(|cx| Poll::Ready(std::pin::Pin::new(&mut send).poll(cx))).await;
    let sent = match first {
        Poll::Ready(sent) => sent,
        Poll::Pending => match Box::pin(write_stalled(session, generation, send, limit)).await {
            Some(sent) => sent,
            None => return false,
        },
    };
    match sent {
        Ok(()) => true,
        Err(error) => {
            if crate::listener::is_write_stall(&error) && !session.is_superseded(generation) {
                session.close_too_slow();
            }
            false
        }
    }
}

/// The rest of a write that did not complete at once: its result, or `None` when the
/// connection ended meanwhile or the write took longer than `limit` (then the connection ends
/// as too slow, unless a newer transport request took over).
async fn write_stalled(
    session: &Session,
    generation: u64,
    send: futures_util::sink::Send<
        '_,
        futures_util::stream::SplitSink<WebSocket, Message>,
        Message,
    >,
    limit: std::time::Duration,
) -> Option<Result<(), axum::Error>> {
    tokio::select! {
        sent = send => Some(sent),
        () = session.ended.cancelled() => None,
        () = tokio::time::sleep(limit) => {
            if !session.is_superseded(generation) {
                session.close_too_slow();
            }
            None
        }
    }
}

fn sse_event(payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + 8);
    hubbub_protocol::classic::encode_sse_event(payload, &mut out);
    Bytes::from(out)
}

/// Serves a connection's messages as Server-Sent Events: `data: initialized` first, then the
/// init message (on connect) or what the client missed (on reconnect), envelopes as they come
/// and `data: {}` keep-alives.
fn event_stream(
    endpoint: &Arc<Endpoint>,
    session: Arc<Session>,
    resume_from: Option<u64>,
    reconnecting: bool,
) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let task_endpoint = endpoint.clone();
    endpoint.tasks.spawn(async move {
        let endpoint = task_endpoint;
        let (_attached, generation) = session.attach();
        let send = |bytes| send_event(&endpoint, &session, generation, &tx, bytes);
        if !send(Bytes::from_static(hubbub_protocol::classic::SSE_INITIALIZED)).await {
            return;
        }
        let mut cursor = match resume_from {
            Some(cursor) if reconnecting => cursor,
            _ if reconnecting => session.cursor(),
            _ => {
                let (init, cursor) = session.init_message();
                if !send(sse_event(&init)).await {
                    return;
                }
                cursor
            }
        };
        let mut keep_alive = endpoint.options.keep_alive.map(|every| {
            tokio::time::interval_at(Instant::now() + every, every)
        });
        loop {
            while let Some((envelope, next)) =
                session.envelope_after(cursor, ENVELOPE_BYTES, &endpoint.protector)
            {
                if !send(sse_event(&envelope)).await {
                    return;
                }
                cursor = next;
            }
            let superseded = session.superseded.notified();
            tokio::pin!(superseded);
            superseded.as_mut().enable();
            if session.is_superseded(generation) {
                return;
            }
            tokio::select! {
                biased;
                () = session.ended.cancelled() => return,
                () = endpoint.shutdown.cancelled() => return,
                () = &mut superseded => {}
                () = tx.closed() => return,
                () = session.next_message(generation, cursor) => {}
                _ = async { keep_alive.as_mut().expect("checked").tick().await }, if keep_alive.is_some() => {
                    if !send(Bytes::from_static(hubbub_protocol::classic::SSE_KEEP_ALIVE)).await {
                        return;
                    }
                }
            }
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, std::convert::Infallible>(bytes), rx))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// Hands one event to the response body; `false` when the stream is over: the client went
/// away, the connection ended, the server is shutting down, a newer transport request took over
/// (`generation` superseded), or the client has not taken the event within the write stall
/// limit (`HubOptions::write_stall_timeout`, 30 s, plus a second per 16 KiB), which ends the
/// connection as too slow (reason label `queue_full`), as [`send_or_end`] does on a WebSocket.
/// Without the limit, a client that reads nothing of its event stream held the transport (and
/// so its connection, which never went idle) for ever.
async fn send_event(
    endpoint: &Endpoint,
    session: &Session,
    generation: u64,
    tx: &mpsc::Sender<Bytes>,
    bytes: Bytes,
) -> bool {
    // The common case first, with nothing to wait on: the body has room.
    let bytes = match tx.try_send(bytes) {
        Ok(()) => return true,
        Err(mpsc::error::TrySendError::Closed(_)) => return false,
        Err(mpsc::error::TrySendError::Full(bytes)) => bytes,
    };
    let limit = crate::transport::ws::write_stall_limit(
        endpoint.hub_options.write_stall_timeout,
        bytes.len(),
    );
    let deadline = Instant::now() + limit;
    let send = tx.send(bytes);
    tokio::pin!(send);
    loop {
        let superseded = session.superseded.notified();
        tokio::pin!(superseded);
        superseded.as_mut().enable();
        if session.is_superseded(generation) {
            return false;
        }
        tokio::select! {
            biased;
            sent = &mut send => return sent.is_ok(),
            () = session.ended.cancelled() => return false,
            () = endpoint.shutdown.cancelled() => return false,
            () = &mut superseded => {}
            () = tokio::time::sleep_until(deadline) => {
                tracing::debug!(connection = %session.id, "the event stream's client took nothing within the write stall limit");
                session.close_too_slow();
                return false;
            }
        }
    }
}

/// One long poll: what came after `cursor` at once, else the first messages to come, else
/// (after `ConnectionTimeout`) an envelope with none. A newer poll answers an older one with
/// none; a stopped connection gets an empty body; a server shutting down asks the client to
/// reconnect (`T`).
async fn long_poll(endpoint: &Endpoint, session: Arc<Session>, cursor: Option<u64>) -> Response {
    let (_attached, generation) = session.attach();
    let cursor = cursor.unwrap_or_else(|| session.cursor());
    let deadline = Instant::now() + endpoint.options.connection_timeout;
    loop {
        if let Some((envelope, _)) =
            session.envelope_after(cursor, ENVELOPE_BYTES, &endpoint.protector)
        {
            return json(envelope);
        }
        let superseded = session.superseded.notified();
        tokio::pin!(superseded);
        superseded.as_mut().enable();
        if session.is_superseded(generation) {
            return json(session.empty_envelope(cursor));
        }
        tokio::select! {
            biased;
            () = session.ended.cancelled() => return json(""),
            () = endpoint.shutdown.cancelled() => {
                return json(session.reconnect_envelope(cursor));
            }
            () = &mut superseded => return json(session.empty_envelope(cursor)),
            () = session.next_message(generation, cursor) => {}
            () = tokio::time::sleep_until(deadline) => return json(session.empty_envelope(cursor)),
        }
    }
}

/// The session a request names, if it is alive.
fn live_session(endpoint: &Endpoint, id: &str) -> Option<Arc<Session>> {
    endpoint
        .sessions
        .get(id)
        .map(|s| s.clone())
        .filter(|s| !s.ended.is_cancelled())
}

/// `GET {path}/start`: answered once the hubs' connected callbacks have run.
pub(crate) async fn start(
    State(endpoint): State<Arc<Endpoint>>,
    headers: HeaderMap,
    Query(mut query): Query<Params>,
) -> Response {
    let checked = match check(&endpoint, &headers, &mut query) {
        Ok(checked) => checked,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(session) = live_session(&endpoint, &checked.id) else {
        return text(
            StatusCode::BAD_REQUEST,
            "The connection is not open on this server: connect first.",
        );
    };
    let wait = endpoint.options.transport_connect_timeout * 2;
    if tokio::time::timeout(wait, session.started.cancelled())
        .await
        .is_err()
    {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "The hubs did not finish connecting in time.",
        );
    }
    json(START_RESPONSE)
}

/// `POST {path}/send`: one hub request in `data=`, answered with its result.
pub(crate) async fn send(
    State(endpoint): State<Arc<Endpoint>>,
    Query(mut query): Query<Params>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let checked = match check(&endpoint, &parts.headers, &mut query) {
        Ok(checked) => checked,
        Err(refusal) => return refusal.into_response(),
    };
    let fields = match form(&endpoint, body).await {
        Ok(fields) => fields,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(data) = fields.get("data") else {
        return text(
            StatusCode::BAD_REQUEST,
            "Protocol error: the send request has no data field.",
        );
    };
    let Some(session) = live_session(&endpoint, &checked.id) else {
        return text(
            StatusCode::BAD_REQUEST,
            "The connection is not open on this server: reconnect first.",
        );
    };
    let call = match session::begin(&endpoint, &session, data.as_bytes()) {
        Ok(call) => call,
        Err(DispatchError::Malformed(reason)) => return text(StatusCode::BAD_REQUEST, reason),
        Err(DispatchError::TooMany(limit)) => {
            return text(
                StatusCode::TOO_MANY_REQUESTS,
                format!("More than {limit} messages per second: slow down."),
            );
        }
    };
    match call.run(&endpoint, &session).await {
        Some(result) => json(result),
        None => json(""),
    }
}

/// `POST {path}/abort`: the client stops; the hubs' disconnected callbacks run now.
pub(crate) async fn abort(
    State(endpoint): State<Arc<Endpoint>>,
    headers: HeaderMap,
    Query(mut query): Query<Params>,
) -> Response {
    let checked = match check(&endpoint, &headers, &mut query) {
        Ok(checked) => checked,
        Err(refusal) => return refusal.into_response(),
    };
    if let Some(session) = live_session(&endpoint, &checked.id) {
        // Noted first: a poll racing this abort must find the connection stopped, not gone.
        endpoint.note_stopped(&checked.id);
        session.stop(true);
    }
    StatusCode::OK.into_response()
}
