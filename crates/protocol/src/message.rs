//! The nine hub messages, independent of their encoding.

use std::collections::BTreeMap;

use crate::arg::Arg;

/// Message headers: a string-to-string map that any message but Ping, Close, Ack and Sequence
/// may carry. Unknown keys are kept and ignored.
pub type Headers = BTreeMap<String, String>;

/// The numeric `type` of each hub message.
pub mod kind {
    /// `Invocation`.
    pub const INVOCATION: u8 = 1;
    /// `StreamItem`.
    pub const STREAM_ITEM: u8 = 2;
    /// `Completion`.
    pub const COMPLETION: u8 = 3;
    /// `StreamInvocation`.
    pub const STREAM_INVOCATION: u8 = 4;
    /// `CancelInvocation`.
    pub const CANCEL_INVOCATION: u8 = 5;
    /// `Ping`.
    pub const PING: u8 = 6;
    /// `Close`.
    pub const CLOSE: u8 = 7;
    /// `Ack` (stateful reconnect).
    pub const ACK: u8 = 8;
    /// `Sequence` (stateful reconnect).
    pub const SEQUENCE: u8 = 9;
}

/// One hub protocol message.
#[derive(Debug, Clone, PartialEq)]
pub enum HubMessage {
    /// Call a method on the other side; with an id, the caller expects a [`Completion`].
    Invocation(Invocation),
    /// One item of a stream.
    StreamItem(StreamItem),
    /// The end of an invocation or stream: a result, nothing, or an error.
    Completion(Completion),
    /// Call a method that answers with a stream of items.
    StreamInvocation(StreamInvocation),
    /// Stop a stream the sender asked for.
    CancelInvocation(CancelInvocation),
    /// Keep-alive.
    Ping,
    /// The sender closes the connection.
    Close(Close),
    /// Stateful reconnect: everything up to this sequence id arrived.
    Ack(Ack),
    /// Stateful reconnect: the id of the next message the sender replays.
    Sequence(Sequence),
}

impl HubMessage {
    /// The message's numeric type.
    pub fn kind(&self) -> u8 {
        match self {
            Self::Invocation(_) => kind::INVOCATION,
            Self::StreamItem(_) => kind::STREAM_ITEM,
            Self::Completion(_) => kind::COMPLETION,
            Self::StreamInvocation(_) => kind::STREAM_INVOCATION,
            Self::CancelInvocation(_) => kind::CANCEL_INVOCATION,
            Self::Ping => kind::PING,
            Self::Close(_) => kind::CLOSE,
            Self::Ack(_) => kind::ACK,
            Self::Sequence(_) => kind::SEQUENCE,
        }
    }

    /// Whether stateful reconnect numbers, buffers and acknowledges this message (Invocation,
    /// StreamItem, Completion, StreamInvocation and CancelInvocation do; the others do not).
    pub fn is_sequenced(&self) -> bool {
        matches!(
            self,
            Self::Invocation(_)
                | Self::StreamItem(_)
                | Self::Completion(_)
                | Self::StreamInvocation(_)
                | Self::CancelInvocation(_)
        )
    }

    /// The message's headers, for the types that carry them.
    pub fn headers(&self) -> Option<&Headers> {
        match self {
            Self::Invocation(m) => Some(&m.headers),
            Self::StreamItem(m) => Some(&m.headers),
            Self::Completion(m) => Some(&m.headers),
            Self::StreamInvocation(m) => Some(&m.headers),
            Self::CancelInvocation(m) => Some(&m.headers),
            Self::Ping | Self::Close(_) | Self::Ack(_) | Self::Sequence(_) => None,
        }
    }
}

/// `Invocation` (type 1).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Invocation {
    /// Headers.
    pub headers: Headers,
    /// The id the Completion will carry; `None` for a fire-and-forget call.
    pub invocation_id: Option<String>,
    /// The method name.
    pub target: String,
    /// The arguments, streams excluded.
    pub arguments: Vec<Arg>,
    /// Ids of the client-to-server streams that go with this call.
    pub stream_ids: Vec<String>,
}

/// `StreamItem` (type 2).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamItem {
    /// Headers.
    pub headers: Headers,
    /// The stream's invocation id (or the stream id, for client-to-server streams).
    pub invocation_id: String,
    /// The item.
    pub item: Arg,
}

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The method returned nothing (also the end of a stream).
    Void,
    /// The method's return value.
    Result(Arg),
    /// The method failed.
    Error(String),
}

/// `Completion` (type 3).
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Headers.
    pub headers: Headers,
    /// The invocation this completes.
    pub invocation_id: String,
    /// Result, nothing, or error.
    pub outcome: Outcome,
}

impl Completion {
    /// A completion without a result.
    pub fn void(invocation_id: impl Into<String>) -> Self {
        Self {
            headers: Headers::new(),
            invocation_id: invocation_id.into(),
            outcome: Outcome::Void,
        }
    }

    /// A completion with a result.
    pub fn result(invocation_id: impl Into<String>, result: Arg) -> Self {
        Self {
            headers: Headers::new(),
            invocation_id: invocation_id.into(),
            outcome: Outcome::Result(result),
        }
    }

    /// A completion with an error.
    pub fn error(invocation_id: impl Into<String>, error: impl Into<String>) -> Self {
        Self {
            headers: Headers::new(),
            invocation_id: invocation_id.into(),
            outcome: Outcome::Error(error.into()),
        }
    }
}

/// `StreamInvocation` (type 4).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamInvocation {
    /// Headers.
    pub headers: Headers,
    /// The id the StreamItems and the Completion will carry.
    pub invocation_id: String,
    /// The method name.
    pub target: String,
    /// The arguments, streams excluded.
    pub arguments: Vec<Arg>,
    /// Ids of the client-to-server streams that go with this call.
    pub stream_ids: Vec<String>,
}

/// `CancelInvocation` (type 5).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CancelInvocation {
    /// Headers.
    pub headers: Headers,
    /// The stream to stop.
    pub invocation_id: String,
}

/// `Close` (type 7).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Close {
    /// Why the connection closes, if it closes because of an error.
    pub error: Option<String>,
    /// Whether the client may reconnect automatically.
    pub allow_reconnect: bool,
}

/// `Ack` (type 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ack {
    /// Every sequenced message up to and including this id arrived.
    pub sequence_id: u64,
}

/// `Sequence` (type 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sequence {
    /// The sequence id of the next message the sender replays or sends.
    pub sequence_id: u64,
}

macro_rules! from_variant {
    ($($ty:ident),*) => {$(
        impl From<$ty> for HubMessage {
            fn from(m: $ty) -> Self {
                Self::$ty(m)
            }
        }
    )*};
}
from_variant!(
    Invocation,
    StreamItem,
    Completion,
    StreamInvocation,
    CancelInvocation,
    Close,
    Ack,
    Sequence
);
