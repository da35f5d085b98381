//! The two hub protocols behind one closed enum.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

use crate::error::Result;
use crate::message::HubMessage;
use crate::negotiate::TransferFormat;

/// A hub protocol: how hub messages become bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `json`: UTF-8 JSON text, records separated by `0x1E`.
    Json,
    /// `messagepack`: binary MessagePack arrays with VarInt length prefixes.
    MessagePack,
}

impl Protocol {
    /// Both protocols.
    pub const ALL: [Protocol; 2] = [Protocol::Json, Protocol::MessagePack];

    /// The name used in the handshake.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::MessagePack => "messagepack",
        }
    }

    /// The protocol named in a handshake, if known (names are matched case-insensitively, as
    /// the ASP.NET Core server does).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }

    /// The transfer format the protocol needs from a transport.
    pub fn transfer_format(self) -> TransferFormat {
        match self {
            Self::Json => TransferFormat::Text,
            Self::MessagePack => TransferFormat::Binary,
        }
    }

    /// The highest protocol version this implementation speaks (2 adds stateful reconnect).
    pub fn max_version(self) -> i32 {
        2
    }

    /// Whether a server accepts a handshake asking for `version`: any version up to
    /// [`max_version`](Self::max_version), 0 and below included, for both protocols. This is
    /// ASP.NET Core's `IsVersionSupported` (`version <= Version`) in `JsonHubProtocol` and
    /// `MessagePackHubProtocol` since version 2 of the protocols (ASP.NET Core 8); every
    /// version below 2 means "no stateful reconnect", which is all a lower version changes.
    pub fn is_version_supported(self, version: i32) -> bool {
        version <= self.max_version()
    }

    /// Appends one framed message to `out`. On error `out` is unchanged.
    pub fn encode(self, message: &HubMessage, out: &mut Vec<u8>) -> Result<()> {
        match self {
            Self::Json => crate::json::encode(message, out),
            Self::MessagePack => crate::msgpack::encode(message, out),
        }
    }

    /// One framed message as a new buffer.
    pub fn encode_to_vec(self, message: &HubMessage) -> Result<Vec<u8>> {
        // Room for a typical chat message at once, rather than growing through 8, 16, 32, …
        let mut out = Vec::with_capacity(256);
        self.encode(message, &mut out)?;
        Ok(out)
    }

    /// Decodes one frame (the message without framing bytes). `Ok(None)` for an unknown
    /// message type.
    pub fn decode_frame(self, frame: &Bytes) -> Result<Option<HubMessage>> {
        match self {
            Self::Json => crate::json::decode(frame),
            Self::MessagePack => crate::msgpack::decode(frame),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "messagepack" | "msgpack" => Ok(Self::MessagePack),
            _ => Err(format!(
                "unknown hub protocol '{s}' (expected json or messagepack)"
            )),
        }
    }
}
