//! Everything one hub endpoint shares between its connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backplane::{Backplane, BackplaneConfig, BackplaneError, PostgresNode, RedisNode};
use crate::connection::Connection;
use crate::frame::Frame;
use crate::hub::Hub;
use crate::options::HubOptions;
use crate::router::{Router, Scope};
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
    /// Times a connection reached its rate limit and the hub paused reading from it until it
    /// was back under (see `HubOptions::max_messages_per_second`).
    pub rate_limit_pauses: AtomicU64,
    /// The same and more, by label, for `/metrics` (see `crate::metrics`).
    pub(crate) prom: crate::metrics::Prom,
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
            "rateLimitPauses": self.rate_limit_pauses.load(Ordering::Relaxed),
        })
    }
}

#[derive(Debug)]
pub(crate) struct HubState {
    pub(crate) hub: Hub,
    pub(crate) path: String,
    pub(crate) options: HubOptions,
    pub(crate) router: Arc<Router>,
    pub(crate) backplane: Backplane,
    /// Negotiated connections by their secret token.
    pub(crate) http: DashMap<String, Arc<HttpConnection>>,
    /// Negotiated connections not used yet, by client address (see `transport::Pending`).
    pub(crate) pending: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
    pub(crate) auth: Option<crate::auth::Auth>,
    /// The keep-alive every connection sends (one frame, encoded once per protocol).
    pub(crate) ping: Arc<Frame>,
}

impl HubState {
    pub(crate) fn new(
        hub: Hub,
        path: String,
        options: HubOptions,
        shutdown: CancellationToken,
        tasks: TaskTracker,
        auth: Option<crate::auth::Auth>,
        backplane: Option<&BackplaneConfig>,
    ) -> Result<Arc<Self>, BackplaneError> {
        let router = Arc::new(Router::default());
        let counters = Arc::new(Counters::default());
        let (backplane, lost) = match backplane {
            None => (Backplane::Local, None),
            Some(BackplaneConfig::Redis(options)) => {
                let (node, lost) = RedisNode::start(
                    options.clone(),
                    &hub.name,
                    router.clone(),
                    shutdown.clone(),
                    &tasks,
                    &counters.prom,
                )?;
                (Backplane::Redis(node), Some(lost))
            }
            Some(BackplaneConfig::Postgres(options)) => {
                let (node, lost) = PostgresNode::start(
                    options.clone(),
                    &hub.name,
                    router.clone(),
                    shutdown.clone(),
                    &tasks,
                    &counters.prom,
                )?;
                (Backplane::Postgres(node), Some(lost))
            }
        };
        let state = Arc::new(Self {
            hub,
            path,
            options,
            router,
            backplane,
            http: DashMap::new(),
            pending: Arc::default(),
            counters,
            shutdown,
            tasks,
            auth,
            ping: Frame::new(hubbub_protocol::HubMessage::Ping),
        });
        if let Some(mut lost) = lost {
            // Held weakly: the task must not keep a stopped hub alive.
            let weak = Arc::downgrade(&state);
            let shutdown = state.shutdown.clone();
            state.tasks.spawn(async move {
                loop {
                    let connections = tokio::select! {
                        c = lost.recv() => match c { Some(c) => c, None => break },
                        () = shutdown.cancelled() => break,
                    };
                    let Some(state) = weak.upgrade() else { break };
                    if let Some(hook) = &state.hub.on_lost {
                        hook(crate::hub::Lost {
                            state: &state,
                            connections: &connections,
                        });
                    }
                }
            });
        }
        Ok(state)
    }

    /// Queues `frame` for every connection in `scope` but those in `exclude`: this node's at
    /// once, other nodes' through the backplane. Returns how many connections of this node it
    /// was queued for.
    pub(crate) fn deliver(&self, scope: &Scope, frame: &Arc<Frame>, exclude: &[String]) -> usize {
        let delivered = self.router.deliver(scope, frame, exclude);
        if let Some(node) = self.backplane.fleet() {
            // A message for a connection of this node needs no one else (as in ASP.NET Core).
            let here = matches!(scope, Scope::Connection(id) if self.router.has_connection(id));
            if !here {
                node.publish(scope, frame, exclude);
            }
        }
        delivered
    }

    /// Registers a connection that completed its handshake (and, with a backplane, subscribes
    /// to its connection and user channels and announces it).
    pub(crate) async fn connected(&self, conn: Arc<Connection>) {
        let first_of_user = self.router.add(conn.clone());
        if let Some(node) = self.backplane.fleet() {
            node.sync(&Scope::Connection(conn.id.clone())).await;
            if first_of_user {
                node.sync(&Scope::User(conn.user.clone())).await;
            }
            node.presence(&conn.id, node.record(&conn.id));
        }
    }

    /// Forgets a connection that ended.
    pub(crate) fn disconnected(&self, conn: &Connection) {
        let removed = self.router.remove(conn);
        if let Some(node) = self.backplane.fleet() {
            node.sync_later(&Scope::Connection(conn.id.clone()));
            if removed.user_gone {
                node.sync_later(&Scope::User(conn.user.clone()));
            }
            for group in removed.groups_gone {
                node.sync_later(&Scope::Group(group));
            }
            node.presence(&conn.id, None);
        }
    }

    /// Adds a connection (of any node) to a group.
    pub(crate) async fn add_to_group(&self, id: &str, group: &str) -> Result<(), BackplaneError> {
        match self.backplane.fleet() {
            None => {
                self.router.add_to_group(id, group);
                Ok(())
            }
            Some(node) if node.local_add(id, group).await => Ok(()),
            Some(node) => node.remote_group(id, group, true).await,
        }
    }

    /// Removes a connection (of any node) from a group.
    pub(crate) async fn remove_from_group(
        &self,
        id: &str,
        group: &str,
    ) -> Result<(), BackplaneError> {
        match self.backplane.fleet() {
            None => {
                self.router.remove_from_group(id, group);
                Ok(())
            }
            Some(node) if node.local_remove(id, group).await => Ok(()),
            Some(node) => node.remote_group(id, group, false).await,
        }
    }

    /// Connections (in `group`) on every node.
    pub(crate) fn connection_count(&self, group: Option<&str>) -> usize {
        self.router.connection_count(group)
            + self
                .backplane
                .fleet()
                .map_or(0, |node| node.remote_count(group))
    }

    /// Users (in `group`) on every node, each once with its connection count, sorted by name.
    pub(crate) fn users(&self, group: Option<&str>) -> Vec<(String, usize)> {
        let local = self.router.users(group);
        let Some(node) = self.backplane.fleet() else {
            return local;
        };
        let mut all = std::collections::BTreeMap::<String, usize>::new();
        for (user, n) in local.into_iter().chain(node.remote_users(group)) {
            *all.entry(user).or_default() += n;
        }
        all.into_iter().collect()
    }
}

/// Runs `task` here as far as it goes without waiting, and spawns it on `tasks` only when it
/// has to wait. Most hub methods finish without waiting (a broadcast is queued, not awaited),
/// and a task of their own costs an allocation, a schedule and often a wake-up of another
/// worker thread per message (issue 19: at 10 receivers that was a tenth of the hub's CPU per
/// message). The first poll uses a waker that does nothing: a task that is not done is
/// spawned, and a spawned task is polled again at once, which registers its own waker with
/// whatever it waits for.
pub(crate) fn run_inline_first(
    tasks: &TaskTracker,
    task: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let mut task = Box::pin(task);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if task.as_mut().poll(&mut cx).is_pending() {
        tasks.spawn(task);
    }
}
