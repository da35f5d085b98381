//! A complete, self-healing SignalR client (ASP.NET Core protocol) for Hubbub's shells.
//!
//! One actor task per connection owns the transport, the timers, the pending calls and the
//! reconnect state machine; [`HubConnection`] is a cheap handle to it. Transports: WebSockets,
//! Server-Sent Events and long polling, tried in the server's order with fallback; hub
//! protocols: JSON and MessagePack. Every shell observes one closed [`Event`] enum.

pub mod chat;
mod connection;
mod engine;
mod error;
mod event;
mod link;
pub mod methods;
mod negotiate;
mod options;
mod retry;

pub use chat::{Chat, ChatEvent};
pub use connection::{Handler, HubConnection, Observer, Subscription, UploadStream};
pub use error::Error;
pub use event::{Event, SlowReason, State};
pub use hubbub_protocol::negotiate::TransportKind;
pub use hubbub_protocol::{Arg, Headers, Outcome, Protocol, Value};
pub use hubbub_store as store;
pub use methods::{HubMethods, Preset};
pub use options::{HubConnectionBuilder, TokenProvider, with_query};
pub use retry::{Delays, ExponentialBackoff, NoRetry, RetryContext, RetryPolicy};
