//! The classic ASP.NET SignalR 2.x family on a link: turns classic payloads into the same
//! [`HubMessage`]s the engine serves for ASP.NET Core hubs, and the engine's messages into
//! classic hub requests. The engine stays one engine; only what crosses the link differs.
//!
//! Mapping (wire: `shared/reference/signalr-protocol.md` §8, §8a):
//! - an envelope's `M` items for this hub → `Invocation`s (hub and method names compared
//!   without regard to case); `C` and `G` → the cursor; `E` → a `Close` with the error; `T` →
//!   a `Close` that allows reconnecting;
//! - a result → the `Completion` of the engine's call it answers (the classic `I` is a
//!   counter from 0 per connection, mapped to the engine's id); a progress update → a
//!   `StreamItem` when the call is a stream, else nothing (the final result follows);
//! - `Invocation`/`StreamInvocation` → a hub request `{"H","M","A","I","S"}`, the caller state
//!   and the invocation's headers in `S`; `Ping`, `Close`, `Completion` (client results),
//!   `Ack`, `Sequence`, `CancelInvocation` → nothing (classic has none of them); a
//!   client-to-server stream item → an error.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hubbub_protocol::classic::{self, ClientInvocation, HubRequest, HubResult, Incoming};
use hubbub_protocol::{
    Arg, Close, Completion, Headers, HubMessage, Invocation, Outcome, StreamItem,
};

use crate::Error;
use crate::link::{ClassicTarget, Cursor};

/// What survives a lost transport: the connection on the server (its token, cursor and
/// groups token) until the server's DisconnectTimeout forgets it.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) target: ClassicTarget,
    pub(crate) connection_id: String,
    pub(crate) hub: String,
    pub(crate) negotiated: classic::NegotiateResponse,
}

impl Session {
    /// Whether the connection may still exist on the server, `lost_for` after it was lost.
    pub(crate) fn may_resume(&self, lost_for: Duration) -> bool {
        lost_for < self.negotiated.disconnect_timeout()
    }

    /// The keep-alive timers: `(slow after, reconnect after)`, as the .NET classic client's
    /// heartbeat: ⅔ of KeepAliveTimeout and all of it; none when the server sends no
    /// keep-alives or the transport has none (long polling).
    pub(crate) fn timers(
        &self,
        slow_override: Option<Duration>,
    ) -> (Option<Duration>, Option<Duration>) {
        if !self.target.transport.supports_keep_alive() {
            return (None, None);
        }
        match self.negotiated.keep_alive_timeout() {
            None => (None, None),
            Some(timeout) => (
                Some(slow_override.unwrap_or(timeout.mul_f64(2.0 / 3.0))),
                Some(timeout),
            ),
        }
    }
}

/// What a classic call id answers.
#[derive(Debug)]
enum Call {
    Invoke(String),
    Stream(String),
    Send,
}

/// One live classic transport's translation state.
#[derive(Debug)]
pub(crate) struct Wire {
    pub(crate) session: Session,
    next_id: u64,
    calls: HashMap<String, Call>,
    decoded: VecDeque<Result<HubMessage, hubbub_protocol::Error>>,
    /// `HubException` data of failed calls, by the engine's id, until the engine replies.
    error_data: HashMap<String, Arg>,
    /// Whether the init message (`S`: 1) or SSE's `initialized` arrived.
    pub(crate) initialized: bool,
    caller_state: Arc<Mutex<serde_json::Map<String, serde_json::Value>>>,
}

impl Wire {
    pub(crate) fn new(
        session: Session,
        caller_state: Arc<Mutex<serde_json::Map<String, serde_json::Value>>>,
    ) -> Self {
        Self {
            session,
            next_id: 0,
            calls: HashMap::new(),
            decoded: VecDeque::new(),
            error_data: HashMap::new(),
            initialized: false,
            caller_state,
        }
    }

    fn cursor(&self) -> &Mutex<Cursor> {
        &self.session.target.cursor
    }

    /// Takes one received payload apart.
    pub(crate) fn push(&mut self, data: Bytes) {
        if data == classic::SSE_INITIALIZED_DATA {
            self.initialized = true;
            return;
        }
        match Incoming::decode(&data) {
            Ok(Incoming::Empty | Incoming::KeepAlive) => {}
            Ok(Incoming::Envelope(envelope)) => self.envelope(envelope),
            Ok(Incoming::Result(result)) => self.result(result),
            Err(e) => self.decoded.push_back(Err(e)),
        }
    }

    fn envelope(&mut self, envelope: classic::Envelope) {
        // Long polling's loop takes each answer's cursor itself, before its next poll goes out
        // (`link::classic_long_polling`), while up to 64 answers wait here to be decoded:
        // taking an older one's cursor again here moved the cursor back, the next poll asked
        // for those messages again, and they were delivered twice.
        if self.session.target.transport != classic::Transport::LongPolling {
            self.cursor()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .update(&envelope);
        }
        if envelope.initialized {
            self.initialized = true;
        }
        for item in &envelope.messages {
            match ClientInvocation::decode(item) {
                Ok(call) if call.hub.eq_ignore_ascii_case(&self.session.hub) => {
                    if let Some(state) = &call.state {
                        self.merge_state(state);
                    }
                    self.decoded
                        .push_back(Ok(HubMessage::Invocation(Invocation {
                            headers: call.headers,
                            invocation_id: None,
                            target: call.method,
                            arguments: call.args,
                            stream_ids: Vec::new(),
                        })));
                }
                Ok(call) => {
                    tracing::debug!(hub = %call.hub, method = %call.method, "call for another hub ignored");
                }
                // A 2.x server sends progress (and may send results) through the message
                // bus: items with a top-level `I`, which the jQuery client reads as results.
                Err(e) => match Incoming::decode(item) {
                    Ok(Incoming::Result(result)) => self.result(result),
                    _ => self.decoded.push_back(Err(e)),
                },
            }
        }
        if let Some(error) = envelope.error {
            self.decoded.push_back(Ok(HubMessage::Close(Close {
                error: Some(error),
                allow_reconnect: false,
            })));
        } else if envelope.reconnect {
            self.decoded.push_back(Ok(HubMessage::Close(Close {
                error: Some("the server asked the client to reconnect".to_owned()),
                allow_reconnect: true,
            })));
        }
    }

    fn merge_state(&self, state: &Arg) {
        match state.decode::<serde_json::Map<String, serde_json::Value>>() {
            Ok(changes) => self
                .caller_state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(changes),
            Err(e) => tracing::debug!(error = %e, "caller state from the hub is not an object"),
        }
    }

    fn result(&mut self, result: HubResult) {
        if let Some(state) = &result.state {
            self.merge_state(state);
        }
        if let Some(progress) = result.progress {
            if let Some(Call::Stream(id)) = self.calls.get(&progress.id) {
                self.decoded
                    .push_back(Ok(HubMessage::StreamItem(StreamItem {
                        headers: Headers::new(),
                        invocation_id: id.clone(),
                        item: progress.data,
                    })));
            }
            return;
        }
        let Some(call) = self.calls.remove(&result.id) else {
            tracing::debug!(id = %result.id, "result for an unknown call ignored");
            return;
        };
        let outcome = match (result.error, result.result) {
            (Some(error), _) => Outcome::Error(error),
            (None, Some(value)) => Outcome::Result(value),
            (None, None) => Outcome::Void,
        };
        match call {
            Call::Send => {
                if let Outcome::Error(e) = outcome {
                    tracing::warn!(error = %e, "a hub method sent without waiting failed");
                }
            }
            Call::Invoke(id) => {
                if let (Outcome::Error(_), Some(data)) = (&outcome, result.error_data) {
                    self.error_data.insert(id.clone(), data);
                }
                self.decoded
                    .push_back(Ok(HubMessage::Completion(Completion {
                        headers: Headers::new(),
                        invocation_id: id,
                        outcome,
                    })));
            }
            Call::Stream(id) => {
                // A classic method with progress ends with its return value: the stream's
                // last item.
                let outcome = match outcome {
                    Outcome::Result(value) => {
                        self.decoded
                            .push_back(Ok(HubMessage::StreamItem(StreamItem {
                                headers: Headers::new(),
                                invocation_id: id.clone(),
                                item: value,
                            })));
                        Outcome::Void
                    }
                    other => other,
                };
                self.decoded
                    .push_back(Ok(HubMessage::Completion(Completion {
                        headers: Headers::new(),
                        invocation_id: id,
                        outcome,
                    })));
            }
        }
    }

    /// The next decoded message.
    pub(crate) fn next_message(&mut self) -> Result<Option<HubMessage>, hubbub_protocol::Error> {
        self.decoded.pop_front().transpose()
    }

    /// The `HubException` data of call `id`'s failure, if it had any.
    pub(crate) fn take_error_data(&mut self, id: &str) -> Option<Arg> {
        self.error_data.remove(id)
    }

    /// The bytes to send for `message`, or `None` when classic has no such message.
    pub(crate) fn encode(&mut self, message: &HubMessage) -> Result<Option<Bytes>, Error> {
        let uploads = match message {
            HubMessage::StreamItem(_) => true,
            HubMessage::Invocation(inv) => !inv.stream_ids.is_empty(),
            _ => false,
        };
        if uploads {
            return Err(Error::Transport(
                "classic ASP.NET SignalR has no client-to-server streams".to_owned(),
            ));
        }
        let (target, args, headers, call) = match message {
            HubMessage::Invocation(inv) => (
                &inv.target,
                &inv.arguments,
                &inv.headers,
                inv.invocation_id
                    .as_ref()
                    .map_or(Call::Send, |id| Call::Invoke(id.clone())),
            ),
            HubMessage::StreamInvocation(inv) => (
                &inv.target,
                &inv.arguments,
                &inv.headers,
                Call::Stream(inv.invocation_id.clone()),
            ),
            _ => return Ok(None),
        };
        let mut state = self
            .caller_state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for (k, v) in headers {
            state.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
        let state = if state.is_empty() {
            None
        } else {
            // Serialized once, as JSON (what `S` is written in), not parsed back.
            Some(Arg::serialize_for(hubbub_protocol::Protocol::Json, &state)?)
        };
        let id = self.next_id.to_string();
        let request = HubRequest {
            hub: self.session.hub.clone(),
            method: target.clone(),
            args: args.clone(),
            id: id.clone(),
            state,
        };
        let bytes = request.to_vec()?;
        self.next_id += 1;
        self.calls.insert(id, call);
        Ok(Some(Bytes::from(bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::ClassicTarget;

    fn wire(transport: classic::Transport) -> Wire {
        let session = Session {
            target: ClassicTarget {
                base: "http://127.0.0.1:1/signalr".to_owned(),
                transport,
                connection_token: "token".to_owned(),
                connection_data: "[]".to_owned(),
                headers: Vec::new(),
                bearer: None,
                cursor: Arc::default(),
                open_timeout: Duration::from_secs(5),
                poll_timeout: Duration::from_secs(120),
                long_poll_delay: Duration::ZERO,
                tls: None,
            },
            connection_id: "id".to_owned(),
            hub: "chatHub".to_owned(),
            negotiated: classic::NegotiateResponse::default(),
        };
        Wire::new(session, Arc::default())
    }

    fn envelope(cursor: &str) -> Bytes {
        Bytes::from(format!(
            r#"{{"C":"{cursor}","M":[{{"H":"chatHub","M":"broadcastMessage","A":["a","b"]}}]}}"#
        ))
    }

    fn message_id(wire: &Wire) -> Option<String> {
        wire.cursor().lock().unwrap().message_id.clone()
    }

    #[test]
    fn a_long_polling_answer_decoded_late_leaves_the_cursor_where_the_poll_loop_put_it() {
        let mut wire = wire(classic::Transport::LongPolling);
        // The poll loop has taken answer 2's cursor; answer 1 is decoded only now.
        wire.cursor().lock().unwrap().message_id = Some("d-00000001-B,2".to_owned());
        wire.push(envelope("d-00000001-B,1"));
        assert!(matches!(
            wire.next_message(),
            Ok(Some(HubMessage::Invocation(_)))
        ));
        assert_eq!(message_id(&wire).as_deref(), Some("d-00000001-B,2"));
    }

    #[test]
    fn on_a_socket_or_event_stream_the_decoded_answer_moves_the_cursor() {
        for transport in [
            classic::Transport::WebSockets,
            classic::Transport::ServerSentEvents,
        ] {
            let mut wire = wire(transport);
            wire.push(envelope("d-00000001-B,1"));
            assert_eq!(message_id(&wire).as_deref(), Some("d-00000001-B,1"));
        }
    }
}
