//! WebSockets: JSON in text frames, MessagePack in binary frames.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::WebSocketUpgrade;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use axum::response::Response;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hubbub_protocol::Protocol;

use super::{BATCH_BYTES, HttpConnection, write_outbound};
use crate::connection::Inbound;
use crate::frame::Outbound;
use crate::state::HubState;

/// Finishes the upgrade. Buffers are sized for chat traffic: a 4 KiB read buffer and no write
/// buffer floor keep an idle connection small. The WebSocket message limit is looser than the
/// hub message limit, so an oversized hub message gets a Close that says why instead of a
/// dropped socket.
pub(crate) fn upgrade(
    state: &Arc<HubState>,
    upgrade: WebSocketUpgrade,
    http: Arc<HttpConnection>,
) -> Response {
    let limit = (state.options.max_message_size * 4).max(1 << 20);
    upgrade
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| run(socket, http))
}

async fn run(socket: WebSocket, http: Arc<HttpConnection>) {
    let (sink, stream) = socket.split();
    let reading = read(stream, &http);
    let writing = write(sink, &http);
    tokio::pin!(reading, writing);
    tokio::select! {
        () = &mut reading => {
            let _ = http.inbound.send(Inbound::Closed).await;
            let _ = tokio::time::timeout(Duration::from_secs(5), writing).await;
        }
        () = &mut writing => {
            let _ = tokio::time::timeout(Duration::from_secs(2), reading).await;
            let _ = http.inbound.try_send(Inbound::Closed);
        }
    }
}

async fn read(mut stream: futures_util::stream::SplitStream<WebSocket>, http: &HttpConnection) {
    while let Some(message) = stream.next().await {
        let data = match message {
            Ok(Message::Text(text)) => Bytes::from(text),
            Ok(Message::Binary(bytes)) => bytes,
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Close(_)) => return,
            Err(error) => {
                tracing::debug!(connection = %http.id, %error, "WebSocket read failed");
                return;
            }
        };
        if http.inbound.send(Inbound::Data(data)).await.is_err() {
            return;
        }
    }
}

async fn write(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    http: &HttpConnection,
) {
    let mut outbound = http.outbound.lock().await;
    let mut open = true;
    while open {
        let first = tokio::select! {
            out = outbound.recv() => out,
            () = http.ended.cancelled() => outbound.try_recv().ok(),
        };
        let Some(first) = first else { break };
        // The handshake answer is JSON text whatever the protocol.
        if let Outbound::Raw(bytes) = &first {
            let Ok(text) = Utf8Bytes::try_from(bytes.clone()) else {
                break;
            };
            if sink.send(Message::Text(text)).await.is_err() {
                return;
            }
            continue;
        }
        let mut batch = Vec::new();
        open = write_outbound(first, http.protocol.get().copied(), &mut batch);
        while open && batch.len() < BATCH_BYTES {
            match outbound.try_recv() {
                Ok(Outbound::Raw(_)) => {}
                Ok(out) => open = write_outbound(out, http.protocol.get().copied(), &mut batch),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let message = match http.protocol.get() {
                Some(Protocol::MessagePack) => Message::Binary(batch.into()),
                _ => match Utf8Bytes::try_from(batch) {
                    Ok(text) => Message::Text(text),
                    Err(_) => break,
                },
            };
            if sink.send(message).await.is_err() {
                return;
            }
        }
    }
    let _ = sink.send(Message::Close(None)).await;
    let _ = sink.close().await;
}
