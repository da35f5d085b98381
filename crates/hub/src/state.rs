//! Everything one hub endpoint shares between its connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::Hub;
use crate::options::HubOptions;
use crate::router::Router;
use crate::transport::HttpConnection;

/// Counters of one hub endpoint.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections that completed a handshake since start.
    pub connections_total: AtomicU64,
    /// Connections open now.
    pub connections_open: AtomicU64,
    /// Hub messages received from clients.
    pub messages_in: AtomicU64,
    /// Hub messages queued for clients (one per recipient).
    pub messages_out: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A JSON snapshot.
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "connectionsTotal": self.connections_total.load(Ordering::Relaxed),
            "connectionsOpen": self.connections_open.load(Ordering::Relaxed),
            "messagesIn": self.messages_in.load(Ordering::Relaxed),
            "messagesOut": self.messages_out.load(Ordering::Relaxed),
        })
    }
}

#[derive(Debug)]
pub(crate) struct HubState {
    pub(crate) hub: Hub,
    pub(crate) path: String,
    pub(crate) options: HubOptions,
    pub(crate) router: Router,
    /// Negotiated connections by their secret token.
    pub(crate) http: DashMap<String, Arc<HttpConnection>>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
    pub(crate) auth: Option<crate::auth::JwtAuth>,
}

impl HubState {
    pub(crate) fn new(
        hub: Hub,
        path: String,
        options: HubOptions,
        shutdown: CancellationToken,
        tasks: TaskTracker,
        auth: Option<crate::auth::JwtAuth>,
    ) -> Arc<Self> {
        Arc::new(Self {
            hub,
            path,
            options,
            router: Router::default(),
            http: DashMap::new(),
            counters: Arc::new(Counters::default()),
            shutdown,
            tasks,
            auth,
        })
    }
}
