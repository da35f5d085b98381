//! The client's error type.

use std::time::Duration;

/// Why a connection, call or stream failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection is not connected (sends fail rather than wait; the outbox is the place
    /// that waits).
    #[error("not connected (the connection is {0})")]
    NotConnected(crate::State),
    /// Negotiate failed: the server's reason, a bad status, or a classic server.
    #[error("negotiate failed: {0}")]
    Negotiate(String),
    /// No transport could be started.
    #[error("no transport could connect: {0}")]
    Transport(String),
    /// The server refused the handshake.
    #[error("the server refused the handshake: {0}")]
    Handshake(String),
    /// The handshake did not complete in time.
    #[error("the handshake did not complete within {0:?}")]
    HandshakeTimeout(Duration),
    /// The server invoked with an error completion.
    #[error("{0}")]
    Hub(String),
    /// The hub sent a message that is not a valid hub message (a Completion with both
    /// `result` and `error`, an item for a call that is not a stream, ...). The connection
    /// ends with this reason (and reconnects if allowed), failing every call and stream
    /// waiting on it, as the official clients do.
    #[error("the hub sent an invalid message: {0}")]
    InvalidMessage(String),
    /// The hub did not answer the call within the invocation timeout
    /// ([`HubConnectionBuilder::invocation_timeout`](crate::HubConnectionBuilder::invocation_timeout)).
    /// The hub may still run it; its late answer is ignored.
    #[error("the hub did not answer within {0:?}")]
    InvocationTimeout(Duration),
    /// A classic hub threw a `HubException` with extra data (`D`); without data a hub error
    /// is [`Error::Hub`].
    #[error("{message}")]
    HubException {
        /// The exception's message (`E`).
        message: String,
        /// Its data (`D`), as JSON.
        data: hubbub_protocol::Arg,
    },
    /// The connection closed while the call was pending.
    #[error("Invocation canceled due to the underlying connection being closed.")]
    ConnectionClosed,
    /// Encoding or decoding failed.
    #[error(transparent)]
    Protocol(#[from] std::sync::Arc<hubbub_protocol::Error>),
    /// The connection was stopped.
    #[error("the connection was stopped")]
    Stopped,
    /// The extra CA certificates ([`crate::HubConnectionBuilder::extra_ca_pem`]) cannot be
    /// used.
    #[error("the extra CA certificates cannot be used: {0}")]
    Certificate(String),
    /// The access-token provider failed.
    #[error("the access-token provider failed: {0}")]
    Token(String),
    /// The URL is not usable.
    #[error("invalid hub URL: {0}")]
    Url(String),
}

impl From<hubbub_protocol::Error> for Error {
    fn from(e: hubbub_protocol::Error) -> Self {
        Self::Protocol(std::sync::Arc::new(e))
    }
}
