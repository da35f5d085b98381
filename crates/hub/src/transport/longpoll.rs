//! Long polling: each GET waits for the server's next messages; POST sends; DELETE stops.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{BATCH_BYTES, HttpConnection, write_outbound};
use crate::connection::Inbound;
use crate::state::HubState;

/// Counts a poll as open while it lives (however it ends: answered, superseded, or dropped
/// with its request), and stamps when it ended.
struct OpenPoll(Arc<HttpConnection>);

impl OpenPoll {
    fn new(http: &Arc<HttpConnection>) -> Self {
        http.polls().open.fetch_add(1, Ordering::SeqCst);
        Self(http.clone())
    }
}

impl Drop for OpenPoll {
    fn drop(&mut self) {
        let polls = self.0.polls();
        *polls.last.lock().unwrap_or_else(|e| e.into_inner()) = tokio::time::Instant::now();
        polls.open.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(crate) async fn poll(state: &HubState, http: Arc<HttpConnection>, first: bool) -> Response {
    let _open = OpenPoll::new(&http);
    let generation = http.next_poll();
    if first {
        // The first poll answers at once, so the client knows the transport works.
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/octet-stream")],
            Vec::new(),
        )
            .into_response();
    }
    let superseded = http.polls().superseded.notified();
    tokio::pin!(superseded);
    let mut outbound = tokio::select! {
        guard = http.outbound.lock() => guard,
        () = &mut superseded => return StatusCode::NO_CONTENT.into_response(),
    };
    if http.polls().generation.load(Ordering::SeqCst) != generation {
        return StatusCode::NO_CONTENT.into_response();
    }
    let first_out = tokio::select! {
        out = outbound.recv() => out,
        () = http.ended.cancelled() => outbound.try_recv().ok(),
        () = tokio::time::sleep(state.options.poll_timeout) => {
            return (StatusCode::OK, [(header::CONTENT_TYPE, "application/octet-stream")], Vec::new()).into_response();
        }
        () = &mut superseded => return StatusCode::NO_CONTENT.into_response(),
    };
    let Some(first_out) = first_out else {
        // The connection is gone.
        return StatusCode::NO_CONTENT.into_response();
    };
    let mut body = Vec::new();
    let mut open = write_outbound(first_out, http.protocol.get().copied(), &mut body);
    while open && body.len() < BATCH_BYTES {
        match outbound.try_recv() {
            Ok(out) => open = write_outbound(out, http.protocol.get().copied(), &mut body),
            Err(_) => break,
        }
    }
    if body.is_empty() && !open {
        return StatusCode::NO_CONTENT.into_response();
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/octet-stream")],
        body,
    )
        .into_response()
}

/// The client stops: the connection ends and a pending poll answers 204.
pub(crate) fn delete(_state: &HubState, http: &HttpConnection) {
    let _ = http.inbound.try_send(Inbound::Closed);
    http.polls().superseded.notify_waiters();
}
