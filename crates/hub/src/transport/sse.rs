//! Server-Sent Events: the server's messages as `data:` events; the client sends with POST.

use std::sync::Arc;

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hubbub_protocol::sse::{STREAM_PREAMBLE, encode_event};

use super::{BATCH_BYTES, HttpConnection, write_outbound};
use crate::connection::Inbound;

/// Tells the connection its transport is gone when the response body is dropped (the client
/// went away, or the stream ended).
struct ClosedOnDrop(Arc<HttpConnection>);

impl Drop for ClosedOnDrop {
    fn drop(&mut self) {
        let _ = self.0.inbound.try_send(Inbound::Closed);
    }
}

pub(crate) fn stream(http: Arc<HttpConnection>) -> Response {
    let guard = ClosedOnDrop(http);
    let body =
        futures_util::stream::unfold((guard, true, false), |(guard, first, done)| async move {
            if done {
                return None;
            }
            if first {
                return Some((
                    Ok::<_, std::convert::Infallible>(Bytes::from_static(STREAM_PREAMBLE)),
                    (guard, false, false),
                ));
            }
            let http = guard.0.clone();
            let mut outbound = http.outbound.lock().await;
            let first_out = tokio::select! {
                out = outbound.recv() => out,
                () = http.ended.cancelled() => outbound.try_recv().ok(),
            }?;
            let mut payload = Vec::new();
            let mut open = write_outbound(first_out, http.protocol.get().copied(), &mut payload);
            while open && payload.len() < BATCH_BYTES {
                match outbound.try_recv() {
                    Ok(out) => {
                        open = write_outbound(out, http.protocol.get().copied(), &mut payload)
                    }
                    Err(_) => break,
                }
            }
            drop(outbound);
            let mut event = Vec::with_capacity(payload.len() + 16);
            if !payload.is_empty() {
                encode_event(&payload, &mut event);
            }
            Some((Ok(Bytes::from(event)), (guard, false, !open)))
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
