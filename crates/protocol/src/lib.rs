//! SignalR wire formats for Hubbub: bytes in, messages out.
//!
//! This crate has no I/O, no async runtime and no threads. It covers, for ASP.NET Core SignalR:
//!
//! - [`negotiate`]: the negotiate request URL, the response (versions 0 and 1, redirects,
//!   errors, classic-server detection) and the transport URLs;
//! - [`handshake`]: the first message each way;
//! - [`HubMessage`]: the nine hub messages, written and read by [`Protocol::Json`] and
//!   [`Protocol::MessagePack`];
//! - [`MessageReader`] / [`Framer`]: incremental framing with a maximum message size, for any
//!   chunking of the input;
//! - [`sse`]: Server-Sent Events framing;
//! - [`classic`]: the classic ASP.NET SignalR 2.x family (negotiate, envelopes, hub requests
//!   and results, form bodies), apart from the Core family above.
//!
//! Arguments, items and results are [`Arg`]s: kept as the bytes they arrived in and parsed only
//! when asked for a type, so a message is decoded once and forwarding an argument to a
//! connection of the same protocol copies its bytes verbatim.
//!
//! ```
//! use hubbub_protocol::{HubMessage, Invocation, MessageReader, Protocol};
//!
//! let call = HubMessage::Invocation(Invocation {
//!     target: "Send".into(),
//!     arguments: vec!["ann".into(), "hi".into()],
//!     ..Invocation::default()
//! });
//! let bytes = Protocol::MessagePack.encode_to_vec(&call)?;
//!
//! let mut reader = MessageReader::new(Protocol::MessagePack, 32 * 1024);
//! reader.push(&bytes[..3]); // any chunking works
//! assert!(reader.next_message()?.is_none());
//! reader.push(&bytes[3..]);
//! let Some(HubMessage::Invocation(got)) = reader.next_message()? else { panic!() };
//! assert_eq!(got.arguments[1].decode::<String>()?, "hi");
//! # Ok::<(), hubbub_protocol::Error>(())
//! ```

mod arg;
pub mod classic;
mod error;
mod framing;
pub mod handshake;
pub mod json;
mod message;
pub mod msgpack;
pub mod negotiate;
mod protocol;
mod scan;
pub mod sse;
pub mod stateful;

pub use arg::{Arg, MAX_NESTING, Value};
pub use error::{Error, NegotiateError, Result};
pub use framing::{
    DEFAULT_MAX_MESSAGE_SIZE, Framer, MAX_VARINT_LEN, MAX_VARINT_VALUE, MessageReader, decode_all,
    read_varint, write_varint,
};
pub use message::{
    Ack, CancelInvocation, Close, Completion, Headers, HubMessage, Invocation, Outcome, Sequence,
    StreamInvocation, StreamItem, kind,
};
pub use protocol::Protocol;
