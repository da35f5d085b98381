//! The backplane seam: how a message for a scope reaches connections on other nodes.
//!
//! - [`Backplane::Local`]: one node; the router's registries are the whole truth.
//! - [`Backplane::Redis`]: a fleet of nodes sharing one Redis (pub/sub in ASP.NET Core's
//!   channel layout, presence in Redis keys with per-node heartbeats). See `redis.rs`.
//!
//! Either way a message is delivered to this node's connections straight from the router (local
//! delivery never waits for Redis); with Redis it is also published once, pre-encoded per
//! protocol, for the other nodes, which skip nothing but their own copies.

mod envelope;
mod mirror;
mod redis;

use std::sync::Arc;

pub(crate) use self::redis::RedisNode;
pub use self::redis::RedisOptions;

/// Why the backplane could not do something.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackplaneError {
    /// The Redis URL does not parse.
    #[error("invalid Redis URL: {0}")]
    Url(String),
    /// Redis answered with an error.
    #[error("Redis: {0}")]
    Redis(String),
    /// Redis is unreachable (or has not answered in time).
    #[error("the Redis backplane is unavailable")]
    Down,
    /// No node acknowledged a group change for this connection.
    #[error("Connection '{0}' does not exist.")]
    NoAck(String),
}

/// How messages reach other nodes.
#[derive(Debug, Clone, Default)]
pub(crate) enum Backplane {
    /// There are none.
    #[default]
    Local,
    /// Through Redis.
    Redis(Arc<RedisNode>),
}

impl Backplane {
    pub(crate) fn redis(&self) -> Option<&Arc<RedisNode>> {
        match self {
            Self::Local => None,
            Self::Redis(node) => Some(node),
        }
    }
}
