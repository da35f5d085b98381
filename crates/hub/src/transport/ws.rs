//! WebSockets: JSON in text frames, MessagePack in binary frames.
//!
//! With stateful reconnect in force, the writer numbers every sequenced message and keeps it
//! until the client acknowledges it; when the socket drops, the connection waits (the reconnect
//! window) for the client to reopen one with the same token, then sends `Sequence` and replays
//! what was not acknowledged.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::WebSocketUpgrade;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use axum::response::Response;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hubbub_protocol::{HubMessage, Protocol, Sequence};

use super::{BATCH_BYTES, HttpConnection};
use crate::connection::Inbound;
use crate::frame::Outbound;
use crate::state::HubState;

/// Each socket's read buffer: the most one read takes from the socket, and what an idle socket
/// keeps (tungstenite allocates it up front and keeps it). Chat traffic from a client is small
/// (invocations, pings); a larger message is read whole, in reads of this size. 1 KiB instead
/// of 4 KiB saves 3 KiB per connection (issue 19: 10,000 idle connections).
const READ_BUFFER: usize = 1024;

/// Finishes the upgrade. Buffers are sized for chat traffic: a [`READ_BUFFER`] read buffer and
/// no write buffer floor keep an idle connection small. The WebSocket message limit is looser
/// than the hub message limit, so an oversized hub message gets a Close that says why instead of
/// a dropped socket.
pub(crate) fn upgrade(
    state: &Arc<HubState>,
    upgrade: WebSocketUpgrade,
    http: Arc<HttpConnection>,
    generation: u64,
) -> Response {
    let limit = (state.options.max_message_size * 4).max(1 << 20);
    // Tracked, so a graceful shutdown waits for the Close to be written.
    let tasks = state.tasks.clone();
    let stall = state.options.write_stall_timeout;
    upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| {
            // Split here, so the task's future does not keep the unsplit socket's room.
            let (sink, stream) = socket.split();
            tasks.track_future(run(sink, stream, http, generation, stall))
        })
}

fn stateful(http: &HttpConnection) -> bool {
    http.resumable().is_some()
}

/// Serves one socket of a connection. `generation` counts the sockets of the connection: 1 for
/// the first; a later one resumes a stateful connection and replaces the socket before it.
/// `stall`: `HubOptions::write_stall_timeout` (see [`write_stall_limit`]).
async fn run(
    sink: futures_util::stream::SplitSink<WebSocket, Message>,
    stream: futures_util::stream::SplitStream<WebSocket>,
    http: Arc<HttpConnection>,
    generation: u64,
    stall: Duration,
) {
    // A replaced socket hands over the writer's side when it has finished, and says `Lost`
    // before that, so the connection always hears `Lost` before this socket's `Resumed`.
    let outbound = http.outbound.lock().await;
    let resumed = generation > 1;
    if resumed && Box::pin(http.inbound.send(Inbound::Resumed)).await.is_err() {
        return;
    }
    let replaced = http.ws_replaced.notified();
    tokio::pin!(replaced);
    replaced.as_mut().enable();
    let reading = read(stream, &http);
    let writing = write(sink, &http, resumed, outbound, stall);
    tokio::pin!(reading, writing);
    // What the branches await at the end of the socket's life is boxed: it happens once, and
    // kept inline it would enlarge every socket's task for its whole life.
    tokio::select! {
        () = &mut replaced, if http.ws_generation.load(Ordering::SeqCst) != generation => {
            // The client came back on a new socket before this one was seen to drop.
            let _ = Box::pin(http.inbound.send(Inbound::Lost)).await;
        }
        clean = &mut reading => {
            if !clean && stateful(&http) && !http.ended.is_cancelled() {
                // Stop writing to the dead socket (unsent messages stay in the replay buffer)
                // and let the client come back.
                let _ = Box::pin(http.inbound.send(Inbound::Lost)).await;
                return;
            }
            let _ = Box::pin(http.inbound.send(Inbound::Closed)).await;
            let _ = Box::pin(tokio::time::timeout(Duration::from_secs(5), writing)).await;
        }
        () = http.ended.cancelled() => {
            // The connection is over: the writer has 5 s to write what is left (the Close);
            // a client that reads nothing loses its socket then instead of holding it (and
            // the message being written) for ever.
            if Box::pin(tokio::time::timeout(Duration::from_secs(5), &mut writing)).await.is_ok() {
                let _ = Box::pin(tokio::time::timeout(Duration::from_secs(2), &mut reading)).await;
            }
            let _ = http.inbound.try_send(Inbound::Closed);
        }
        ended = &mut writing => {
            if ended.is_err() && stateful(&http) && !http.ended.is_cancelled() {
                // The socket failed under the writer: as for a failed read, wait for the client.
                let _ = Box::pin(http.inbound.send(Inbound::Lost)).await;
                return;
            }
            let _ = Box::pin(tokio::time::timeout(Duration::from_secs(2), reading)).await;
            // A client that reads nothing ends as too slow, as one whose queue fills does. Sent
            // with a wait (bounded): a client that floods while reading nothing may have filled
            // the connection's inbound lane, and the end would be lost behind it.
            let end = if ended == Err(Unsent::Stalled) {
                Inbound::Stalled
            } else {
                Inbound::Closed
            };
            let _ = Box::pin(tokio::time::timeout(
                Duration::from_secs(2),
                http.inbound.send(end),
            ))
            .await;
        }
    }
}

/// Forwards what the client sends; `true` when the client closed the socket cleanly (a close
/// frame), `false` when it dropped.
async fn read(
    mut stream: futures_util::stream::SplitStream<WebSocket>,
    http: &HttpConnection,
) -> bool {
    while let Some(message) = stream.next().await {
        let data = match message {
            Ok(Message::Text(text)) => Bytes::from(text),
            Ok(Message::Binary(bytes)) => bytes,
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Close(_)) => return true,
            Err(error) => {
                tracing::debug!(connection = %http.id, %error, "WebSocket read failed");
                return false;
            }
        };
        // Once the connection has ended, keep reading (and dropping) what the client still
        // sends until it closes: a socket dropped with unread data answers with a reset, which
        // can cost the client the Close message that says why.
        if let Err((crate::queue::Refused::Full, data)) = http.inbound.try_send(Inbound::Data(data))
        {
            // The connection is behind: wait for it (boxed, as rare, out of every reader).
            let _ = Box::pin(http.inbound.send(data)).await;
        }
    }
    false
}

/// How long one write of `len` bytes may wait for the client to read before the client counts
/// as too slow (a client that reads nothing would otherwise hold its socket or event stream,
/// and what is being written, for ever): `base` (`HubOptions::write_stall_timeout`, 30 s), plus
/// a second per 16 KiB of the write (a large answer to a slow link is not cut).
pub(crate) fn write_stall_limit(base: Duration, len: usize) -> Duration {
    base + Duration::from_secs((len / 16_384) as u64)
}

/// Sends one payload in the frame type of the connection's protocol; an error when the socket
/// failed or the client did not take it within [`write_stall_limit`].
async fn send_payload(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    protocol: Option<Protocol>,
    payload: Vec<u8>,
    stall: Duration,
) -> Result<(), Unsent> {
    let limit = write_stall_limit(stall, payload.len());
    let message = match protocol {
        Some(Protocol::MessagePack) => Message::Binary(payload.into()),
        _ => match Utf8Bytes::try_from(payload) {
            Ok(text) => Message::Text(text),
            Err(_) => return Err(Unsent::Failed),
        },
    };
    send_within(sink, message, limit).await
}

/// Why a write to the client did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unsent {
    /// The socket failed (the client went away, or the connection ended under it).
    Failed,
    /// The client took nothing for the socket's write stall limit
    /// ([`crate::listener::is_write_stall`]), or not all of it within [`write_stall_limit`]:
    /// it does not read what it is sent.
    Stalled,
}

/// Sends `message`; an error when the socket failed or the client did not take it within
/// `limit`. Most writes complete at once (the socket has room): those arm no timer, and the
/// timed wait is boxed, out of every writer's future.
async fn send_within(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    message: Message,
    limit: Duration,
) -> Result<(), Unsent> {
    let mut send = std::pin::pin!(sink.send(message));
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(send.as_mut().poll(cx))).await;
    let sent = match first {
        std::task::Poll::Ready(sent) => sent,
        std::task::Poll::Pending => match Box::pin(tokio::time::timeout(limit, send)).await {
            Ok(sent) => sent,
            Err(_) => return Err(Unsent::Stalled),
        },
    };
    sent.map_err(|error| {
        if crate::listener::is_write_stall(&error) {
            Unsent::Stalled
        } else {
            Unsent::Failed
        }
    })
}

/// What one write sends: a single message goes out as its frame's own bytes (shared by every
/// recipient: no copy, no allocation, its UTF-8 checked once); several waiting are joined into
/// one WebSocket message (SignalR allows several records in one).
#[derive(Default)]
struct Batch {
    one: Option<Message>,
    text: String,
    binary: Vec<u8>,
    len: usize,
}

impl Batch {
    /// Adds a frame's bytes in `protocol`; `false` if its JSON is not text (never, for what
    /// the hub encodes).
    fn push(&mut self, frame: &crate::frame::Frame, protocol: Protocol) -> bool {
        let message = match protocol {
            Protocol::Json => match frame.json_text() {
                Some(text) => Message::Text(text.clone()),
                None => return false,
            },
            Protocol::MessagePack => match frame.bytes(protocol) {
                Some(bytes) => Message::Binary(bytes.clone()),
                None => return true,
            },
        };
        if self.len == 0 {
            self.len = message_len(&message);
            self.one = Some(message);
            return true;
        }
        if let Some(first) = self.one.take() {
            // Room for a burst at once (a joined message grows to about BATCH_BYTES), rather
            // than growing through every power of two from a few bytes on.
            let room = (self.len * 16).clamp(4096, BATCH_BYTES + self.len);
            match &first {
                Message::Text(_) => self.text.reserve(room),
                _ => self.binary.reserve(room),
            }
            self.join(first);
        }
        self.len += message_len(&message);
        self.join(message);
        true
    }

    fn join(&mut self, message: Message) {
        match message {
            Message::Text(text) => self.text.push_str(text.as_str()),
            Message::Binary(bytes) => self.binary.extend_from_slice(&bytes),
            _ => {}
        }
    }

    fn into_message(self) -> Option<Message> {
        if self.one.is_some() {
            return self.one;
        }
        if !self.text.is_empty() {
            return Some(Message::Text(self.text.into()));
        }
        (!self.binary.is_empty()).then(|| Message::Binary(self.binary.into()))
    }
}

fn message_len(message: &Message) -> usize {
    match message {
        Message::Text(text) => text.len(),
        Message::Binary(bytes) => bytes.len(),
        _ => 0,
    }
}

/// Writes what the connection sends; `Ok` when the connection ended, why not when the socket
/// failed under it.
async fn write(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    http: &HttpConnection,
    resumed: bool,
    mut outbound: tokio::sync::MutexGuard<'_, crate::queue::QueueRx>,
    stall: Duration,
) -> Result<(), Unsent> {
    let protocol = || http.protocol.get().copied();
    if resumed {
        // Tell the client where the replay starts, then replay what it has not acknowledged.
        let (from, pending): (u64, Vec<Bytes>) = {
            let Some(resumable) = http.resumable() else {
                return Err(Unsent::Failed);
            };
            let replay = resumable.replay.lock().unwrap_or_else(|e| e.into_inner());
            (replay.resend_from(), replay.pending().cloned().collect())
        };
        let Some(p) = protocol() else {
            return Err(Unsent::Failed);
        };
        let Ok(sequence) = p.encode_to_vec(&HubMessage::Sequence(Sequence { sequence_id: from }))
        else {
            return Err(Unsent::Failed);
        };
        let mut payload = sequence;
        for bytes in pending {
            payload.extend_from_slice(&bytes);
        }
        send_payload(&mut sink, Some(p), payload, stall).await?;
    }
    let mut open = true;
    while open {
        // Stateful reconnect: a full replay buffer holds further sends until the client acks.
        while let Some(resumable) = http
            .resumable()
            .filter(|r| r.replay.lock().unwrap_or_else(|e| e.into_inner()).is_full())
        {
            let acked = resumable.acked.notified();
            // Boxed: a rare wait, kept out of every connection's writer.
            let ended = Box::pin(async {
                tokio::select! {
                    () = acked => false,
                    () = http.ended.cancelled() => true,
                    () = tokio::time::sleep(Duration::from_secs(1)) => false,
                }
            })
            .await;
            if ended {
                break;
            }
        }
        // What is waiting already is taken without the wait for the end below, whose
        // registration takes its waiter list's lock (twice per message, issue 19).
        let first = match outbound.try_recv() {
            Ok(out) => Some(out),
            Err(crate::queue::TryRecvError::Disconnected) => None,
            Err(crate::queue::TryRecvError::Empty) => tokio::select! {
                out = outbound.recv() => out,
                () = http.ended.cancelled() => outbound.try_recv().ok(),
            },
        };
        let Some(first) = first else { break };
        // The handshake answer is JSON text whatever the protocol.
        if let Outbound::Raw(bytes) = &first {
            let Ok(text) = Utf8Bytes::try_from(bytes.clone()) else {
                break;
            };
            send_within(&mut sink, Message::Text(text), write_stall_limit(stall, 0)).await?;
            continue;
        }
        let mut batch = Batch::default();
        let mut next = Some(first);
        while let Some(out) = next.take() {
            match out {
                Outbound::Raw(_) => {}
                Outbound::End => {
                    open = false;
                    break;
                }
                Outbound::Message(frame) => {
                    let Some(p) = protocol() else { continue };
                    let Some(bytes) = frame.bytes(p) else {
                        continue;
                    };
                    if let Some(resumable) = http.resumable().filter(|_| frame.is_sequenced()) {
                        // Kept before it is written: a message cut off by a dropped socket is
                        // replayed, never lost.
                        let mut replay = resumable.replay.lock().unwrap_or_else(|e| e.into_inner());
                        replay.record(bytes.clone());
                        if replay.is_full() {
                            if !batch.push(&frame, p) {
                                return Err(Unsent::Failed);
                            }
                            break;
                        }
                    }
                    if !batch.push(&frame, p) {
                        return Err(Unsent::Failed);
                    }
                }
            }
            if batch.len < BATCH_BYTES {
                next = outbound.try_recv().ok();
            }
        }
        if let Some(message) = batch.into_message() {
            let limit = write_stall_limit(stall, message_len(&message));
            send_within(&mut sink, message, limit).await?;
        }
    }
    let _ = sink.send(Message::Close(None)).await;
    let _ = sink.close().await;
    Ok(())
}
