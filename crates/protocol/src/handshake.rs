//! The handshake: the first message each way on every transport, always JSON text ending in
//! `0x1E`, whatever hub protocol follows.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::json::RECORD_SEPARATOR;
use crate::negotiate::TransferFormat;
use crate::protocol::Protocol;

/// The client's handshake request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HandshakeRequest {
    /// The hub protocol name (`json`, `messagepack`).
    pub protocol: String,
    /// The protocol version the client speaks (Hubbub's client sends 1, or 2 with stateful
    /// reconnect; other clients send 0 too). An `int` as in ASP.NET Core's `HandshakeProtocol`:
    /// the server accepts any version up to its own ([`Protocol::is_version_supported`]).
    pub version: i32,
}

/// The server's handshake response.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct HandshakeResponse {
    /// Why the server refused the connection; `None` means accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A parsed handshake and how many bytes of the input it took (separator included). Bytes past
/// that belong to the next messages.
pub type Parsed<T> = Option<(T, usize)>;

fn split(buf: &[u8], max_size: usize) -> Result<Option<&[u8]>> {
    match memchr::memchr(RECORD_SEPARATOR, buf) {
        Some(end) if end > max_size => Err(Error::MessageTooLarge {
            size: end,
            max: max_size,
        }),
        Some(end) => Ok(Some(&buf[..end])),
        None if buf.len() > max_size => Err(Error::MessageTooLarge {
            size: buf.len(),
            max: max_size,
        }),
        None => Ok(None),
    }
}

impl HandshakeRequest {
    /// A request for `protocol` at `version`.
    pub fn new(protocol: Protocol, version: i32) -> Self {
        Self {
            protocol: protocol.name().to_owned(),
            version,
        }
    }

    /// The request as sent: JSON then `0x1E`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).unwrap_or_default();
        out.push(RECORD_SEPARATOR);
        out
    }

    /// Server side: parses the request from the start of `buf`; `Ok(None)` until the separator
    /// arrived. A request larger than `max_size` is an error.
    pub fn parse(buf: &[u8], max_size: usize) -> Result<Parsed<Self>> {
        #[derive(Deserialize)]
        struct Wire {
            protocol: Option<serde_json::Value>,
            version: Option<serde_json::Value>,
        }
        let Some(text) = split(buf, max_size)? else {
            return Ok(None);
        };
        let wire: Wire =
            serde_json::from_slice(text).map_err(crate::error::json_error("the handshake"))?;
        let protocol = match wire.protocol {
            None => {
                return Err(Error::Handshake(
                    "Missing required property 'protocol'.".into(),
                ));
            }
            Some(serde_json::Value::String(s)) => s,
            Some(_) => {
                return Err(Error::Handshake(
                    "Expected 'protocol' to be of type String.".into(),
                ));
            }
        };
        let version = match wire.version {
            None => {
                return Err(Error::Handshake(
                    "Missing required property 'version'.".into(),
                ));
            }
            Some(v) => v
                .as_i64()
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(|| {
                    Error::Handshake("Expected 'version' to be of type Integer.".into())
                })?,
        };
        Ok(Some((Self { protocol, version }, text.len() + 1)))
    }
}

impl HandshakeResponse {
    /// Acceptance.
    pub fn ok() -> Self {
        Self { error: None }
    }

    /// Refusal with the server's reason.
    pub fn error(reason: impl Into<String>) -> Self {
        Self {
            error: Some(reason.into()),
        }
    }

    /// The response as sent: `{}` or `{"error":"…"}`, then `0x1E`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).unwrap_or_default();
        out.push(RECORD_SEPARATOR);
        out
    }

    /// Client side: parses the response from the start of `buf`; `Ok(None)` until the separator
    /// arrived. Unknown properties (such as `minorVersion` from older servers) are ignored; a
    /// hub message in place of the response is an error.
    pub fn parse(buf: &[u8], max_size: usize) -> Result<Parsed<Self>> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(rename = "type")]
            kind: Option<serde::de::IgnoredAny>,
            error: Option<String>,
        }
        let Some(text) = split(buf, max_size)? else {
            return Ok(None);
        };
        let wire: Wire = serde_json::from_slice(text)
            .map_err(crate::error::json_error("the handshake response"))?;
        if wire.kind.is_some() {
            return Err(Error::Handshake(
                "Expected a handshake response from the server.".into(),
            ));
        }
        Ok(Some((Self { error: wire.error }, text.len() + 1)))
    }
}

/// The handshake errors, worded as the ASP.NET Core server words them.
pub mod errors {
    use super::TransferFormat;

    /// The requested hub protocol is unknown to the server.
    pub fn unsupported_protocol(protocol: &str) -> String {
        format!("The protocol '{protocol}' is not supported.")
    }

    /// The requested protocol version is not supported.
    pub fn unsupported_version(protocol: &str, version: i32) -> String {
        format!("The server does not support version {version} of the '{protocol}' protocol.")
    }

    /// The transport cannot carry the protocol's transfer format (MessagePack over SSE).
    pub fn transport_mismatch(protocol: &str, format: TransferFormat) -> String {
        format!(
            "Cannot use the '{protocol}' protocol on the current transport. The transport does \
             not support '{}' transfer format.",
            format.name()
        )
    }

    /// The handshake timed out or was too large.
    pub const CANCELED: &str = "Handshake was canceled.";
}
