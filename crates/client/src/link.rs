//! Transports behind one small interface: a [`Link`] moves whole payloads both ways.
//!
//! - WebSockets: JSON in text frames, MessagePack in binary frames.
//! - Server-Sent Events: a GET that streams `data:` events in; POSTs out (text only).
//! - Long polling: a loop of GETs in; POSTs out; DELETE to stop.
//!
//! Classic ASP.NET SignalR links (see [`open_classic`]) use the same WebSocket and SSE readers;
//! their sends go to `send` as `data=` forms, and their long polling is a loop of `poll` POSTs
//! carrying the cursor.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hubbub_protocol::classic;
use hubbub_protocol::negotiate::{TransferFormat, TransportKind};
use hubbub_protocol::sse::SseReader;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};

use crate::Error;

/// What a transport delivers.
#[derive(Debug)]
pub(crate) enum LinkEvent {
    /// Bytes from the server.
    Data(Bytes),
    /// The transport is gone, with a reason unless it closed cleanly.
    Closed(Option<String>),
}

#[derive(Debug)]
pub(crate) enum Outgoing {
    Data(Bytes),
    Close,
}

/// An open transport.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) kind: TransportKind,
    pub(crate) tx: mpsc::Sender<Outgoing>,
    pub(crate) rx: mpsc::Receiver<LinkEvent>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Link {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Link {
    /// Asks the transport to close cleanly, waiting briefly for it to finish.
    pub(crate) async fn close(mut self) {
        let _ = self.tx.try_send(Outgoing::Close);
        let tasks = std::mem::take(&mut self.tasks);
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            futures_util::future::join_all(tasks),
        )
        .await;
    }
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The hub URL with `id=` already added (http or https).
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) token: Option<String>,
    pub(crate) format: TransferFormat,
    /// How long opening the transport may take.
    pub(crate) open_timeout: Duration,
    /// For `wss://` with an extra CA (else tungstenite's own roots).
    pub(crate) tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Target {
    fn header_pairs(&self) -> Vec<(String, String)> {
        let mut headers = self.headers.clone();
        if let Some(token) = &self.token {
            headers.push(("Authorization".to_owned(), format!("Bearer {token}")));
        }
        headers.push(("X-Requested-With".to_owned(), "XMLHttpRequest".to_owned()));
        headers
    }

    fn request(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        url: &str,
    ) -> reqwest::RequestBuilder {
        self.header_pairs()
            .into_iter()
            .fold(http.request(method, url), |r, (k, v)| r.header(k, v))
    }
}

pub(crate) async fn open(
    kind: TransportKind,
    target: &Target,
    http: &reqwest::Client,
) -> Result<Link, Error> {
    match kind {
        TransportKind::WebSockets => websocket(target).await,
        TransportKind::ServerSentEvents => {
            sse(
                target,
                http,
                Post::Core {
                    delete_on_close: false,
                },
            )
            .await
        }
        TransportKind::LongPolling => long_polling(target, http).await,
    }
}

async fn websocket(target: &Target) -> Result<Link, Error> {
    let url = hubbub_protocol::negotiate::websocket_url(&target.url)?;
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| Error::Url(e.to_string()))?;
    for (k, v) in target.header_pairs() {
        let (Ok(name), Ok(value)) = (
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()),
            tungstenite::http::HeaderValue::from_str(&v),
        ) else {
            continue;
        };
        request.headers_mut().insert(name, value);
    }
    let (socket, _) = tokio::time::timeout(
        target.open_timeout,
        tokio_tungstenite::connect_async_tls_with_config(
            request,
            None,
            true,
            target.tls.clone().map(tokio_tungstenite::Connector::Rustls),
        ),
    )
    .await
    .map_err(|_| {
        Error::Transport(format!(
            "WebSockets: no answer within {:?}",
            target.open_timeout
        ))
    })?
    .map_err(|e| Error::Transport(format!("WebSockets: {e}")))?;
    let (mut sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Outgoing>(64);
    let (in_tx, in_rx) = mpsc::channel(64);
    let binary = target.format == TransferFormat::Binary;
    let reader_tx = in_tx.clone();
    let reader = tokio::spawn(async move {
        let reason = loop {
            match stream.next().await {
                Some(Ok(Message::Text(text))) => {
                    if reader_tx
                        .send(LinkEvent::Data(Bytes::from(text)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Some(Ok(Message::Binary(bytes))) => {
                    if reader_tx.send(LinkEvent::Data(bytes)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    break frame
                        .filter(|f| {
                            f.code != tungstenite::protocol::frame::coding::CloseCode::Normal
                        })
                        .map(|f| {
                            format!(
                                "WebSocket closed with status code {} ({})",
                                u16::from(f.code),
                                f.reason
                            )
                        });
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => break Some(format!("WebSocket error: {e}")),
                None => break Some("WebSocket closed without a close frame".to_owned()),
            }
        };
        let _ = reader_tx.send(LinkEvent::Closed(reason)).await;
    });
    let writer = tokio::spawn(async move {
        while let Some(out) = out_rx.recv().await {
            let message = match out {
                Outgoing::Data(bytes) if binary => Message::Binary(bytes),
                Outgoing::Data(bytes) => match tungstenite::Utf8Bytes::try_from(bytes) {
                    Ok(text) => Message::Text(text),
                    Err(_) => continue,
                },
                Outgoing::Close => {
                    let _ = sink.send(Message::Close(None)).await;
                    return;
                }
            };
            if let Err(e) = sink.send(message).await {
                // The hub may have closed on purpose, with a Close message still to be read:
                // give the reader a moment to deliver it first, so the connection reports the
                // hub's reason rather than the broken pipe.
                tokio::time::sleep(Duration::from_millis(250)).await;
                let _ = in_tx
                    .send(LinkEvent::Closed(Some(format!(
                        "WebSocket write failed: {e}"
                    ))))
                    .await;
                return;
            }
        }
    });
    Ok(Link {
        kind: TransportKind::WebSockets,
        tx: out_tx,
        rx: in_rx,
        tasks: vec![reader, writer],
    })
}

/// How an HTTP transport sends.
#[derive(Debug, Clone)]
enum Post {
    /// ASP.NET Core: the payload as the body, to the transport's URL; DELETE on close (long
    /// polling).
    Core { delete_on_close: bool },
    /// Classic: `data=<payload>` form-encoded to the `send` URL; the answer's body (a hub
    /// result) is delivered like received data. Closing sends nothing (the engine sends
    /// `abort`).
    Classic { send_url: String },
}

/// Sends in order, one POST at a time (shared by SSE and long polling).
fn poster(
    target: Target,
    http: reqwest::Client,
    in_tx: mpsc::Sender<LinkEvent>,
    post: Post,
) -> (mpsc::Sender<Outgoing>, JoinHandle<()>) {
    let (out_tx, mut out_rx) = mpsc::channel::<Outgoing>(64);
    let task = tokio::spawn(async move {
        while let Some(out) = out_rx.recv().await {
            match out {
                Outgoing::Data(bytes) => {
                    let request = match &post {
                        Post::Core { .. } => target
                            .request(&http, reqwest::Method::POST, &target.url)
                            .body(bytes),
                        Post::Classic { send_url } => target
                            .request(&http, reqwest::Method::POST, send_url)
                            .header(
                                "Content-Type",
                                "application/x-www-form-urlencoded; charset=UTF-8",
                            )
                            .body(classic::form::encode_send_body(&bytes)),
                    };
                    let sent = request.send().await;
                    let failure = match sent {
                        Ok(r) if r.status().is_success() => {
                            if matches!(post, Post::Classic { .. }) {
                                match r.bytes().await {
                                    Ok(body) if body.iter().all(u8::is_ascii_whitespace) => None,
                                    Ok(body) => {
                                        if in_tx.send(LinkEvent::Data(body)).await.is_err() {
                                            return;
                                        }
                                        None
                                    }
                                    Err(e) => Some(format!(
                                        "send failed: {}",
                                        crate::negotiate::without_url(&e)
                                    )),
                                }
                            } else {
                                None
                            }
                        }
                        Ok(r) => Some(format!("send failed with status {}", r.status())),
                        Err(e) => Some(format!(
                            "send failed: {}",
                            crate::negotiate::without_url(&e)
                        )),
                    };
                    if let Some(reason) = failure {
                        let _ = in_tx.send(LinkEvent::Closed(Some(reason))).await;
                        return;
                    }
                }
                Outgoing::Close => {
                    if matches!(
                        post,
                        Post::Core {
                            delete_on_close: true
                        }
                    ) {
                        let _ = target
                            .request(&http, reqwest::Method::DELETE, &target.url)
                            .send()
                            .await;
                    }
                    let _ = in_tx.send(LinkEvent::Closed(None)).await;
                    return;
                }
            }
        }
    });
    (out_tx, task)
}

async fn sse(target: &Target, http: &reqwest::Client, post: Post) -> Result<Link, Error> {
    if target.format == TransferFormat::Binary {
        return Err(Error::Transport(
            "Server-Sent Events carry text only".to_owned(),
        ));
    }
    let response = target
        .request(http, reqwest::Method::GET, &target.url)
        .header("Accept", "text/event-stream")
        .send();
    let response = tokio::time::timeout(target.open_timeout, response)
        .await
        .map_err(|_| {
            Error::Transport(format!(
                "ServerSentEvents: no answer within {:?}",
                target.open_timeout
            ))
        })?
        .map_err(|e| {
            Error::Transport(format!(
                "ServerSentEvents: {}",
                crate::negotiate::without_url(&e)
            ))
        })?;
    if !response.status().is_success() {
        return Err(Error::Transport(format!(
            "ServerSentEvents: status {}",
            response.status()
        )));
    }
    let (in_tx, in_rx) = mpsc::channel(64);
    let reader_tx = in_tx.clone();
    let reader = tokio::spawn(async move {
        let mut events = SseReader::new(16 << 20);
        let mut body = response.bytes_stream();
        let reason = loop {
            match body.next().await {
                Some(Ok(chunk)) => {
                    events.push(&chunk);
                    loop {
                        match events.next_event() {
                            Ok(Some(data)) => {
                                if reader_tx
                                    .send(LinkEvent::Data(Bytes::from(data)))
                                    .await
                                    .is_err()
                                {
                                    return;
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                let _ =
                                    reader_tx.send(LinkEvent::Closed(Some(e.to_string()))).await;
                                return;
                            }
                        }
                    }
                }
                Some(Err(e)) => {
                    break Some(format!(
                        "ServerSentEvents: {}",
                        crate::negotiate::without_url(&e)
                    ));
                }
                None => break None,
            }
        };
        let _ = reader_tx.send(LinkEvent::Closed(reason)).await;
    });
    let (tx, writer) = poster(target.clone(), http.clone(), in_tx, post);
    Ok(Link {
        kind: TransportKind::ServerSentEvents,
        tx,
        rx: in_rx,
        tasks: vec![reader, writer],
    })
}

async fn long_polling(target: &Target, http: &reqwest::Client) -> Result<Link, Error> {
    let poll_url = |t: &Target| {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        // A cache buster, as the official client's `_=<Date.now()>`: set as a parameter.
        hubbub_protocol::negotiate::set_query_param(&t.url, "_", &stamp.to_string())
    };
    // ASP.NET Core answers the first poll at once, but some servers (aiosignalr) hold it until
    // there is data, which comes only after the handshake: so polling starts in the background
    // and a failing first poll surfaces as the link closing during the handshake.
    let (in_tx, in_rx) = mpsc::channel(64);
    let reader_tx = in_tx.clone();
    let poll_target = target.clone();
    let poll_http = http.clone();
    let reader = tokio::spawn(async move {
        let reason = loop {
            let response = poll_target
                .request(&poll_http, reqwest::Method::GET, &poll_url(&poll_target))
                .timeout(Duration::from_secs(100))
                .send()
                .await;
            match response {
                Ok(r) if r.status() == reqwest::StatusCode::NO_CONTENT => break None,
                Ok(r) if r.status() == reqwest::StatusCode::OK => match r.bytes().await {
                    Ok(body) if body.is_empty() => {}
                    Ok(body) => {
                        if reader_tx.send(LinkEvent::Data(body)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        break Some(format!(
                            "LongPolling: {}",
                            crate::negotiate::without_url(&e)
                        ));
                    }
                },
                Ok(r) => break Some(format!("LongPolling: status {}", r.status())),
                Err(e) if e.is_timeout() => {}
                Err(e) => {
                    break Some(format!(
                        "LongPolling: {}",
                        crate::negotiate::without_url(&e)
                    ));
                }
            }
        };
        let _ = reader_tx.send(LinkEvent::Closed(reason)).await;
    });
    let (tx, writer) = poster(
        target.clone(),
        http.clone(),
        in_tx,
        Post::Core {
            delete_on_close: true,
        },
    );
    Ok(Link {
        kind: TransportKind::LongPolling,
        tx,
        rx: in_rx,
        tasks: vec![reader, writer],
    })
}

/// Where a classic connection's transport connects, and the cursor it carries.
#[derive(Debug, Clone)]
pub(crate) struct ClassicTarget {
    /// The endpoint URL (`http://host/signalr`, with the user's query), http or https.
    pub(crate) base: String,
    pub(crate) transport: classic::Transport,
    pub(crate) connection_token: String,
    pub(crate) connection_data: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) bearer: Option<String>,
    /// The last `C` and `G`, shared with the engine (which reads them for `reconnect`).
    pub(crate) cursor: std::sync::Arc<std::sync::Mutex<Cursor>>,
    /// How long opening the transport may take.
    pub(crate) open_timeout: Duration,
    /// How long a long poll may be held (the server's ConnectionTimeout plus a margin).
    pub(crate) poll_timeout: Duration,
    /// The server's LongPollDelay.
    pub(crate) long_poll_delay: Duration,
    /// For `wss://` with an extra CA.
    pub(crate) tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// A classic connection's position: the last message id and groups token received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub(crate) message_id: Option<String>,
    pub(crate) groups_token: Option<String>,
}

impl Cursor {
    /// Takes `C` and `G` from an envelope.
    pub(crate) fn update(&mut self, envelope: &classic::Envelope) {
        if let Some(c) = &envelope.cursor {
            self.message_id = Some(c.clone());
        }
        if let Some(g) = &envelope.groups_token {
            self.groups_token = Some(g.clone());
        }
    }
}

impl ClassicTarget {
    /// The endpoint's URL (`…/signalr`, with the custom query).
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// The URL of `action`; `connect`/`reconnect` of WebSockets and SSE carry the cursor in the
    /// query (long polling sends it in the body).
    pub(crate) fn url(&self, action: classic::Action) -> String {
        let cursor = self
            .cursor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let with_cursor = action == classic::Action::Reconnect
            && self.transport != classic::Transport::LongPolling;
        classic::request_url(
            &self.base,
            action,
            &classic::RequestParams {
                transport: Some(self.transport),
                connection_token: Some(&self.connection_token),
                connection_data: Some(&self.connection_data),
                message_id: cursor.message_id.as_deref().filter(|_| with_cursor),
                groups_token: cursor.groups_token.as_deref().filter(|_| with_cursor),
            },
        )
    }

    fn target(&self, url: String) -> Target {
        Target {
            url,
            headers: self.headers.clone(),
            token: self.bearer.clone(),
            format: TransferFormat::Text,
            open_timeout: self.open_timeout,
            tls: self.tls.clone(),
        }
    }

    /// A request with the connection's headers and bearer token.
    pub(crate) fn request(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        url: &str,
    ) -> reqwest::RequestBuilder {
        self.target(String::new()).request(http, method, url)
    }
}

/// Opens a classic transport: `connect` for a new connection, `reconnect` (with the cursor)
/// for a lost one.
pub(crate) async fn open_classic(
    target: &ClassicTarget,
    reconnect: bool,
    http: &reqwest::Client,
) -> Result<Link, Error> {
    let action = if reconnect {
        classic::Action::Reconnect
    } else {
        classic::Action::Connect
    };
    match target.transport {
        classic::Transport::WebSockets => websocket(&target.target(target.url(action))).await,
        classic::Transport::ServerSentEvents => {
            let send_url = target.url(classic::Action::Send);
            sse(
                &target.target(target.url(action)),
                http,
                Post::Classic { send_url },
            )
            .await
        }
        classic::Transport::LongPolling => classic_long_polling(target, action, http),
    }
}

/// Classic long polling: `connect` (or `reconnect`), then `poll` after each answer, every
/// request a POST whose form body carries the cursor (`messageId`, `groupsToken`) as the jQuery
/// client sends it. Each answer's cursor is taken before the next poll goes out, so nothing is
/// fetched twice.
fn classic_long_polling(
    target: &ClassicTarget,
    first: classic::Action,
    http: &reqwest::Client,
) -> Result<Link, Error> {
    let (in_tx, in_rx) = mpsc::channel(64);
    let reader_tx = in_tx.clone();
    let poll_target = target.clone();
    let poll_http = http.clone();
    let reader = tokio::spawn(async move {
        let mut action = first;
        let reason = loop {
            let cursor = poll_target
                .cursor
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let body = classic::PollBody {
                message_id: cursor.message_id,
                groups_token: cursor.groups_token,
            }
            .encode();
            let response = poll_target
                .request(&poll_http, reqwest::Method::POST, &poll_target.url(action))
                .header(
                    "Content-Type",
                    "application/x-www-form-urlencoded; charset=UTF-8",
                )
                .body(body)
                .timeout(poll_target.poll_timeout)
                .send()
                .await;
            let mut delay = poll_target.long_poll_delay;
            match response {
                Ok(r) if r.status() == reqwest::StatusCode::OK => match r.bytes().await {
                    Ok(body) => {
                        match classic::Incoming::decode(&body) {
                            Ok(classic::Incoming::Empty) => {}
                            Ok(incoming) => {
                                if let classic::Incoming::Envelope(envelope) = &incoming {
                                    poll_target
                                        .cursor
                                        .lock()
                                        .unwrap_or_else(|e| e.into_inner())
                                        .update(envelope);
                                    if let Some(ms) = envelope.long_poll_delay {
                                        delay = Duration::from_millis(ms);
                                    }
                                }
                                if reader_tx.send(LinkEvent::Data(body)).await.is_err() {
                                    return;
                                }
                            }
                            // The engine reports what is wrong with it.
                            Err(_) => {
                                if reader_tx.send(LinkEvent::Data(body)).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        break Some(format!(
                            "longPolling: {}",
                            crate::negotiate::without_url(&e)
                        ));
                    }
                },
                Ok(r) => break Some(classic_status("longPolling", r).await),
                Err(e) if e.is_timeout() => {}
                Err(e) => {
                    break Some(format!(
                        "longPolling: {}",
                        crate::negotiate::without_url(&e)
                    ));
                }
            }
            action = classic::Action::Poll;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        };
        let _ = reader_tx.send(LinkEvent::Closed(reason)).await;
    });
    let send_url = target.url(classic::Action::Send);
    let (tx, writer) = poster(
        target.target(String::new()),
        http.clone(),
        in_tx,
        Post::Classic { send_url },
    );
    Ok(Link {
        kind: TransportKind::LongPolling,
        tx,
        rx: in_rx,
        tasks: vec![reader, writer],
    })
}

/// A failed classic request's status and the start of its body (a classic server explains
/// refusals in the body).
pub(crate) async fn classic_status(what: &str, response: reqwest::Response) -> String {
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    let text = text.trim();
    if text.is_empty() {
        format!("{what}: status {status}")
    } else {
        format!("{what}: status {status}: {text}")
    }
}
