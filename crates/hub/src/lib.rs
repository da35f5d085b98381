//! A SignalR hub server speaking the ASP.NET Core protocol, so the official clients (and
//! Hubbub's own) connect unchanged; and Hubbub's chat hub.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let server = hubbub_hub::ServerBuilder::new()
//!     .hub("/chathub", hubbub_hub::chat_hub())
//!     .bind("127.0.0.1:5000".parse().unwrap())
//!     .await?;
//! // … later:
//! server.shutdown().await
//! # }
//! ```
//!
//! Transports: WebSockets, Server-Sent Events and long polling; hub protocols: JSON and
//! MessagePack (from `hubbub-protocol`). Each connection is one task; see `connection.rs`.
//!
//! Several nodes scale out over a Redis backplane ([`ServerBuilder::redis`] with
//! [`RedisOptions`]): ASP.NET Core's channel layout and MessagePack payloads (with the
//! deviations listed in `ARCHITECTURE.md`), presence across nodes with heartbeats, and the chat
//! hub's histories (broadcasts, rooms, inboxes) and message ids shared in Redis; the users of a
//! crashed node are announced as left by the others ([`Hub::on_connections_lost`]). Or over a
//! PostgreSQL backplane ([`ServerBuilder::postgres`] with [`PostgresOptions`]): LISTEN/NOTIFY
//! for delivery and tables for the same state, with the same behaviour.

mod auth;
mod backplane;
mod chat;
mod classic;
mod connection;
mod frame;
mod history;
mod hub;
mod latch;
mod listener;
mod metrics;
mod options;
mod queue;
mod router;
mod server;
mod state;
mod static_files;
mod tls;
mod transport;

pub use auth::{JwtAuth, KeyError, LEEWAY_SECONDS, MIN_USER_KEY, UserKeys};
pub use backplane::{BackplaneError, PostgresOptions, RedisOptions};
pub use chat::{
    ChatLimits, DEDUPE_WINDOW, EPOCH_HEADER, HISTORY_PAGE, HUB_ID_PREFIX, MESSAGE_ID_HEADER,
    PRESENCE_LIMIT, SEQ_HEADER, TO_HEADER, UNAVAILABLE, chat_hub, chat_hub_with,
    chat_hub_with_limits,
};
pub use classic::ClassicOptions;
pub use connection::MAX_STREAMS_PER_CONNECTION;
pub use frame::Frame;
pub use history::{ChatHistory, Entry as HistoryEntry, HistoryError, MEMORY_CAPACITY};
pub use hub::{
    BoxFuture, Clients, Context, FromArgs, Hub, HubError, IntoReply, ItemStream, Lost,
    LostConnection, RawArgs, Reply, Target,
};
pub use listener::TcpLimits;
pub use options::HubOptions;
pub use router::Scope;
pub use server::{RunningServer, ServerBuilder};
pub use state::Counters;
pub use tls::{TlsError, TlsFiles};
