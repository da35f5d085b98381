//! The Redis backplane: one node of a fleet that shares a Redis server.
//!
//! Three tasks per hub endpoint:
//! - the **publisher** sends queued commands (PUBLISH of invocations, presence writes) in
//!   pipelined batches over one multiplexed connection;
//! - the **subscriber** holds the pub/sub connection: it subscribes to the channels this node's
//!   connections need (`:all`, their groups, users and connection ids, the internal channels),
//!   delivers what arrives to local connections, and after losing Redis reconnects with
//!   backoff, subscribes again, rewrites this node's presence and reloads everyone else's (a
//!   step Redis refuses is warned about, throttled by [`Throttle`], and retried with the same
//!   backoff; every wait ends on shutdown);
//! - the **heartbeat** keeps this node's liveness key alive (TTL), rewriting its presence if
//!   the others forgot it (and trying again with backoff until a rewrite goes through: see
//!   [`PendingRewrite`]), and resynchronises the other nodes' presence, dropping nodes whose
//!   key expired (a crashed node).
//!
//! While Redis is unreachable (from the first failed call until the subscription is restored)
//! the node serves its own connections and drops what it would publish for other nodes; see
//! `ARCHITECTURE.md` for what that means for each kind of message.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use hubbub_protocol::Protocol;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::envelope::{self, GroupAction, Invocation};
use super::mirror::{Mirror, Record};
use super::{
    Acks, BackplaneError, Beat, Generation, ID_OWNER_TTL, PendingRewrite, RECONNECT_MAX_DELAY,
    Throttle, hostname, random_hex,
};
use crate::frame::Frame;
use crate::history::Entry;
use crate::hub::LostConnection;
use crate::router::{Router, Scope};

/// How a node reaches Redis, and its timings.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://HOST:PORT[/DB]` (`rediss://` is not built in).
    pub url: String,
    /// Put in front of every channel and key (StackExchange.Redis's `ChannelPrefix`), so several
    /// fleets can share one Redis.
    pub prefix: String,
    /// How long a node counts as alive after its last heartbeat: a crashed node's connections
    /// leave everyone's presence within `node_ttl + heartbeat`.
    pub node_ttl: Duration,
    /// How often a node renews its liveness and rereads the others' presence.
    pub heartbeat: Duration,
    /// How long a group change for a connection on another node waits for that node's ack
    /// (ASP.NET Core: 30 s).
    pub ack_timeout: Duration,
    /// Limit for one Redis call; a call that takes longer counts as Redis being unreachable.
    pub call_timeout: Duration,
}

impl RedisOptions {
    /// Options for the Redis at `url`: no prefix, a 6 s node TTL renewed every 2 s.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: String::new(),
            node_ttl: Duration::from_secs(6),
            heartbeat: Duration::from_secs(2),
            ack_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(2),
        }
    }
}

/// A presence change of one node, on the `:internal:presence` channel (JSON; Hubbub's own
/// channel: ASP.NET Core has no cross-node presence).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Delta {
    /// The node.
    s: String,
    /// The connection changed (with `r`: its record; without: it left).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    r: Option<Record>,
    /// The node rewrote its whole presence hash: read it again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    reload: bool,
    /// The node shut down.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    gone: bool,
}

enum Sub {
    /// Subscribe to or unsubscribe from a channel, whichever the router now calls for.
    Sync(String, Option<oneshot::Sender<()>>),
}

const PUBLISH_QUEUE: usize = 65_536;
const PIPELINE_BATCH: usize = 512;

/// Records a chat message (an id another sender holds refused, dedupe by sender and id, next
/// number of the scope, append, trim) in one step. KEYS: dedupe, seq, history, epoch, the id's
/// owner. ARGV: window ms, id, name, message, capacity, a fresh epoch (used if Redis has none),
/// the recipient of a direct message ('' for none), the sender owning the id, how long the
/// owner is kept (ms). Returns false for a repeat, {0} for an id another sender holds.
const APPEND: &str = r"
local id = ARGV[2]
if id ~= '' then
  local owner = redis.call('GET', KEYS[5])
  if owner and owner ~= ARGV[8] then return {0} end
  if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return false end
  redis.call('SET', KEYS[5], ARGV[8], 'PX', ARGV[9])
end
local epoch = redis.call('GET', KEYS[4])
if not epoch then epoch = ARGV[6]; redis.call('SET', KEYS[4], epoch) end
local seq = redis.call('INCR', KEYS[2])
if id == '' then id = 'h-' .. epoch .. '-' .. seq end
local entry = {seq = seq, id = id, name = ARGV[3], message = ARGV[4]}
if ARGV[7] ~= '' then entry.to = ARGV[7] end
redis.call('RPUSH', KEYS[3], cjson.encode(entry))
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[5]), -1)
return {seq, id, epoch}
";

/// A scope's messages after a number (all of them when the caller's epoch is not the fleet's).
/// KEYS: epoch, history. ARGV: after, limit, fresh epoch, the caller's epoch. Numbers in a
/// history list are contiguous, so the first one locates the rest.
const SINCE: &str = r"
local epoch = redis.call('GET', KEYS[1])
if not epoch then epoch = ARGV[3]; redis.call('SET', KEYS[1], epoch) end
local after = tonumber(ARGV[1])
if ARGV[4] ~= epoch then after = 0 end
local first = redis.call('LINDEX', KEYS[2], 0)
if not first then return {epoch} end
local start = after - cjson.decode(first).seq + 1
if start < 0 then start = 0 end
local items = redis.call('LRANGE', KEYS[2], start, start + tonumber(ARGV[2]) - 1)
table.insert(items, 1, epoch)
return items
";

/// One node's link to the Redis backplane for one hub endpoint.
pub(crate) struct RedisNode {
    /// `hubbub_backplane_connected` (1 while `up`) and `hubbub_backplane_publish_duration_seconds`.
    connected_gauge: prometheus_client::metrics::gauge::Gauge,
    publish_duration: prometheus_client::metrics::histogram::Histogram,
    /// This node's name: `{hostname}_{random}` (ASP.NET Core: `{MachineName}_{guid}`).
    pub(crate) server: String,
    /// `{prefix}{hub name}`: every channel and key starts with it and a colon.
    base: String,
    options: RedisOptions,
    client: redis::Client,
    conn: ConnectionManager,
    router: Arc<Router>,
    /// Commands for the publisher, a presence write's (and its announcement's) with the
    /// generation it was queued in.
    publish: mpsc::Sender<(Option<u64>, redis::Cmd)>,
    subs: mpsc::UnboundedSender<Sub>,
    mirror: Mutex<Mirror>,
    acks: Acks,
    up: AtomicBool,
    /// Presence writes against whole rewrites.
    generation: Generation,
    /// When the node last came back after losing Redis (`None`: it never lost it).
    rejoined: Mutex<Option<tokio::time::Instant>>,
    /// Connections of other nodes that vanished without a goodbye, for the hub's
    /// `on_connections_lost`.
    lost: mpsc::UnboundedSender<Vec<LostConnection>>,
    /// A whole presence rewrite the heartbeat owes the fleet (the others forgot this node) and
    /// has not yet got through.
    rewrite: PendingRewrite,
    append: redis::Script,
    since: redis::Script,
}

impl std::fmt::Debug for RedisNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisNode")
            .field("server", &self.server)
            .field("base", &self.base)
            .field("up", &self.up.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A node's presence hash as read from Redis: connection id → record (unreadable ones skipped).
/// Whether an error means Redis is out of reach or not serving for now (rather than refusing
/// a command): I/O, a dropped or refused connection, a timeout, or a server still loading its
/// data, failing over or asking to try again (`LOADING`, `MASTERDOWN`, `CLUSTERDOWN`,
/// `TRYAGAIN`).
fn is_outage(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::TryAgain
            )
        )
}

fn records(raw: HashMap<String, String>) -> HashMap<String, Record> {
    raw.into_iter()
        .filter_map(|(c, json)| Some((c, serde_json::from_str(&json).ok()?)))
        .collect()
}

fn cmd(name: &str) -> redis::Cmd {
    redis::cmd(name)
}

impl RedisNode {
    /// Connects lazily (a node starts while Redis is down, and serves its own clients) and
    /// starts the node's tasks.
    pub(crate) fn start(
        options: RedisOptions,
        hub_name: &str,
        router: Arc<Router>,
        shutdown: CancellationToken,
        tasks: &TaskTracker,
        prom: &crate::metrics::Prom,
    ) -> Result<(Arc<Self>, mpsc::UnboundedReceiver<Vec<LostConnection>>), BackplaneError> {
        let client = redis::Client::open(options.url.as_str())
            .map_err(|e| BackplaneError::Url(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.call_timeout))
            .set_response_timeout(Some(options.call_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| BackplaneError::Redis(e.to_string()))?;
        let (publish, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
        let (subs, subs_rx) = mpsc::unbounded_channel();
        let (lost, lost_rx) = mpsc::unbounded_channel();
        let node = Arc::new(Self {
            connected_gauge: prom.backplane_connected.clone(),
            publish_duration: prom.backplane_publish_duration.clone(),
            server: format!("{}_{}", hostname(), random_hex(16)),
            base: format!("{}{hub_name}", options.prefix),
            options,
            client,
            conn,
            router,
            publish,
            subs,
            mirror: Mutex::default(),
            acks: Acks::default(),
            up: AtomicBool::new(false),
            generation: Generation::default(),
            rejoined: Mutex::default(),
            lost,
            rewrite: PendingRewrite::default(),
            append: redis::Script::new(APPEND),
            since: redis::Script::new(SINCE),
        });
        tracing::info!(server = %node.server, channels = %format!("{}:*", node.base), "joining the Redis backplane");
        tasks.spawn(publisher(node.clone(), publish_rx, shutdown.clone()));
        tasks.spawn(subscriber(node.clone(), subs_rx, shutdown.clone()));
        tasks.spawn(heartbeat(node.clone(), shutdown));
        Ok((node, lost_rx))
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.base)
    }

    pub(crate) fn channel(&self, scope: &Scope) -> String {
        match scope {
            Scope::All => self.key("all"),
            Scope::Group(g) => self.key(&format!("group:{g}")),
            Scope::User(u) => self.key(&format!("user:{u}")),
            Scope::Connection(c) => self.key(&format!("connection:{c}")),
        }
    }

    fn presence_key(&self, server: &str) -> String {
        self.key(&format!("presence:{server}"))
    }

    fn node_key(&self, server: &str) -> String {
        self.key(&format!("node:{server}"))
    }

    /// Whether the node is connected to Redis and subscribed.
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    fn went_down(&self, reason: &str) {
        if self.up.swap(false, Ordering::SeqCst) {
            self.connected_gauge.set(0);
            tracing::warn!(%reason, "Redis backplane unavailable: serving this node's connections only until it is back");
        }
    }

    /// Queues a command for the publisher; dropped while Redis is unreachable.
    fn queue(&self, command: redis::Cmd) {
        self.queue_in(None, command);
    }

    /// As [`queue`](Self::queue), for a presence write of `generation` (see [`Generation`]).
    fn queue_in(&self, generation: Option<u64>, command: redis::Cmd) {
        if !self.is_up() && !self.generation.restoring() {
            return;
        }
        if self.publish.try_send((generation, command)).is_err() {
            tracing::warn!("backplane publish queue full: a message for other nodes was dropped");
        }
    }

    /// Publishes a message for the connections of other nodes in `scope`.
    pub(crate) fn publish(&self, scope: &Scope, frame: &Frame, exclude: &[String]) {
        if !self.is_up() {
            return;
        }
        let payload = Invocation {
            excluded: exclude.to_vec(),
            json: frame.bytes(Protocol::Json).cloned(),
            msgpack: frame.bytes(Protocol::MessagePack).cloned(),
            origin: Some(self.server.clone()),
        }
        .encode();
        let mut c = cmd("PUBLISH");
        c.arg(self.channel(scope)).arg(payload);
        self.queue(c);
    }

    /// Subscribes to (or unsubscribes from) a scope's channel as the router now needs, and
    /// waits (briefly) until Redis confirmed, so a message published after a join arrives.
    pub(crate) async fn sync(&self, scope: &Scope) {
        let (tx, rx) = oneshot::channel();
        let wait = self.is_up();
        if self
            .subs
            .send(Sub::Sync(self.channel(scope), wait.then_some(tx)))
            .is_ok()
            && wait
        {
            let _ = tokio::time::timeout(self.options.call_timeout, rx).await;
        }
    }

    /// As [`sync`](Self::sync), without waiting.
    pub(crate) fn sync_later(&self, scope: &Scope) {
        let _ = self.subs.send(Sub::Sync(self.channel(scope), None));
    }

    /// Writes one local connection's presence (`None`: it left) and tells the other nodes.
    pub(crate) fn presence(&self, connection: &str, record: Option<Record>) {
        let write = match &record {
            Some(r) => {
                let mut c = cmd("HSET");
                c.arg(self.presence_key(&self.server))
                    .arg(connection)
                    .arg(serde_json::to_string(r).unwrap_or_default());
                c
            }
            None => {
                let mut c = cmd("HDEL");
                c.arg(self.presence_key(&self.server)).arg(connection);
                c
            }
        };
        let delta = Delta {
            s: self.server.clone(),
            c: Some(connection.to_owned()),
            r: record,
            reload: false,
            gone: false,
        };
        let generation = Some(self.generation.current());
        self.queue_in(generation, write);
        let mut c = cmd("PUBLISH");
        c.arg(self.key("internal:presence"))
            .arg(serde_json::to_string(&delta).unwrap_or_default());
        self.queue_in(generation, c);
    }

    /// Connections of other nodes (in `group`).
    pub(crate) fn remote_count(&self, group: Option<&str>) -> usize {
        self.mirror
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .connection_count(group)
    }

    /// Users of other nodes (in `group`) with their connection counts there.
    pub(crate) fn remote_users(&self, group: Option<&str>) -> Vec<(String, usize)> {
        self.mirror
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .users(group)
    }

    /// Asks the node that holds `connection` to add it to (or remove it from) `group`, and
    /// waits for its ack.
    pub(crate) async fn remote_group(
        &self,
        connection: &str,
        group: &str,
        add: bool,
    ) -> Result<(), BackplaneError> {
        let acked = self
            .acks
            .request(self.options.ack_timeout, |id| {
                let action = GroupAction {
                    id,
                    server: self.server.clone(),
                    add,
                    group: group.to_owned(),
                    connection: connection.to_owned(),
                };
                let mut c = cmd("PUBLISH");
                c.arg(self.key("internal:groups")).arg(action.encode());
                self.queue(c);
            })
            .await;
        if acked {
            Ok(())
        } else {
            Err(BackplaneError::NoAck(connection.to_owned()))
        }
    }

    async fn call<T: redis::FromRedisValue>(
        &self,
        what: &'static str,
        run: impl AsyncFnOnce(ConnectionManager) -> redis::RedisResult<T>,
    ) -> Result<T, BackplaneError> {
        if !self.is_up() {
            return Err(BackplaneError::Down("Redis"));
        }
        match tokio::time::timeout(self.options.call_timeout, run(self.conn.clone())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if is_outage(&e) {
                    self.went_down(&format!("{what}: {e}"));
                    Err(BackplaneError::Down("Redis"))
                } else {
                    Err(BackplaneError::Redis(e.to_string()))
                }
            }
            Err(_) => {
                self.went_down(&format!("{what}: no answer"));
                Err(BackplaneError::Down("Redis"))
            }
        }
    }

    /// Whether `user` sends `id` for the first time within `window`, across the fleet.
    pub(crate) async fn first_time(
        &self,
        user: &str,
        id: &str,
        window: Duration,
    ) -> Result<bool, BackplaneError> {
        let key = self.dedupe_key(user, id);
        let ms = window.as_millis() as u64;
        let set: Option<String> = self
            .call("dedupe", async move |mut conn| {
                cmd("SET")
                    .arg(key)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(set.is_some())
    }

    fn dedupe_key(&self, user: &str, id: &str) -> String {
        // The length keeps `a:b` + `c` apart from `a` + `b:c`.
        self.key(&format!("msg:{}:{user}:{id}", user.len()))
    }

    /// Records a chat message in the fleet's history of `scope` (the newest
    /// [`MEMORY_CAPACITY`](crate::MEMORY_CAPACITY) are kept): `None` for a repeat of `(user,
    /// id)` within [`DEDUPE_WINDOW`](crate::DEDUPE_WINDOW), else the entry and the epoch it is
    /// numbered in; `IdTaken` when another sender's message holds `id` (its owner is kept
    /// [`ID_OWNER_TTL`]).
    pub(crate) async fn chat_append(
        &self,
        scope: &str,
        user: &str,
        id: Option<&str>,
        name: &str,
        message: &str,
        to: Option<&str>,
    ) -> Result<Result<Option<(Entry, String)>, crate::HistoryError>, BackplaneError> {
        let (window, capacity) = (crate::DEDUPE_WINDOW, crate::MEMORY_CAPACITY);
        let owner = crate::history::owner(user).to_owned();
        let keys = [
            self.dedupe_key(user, id.unwrap_or("")),
            self.key(&format!("chat:seq:{scope}")),
            self.key(&format!("chat:history:{scope}")),
            self.key("chat:epoch"),
            self.key(&format!("msg-owner:{}", id.unwrap_or(""))),
        ];
        let args = (
            window.as_millis() as u64,
            id.unwrap_or("").to_owned(),
            name.to_owned(),
            message.to_owned(),
            capacity,
            random_hex(8),
            to.unwrap_or("").to_owned(),
            owner,
            ID_OWNER_TTL.as_millis() as u64,
        );
        let script = &self.append;
        let result: Option<Vec<redis::Value>> = self
            .call("history append", async move |mut conn| {
                let mut inv = script.prepare_invoke();
                for k in &keys {
                    inv.key(k);
                }
                inv.arg(args.0)
                    .arg(&args.1)
                    .arg(&args.2)
                    .arg(&args.3)
                    .arg(args.4)
                    .arg(&args.5)
                    .arg(&args.6)
                    .arg(&args.7)
                    .arg(args.8);
                inv.invoke_async(&mut conn).await
            })
            .await?;
        let Some(items) = result else {
            return Ok(Ok(None));
        };
        if items.len() == 1 {
            return Ok(Err(crate::HistoryError::IdTaken(
                id.unwrap_or("").to_owned(),
            )));
        }
        let (seq, id, epoch): (u64, String, String) =
            redis::FromRedisValue::from_redis_value(redis::Value::Array(items))
                .map_err(|e| BackplaneError::Redis(e.to_string()))?;
        Ok(Ok(Some((
            Entry {
                seq,
                id,
                name: name.to_owned(),
                message: message.to_owned(),
                to: to.map(str::to_owned),
            },
            epoch,
        ))))
    }

    /// The fleet's epoch and the messages of `scope` after `after` (all of them when `epoch` is
    /// not the fleet's), at most `limit`.
    pub(crate) async fn chat_since(
        &self,
        scope: &str,
        epoch: &str,
        after: u64,
        limit: usize,
    ) -> Result<(String, Vec<Entry>), BackplaneError> {
        let keys = [
            self.key("chat:epoch"),
            self.key(&format!("chat:history:{scope}")),
        ];
        let (fresh, epoch) = (random_hex(8), epoch.to_owned());
        let script = &self.since;
        let items: Vec<String> = self
            .call("history read", async move |mut conn| {
                let mut inv = script.prepare_invoke();
                inv.key(&keys[0])
                    .key(&keys[1])
                    .arg(after)
                    .arg(limit)
                    .arg(&fresh)
                    .arg(&epoch);
                inv.invoke_async(&mut conn).await
            })
            .await?;
        let mut items = items.into_iter();
        let epoch = items.next().unwrap_or_default();
        let entries = items
            .filter_map(|json| serde_json::from_str::<Entry>(&json).ok())
            .collect();
        Ok((epoch, entries))
    }

    /// Every channel this node needs now.
    fn wanted(&self) -> Vec<String> {
        let (groups, users, connections) = self.router.names();
        let mut channels = vec![
            self.key("all"),
            self.key("internal:groups"),
            self.key(&format!("internal:ack:{}", self.server)),
            self.key("internal:presence"),
        ];
        channels.extend(groups.into_iter().map(|g| self.channel(&Scope::Group(g))));
        channels.extend(users.into_iter().map(|u| self.channel(&Scope::User(u))));
        channels.extend(
            connections
                .into_iter()
                .map(|c| self.channel(&Scope::Connection(c))),
        );
        channels
    }

    /// Whether this node needs `channel` now.
    fn wants(&self, channel: &str) -> bool {
        let Some(rest) = channel
            .strip_prefix(&self.base)
            .and_then(|r| r.strip_prefix(':'))
        else {
            return false;
        };
        if let Some(g) = rest.strip_prefix("group:") {
            self.router.has_group(g)
        } else if let Some(u) = rest.strip_prefix("user:") {
            self.router.has_user(u)
        } else if let Some(c) = rest.strip_prefix("connection:") {
            self.router.has_connection(c)
        } else {
            true
        }
    }

    /// What arrived on a channel.
    fn on_message(self: &Arc<Self>, channel: &str, payload: &[u8]) {
        let Some(rest) = channel
            .strip_prefix(&self.base)
            .and_then(|r| r.strip_prefix(':'))
        else {
            return;
        };
        let scope = if rest == "all" {
            Scope::All
        } else if let Some(g) = rest.strip_prefix("group:") {
            Scope::Group(g.to_owned())
        } else if let Some(u) = rest.strip_prefix("user:") {
            Scope::User(u.to_owned())
        } else if let Some(c) = rest.strip_prefix("connection:") {
            Scope::Connection(c.to_owned())
        } else if rest == "internal:presence" {
            self.on_presence(payload);
            return;
        } else if rest == "internal:groups" {
            if let Some(action) = GroupAction::decode(payload) {
                // Applying it subscribes, which this task serves: not here.
                let node = self.clone();
                tokio::spawn(async move { node.on_group_action(action).await });
            }
            return;
        } else if rest.starts_with("internal:ack:") {
            if let Some(id) = envelope::decode_ack(payload) {
                self.acks.acked(id);
            }
            return;
        } else {
            return;
        };
        let Some(invocation) = Invocation::decode(payload) else {
            tracing::warn!(%channel, "a backplane message that is not an invocation was ignored");
            return;
        };
        if invocation.origin.as_deref() == Some(self.server.as_str()) {
            return;
        }
        let frame = Frame::encoded(invocation.json, invocation.msgpack);
        self.router.deliver(&scope, &frame, &invocation.excluded);
    }

    fn on_presence(self: &Arc<Self>, payload: &[u8]) {
        let Ok(delta) = serde_json::from_slice::<Delta>(payload) else {
            return;
        };
        if delta.s == self.server {
            return;
        }
        if delta.gone {
            self.mirror
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .replace(&delta.s, None);
        } else if delta.reload {
            let node = self.clone();
            tokio::spawn(async move {
                if let Ok(records) = node.load(&delta.s).await {
                    node.mirror
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .replace(&delta.s, Some(records));
                }
            });
        } else if let Some(c) = &delta.c {
            self.mirror
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .apply(&delta.s, c, delta.r);
        }
    }

    async fn on_group_action(self: Arc<Self>, action: GroupAction) {
        if !self.router.has_connection(&action.connection) {
            return;
        }
        if action.add {
            self.local_add(&action.connection, &action.group).await;
        } else {
            self.local_remove(&action.connection, &action.group).await;
        }
        let mut c = cmd("PUBLISH");
        c.arg(self.key(&format!("internal:ack:{}", action.server)))
            .arg(envelope::encode_ack(action.id));
        self.queue(c);
    }

    /// A local connection joins a group: registry, subscription, presence.
    pub(crate) async fn local_add(&self, connection: &str, group: &str) -> bool {
        match self.router.add_to_group(connection, group) {
            None => false,
            Some(first) => {
                if first {
                    self.sync(&Scope::Group(group.to_owned())).await;
                }
                self.presence(connection, self.record(connection));
                true
            }
        }
    }

    /// A local connection leaves a group.
    pub(crate) async fn local_remove(&self, connection: &str, group: &str) -> bool {
        match self.router.remove_from_group(connection, group) {
            None => false,
            Some(last) => {
                if last {
                    self.sync_later(&Scope::Group(group.to_owned()));
                }
                self.presence(connection, self.record(connection));
                true
            }
        }
    }

    /// A local connection's presence record.
    pub(crate) fn record(&self, connection: &str) -> Option<Record> {
        super::local_record(&self.router, connection)
    }

    /// Another node's presence hash.
    async fn load(&self, server: &str) -> Result<HashMap<String, Record>, BackplaneError> {
        let key = self.presence_key(server);
        let raw: HashMap<String, String> = self
            .call("presence read", async move |mut conn| {
                cmd("HGETALL").arg(key).query_async(&mut conn).await
            })
            .await?;
        Ok(records(raw))
    }

    /// Renews this node's liveness; rereads the presence of every live node and forgets the
    /// dead ones (deleting what they left in Redis). A node the others forgot while it was
    /// alive (back in the set of nodes only now) rewrites its whole presence, and keeps trying
    /// until a rewrite goes through (see [`PendingRewrite`]).
    async fn refresh(&self) -> Result<(), BackplaneError> {
        let (node_key, nodes_key, server, ttl) = (
            self.node_key(&self.server),
            self.key("nodes"),
            self.server.clone(),
            self.options.node_ttl.as_millis() as u64,
        );
        let (added, members): (i64, Vec<String>) = self
            .call("heartbeat", async move |mut conn| {
                let (_, added, members): ((), i64, Vec<String>) = redis::pipe()
                    .cmd("SET")
                    .arg(&node_key)
                    .arg(1)
                    .arg("PX")
                    .arg(ttl)
                    .cmd("SADD")
                    .arg(&nodes_key)
                    .arg(&server)
                    .cmd("SMEMBERS")
                    .arg(&nodes_key)
                    .query_async(&mut conn)
                    .await?;
                Ok((added, members))
            })
            .await?;
        // This node was not in the set: the others forgot it while it was alive (it stalled
        // longer than its TTL) and deleted its presence. It writes it afresh. Recorded at
        // once: the SADD put it back in the set, so no later heartbeat finds it forgotten; the
        // rewrite is owed until one goes through, whatever fails meanwhile.
        if added == 1 {
            tracing::warn!(
                "the other backplane nodes forgot this one (it stalled longer than its TTL): rewriting its presence"
            );
            self.rewrite.owe();
        }
        self.rewrite_if_due().await?;
        let others: Vec<String> = members.into_iter().filter(|s| *s != self.server).collect();
        // Each node's liveness and presence read in one transaction: a node whose key expires
        // in between would otherwise be read alive with the presence another node has just
        // deleted, and its connections would vanish without being reported lost.
        let keys: Vec<(String, String)> = others
            .iter()
            .map(|s| (self.node_key(s), self.presence_key(s)))
            .collect();
        let read: Vec<(bool, HashMap<String, String>)> = if keys.is_empty() {
            Vec::new()
        } else {
            self.call("presence read", async move |mut conn| {
                let mut pipe = redis::pipe();
                pipe.atomic();
                for (node, presence) in &keys {
                    pipe.cmd("EXISTS").arg(node).cmd("HGETALL").arg(presence);
                }
                let flat: Vec<redis::Value> = pipe.query_async(&mut conn).await?;
                flat.chunks(2)
                    .map(|pair| {
                        Ok((
                            redis::from_redis_value_ref(&pair[0])?,
                            redis::from_redis_value_ref(&pair[1])?,
                        ))
                    })
                    .collect()
            })
            .await?
        };
        let mut live = HashSet::new();
        for (server, (alive, raw)) in others.iter().zip(read) {
            if alive {
                self.mirror
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .replace(server, Some(records(raw)));
                live.insert(server.clone());
            } else {
                tracing::info!(node = %server, "a backplane node stopped renewing its heartbeat: its connections are forgotten");
                let (nodes_key, presence, server) =
                    (self.key("nodes"), self.presence_key(server), server.clone());
                let _: () = self
                    .call("forget node", async move |mut conn| {
                        redis::pipe()
                            .cmd("SREM")
                            .arg(&nodes_key)
                            .arg(&server)
                            .ignore()
                            .cmd("DEL")
                            .arg(&presence)
                            .ignore()
                            .query_async(&mut conn)
                            .await
                    })
                    .await?;
            }
        }
        super::report_lost(
            &self.mirror,
            &self.rejoined,
            &live,
            self.options.node_ttl,
            &self.lost,
        );
        Ok(())
    }

    /// Makes the [`PendingRewrite`] if it is due (see [`PendingRewrite::make_if_due`]): a
    /// failure that is an outage has the node go down (the subscriber reconnects and rewrites).
    async fn rewrite_if_due(&self) -> Result<(), BackplaneError> {
        self.rewrite
            .make_if_due(async || match self.restore().await {
                Ok(()) => Ok(()),
                Err(e) if is_outage(&e) => {
                    self.went_down(&format!("presence rewrite: {e}"));
                    Err(BackplaneError::Down("Redis"))
                }
                Err(e) => Err(BackplaneError::Redis(e.to_string())),
            })
            .await
    }

    /// After (re)connecting, or when the other nodes forgot this one: this node's presence
    /// written afresh (Redis may have restarted empty), the others told to reread it. Any
    /// command refused fails it (the pipeline's other commands run).
    async fn restore(&self) -> Result<(), redis::RedisError> {
        // Before reading the router: what was queued until now is in this rewrite.
        self.generation.rewrite();
        let key = self.presence_key(&self.server);
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(&key).ignore();
        for (id, user, mut groups) in self.router.records() {
            groups.sort();
            let record = serde_json::to_string(&Record { user, groups }).unwrap_or_default();
            pipe.cmd("HSET").arg(&key).arg(id).arg(record).ignore();
        }
        pipe.cmd("SET")
            .arg(self.node_key(&self.server))
            .arg(1)
            .arg("PX")
            .arg(self.options.node_ttl.as_millis() as u64)
            .ignore();
        pipe.cmd("SADD")
            .arg(self.key("nodes"))
            .arg(&self.server)
            .ignore();
        let delta = Delta {
            s: self.server.clone(),
            c: None,
            r: None,
            reload: true,
            gone: false,
        };
        pipe.cmd("PUBLISH")
            .arg(self.key("internal:presence"))
            .arg(serde_json::to_string(&delta).unwrap_or_default())
            .ignore();
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.options.call_timeout, pipe.query_async::<()>(&mut conn))
            .await
        {
            Ok(Ok(())) => {
                self.rewrite.paid();
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no answer",
            ))),
        }
    }

    /// On shutdown: this node's keys removed, the others told at once.
    async fn leave(&self) {
        let delta = Delta {
            s: self.server.clone(),
            c: None,
            r: None,
            reload: false,
            gone: true,
        };
        let mut pipe = redis::pipe();
        pipe.cmd("DEL")
            .arg(self.presence_key(&self.server))
            .arg(self.node_key(&self.server))
            .ignore()
            .cmd("SREM")
            .arg(self.key("nodes"))
            .arg(&self.server)
            .ignore()
            .cmd("PUBLISH")
            .arg(self.key("internal:presence"))
            .arg(serde_json::to_string(&delta).unwrap_or_default())
            .ignore();
        let mut conn = self.conn.clone();
        let _ = tokio::time::timeout(self.options.call_timeout, pipe.query_async::<()>(&mut conn))
            .await;
    }
}

async fn publisher(
    node: Arc<RedisNode>,
    mut rx: mpsc::Receiver<(Option<u64>, redis::Cmd)>,
    shutdown: CancellationToken,
) {
    let mut conn = node.conn.clone();
    loop {
        let first = tokio::select! {
            c = rx.recv() => match c { Some(c) => c, None => return },
            () = shutdown.cancelled() => return,
        };
        let mut batch = vec![first];
        while batch.len() < PIPELINE_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let limit = node.options.call_timeout * 2;
        if !node.generation.wait_up(&node.up, limit, &shutdown).await {
            continue;
        }
        let mut pipe = redis::pipe();
        for (generation, c) in batch {
            // A presence write from before the node last rewrote its presence is in that rewrite.
            if generation.is_none_or(|g| !node.generation.is_stale(g)) {
                pipe.add_command(c).ignore();
            }
        }
        if pipe.is_empty() {
            continue;
        }
        let start = std::time::Instant::now();
        match tokio::time::timeout(node.options.call_timeout, pipe.query_async::<()>(&mut conn))
            .await
        {
            Ok(Ok(())) => node.publish_duration.observe(start.elapsed().as_secs_f64()),
            Ok(Err(e)) if is_outage(&e) => node.went_down(&format!("publish: {e}")),
            // A pipeline's commands run one by one: only the refused one is lost.
            Ok(Err(e)) => tracing::warn!(error = %e, "a backplane publish was refused"),
            Err(_) => node.went_down("publish: no answer"),
        }
    }
}

/// Waits `delay` before the subscriber's next attempt, acknowledging the joins and leaves meanwhile
/// (the next subscription reads the router afresh); `false` at once on shutdown (or if the node
/// is gone).
async fn pause(
    delay: Duration,
    subs: &mut mpsc::UnboundedReceiver<Sub>,
    shutdown: &CancellationToken,
) -> bool {
    let wake = tokio::time::Instant::now() + delay;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(wake) => return true,
            s = subs.recv() => match s {
                Some(Sub::Sync(_, ack)) => { if let Some(ack) = ack { let _ = ack.send(()); } }
                None => return false,
            },
            () = shutdown.cancelled() => return false,
        }
    }
}

/// Why the subscriber's attempt to rejoin on a fresh pub/sub connection failed.
struct SetupFailure {
    /// The step: `subscribe` or `presence rewrite`.
    step: &'static str,
    /// Whether it is an outage (see [`is_outage`]; no answer is one), rather than a refusal.
    outage: bool,
    error: String,
}

impl SetupFailure {
    fn of(
        step: &'static str,
        result: Result<redis::RedisError, tokio::time::error::Elapsed>,
    ) -> Self {
        match result {
            Ok(e) => Self {
                step,
                outage: is_outage(&e),
                error: e.to_string(),
            },
            Err(_) => Self {
                step,
                outage: true,
                error: "no answer".to_owned(),
            },
        }
    }
}

async fn subscriber(
    node: Arc<RedisNode>,
    mut subs: mpsc::UnboundedReceiver<Sub>,
    shutdown: CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    let mut ever = false;
    // Setup failures warned about: as the PostgreSQL listener, every SETUP_WARN_EVERY (or at
    // once when the reason changes) while they last.
    let mut warned = Throttle::default();
    loop {
        let connected = tokio::select! {
            r = tokio::time::timeout(node.options.call_timeout, node.client.get_async_pubsub()) => r,
            () = shutdown.cancelled() => return,
        };
        let joined = match connected {
            Ok(Ok(pubsub)) => {
                // Subscribing and the rewrite end at once on shutdown too.
                let joined = tokio::select! {
                    r = subscribe_and_restore(&node, pubsub) => r,
                    () = shutdown.cancelled() => return,
                };
                match joined {
                    Ok(joined) => Ok(joined),
                    Err(f) if f.outage => {
                        tracing::debug!(error = %f.error, step = f.step, "rejoining the Redis backplane failed; retrying");
                        Err(())
                    }
                    Err(f) => {
                        if warned.warn_now(&f.error) {
                            tracing::warn!(error = %f.error, step = f.step, "cannot rejoin the Redis backplane: Redis refused a command; retrying");
                        } else {
                            tracing::debug!(error = %f.error, step = f.step, "rejoining the Redis backplane refused again; retrying");
                        }
                        Err(())
                    }
                }
            }
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no answer".to_owned(),
                };
                if warned.warn_now(&error) {
                    tracing::warn!(%error, "cannot reach Redis for the backplane; retrying");
                }
                Err(())
            }
        };
        let Ok((mut sink, mut stream, mut subscribed)) = joined else {
            node.generation.set_restoring(false);
            if !pause(delay, &mut subs, &shutdown).await {
                return;
            }
            delay = (delay * 2).min(RECONNECT_MAX_DELAY);
            continue;
        };
        if ever {
            *node.rejoined.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(tokio::time::Instant::now());
        }
        node.up.store(true, Ordering::SeqCst);
        node.generation.set_restoring(false);
        node.connected_gauge.set(1);
        if let Err(e) = node.refresh().await {
            tracing::debug!(error = %e, "presence reload after subscribing failed");
        }
        if ever {
            tracing::info!(
                channels = subscribed.len(),
                "Redis backplane back: resubscribed, presence restored"
            );
        } else {
            tracing::info!(channels = subscribed.len(), "Redis backplane connected");
        }
        ever = true;
        warned = Throttle::default();
        delay = Duration::from_millis(100);
        let mut check = tokio::time::interval(node.options.heartbeat);
        let reason = loop {
            tokio::select! {
                m = stream.next() => match m {
                    Some(m) => node.on_message(m.get_channel_name(), m.get_payload_bytes()),
                    None => break "the subscription connection closed",
                },
                s = subs.recv() => match s {
                    Some(Sub::Sync(channel, ack)) => {
                        let want = node.wants(&channel);
                        let have = subscribed.contains(&channel);
                        let result = if want && !have {
                            subscribed.insert(channel.clone());
                            tokio::time::timeout(node.options.call_timeout, sink.subscribe(&channel)).await
                        } else if !want && have {
                            subscribed.remove(&channel);
                            tokio::time::timeout(node.options.call_timeout, sink.unsubscribe(&channel)).await
                        } else {
                            Ok(Ok(()))
                        };
                        if let Some(ack) = ack { let _ = ack.send(()); }
                        if !matches!(result, Ok(Ok(()))) {
                            break "a subscribe failed";
                        }
                    }
                    None => return,
                },
                _ = check.tick() => if !node.is_up() { break "a Redis call failed" },
                () = shutdown.cancelled() => return,
            }
        };
        node.went_down(reason);
    }
}

/// The subscriber's (re)join on a fresh pub/sub connection: subscribed to every channel the
/// router needs, then this node's presence rewritten ([`RedisNode::restore`]); the connection's
/// halves and the channels subscribed.
async fn subscribe_and_restore(
    node: &RedisNode,
    pubsub: redis::aio::PubSub,
) -> Result<
    (
        redis::aio::PubSubSink,
        redis::aio::PubSubStream,
        HashSet<String>,
    ),
    SetupFailure,
> {
    let (mut sink, stream) = pubsub.split();
    let wanted = node.wanted();
    let mut subscribed: HashSet<String> = HashSet::new();
    for chunk in wanted.chunks(1000) {
        match tokio::time::timeout(node.options.call_timeout, sink.subscribe(chunk)).await {
            Ok(Ok(())) => subscribed.extend(chunk.iter().cloned()),
            Ok(Err(e)) => return Err(SetupFailure::of("subscribe", Ok(e))),
            Err(elapsed) => return Err(SetupFailure::of("subscribe", Err(elapsed))),
        }
    }
    node.generation.set_restoring(true);
    node.restore()
        .await
        .map_err(|e| SetupFailure::of("presence rewrite", Ok(e)))?;
    Ok((sink, stream, subscribed))
}

async fn heartbeat(node: Arc<RedisNode>, shutdown: CancellationToken) {
    super::heartbeat(
        node.options.heartbeat,
        &node.rewrite,
        || node.is_up(),
        |beat| {
            let node = &node;
            async move {
                match beat {
                    Beat::Refresh => node.refresh().await,
                    Beat::Rewrite => node.rewrite_if_due().await,
                }
            }
        },
        &shutdown,
    )
    .await;
    if node.is_up() {
        node.leave().await;
    }
}

/// An inbox no one claimed expires `ttl` after its last message (issue 18 #8): KEYS: the
/// inbox's claimed marker, its history, its numbering. ARGV: the TTL (ms). Returns 1 if the
/// TTL was set, 0 for a claimed inbox.
const UNCLAIMED: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('PEXPIRE', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[3], ARGV[1])
return 1
";

/// Histories no one owns, on Redis: the inboxes whose user connected have a marker
/// (`:chat:claimed:{scope}`, kept for ever, as a history file's `claimed` table), and the
/// history and numbering keys of the others carry a TTL renewed by each message.
impl RedisNode {
    /// Whether the fleet holds the history `scope` (`EXISTS` on its list).
    pub(crate) async fn history_exists(&self, scope: &str) -> Result<bool, BackplaneError> {
        let key = self.key(&format!("chat:history:{scope}"));
        self.call("history exists", async move |mut conn| {
            cmd("EXISTS").arg(key).query_async(&mut conn).await
        })
        .await
    }

    /// Marks the inbox `scope` as claimed and drops any TTL its keys had.
    pub(crate) async fn claim_inbox(&self, scope: &str) -> Result<(), BackplaneError> {
        let keys = [
            self.key(&format!("chat:claimed:{scope}")),
            self.key(&format!("chat:history:{scope}")),
            self.key(&format!("chat:seq:{scope}")),
        ];
        self.call("claim inbox", async move |mut conn| {
            redis::pipe()
                .atomic()
                .cmd("SET")
                .arg(&keys[0])
                .arg(1)
                .ignore()
                .cmd("PERSIST")
                .arg(&keys[1])
                .ignore()
                .cmd("PERSIST")
                .arg(&keys[2])
                .ignore()
                .query_async(&mut conn)
                .await
        })
        .await
    }

    /// After a message was recorded in the inbox `scope`: unless it is claimed, its keys
    /// expire `ttl` from now.
    pub(crate) async fn inbox_touched(
        &self,
        scope: &str,
        ttl: Duration,
    ) -> Result<(), BackplaneError> {
        static SCRIPT: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| redis::Script::new(UNCLAIMED));
        let keys = [
            self.key(&format!("chat:claimed:{scope}")),
            self.key(&format!("chat:history:{scope}")),
            self.key(&format!("chat:seq:{scope}")),
        ];
        let ms = (ttl.as_millis() as u64).max(1);
        let _: i64 = self
            .call("inbox expiry", async move |mut conn| {
                let mut inv = SCRIPT.prepare_invoke();
                inv.key(&keys[0]).key(&keys[1]).key(&keys[2]).arg(ms);
                inv.invoke_async(&mut conn).await
            })
            .await?;
        Ok(())
    }
}
