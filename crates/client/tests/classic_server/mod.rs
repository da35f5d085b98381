//! A small classic ASP.NET SignalR 2.x server for the client's tests, speaking the bytes of
//! `shared/reference/signalr-protocol.md` §8a: negotiate, connect (WebSockets, SSE, long
//! polling), start, send, poll, reconnect with the cursor, abort; a `ChatHub` with `Send`
//! (broadcast as `broadcastMessage`), `Echo`, `Fail` (a HubException with data), `Progress`
//! (WebSockets) and `Rename` (caller state). Everything it holds is in memory and bounded by
//! the tests' own counts. Listens on 127.0.0.1 only.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hubbub_protocol::Arg;
use hubbub_protocol::classic::form::{self, PollBody};
use hubbub_protocol::classic::{
    self, ClientInvocation, Envelope, HubRequest, HubResult, NegotiateResponse,
};
use tokio::sync::{mpsc, watch};

/// How the server behaves; set before or during a test.
#[derive(Debug)]
pub(crate) struct Settings {
    /// Advertised KeepAliveTimeout in seconds (`None`: keep-alive off).
    pub(crate) keep_alive_timeout: Option<f64>,
    /// How often keep-alives go out on WebSockets and SSE.
    pub(crate) keep_alive_every: Duration,
    pub(crate) try_web_sockets: bool,
    /// A bearer token every request must carry.
    pub(crate) require_token: Option<String>,
    /// `start` never answers.
    pub(crate) start_hangs: bool,
    /// How long a poll is held when there is nothing to send.
    pub(crate) poll_hold: Duration,
    /// `ping` answers 401 (the sign-in expired).
    pub(crate) refuse_pings: bool,
    /// Advertised DisconnectTimeout in seconds.
    pub(crate) disconnect_timeout: f64,
    /// `reconnect` answers 503 (the server cannot take the connection back).
    pub(crate) refuse_reconnects: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            keep_alive_timeout: Some(20.0),
            keep_alive_every: Duration::from_millis(500),
            try_web_sockets: true,
            require_token: None,
            start_hangs: false,
            poll_hold: Duration::from_secs(5),
            refuse_pings: false,
            disconnect_timeout: 30.0,
            refuse_reconnects: false,
        }
    }
}

/// One connection: every item ever sent to it (the cursor `d-N` is the count delivered).
struct Conn {
    id: String,
    items: Mutex<Vec<String>>,
    len: watch::Sender<usize>,
    /// Bumped to cut the connection's live transports.
    cut: watch::Sender<u64>,
}

impl Conn {
    fn push(&self, item: String) {
        let mut items = self.items.lock().unwrap();
        items.push(item);
        let n = items.len();
        drop(items);
        self.len.send_replace(n);
    }

    /// The envelope of the items after `from`, and the new position.
    fn envelope_from(&self, from: usize, initialized: bool) -> (Vec<u8>, usize) {
        let items = self.items.lock().unwrap();
        let from = from.min(items.len());
        let env = Envelope {
            cursor: Some(format!("d-{}", items.len())),
            initialized,
            ..Envelope::default()
        };
        let mut out = Vec::new();
        classic::write_envelope(&env, items[from..].iter().map(String::as_bytes), &mut out);
        (out, items.len())
    }
}

/// What the tests look at.
#[derive(Debug, Default, Clone)]
pub(crate) struct Seen {
    pub(crate) negotiates: usize,
    pub(crate) core_negotiates: usize,
    pub(crate) connects: Vec<String>,
    pub(crate) reconnects: Vec<(String, Option<String>)>,
    pub(crate) starts: usize,
    pub(crate) aborts: Vec<String>,
    pub(crate) polls: usize,
    pub(crate) refused_reconnects: usize,
    /// `ping` requests, with their query (a 2.x client sends no connection token there).
    pub(crate) pings: Vec<HashMap<String, String>>,
}

pub(crate) struct ClassicServer {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) settings: Mutex<Settings>,
    pub(crate) keep_alives: AtomicBool,
    conns: Mutex<HashMap<String, Arc<Conn>>>,
    seen: Mutex<Seen>,
    next: Mutex<u64>,
    /// Message ids (`hubbub-msg-id` in the caller state) already broadcast: a repeat (a send
    /// retried after its answer was lost in a cut) is answered but not broadcast again, as
    /// Hubbub's hub does.
    message_ids: Mutex<std::collections::HashSet<String>>,
}

impl ClassicServer {
    pub(crate) async fn start(settings: Settings) -> Arc<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Arc::new(Self {
            addr: listener.local_addr().unwrap(),
            settings: Mutex::new(settings),
            keep_alives: AtomicBool::new(true),
            conns: Mutex::default(),
            seen: Mutex::default(),
            next: Mutex::new(0),
            message_ids: Mutex::default(),
        });
        let s = server.clone();
        let app = axum::Router::new().fallback(move |req: Request| {
            let s = s.clone();
            async move { s.handle(req).await }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        server
    }

    /// The endpoint URL.
    pub(crate) fn url(&self) -> String {
        format!("http://{}/signalr", self.addr)
    }

    pub(crate) fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }

    /// Cuts every live transport (sockets dropped without a close frame, streams and polls
    /// ended), as a network drop would; the connections stay, with their items.
    pub(crate) fn cut_all(&self) {
        for conn in self.conns.lock().unwrap().values() {
            conn.cut.send_modify(|g| *g += 1);
        }
    }

    /// Sends `broadcastMessage(args)` from the hub to every connection.
    pub(crate) fn broadcast(&self, method: &str, args: Vec<Arg>) {
        let item = ClientInvocation {
            hub: "ChatHub".into(),
            method: method.into(),
            args,
            state: None,
            headers: [("hubbub-test".to_owned(), "from the hub".to_owned())].into(),
        }
        .to_vec()
        .unwrap();
        let item = String::from_utf8(item).unwrap();
        for conn in self.conns.lock().unwrap().values() {
            conn.push(item.clone());
        }
    }

    fn conn(&self, token: Option<&str>) -> Option<Arc<Conn>> {
        self.conns.lock().unwrap().get(token?).cloned()
    }

    async fn handle(self: Arc<Self>, req: Request) -> Response {
        let (mut parts, body) = req.into_parts();
        let query: HashMap<String, String> = form::parse_form(parts.uri.query().unwrap_or(""))
            .unwrap_or_default()
            .into_iter()
            .collect();
        let required = self.settings.lock().unwrap().require_token.clone();
        if let Some(token) = required {
            let auth = parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if auth != Some(&format!("Bearer {token}")) {
                return (StatusCode::UNAUTHORIZED, "").into_response();
            }
        }
        let path = parts.uri.path().to_owned();
        let action = path.strip_prefix("/signalr/").unwrap_or("");
        let body = axum::body::to_bytes(body, 1 << 20)
            .await
            .unwrap_or_default();
        if action == "negotiate" {
            return self.negotiate(&parts.method, &query);
        }
        if action == "ping" {
            self.seen.lock().unwrap().pings.push(query.clone());
            if self.settings.lock().unwrap().refuse_pings {
                return (StatusCode::UNAUTHORIZED, "").into_response();
            }
            return json(b"{ \"Response\": \"pong\" }".to_vec());
        }
        let Some(conn) = self.conn(query.get("connectionToken").map(String::as_str)) else {
            return (
                StatusCode::BAD_REQUEST,
                "The connection id is in the incorrect format.",
            )
                .into_response();
        };
        let transport = query
            .get("transport")
            .and_then(|t| classic::Transport::from_name(t));
        if action == "reconnect" && self.settings.lock().unwrap().refuse_reconnects {
            self.seen.lock().unwrap().refused_reconnects += 1;
            return (StatusCode::SERVICE_UNAVAILABLE, "not now").into_response();
        }
        match (action, transport) {
            ("connect" | "reconnect", Some(classic::Transport::WebSockets)) => {
                let reconnect = action == "reconnect";
                let from = self.record_connect(&conn, reconnect, query.get("messageId"));
                let Ok(ws) = WebSocketUpgrade::from_request_parts(&mut parts, &()).await else {
                    return (StatusCode::BAD_REQUEST, "not a WebSocket request").into_response();
                };
                let server = self.clone();
                ws.on_upgrade(move |socket| server.websocket(socket, conn, from, !reconnect))
            }
            ("connect" | "reconnect", Some(classic::Transport::ServerSentEvents)) => {
                let reconnect = action == "reconnect";
                let from = self.record_connect(&conn, reconnect, query.get("messageId"));
                self.sse(conn, from, !reconnect)
            }
            ("connect" | "reconnect" | "poll", Some(classic::Transport::LongPolling)) => {
                let poll = PollBody::parse(&body).unwrap_or_default();
                if action == "poll" {
                    self.seen.lock().unwrap().polls += 1;
                } else {
                    self.record_connect(&conn, action == "reconnect", poll.message_id.as_ref());
                }
                if action == "connect" {
                    let (env, _) = conn.envelope_from(usize::MAX, true);
                    return json(env);
                }
                let from = position(poll.message_id.as_ref());
                self.long_poll(conn, from).await
            }
            ("start", _) => {
                self.seen.lock().unwrap().starts += 1;
                if self.settings.lock().unwrap().start_hangs {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                json(classic::START_RESPONSE.as_bytes().to_vec())
            }
            ("send", _) => {
                let Ok(data) = form::parse_send_body(&body) else {
                    return (StatusCode::BAD_REQUEST, "no data").into_response();
                };
                let Ok(request) = HubRequest::decode(&Bytes::from(data)) else {
                    return (StatusCode::BAD_REQUEST, "bad hub request").into_response();
                };
                json(self.dispatch(&conn, request, None).to_vec().unwrap())
            }
            ("abort", _) => {
                self.seen.lock().unwrap().aborts.push(conn.id.clone());
                conn.cut.send_modify(|g| *g += 1);
                (StatusCode::OK, "").into_response()
            }
            _ => (StatusCode::NOT_FOUND, "").into_response(),
        }
    }

    fn negotiate(&self, method: &axum::http::Method, query: &HashMap<String, String>) -> Response {
        if method == axum::http::Method::POST {
            // What an ASP.NET Core client's negotiate gets from a classic server: the classic
            // answer (the client must notice).
            self.seen.lock().unwrap().core_negotiates += 1;
        } else {
            self.seen.lock().unwrap().negotiates += 1;
            let hubs = query
                .get("connectionData")
                .map(|d| form::parse_connection_data(d).unwrap_or_default())
                .unwrap_or_default();
            if let Some(unknown) = hubs.iter().find(|h| !h.eq_ignore_ascii_case("chathub")) {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("'{unknown}' Hub could not be resolved."),
                )
                    .into_response();
            }
        }
        let n = {
            let mut next = self.next.lock().unwrap();
            *next += 1;
            *next
        };
        let id = format!("00000000-0000-0000-0000-{n:012}");
        // The token holds `/`, `+` and `=`, as a real one does (§8a).
        let token = format!("AQAA/{n}+x==");
        let (len, _) = watch::channel(0);
        let (cut, _) = watch::channel(0);
        self.conns.lock().unwrap().insert(
            token.clone(),
            Arc::new(Conn {
                id: id.clone(),
                items: Mutex::default(),
                len,
                cut,
            }),
        );
        let settings = self.settings.lock().unwrap();
        let response = NegotiateResponse {
            connection_token: token,
            connection_id: id,
            keep_alive_timeout: settings.keep_alive_timeout,
            disconnect_timeout: settings.disconnect_timeout,
            try_web_sockets: settings.try_web_sockets,
            protocol_version: classic::answered_protocol_version(
                query.get("clientProtocol").map(String::as_str),
            ),
            ..NegotiateResponse::default()
        };
        json(response.to_json().into_bytes())
    }

    fn record_connect(&self, conn: &Conn, reconnect: bool, message_id: Option<&String>) -> usize {
        let mut seen = self.seen.lock().unwrap();
        if reconnect {
            seen.reconnects.push((conn.id.clone(), message_id.cloned()));
            position(message_id)
        } else {
            seen.connects.push(conn.id.clone());
            usize::MAX
        }
    }

    fn dispatch(
        &self,
        _conn: &Conn,
        request: HubRequest,
        progress: Option<&mpsc::UnboundedSender<Vec<u8>>>,
    ) -> HubResult {
        assert!(
            request.hub.eq_ignore_ascii_case("chathub"),
            "hub {}",
            request.hub
        );
        match request.method.to_ascii_lowercase().as_str() {
            "send" => {
                let id = request
                    .state
                    .as_ref()
                    .and_then(|s| s.decode::<serde_json::Value>().ok())
                    .and_then(|s| s.get("hubbub-msg-id")?.as_str().map(str::to_owned));
                let repeat = id
                    .as_ref()
                    .is_some_and(|id| !self.message_ids.lock().unwrap().insert(id.clone()));
                if !repeat {
                    self.broadcast("broadcastMessage", request.args);
                }
                HubResult::ok(request.id, None)
            }
            "echo" => HubResult::ok(request.id, request.args.into_iter().next()),
            "fail" => HubResult::failed(
                request.id,
                "nope",
                true,
                Some(Arg::from_json(&b"{\"code\":42}"[..]).unwrap()),
            ),
            "progress" => {
                let tx = progress.expect("progress over WebSockets");
                for i in 0..3 {
                    let update = HubResult::progress(
                        request.id.clone(),
                        Arg::from_json(i.to_string().into_bytes()).unwrap(),
                    );
                    let _ = tx.send(update.to_vec().unwrap());
                }
                HubResult::ok(request.id, Some("done".into()))
            }
            "rename" => {
                // Reads the caller state's `name`, answers with it and sets it to `name!`.
                let state: serde_json::Value = request
                    .state
                    .as_ref()
                    .map(|s| s.decode().unwrap())
                    .unwrap_or_default();
                let name = state["name"].as_str().unwrap_or("").to_owned();
                HubResult {
                    state: Some(
                        Arg::from_json(
                            serde_json::to_vec(&serde_json::json!({ "name": format!("{name}!") }))
                                .unwrap(),
                        )
                        .unwrap(),
                    ),
                    ..HubResult::ok(request.id, Some(name.into()))
                }
            }
            other => HubResult::failed(
                request.id,
                format!("'{other}' method could not be resolved on hub 'ChatHub'."),
                false,
                None,
            ),
        }
    }

    async fn websocket(
        self: Arc<Self>,
        socket: WebSocket,
        conn: Arc<Conn>,
        from: usize,
        init: bool,
    ) {
        let (mut sink, mut stream) = socket.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let mut pos = if init {
            let (env, pos) = conn.envelope_from(usize::MAX, true);
            let _ = tx.send(env);
            pos
        } else {
            from
        };
        let mut len = conn.len.subscribe();
        let mut cut = conn.cut.subscribe();
        let mut keep_alive = tokio::time::interval(self.settings.lock().unwrap().keep_alive_every);
        // Deliver anything buffered since `from` right away.
        len.mark_changed();
        loop {
            tokio::select! {
                Some(out) = rx.recv() => {
                    let text = String::from_utf8(out).unwrap();
                    if sink.send(Message::Text(text.into())).await.is_err() { return; }
                }
                changed = len.changed() => {
                    if changed.is_err() { return; }
                    let (env, new_pos) = conn.envelope_from(pos, false);
                    if new_pos > pos {
                        pos = new_pos;
                        let _ = tx.send(env);
                    }
                }
                _ = cut.changed() => return, // dropped: no close frame
                _ = keep_alive.tick() => {
                    if self.keep_alives.load(Ordering::SeqCst) {
                        let _ = tx.send(b"{}".to_vec());
                    }
                }
                incoming = stream.next() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        let request = HubRequest::decode(&Bytes::copy_from_slice(text.as_bytes())).unwrap();
                        let result = self.dispatch(&conn, request, Some(&tx));
                        let _ = tx.send(result.to_vec().unwrap());
                    }
                    Some(Ok(_)) => {}
                    _ => return,
                },
            }
        }
    }

    fn sse(self: Arc<Self>, conn: Arc<Conn>, from: usize, init: bool) -> Response {
        let (tx, rx) = mpsc::unbounded_channel::<Result<Vec<u8>, std::io::Error>>();
        let server = self.clone();
        tokio::spawn(async move {
            let mut out = classic::SSE_INITIALIZED.to_vec();
            let mut pos = from;
            if init {
                let (env, p) = conn.envelope_from(usize::MAX, true);
                pos = p;
                classic::encode_sse_event(&env, &mut out);
            }
            if tx.send(Ok(out)).is_err() {
                return;
            }
            let mut len = conn.len.subscribe();
            len.mark_changed();
            let mut cut = conn.cut.subscribe();
            let mut keep_alive =
                tokio::time::interval(server.settings.lock().unwrap().keep_alive_every);
            loop {
                let mut out = Vec::new();
                tokio::select! {
                    changed = len.changed() => {
                        if changed.is_err() { return; }
                        let (env, new_pos) = conn.envelope_from(pos, false);
                        if new_pos > pos {
                            pos = new_pos;
                            classic::encode_sse_event(&env, &mut out);
                        }
                    }
                    _ = cut.changed() => {
                        let _ = tx.send(Err(std::io::Error::other("cut")));
                        return;
                    }
                    _ = keep_alive.tick() => {
                        if server.keep_alives.load(Ordering::SeqCst) {
                            out.extend_from_slice(classic::SSE_KEEP_ALIVE);
                        }
                    }
                }
                if !out.is_empty() && tx.send(Ok(out)).is_err() {
                    return;
                }
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .body(Body::from_stream(stream))
            .unwrap()
    }

    async fn long_poll(&self, conn: Arc<Conn>, from: usize) -> Response {
        let hold = self.settings.lock().unwrap().poll_hold;
        let mut len = conn.len.subscribe();
        let mut cut = conn.cut.subscribe();
        let deadline = tokio::time::Instant::now() + hold;
        loop {
            if *len.borrow_and_update() > from {
                break;
            }
            tokio::select! {
                _ = len.changed() => {}
                // A dropped network, as the client sees it.
                _ = cut.changed() => return (StatusCode::SERVICE_UNAVAILABLE, "cut").into_response(),
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        let (env, _) = conn.envelope_from(from, false);
        json(env)
    }
}

fn position(message_id: Option<&String>) -> usize {
    message_id
        .and_then(|m| m.strip_prefix("d-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn json(body: Vec<u8>) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json; charset=UTF-8")
        .body(Body::from(body))
        .unwrap()
}
