//! The one error type of the protocol crate.

/// Everything that can go wrong while reading or writing SignalR wire data.
///
/// Every variant names what was wrong; no input makes this crate panic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A message is larger than the configured maximum message size.
    #[error(
        "the maximum message size of {max}B was exceeded (a message of at least {size}B arrived)"
    )]
    MessageTooLarge {
        /// Bytes seen so far for the message (a lower bound when no end was found yet).
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// A JSON text could not be parsed.
    #[error("invalid JSON in {context}: {source}")]
    Json {
        /// What was being read.
        context: &'static str,
        /// The parser's report.
        #[source]
        source: serde_json::Error,
    },
    /// MessagePack bytes were malformed or of the wrong shape.
    #[error("invalid MessagePack in {context}: {reason}")]
    MessagePack {
        /// What was being read.
        context: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A well-formed message broke a rule of the hub protocol (a missing or conflicting property).
    #[error("invalid {protocol} hub message: {reason}")]
    InvalidMessage {
        /// `json` or `messagepack`.
        protocol: &'static str,
        /// What was wrong, worded like the official implementations where they have a wording.
        reason: String,
    },
    /// Input ended inside a message where a complete message was required.
    #[error("incomplete message: {0}")]
    Incomplete(&'static str),
    /// The handshake was malformed.
    #[error("invalid handshake: {0}")]
    Handshake(String),
    /// The negotiate response was malformed or refused the connection.
    #[error(transparent)]
    Negotiate(#[from] NegotiateError),
    /// A value could not be written in the requested encoding.
    #[error("cannot encode value as {protocol}: {reason}")]
    Encode {
        /// `json` or `messagepack`.
        protocol: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// Classic ASP.NET SignalR (2.x) data was malformed or of the wrong shape.
    #[error("invalid classic SignalR {context}: {reason}")]
    Classic {
        /// What was being read (`envelope`, `hub request`, `form body`…).
        context: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// An argument or result could not be read as the requested Rust type.
    #[error("cannot read value as {type_name}: {reason}")]
    Decode {
        /// The requested type.
        type_name: &'static str,
        /// What was wrong.
        reason: String,
    },
}

/// Why a negotiate exchange cannot lead to a connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiateError {
    /// The server answered with an `error` field.
    #[error("the server refused the negotiation: {0}")]
    Server(String),
    /// The server is a classic ASP.NET SignalR (2.x) server.
    #[error(
        "detected a classic ASP.NET SignalR server (the negotiate response has `ProtocolVersion`); \
         this connection speaks the ASP.NET Core SignalR protocol (let the family be detected, or \
         choose classic)"
    )]
    ClassicServer {
        /// The `ProtocolVersion` the server reported, when it was a string.
        protocol_version: Option<String>,
    },
    /// A classic negotiate found an ASP.NET Core SignalR server (its response has
    /// `availableTransports` or `negotiateVersion`), as the classic .NET client reports it.
    #[error(
        "detected an ASP.NET Core SignalR server (the negotiate response has `availableTransports`); \
         this connection speaks the classic ASP.NET SignalR protocol (let the family be detected, \
         or choose ASP.NET Core)"
    )]
    CoreServer,
    /// The server turned on stateful reconnect although the client did not ask for it.
    #[error("Client didn't negotiate Stateful Reconnect but the server did.")]
    UnrequestedStatefulReconnect,
    /// The body was not a negotiate response.
    #[error("invalid negotiate response: {0}")]
    Invalid(String),
    /// A version 1 response lacked the connection token, or any response lacked the id.
    #[error("invalid negotiate response: missing `{0}`")]
    Missing(&'static str),
    /// The negotiate request on the server side asked for an unusable version.
    #[error("{0}")]
    Version(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn json_error(context: &'static str) -> impl FnOnce(serde_json::Error) -> Error {
    move |source| Error::Json { context, source }
}
