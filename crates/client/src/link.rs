//! Transports behind one small interface: a [`Link`] moves whole payloads both ways.
//!
//! - WebSockets: JSON in text frames, MessagePack in binary frames.
//! - Server-Sent Events: a GET that streams `data:` events in; POSTs out (text only).
//! - Long polling: a loop of GETs in; POSTs out; DELETE to stop.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
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
        TransportKind::ServerSentEvents => sse(target, http).await,
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
        tokio_tungstenite::connect_async_with_config(request, None, true),
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

/// Sends in order, one POST at a time (shared by SSE and long polling).
fn poster(
    target: Target,
    http: reqwest::Client,
    in_tx: mpsc::Sender<LinkEvent>,
    delete_on_close: bool,
) -> (mpsc::Sender<Outgoing>, JoinHandle<()>) {
    let (out_tx, mut out_rx) = mpsc::channel::<Outgoing>(64);
    let task = tokio::spawn(async move {
        while let Some(out) = out_rx.recv().await {
            match out {
                Outgoing::Data(bytes) => {
                    let sent = target
                        .request(&http, reqwest::Method::POST, &target.url)
                        .body(bytes)
                        .send()
                        .await;
                    let failure = match sent {
                        Ok(r) if r.status().is_success() => None,
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
                    if delete_on_close {
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

async fn sse(target: &Target, http: &reqwest::Client) -> Result<Link, Error> {
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
    let (tx, writer) = poster(target.clone(), http.clone(), in_tx, false);
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
    let (tx, writer) = poster(target.clone(), http.clone(), in_tx, true);
    Ok(Link {
        kind: TransportKind::LongPolling,
        tx,
        rx: in_rx,
        tasks: vec![reader, writer],
    })
}
