//! A complete, self-healing SignalR client for Hubbub's shells: ASP.NET Core SignalR, and
//! classic ASP.NET SignalR 2.x behind the same API (the family is decided by the negotiate
//! response, see [`Family`]).
//!
//! One actor task per connection owns the transport, the timers, the pending calls and the
//! reconnect state machine; [`HubConnection`] is a cheap handle to it. Transports: WebSockets,
//! Server-Sent Events and long polling, tried in the server's order with fallback; hub
//! protocols: JSON and MessagePack. Every shell observes one closed [`Event`] enum.

pub mod chat;
mod classic;
mod connection;
mod engine;
mod error;
mod event;
mod link;
pub mod methods;
mod negotiate;
mod options;
mod retry;
mod tls;

pub use chat::{Chat, ChatEvent};
pub use connection::{Handler, HubConnection, Observer, Subscription, UploadStream};
pub use error::Error;
pub use event::{Event, SlowReason, State};
pub use hubbub_protocol::negotiate::TransportKind;
pub use hubbub_protocol::{Arg, Headers, Outcome, Protocol, Value};
pub use hubbub_store as store;
pub use methods::{HubMethods, Preset};
pub use options::{
    DEFAULT_CLASSIC_HUB, DEFAULT_CLASSIC_PING_INTERVAL, DEFAULT_INVOCATION_TIMEOUT, Family,
    HubConnectionBuilder, TokenProvider, with_query,
};
pub use retry::{Delays, ExponentialBackoff, NoRetry, RetryContext, RetryPolicy};
pub use tls::check_extra_ca_pem;
