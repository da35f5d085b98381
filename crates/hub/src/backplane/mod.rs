//! The backplane seam: how a message for a scope reaches connections on other nodes.
//!
//! - [`Backplane::Local`]: one node; the router's registries are the whole truth.
//! - [`Backplane::Redis`]: a fleet of nodes sharing one Redis (pub/sub in ASP.NET Core's
//!   channel layout, presence in Redis keys with per-node heartbeats). See `redis.rs`.
//! - [`Backplane::Postgres`]: a fleet of nodes sharing one PostgreSQL database (LISTEN/NOTIFY
//!   for delivery, tables for presence, heartbeats, ids and histories). See `postgres.rs`.
//!
//! Callers never name the kind: [`Backplane::fleet`] gives a [`Fleet`], one interface both
//! implement with the same behaviour. Whatever the kind, a message is delivered to this node's
//! connections straight from the router (local delivery never waits for the backplane); with a
//! fleet it is also published once, pre-encoded per protocol, for the other nodes, which skip
//! nothing but their own copies.

mod envelope;
mod mirror;
mod postgres;
mod redis;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use self::mirror::Record;
pub(crate) use self::postgres::PostgresNode;
pub use self::postgres::PostgresOptions;
pub(crate) use self::redis::RedisNode;
pub use self::redis::RedisOptions;
use crate::frame::Frame;
use crate::history::Entry;
use crate::router::{Router, Scope};

/// Why the backplane could not do something.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BackplaneError {
    /// The Redis URL does not parse.
    #[error("invalid Redis URL: {0}")]
    Url(String),
    /// Redis answered with an error.
    #[error("Redis: {0}")]
    Redis(String),
    /// The PostgreSQL connection string does not parse.
    #[error("invalid PostgreSQL URL: {0}")]
    PostgresUrl(String),
    /// PostgreSQL answered with an error.
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    /// PostgreSQL refused a call for a reason that passes (SQLSTATE class 40, transaction
    /// rollback: a deadlock `40P01`, a serialization failure `40001`; or `55P03`, a lock not
    /// available): the database is there, and the same call may succeed when made again.
    #[error("PostgreSQL, for now: {0}")]
    Transient(String),
    /// The backplane's server (Redis or PostgreSQL) is unreachable, or has not answered in time.
    #[error("the {0} backplane is unavailable")]
    Down(&'static str),
    /// No node acknowledged a group change for this connection.
    #[error("Connection '{0}' does not exist.")]
    NoAck(String),
    /// The backplane cannot store this value (PostgreSQL's `text` cannot hold U+0000): sending
    /// it again would fail again.
    #[error("{0}")]
    Unstorable(String),
}

impl BackplaneError {
    /// Whether this is an outage ([`Down`](Self::Down): the same call may succeed later), as
    /// opposed to a refusal that a retry would meet again.
    pub fn is_outage(&self) -> bool {
        matches!(self, Self::Down(_))
    }

    /// Whether the same call may succeed when made again: an outage or a
    /// [`Transient`](Self::Transient) refusal (chat's outbox sends it again), as opposed to a
    /// refusal that a retry would meet again.
    pub fn may_pass(&self) -> bool {
        matches!(self, Self::Down(_) | Self::Transient(_))
    }
}

/// Which backplane a server's hubs join (see [`ServerBuilder::redis`](crate::ServerBuilder::redis)
/// and [`ServerBuilder::postgres`](crate::ServerBuilder::postgres)).
#[derive(Debug, Clone)]
pub(crate) enum BackplaneConfig {
    Redis(RedisOptions),
    Postgres(PostgresOptions),
}

/// How messages reach other nodes.
#[derive(Debug, Clone, Default)]
pub(crate) enum Backplane {
    /// There are none.
    #[default]
    Local,
    /// Through Redis.
    Redis(Arc<RedisNode>),
    /// Through PostgreSQL.
    Postgres(Arc<PostgresNode>),
}

impl Backplane {
    /// This node's link to its fleet; `None` for a lone node.
    pub(crate) fn fleet(&self) -> Option<Fleet<'_>> {
        match self {
            Self::Local => None,
            Self::Redis(node) => Some(Fleet::Redis(node)),
            Self::Postgres(node) => Some(Fleet::Postgres(node)),
        }
    }
}

/// One node's link to its fleet, whichever the backplane: the one interface callers use.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fleet<'a> {
    Redis(&'a Arc<RedisNode>),
    Postgres(&'a Arc<PostgresNode>),
}

/// The same call on whichever node it is.
macro_rules! each {
    ($fleet:expr, $node:ident => $call:expr) => {
        match $fleet {
            Fleet::Redis($node) => $call,
            Fleet::Postgres($node) => $call,
        }
    };
}

impl Fleet<'_> {
    /// Publishes a message for the connections of other nodes in `scope` (dropped while the
    /// backplane is unreachable).
    pub(crate) fn publish(self, scope: &Scope, frame: &Frame, exclude: &[String]) {
        each!(self, n => n.publish(scope, frame, exclude))
    }

    /// Makes sure this node receives what is published for `scope` from now on (as the
    /// router now needs), waiting briefly for the backplane to confirm.
    pub(crate) async fn sync(self, scope: &Scope) {
        each!(self, n => n.sync(scope).await)
    }

    /// As [`sync`](Self::sync), without waiting.
    pub(crate) fn sync_later(self, scope: &Scope) {
        each!(self, n => n.sync_later(scope))
    }

    /// Writes one local connection's presence as the router has it now (`None`: it left) and
    /// tells the other nodes.
    pub(crate) fn presence(self, connection: &str, record: Option<Record>) {
        each!(self, n => n.presence(connection, record))
    }

    /// A local connection's presence record.
    pub(crate) fn record(self, connection: &str) -> Option<Record> {
        each!(self, n => n.record(connection))
    }

    /// Connections of other nodes (in `group`).
    pub(crate) fn remote_count(self, group: Option<&str>) -> usize {
        each!(self, n => n.remote_count(group))
    }

    /// Users of other nodes (in `group`) with their connection counts there.
    pub(crate) fn remote_users(self, group: Option<&str>) -> Vec<(String, usize)> {
        each!(self, n => n.remote_users(group))
    }

    /// A local connection joins a group; `false` if it is not a connection of this node.
    pub(crate) async fn local_add(self, connection: &str, group: &str) -> bool {
        each!(self, n => n.local_add(connection, group).await)
    }

    /// A local connection leaves a group; `false` if it is not a connection of this node.
    pub(crate) async fn local_remove(self, connection: &str, group: &str) -> bool {
        each!(self, n => n.local_remove(connection, group).await)
    }

    /// Asks the node that holds `connection` to add it to (or remove it from) `group`, and
    /// waits for its ack; [`BackplaneError::Down`] at once while the backplane is unreachable
    /// (the request could not be sent: waiting for an ack would only take `ack_timeout`).
    pub(crate) async fn remote_group(
        self,
        connection: &str,
        group: &str,
        add: bool,
    ) -> Result<(), BackplaneError> {
        if !self.is_up() {
            return Err(BackplaneError::Down(self.name()));
        }
        each!(self, n => n.remote_group(connection, group, add).await)
    }

    /// Whether the node is connected to its backplane and has written its presence.
    pub(crate) fn is_up(self) -> bool {
        each!(self, n => n.is_up())
    }

    /// The backplane's server, for messages: `Redis` or `PostgreSQL`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Fleet::Redis(_) => "Redis",
            Fleet::Postgres(_) => "PostgreSQL",
        }
    }

    /// Whether `user` sends `id` for the first time within `window`, across the fleet.
    pub(crate) async fn first_time(
        self,
        user: &str,
        id: &str,
        window: Duration,
    ) -> Result<bool, BackplaneError> {
        each!(self, n => n.first_time(user, id, window).await)
    }

    /// Records a chat message in the fleet's history of `scope` (the newest
    /// [`MEMORY_CAPACITY`](crate::MEMORY_CAPACITY) are kept): `None` for a repeat of `(user,
    /// id)` within [`DEDUPE_WINDOW`](crate::DEDUPE_WINDOW), else the entry and the epoch it is
    /// numbered in; [`HistoryError::IdTaken`](crate::HistoryError::IdTaken) when another
    /// sender holds `id`.
    pub(crate) async fn chat_append(
        self,
        scope: &str,
        user: &str,
        id: Option<&str>,
        name: &str,
        message: &str,
        to: Option<&str>,
    ) -> Result<Result<Option<(Entry, String)>, crate::HistoryError>, BackplaneError> {
        each!(self, n => n.chat_append(scope, user, id, name, message, to).await)
    }

    /// The fleet's epoch and the messages of `scope` after `after` (all of them when `epoch`
    /// is not the fleet's), at most `limit`.
    pub(crate) async fn chat_since(
        self,
        scope: &str,
        epoch: &str,
        after: u64,
        limit: usize,
    ) -> Result<(String, Vec<Entry>), BackplaneError> {
        each!(self, n => n.chat_since(scope, epoch, after, limit).await)
    }

    /// Whether the fleet holds the history `scope` (for the senders' budget of new histories,
    /// issue 18 #8).
    pub(crate) async fn history_exists(self, scope: &str) -> Result<bool, BackplaneError> {
        each!(self, n => n.history_exists(scope).await)
    }

    /// Marks the inbox `scope` as claimed (its user connected): it never expires.
    pub(crate) async fn claim_inbox(self, scope: &str) -> Result<(), BackplaneError> {
        each!(self, n => n.claim_inbox(scope).await)
    }

    /// After a message was recorded in the inbox `scope`: unless claimed, it expires `ttl`
    /// after this message. Redis sets the TTL of its keys now; PostgreSQL's
    /// [`expire_unclaimed`](Self::expire_unclaimed) finds it later by its time.
    pub(crate) async fn inbox_touched(
        self,
        scope: &str,
        ttl: Duration,
    ) -> Result<(), BackplaneError> {
        match self {
            Fleet::Redis(n) => n.inbox_touched(scope, ttl).await,
            Fleet::Postgres(_) => Ok(()),
        }
    }

    /// Deletes the histories starting with `prefix` that no one claimed and that took no
    /// message for `ttl`; how many messages went. (Redis's expire by themselves: 0.)
    pub(crate) async fn expire_unclaimed(
        self,
        prefix: &str,
        ttl: Duration,
    ) -> Result<u64, BackplaneError> {
        match self {
            Fleet::Redis(_) => Ok(0),
            Fleet::Postgres(n) => n.expire_unclaimed(prefix, ttl).await,
        }
    }
}

/// How long the fleet remembers which sender a message id belongs to (another sender's message
/// with that id is refused meanwhile; issue 18 #3).
pub(crate) const ID_OWNER_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A random hex string of `bytes` bytes (node names, epochs).
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let _ = getrandom::fill(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// This machine's name, for node names (`{hostname}_{random}`, as ASP.NET Core's
/// `{MachineName}_{guid}`).
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "hubbub".to_owned())
}

/// A local connection's presence record, as the router has it now (groups sorted).
pub(crate) fn local_record(router: &Router, connection: &str) -> Option<Record> {
    let conn = router.connection(connection)?;
    Some(Record {
        user: conn.user.clone(),
        groups: conn.group_names(),
    })
}

/// Group changes sent to other nodes, waiting for their acks (ASP.NET Core's
/// `AckHandler`): numbered from 1 per node.
#[derive(Debug)]
pub(crate) struct Acks {
    waiting: Mutex<HashMap<u32, oneshot::Sender<()>>>,
    next: AtomicU32,
}

impl Default for Acks {
    fn default() -> Self {
        Self {
            waiting: Mutex::default(),
            next: AtomicU32::new(1),
        }
    }
}

impl Acks {
    /// Sends a request with a fresh id (`send`), then waits up to `limit` for its ack;
    /// `false` if none came.
    pub(crate) async fn request(&self, limit: Duration, send: impl FnOnce(u32)) -> bool {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        send(id);
        let acked = tokio::time::timeout(limit, rx).await;
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        matches!(acked, Ok(Ok(())))
    }

    /// The ack of request `id` arrived.
    pub(crate) fn acked(&self, id: u32) {
        let waiting = self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        if let Some(tx) = waiting {
            let _ = tx.send(());
        }
    }
}

/// Orders a node's presence writes against its whole rewrites (after (re)connecting, or when
/// the other nodes forgot it), on either backplane. A rewrite first raises the generation,
/// then reads the router: a write queued before is in the rewrite and is not sent (sent after
/// it, it would bring back a stale row); a write queued during the rewrite is kept (not
/// dropped as "down") and sent once the node is up.
#[derive(Debug, Default)]
pub(crate) struct Generation {
    current: AtomicU64,
    restoring: AtomicBool,
}

impl Generation {
    /// The generation a write queued now belongs to.
    pub(crate) fn current(&self) -> u64 {
        self.current.load(Ordering::SeqCst)
    }

    /// A whole rewrite starts (call before reading the router).
    pub(crate) fn rewrite(&self) {
        self.current.fetch_add(1, Ordering::SeqCst);
    }

    /// The node is rewriting its presence after (re)connecting (`true`), or done (`false`).
    pub(crate) fn set_restoring(&self, on: bool) {
        self.restoring.store(on, Ordering::SeqCst);
    }

    /// Whether writes are accepted although the node is not up: it is rewriting its presence.
    pub(crate) fn restoring(&self) -> bool {
        self.restoring.load(Ordering::SeqCst)
    }

    /// Whether a write of `generation` is in a later rewrite already.
    pub(crate) fn is_stale(&self, generation: u64) -> bool {
        generation < self.current()
    }

    /// Whether the publisher may send: `up`, or up within `limit` while the node rewrites its
    /// presence (polled every 10 ms); `false` when down, after `limit`, or on shutdown.
    pub(crate) async fn wait_up(
        &self,
        up: &AtomicBool,
        limit: Duration,
        shutdown: &CancellationToken,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !up.load(Ordering::SeqCst) {
            if !self.restoring() || tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
                () = shutdown.cancelled() => return false,
            }
        }
        true
    }
}

/// The longest wait between two attempts to reach the backplane's server again.
pub(crate) const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(2);

/// How often a node that cannot join, or cannot rewrite its presence, repeats why in its log.
pub(crate) const SETUP_WARN_EVERY: Duration = Duration::from_secs(30);

/// The warnings about a failure that may last (a node that cannot join, subscribe or rewrite its
/// presence): the first one, then one every [`SETUP_WARN_EVERY`] or at once when the reason
/// changes, so a lasting misconfiguration stays visible without flooding the log.
#[derive(Debug, Default)]
pub(crate) struct Throttle(Option<(tokio::time::Instant, String)>);

impl Throttle {
    /// Whether `error` is to be logged as a warning now (the first time, when it differs from
    /// the one last warned about, or [`SETUP_WARN_EVERY`] after it); if so it is recorded as
    /// the one last warned about.
    pub(crate) fn warn_now(&mut self, error: &str) -> bool {
        let reason = Self::reason(error);
        let repeat = self
            .0
            .as_ref()
            .is_none_or(|(at, last)| last != reason || at.elapsed() >= SETUP_WARN_EVERY);
        if repeat {
            self.0 = Some((tokio::time::Instant::now(), reason.to_owned()));
        }
        repeat
    }

    /// What two errors share when they are the same reason: a PostgreSQL error's SQLSTATE
    /// (`SQLSTATE 40P01`; its text goes on with details that differ every time, such as a
    /// deadlock's process and transaction ids), else the whole text.
    fn reason(error: &str) -> &str {
        match error.find("SQLSTATE ") {
            Some(at) => error.get(at..at + "SQLSTATE 40P01".len()).unwrap_or(error),
            None => error,
        }
    }
}

/// A whole presence rewrite a node owes its fleet, on either backplane: its heartbeat found
/// that the other nodes forgot it (it stalled longer than its TTL, and they deleted its
/// presence) and renewed its liveness in the same step, so no later heartbeat finds it
/// forgotten again. The rewrite stays owed until one goes through, however it fails: an
/// outage has the node reconnect and rewrite; any other failure is logged (see
/// [`failed`](Self::failed)) and tried again by the heartbeat, 100 ms doubling to
/// [`RECONNECT_MAX_DELAY`], the node staying up.
#[derive(Debug, Default)]
pub(crate) struct PendingRewrite(Mutex<Option<Owed>>);

/// The state of an owed rewrite.
#[derive(Debug)]
struct Owed {
    /// When the next attempt is due.
    at: tokio::time::Instant,
    /// The wait after the next failure.
    delay: Duration,
    /// Attempts failed so far.
    failures: u32,
    /// The failures warned about: at debug level in between.
    warned: Throttle,
}

impl PendingRewrite {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Owed>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The heartbeat found this node forgotten: a rewrite is owed, due now (an attempt
    /// already owed keeps its backoff and warnings).
    pub(crate) fn owe(&self) {
        let now = tokio::time::Instant::now();
        let mut owed = self.lock();
        match owed.as_mut() {
            Some(owed) => owed.at = now,
            None => {
                *owed = Some(Owed {
                    at: now,
                    delay: Duration::from_millis(100),
                    failures: 0,
                    warned: Throttle::default(),
                })
            }
        }
    }

    /// When the owed rewrite is due; `None` if none is owed.
    pub(crate) fn due_at(&self) -> Option<tokio::time::Instant> {
        self.lock().as_ref().map(|owed| owed.at)
    }

    /// A whole rewrite of this node's presence went through (the heartbeat's, or one after
    /// (re)connecting): nothing is owed any more. Logged if attempts had failed.
    pub(crate) fn paid(&self) {
        let failures = self.lock().take().map_or(0, |owed| owed.failures);
        if failures > 0 {
            tracing::info!(
                failures,
                "this node's presence rewritten: the other nodes see its connections again"
            );
        }
    }

    /// Makes the owed rewrite with `rewrite` if it is due. A failure other than an outage is
    /// logged (a warning the first time, then every [`SETUP_WARN_EVERY`] or when the reason
    /// changes; at debug level in between) and leaves the rewrite owed, due again after the
    /// backoff; an outage is returned as [`BackplaneError::Down`] (the node reconnects and
    /// rewrites). `rewrite` calls [`paid`](Self::paid) when it goes through.
    pub(crate) async fn make_if_due(
        &self,
        rewrite: impl AsyncFnOnce() -> Result<(), BackplaneError>,
    ) -> Result<(), BackplaneError> {
        if self
            .due_at()
            .is_none_or(|at| at > tokio::time::Instant::now())
        {
            return Ok(());
        }
        match rewrite().await {
            Ok(()) => Ok(()),
            Err(e @ BackplaneError::Down(_)) => Err(e),
            Err(e) => {
                self.failed(e.to_string());
                Ok(())
            }
        }
    }

    /// An attempt failed with `error`, not an outage: the next one is due after the backoff.
    fn failed(&self, error: String) {
        let mut owed = self.lock();
        let Some(owed) = owed.as_mut() else {
            // Another rewrite (after reconnecting) went through meanwhile.
            return;
        };
        let now = tokio::time::Instant::now();
        owed.failures += 1;
        owed.at = now + owed.delay;
        owed.delay = (owed.delay * 2).min(RECONNECT_MAX_DELAY);
        let failures = owed.failures;
        if owed.warned.warn_now(&error) {
            tracing::warn!(%error, failures, "cannot rewrite this node's presence after the other nodes forgot it: they do not see its connections; retrying");
        } else {
            tracing::debug!(%error, failures, "presence rewrite failed again; retrying");
        }
    }
}

/// What a node's heartbeat task does next (see [`heartbeat`]).
pub(crate) enum Beat {
    /// Renew the liveness and reread the fleet's presence.
    Refresh,
    /// Try the [`PendingRewrite`] again: it is due.
    Rewrite,
}

/// A node's heartbeat task, on either backplane: `beat` runs every `every` ([`Beat::Refresh`])
/// and, while the node is `up`, when an owed rewrite that failed is due again between
/// heartbeats ([`Beat::Rewrite`]; while the node is down, it rewrites once it is back). Returns
/// on shutdown. A failed beat is logged at debug level: the node's own outage handling says
/// what matters.
pub(crate) async fn heartbeat<F>(
    every: Duration,
    owed: &PendingRewrite,
    up: impl Fn() -> bool,
    mut beat: impl FnMut(Beat) -> F,
    shutdown: &CancellationToken,
) where
    F: std::future::Future<Output = Result<(), BackplaneError>>,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let retry = owed.due_at().filter(|_| up());
        let next = tokio::select! {
            _ = tick.tick() => Beat::Refresh,
            () = tokio::time::sleep_until(retry.unwrap_or_else(tokio::time::Instant::now)), if retry.is_some() => Beat::Rewrite,
            () = shutdown.cancelled() => return,
        };
        if !up() {
            continue;
        }
        if let Err(e) = beat(next).await {
            tracing::debug!(error = %e, "backplane heartbeat failed");
        }
    }
}

/// The end of a presence reread, on either backplane: the nodes not in `live` (stopped renewing
/// their liveness, or already forgotten by another node) lost their connections without a
/// goodbye; they leave `mirror` and the hub hears of them (`lost`). Unless this node came
/// back from losing the backplane less than `node_ttl` + [`RECONNECT_MAX_DELAY`] ago
/// (`rejoined`): after a restart of the server every node writes its presence afresh, each
/// after its own reconnect delay, and until they all have, a missing node is not a lost one.
pub(crate) fn report_lost(
    mirror: &Mutex<mirror::Mirror>,
    rejoined: &Mutex<Option<tokio::time::Instant>>,
    live: &std::collections::HashSet<String>,
    node_ttl: Duration,
    lost: &tokio::sync::mpsc::UnboundedSender<Vec<crate::hub::LostConnection>>,
) {
    let settled = rejoined
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_none_or(|since| since.elapsed() >= node_ttl + RECONNECT_MAX_DELAY);
    let gone = mirror
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .forget_missing(live, settled);
    if !gone.is_empty() {
        tracing::info!(
            connections = gone.len(),
            "connections of a lost backplane node are gone"
        );
        let _ = lost.send(gone);
    }
}

#[cfg(test)]
mod tests {
    use super::Throttle;

    #[test]
    fn a_throttle_tells_reasons_apart_by_sqlstate_not_by_their_details() {
        let mut warned = Throttle::default();
        assert!(warned.warn_now(
            "PostgreSQL: SQLSTATE 40P01: deadlock detected: Process 812 waits for ShareLock on transaction 901"
        ));
        assert!(
            !warned.warn_now(
                "PostgreSQL: SQLSTATE 40P01: deadlock detected: Process 977 waits for ShareLock on transaction 1024"
            ),
            "the same reason with other details is not warned about again at once"
        );
        assert!(warned.warn_now("PostgreSQL: SQLSTATE 55P03: could not obtain lock"));
        assert!(warned.warn_now("NoPerm: this user has no permissions to run the 'hset' command"));
        assert!(!warned.warn_now("NoPerm: this user has no permissions to run the 'hset' command"));
        assert!(
            warned.warn_now("SQLSTATE 4"),
            "a truncated code is its own reason"
        );
    }
}
