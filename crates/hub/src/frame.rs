//! A message on its way to many connections: encoded at most once per hub protocol, and once
//! for the classic family.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use hubbub_protocol::{HubMessage, Protocol};

/// One outgoing hub message shared by every recipient. The first writer that needs the JSON or
/// MessagePack bytes encodes them; every other recipient of that protocol reuses them. A frame
/// that came from another node over the backplane arrives already encoded (and has no message).
#[derive(Debug)]
pub struct Frame {
    message: Option<HubMessage>,
    sequenced: bool,
    json: OnceLock<Option<Bytes>>,
    /// The JSON bytes checked as UTF-8 once, for every WebSocket text frame that carries them.
    json_text: OnceLock<Option<axum::extract::ws::Utf8Bytes>>,
    msgpack: OnceLock<Option<Bytes>>,
    /// The classic `{"H","M","A"}` item (a frame belongs to one hub, so one hub name).
    classic: OnceLock<Option<Bytes>>,
}

impl Frame {
    /// Wraps a message for sending.
    pub fn new(message: HubMessage) -> Arc<Self> {
        Arc::new(Self {
            sequenced: message.is_sequenced(),
            message: Some(message),
            json: OnceLock::new(),
            json_text: OnceLock::new(),
            msgpack: OnceLock::new(),
            classic: OnceLock::new(),
        })
    }

    /// A frame of invocation bytes encoded elsewhere (one framed copy per protocol; `None` for a
    /// protocol it cannot be written in).
    pub(crate) fn encoded(json: Option<Bytes>, msgpack: Option<Bytes>) -> Arc<Self> {
        Arc::new(Self {
            message: None,
            sequenced: true,
            json: OnceLock::from(json),
            json_text: OnceLock::new(),
            msgpack: OnceLock::from(msgpack),
            classic: OnceLock::new(),
        })
    }

    /// The message, unless the frame arrived encoded from another node.
    pub fn message(&self) -> Option<&HubMessage> {
        self.message.as_ref()
    }

    /// Whether stateful reconnect numbers this message (invocations and the like; not pings).
    pub fn is_sequenced(&self) -> bool {
        self.sequenced
    }

    /// The framed bytes for `protocol`, or `None` when the message cannot be written in it
    /// (a binary value for a JSON client); the failure is logged once.
    pub fn bytes(&self, protocol: Protocol) -> Option<&Bytes> {
        let cell = match protocol {
            Protocol::Json => &self.json,
            Protocol::MessagePack => &self.msgpack,
        };
        cell.get_or_init(|| {
            let message = self.message.as_ref()?;
            match protocol.encode_to_vec(message) {
                Ok(bytes) => Some(Bytes::from(bytes)),
                Err(error) => {
                    tracing::warn!(%protocol, %error, "message cannot be sent to clients of this protocol");
                    None
                }
            }
        })
        .as_ref()
    }
}

impl Frame {
    /// The JSON bytes as text for a WebSocket text frame: checked as UTF-8 by the first
    /// recipient, shared (not copied) by every one; `None` as for [`Frame::bytes`].
    pub(crate) fn json_text(&self) -> Option<&axum::extract::ws::Utf8Bytes> {
        self.json_text
            .get_or_init(|| {
                let bytes = self.bytes(Protocol::Json)?.clone();
                axum::extract::ws::Utf8Bytes::try_from(bytes).ok()
            })
            .as_ref()
    }

    /// The message as a classic (ASP.NET SignalR 2.x) client receives it: one
    /// `{"H":hub,"M":method,"A":[…]}` item of an envelope's `M`, encoded once for every classic
    /// recipient. `None` for what classic clients have no form for (anything but a
    /// fire-and-forget invocation). A frame from another node is read from its JSON copy.
    pub(crate) fn classic_item(&self, hub: &str) -> Option<&Bytes> {
        self.classic
            .get_or_init(|| {
                let decoded;
                let message = match &self.message {
                    Some(message) => message,
                    None => {
                        let json = self.json.get()?.as_ref()?;
                        // One framed JSON message: strip the record separator.
                        let body = json.slice(..json.len().saturating_sub(1));
                        decoded = Protocol::Json.decode_frame(&body).ok()??;
                        &decoded
                    }
                };
                let HubMessage::Invocation(inv) = message else {
                    return None;
                };
                if inv.invocation_id.is_some() {
                    // A client result: classic clients have none.
                    return None;
                }
                match crate::classic::wire::client_invocation(
                    hub,
                    &inv.target,
                    &inv.arguments,
                    &inv.headers,
                ) {
                    Ok(bytes) => Some(Bytes::from(bytes)),
                    Err(error) => {
                        tracing::warn!(%error, "message cannot be sent to classic clients");
                        None
                    }
                }
            })
            .as_ref()
    }
}

/// What a connection's transport writer is asked to do.
#[derive(Debug, Clone)]
pub(crate) enum Outbound {
    /// Bytes written as they are (the handshake response).
    Raw(Bytes),
    /// A hub message.
    Message(Arc<Frame>),
    /// Nothing follows: the transport closes after writing what came before.
    End,
}
