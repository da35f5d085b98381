//! The PostgreSQL backplane: one node of a fleet that shares a PostgreSQL database, with the
//! behaviour of the Redis backplane (`redis.rs`), scope by scope.
//!
//! Delivery is LISTEN/NOTIFY on one channel per hub endpoint (`hubbub_` and 16 hex digits of
//! the SHA-256 of `{prefix}{hub name}`; identifiers are at most 63 bytes): every node listens
//! to everything published for its hub and its router delivers what concerns its connections
//! (a message for a scope with no connection here costs a lookup). A payload that does not fit
//! in a notification (PostgreSQL's limit is 8,000 bytes) is stored in `hubbub_payloads` and
//! announced by its id, with the group, user or connection it is for: a node fetches only the
//! payloads it has a connection for (and those for every node: broadcasts to all, presence),
//! before handling the next notification, so order is kept. State lives in tables (created
//! and migrated by the hub, versioned in `hubbub_schema`): presence per node with node
//! liveness (`hubbub_presence`, `hubbub_nodes`), message-id windows (`hubbub_ids`), the
//! fleet's epoch and numbering (`hubbub_epochs`, `hubbub_scopes`) and the chat histories,
//! trimmed to a bound (`hubbub_history`).
//!
//! Four tasks per hub endpoint:
//! - the **publisher** sends queued notifications and presence writes in batches, each batch
//!   one statement ([`PUBLISH`]: one transaction, one round trip); a batch refused for a
//!   reason other than an outage is sent again op by op, so only the bad op is lost;
//! - the **listener** holds both connections (one LISTENs and fetches large payloads, one runs
//!   everything else): it connects, checks the encoding, migrates the schema, listens, writes
//!   this node's presence afresh, delivers what arrives, and after losing the database
//!   reconnects with backoff;
//! - the **heartbeat** renews this node's liveness (rewriting its presence if the others
//!   forgot it, and trying again with backoff until a rewrite goes through: see
//!   [`PendingRewrite`]) and rereads every node's presence, dropping nodes whose liveness
//!   lapsed (a crashed node);
//! - the **sweeper** deletes expired message ids and old large payloads, one node at a time.
//!
//! The connection is made without TLS (`NoTls`): meant for a database on loopback or a
//! private network. While the database is unreachable the node serves its own connections
//! and drops what it would publish for other nodes, as with Redis. A failed call is an outage,
//! a refusal that passes (a deadlock, a lock not available) or a refusal for good: see
//! [`failure`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use hubbub_protocol::Protocol;
use rmpv::Value;
use sha2::Digest;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls, Statement};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::envelope::{GroupAction, Invocation};
use super::mirror::{Mirror, Record};
use super::{
    Acks, BackplaneError, Beat, Generation, ID_OWNER_TTL, PendingRewrite, RECONNECT_MAX_DELAY,
    Throttle, hostname, random_hex,
};
use crate::frame::Frame;
use crate::history::Entry;
use crate::hub::LostConnection;
use crate::router::{Router, Scope};

/// How a node reaches PostgreSQL, and its timings.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// A libpq-style connection string: `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` or
    /// `host=… user=… dbname=…`. TLS is not built in: use a database on loopback or on a
    /// private network.
    pub url: String,
    /// Put in front of the hub's name in every row and in the channel name, so several fleets
    /// can share one database.
    pub prefix: String,
    /// How long a node counts as alive after its last heartbeat: a crashed node's connections
    /// leave everyone's presence within `node_ttl + heartbeat`.
    pub node_ttl: Duration,
    /// How often a node renews its liveness and rereads the others' presence.
    pub heartbeat: Duration,
    /// How long a group change for a connection on another node waits for that node's ack.
    pub ack_timeout: Duration,
    /// Limit for one database call; a call that takes longer counts as the database being
    /// unreachable.
    pub call_timeout: Duration,
}

impl PostgresOptions {
    /// Options for the database at `url`: no prefix (as
    /// [`RedisOptions::new`](super::RedisOptions::new); `hubbub hub` passes
    /// `--postgres-prefix`, default `hubbub:`), a 6 s node TTL renewed every 2 s.
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

impl PostgresOptions {
    /// A connection string for logs, without its password in any of libpq's forms: the user
    /// info of a URL (`postgres://<redacted>@host/db`), a `password=` query parameter, or a
    /// `password=` key (quoted or not) of the `key=value` form. A string that does not parse
    /// ([`tokio_postgres::Config`]) is shown as `<redacted>`; so is one in which the parsed
    /// password would still appear.
    pub fn redact(url: &str) -> String {
        let Ok(config) = url.parse::<tokio_postgres::Config>() else {
            return "<redacted>".to_owned();
        };
        let shown = if let Some(rest) = url
            .strip_prefix("postgres://")
            .map(|r| ("postgres://", r))
            .or_else(|| {
                url.strip_prefix("postgresql://")
                    .map(|r| ("postgresql://", r))
            }) {
            let (scheme, rest) = rest;
            let (base, query) = match rest.split_once('?') {
                Some((b, q)) => (b, Some(q)),
                None => (rest, None),
            };
            let authority_end = base.find('/').unwrap_or(base.len());
            let base = match base[..authority_end].rfind('@') {
                Some(at) => format!("<redacted>@{}", &base[at + 1..]),
                None => base.to_owned(),
            };
            let query = query.map(|q| {
                q.split('&')
                    .map(|pair| match pair.split_once('=') {
                        Some((k, _)) if k == "password" => format!("{k}=<redacted>"),
                        _ => pair.to_owned(),
                    })
                    .collect::<Vec<_>>()
                    .join("&")
            });
            match query {
                Some(q) => format!("{scheme}{base}?{q}"),
                None => format!("{scheme}{base}"),
            }
        } else {
            redact_key_values(url)
        };
        match config.get_password() {
            Some(pw) if !pw.is_empty() && shown.contains(&*String::from_utf8_lossy(pw)) => {
                "<redacted>".to_owned()
            }
            _ => shown,
        }
    }
}

/// libpq's `key=value` form with the value of `password` replaced: keys and `=` may have
/// spaces around them; a value is single-quoted (`\'` and `\\` escapes) or runs to the next
/// space.
fn redact_key_values(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() == Some(&'=') {
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            value.push('\'');
            chars.next();
            while let Some(c) = chars.next() {
                value.push(c);
                match c {
                    '\\' => {
                        if let Some(e) = chars.next() {
                            value.push(e);
                        }
                    }
                    '\'' => break,
                    _ => {}
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        if !out.is_empty() {
            out.push(' ');
        }
        if key == "password" {
            value = "<redacted>".to_owned();
        }
        out.push_str(&format!("{key}={value}"));
    }
    out
}

/// The schema, one step per version; a hub applies the steps its database has not had, under
/// an advisory lock, and records each in `hubbub_schema`. Never edit a released step: add one.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r"
CREATE UNLOGGED TABLE hubbub_nodes (
  hub text NOT NULL, node text NOT NULL, expires timestamptz NOT NULL,
  PRIMARY KEY (hub, node));
CREATE UNLOGGED TABLE hubbub_presence (
  hub text NOT NULL, node text NOT NULL, connection text NOT NULL, record text NOT NULL,
  PRIMARY KEY (hub, node, connection));
CREATE UNLOGGED TABLE hubbub_payloads (
  id bigserial PRIMARY KEY, hub text NOT NULL, body bytea NOT NULL,
  at timestamptz NOT NULL DEFAULT now());
CREATE INDEX hubbub_payloads_at ON hubbub_payloads (hub, at);
CREATE TABLE hubbub_ids (
  hub text NOT NULL, key text NOT NULL, expires timestamptz NOT NULL,
  PRIMARY KEY (hub, key));
CREATE INDEX hubbub_ids_expires ON hubbub_ids (hub, expires);
CREATE TABLE hubbub_epochs (hub text PRIMARY KEY, epoch text NOT NULL);
CREATE TABLE hubbub_scopes (
  hub text NOT NULL, scope text NOT NULL, seq bigint NOT NULL, PRIMARY KEY (hub, scope));
CREATE TABLE hubbub_history (
  hub text NOT NULL, scope text NOT NULL, seq bigint NOT NULL, id text NOT NULL,
  name text NOT NULL, message text NOT NULL, recipient text,
  PRIMARY KEY (hub, scope, seq));

-- The fleet's epoch, made on first use.
CREATE FUNCTION hubbub_epoch(p_hub text, p_fresh text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE v text;
BEGIN
  INSERT INTO hubbub_epochs (hub, epoch) VALUES (p_hub, p_fresh) ON CONFLICT DO NOTHING;
  SELECT e.epoch INTO v FROM hubbub_epochs e WHERE e.hub = p_hub;
  RETURN v;
END $$;

-- Whether a message id is new within its window (an expired one counts as new).
CREATE FUNCTION hubbub_first_time(p_hub text, p_key text, p_window_ms float8) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO hubbub_ids AS i (hub, key, expires)
    VALUES (p_hub, p_key, now() + p_window_ms * interval '1 millisecond')
    ON CONFLICT (hub, key) DO UPDATE SET expires = excluded.expires WHERE i.expires <= now();
  RETURN FOUND;
END $$;

-- Records a chat message in one step: the id checked, the next number of the scope taken,
-- the entry appended and the scope trimmed to its capacity. No row for a repeated id.
CREATE FUNCTION hubbub_append(
  p_hub text, p_key text, p_window_ms float8, p_id text, p_scope text, p_name text,
  p_message text, p_recipient text, p_capacity bigint, p_fresh_epoch text)
RETURNS TABLE (r_seq bigint, r_id text, r_epoch text)
LANGUAGE plpgsql AS $$
DECLARE v_seq bigint; v_epoch text; v_id text := p_id;
BEGIN
  IF p_id <> '' AND NOT hubbub_first_time(p_hub, p_key, p_window_ms) THEN
    RETURN;
  END IF;
  v_epoch := hubbub_epoch(p_hub, p_fresh_epoch);
  INSERT INTO hubbub_scopes AS s (hub, scope, seq) VALUES (p_hub, p_scope, 1)
    ON CONFLICT (hub, scope) DO UPDATE SET seq = s.seq + 1 RETURNING s.seq INTO v_seq;
  IF v_id = '' THEN v_id := 'h-' || v_epoch || '-' || v_seq; END IF;
  INSERT INTO hubbub_history (hub, scope, seq, id, name, message, recipient)
    VALUES (p_hub, p_scope, v_seq, v_id, p_name, p_message, NULLIF(p_recipient, ''));
  DELETE FROM hubbub_history h
    WHERE h.hub = p_hub AND h.scope = p_scope AND h.seq <= v_seq - p_capacity;
  RETURN QUERY SELECT v_seq, v_id, v_epoch;
END $$;

-- After (re)connecting: a node's presence written afresh and its liveness renewed, in one
-- transaction, then the others told to reread it.
CREATE FUNCTION hubbub_restore(
  p_hub text, p_node text, p_connections text[], p_records text[], p_ttl_ms float8,
  p_channel text, p_payload text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM hubbub_presence p WHERE p.hub = p_hub AND p.node = p_node;
  INSERT INTO hubbub_presence (hub, node, connection, record)
    SELECT p_hub, p_node, c, r FROM unnest(p_connections, p_records) AS t(c, r);
  INSERT INTO hubbub_nodes AS n (hub, node, expires)
    VALUES (p_hub, p_node, now() + p_ttl_ms * interval '1 millisecond')
    ON CONFLICT (hub, node) DO UPDATE SET expires = excluded.expires;
  PERFORM pg_notify(p_channel, p_payload);
END $$;
",
    // 2: message ids owned by their sender (issue 18 #3), as Redis's `msg-owner:` keys.
    r"
CREATE TABLE hubbub_owners (
  hub text NOT NULL, id text NOT NULL, owner text NOT NULL, expires timestamptz NOT NULL,
  PRIMARY KEY (hub, id));
CREATE INDEX hubbub_owners_expires ON hubbub_owners (hub, expires);

-- hubbub_append, after taking the id for p_owner: an id another sender holds (not expired)
-- is refused with the one row (-1, id, '') and nothing is recorded.
CREATE FUNCTION hubbub_append_owned(
  p_hub text, p_key text, p_window_ms float8, p_id text, p_scope text, p_name text,
  p_message text, p_recipient text, p_capacity bigint, p_fresh_epoch text, p_owner text,
  p_owner_ttl_ms float8)
RETURNS TABLE (r_seq bigint, r_id text, r_epoch text)
LANGUAGE plpgsql AS $$
BEGIN
  IF p_id <> '' THEN
    INSERT INTO hubbub_owners AS o (hub, id, owner, expires)
      VALUES (p_hub, p_id, p_owner, now() + p_owner_ttl_ms * interval '1 millisecond')
      ON CONFLICT (hub, id) DO UPDATE SET owner = excluded.owner, expires = excluded.expires
      WHERE o.owner = excluded.owner OR o.expires <= now();
    IF NOT FOUND THEN
      RETURN QUERY SELECT -1::bigint, p_id, ''::text;
      RETURN;
    END IF;
  END IF;
  RETURN QUERY SELECT * FROM hubbub_append(p_hub, p_key, p_window_ms, p_id, p_scope, p_name,
    p_message, p_recipient, p_capacity, p_fresh_epoch);
END $$;
",
    // 3: histories no one owns expire (issue 18 #8): the inboxes whose user connected, and
    // when each history last took a message (set by a trigger: hubbub_append is unchanged).
    r"
CREATE TABLE hubbub_claimed (
  hub text NOT NULL, scope text NOT NULL, PRIMARY KEY (hub, scope));
ALTER TABLE hubbub_scopes ADD COLUMN touched timestamptz NOT NULL DEFAULT now();
CREATE FUNCTION hubbub_touch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.touched := now();
  RETURN NEW;
END $$;
CREATE TRIGGER hubbub_scopes_touched BEFORE UPDATE ON hubbub_scopes
  FOR EACH ROW EXECUTE FUNCTION hubbub_touch();
",
    // 4: hubbub_restore, leaving out a presence row the database refuses for good (a
    // constraint or trigger of its own) rather than failing whole, which had the node retry
    // the rewrite for ever; the refused rows are returned with their reason. Errors that may
    // pass (SQLSTATE classes 08, 40, 53, 57, 58 and 55P03, as `failure_of` tells them) still fail the rewrite, which is retried.
    // hubbub_restore stays for nodes of earlier versions.
    r"
CREATE FUNCTION hubbub_restore_each(
  p_hub text, p_node text, p_connections text[], p_records text[], p_ttl_ms float8,
  p_channel text, p_payload text) RETURNS TABLE (r_connection text, r_error text)
LANGUAGE plpgsql AS $$
DECLARE v_c text; v_r text;
BEGIN
  DELETE FROM hubbub_presence p WHERE p.hub = p_hub AND p.node = p_node;
  BEGIN
    INSERT INTO hubbub_presence (hub, node, connection, record)
      SELECT p_hub, p_node, c, r FROM unnest(p_connections, p_records) AS t(c, r);
  EXCEPTION WHEN OTHERS THEN
    IF left(SQLSTATE, 2) IN ('08', '40', '53', '57', '58') OR SQLSTATE = '55P03' THEN RAISE; END IF;
    FOR v_c, v_r IN SELECT c, r FROM unnest(p_connections, p_records) AS t(c, r) LOOP
      BEGIN
        INSERT INTO hubbub_presence (hub, node, connection, record)
          VALUES (p_hub, p_node, v_c, v_r);
      EXCEPTION WHEN OTHERS THEN
        IF left(SQLSTATE, 2) IN ('08', '40', '53', '57', '58') OR SQLSTATE = '55P03' THEN RAISE; END IF;
        r_connection := v_c;
        r_error := 'SQLSTATE ' || SQLSTATE || ': ' || SQLERRM;
        RETURN NEXT;
      END;
    END LOOP;
  END;
  INSERT INTO hubbub_nodes AS n (hub, node, expires)
    VALUES (p_hub, p_node, now() + p_ttl_ms * interval '1 millisecond')
    ON CONFLICT (hub, node) DO UPDATE SET expires = excluded.expires;
  PERFORM pg_notify(p_channel, p_payload);
END $$;
",
];

/// A presence change of one node (JSON in a `p` notification; as Redis's `:internal:presence`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Delta {
    /// The connection changed (with `r`: its record; without: it left).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    r: Option<Record>,
    /// The node rewrote its whole presence: read it again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    reload: bool,
    /// The node shut down.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    gone: bool,
}

/// What the publisher sends, in order: a notification, with the presence write it announces.
struct Op {
    /// The notification's full text, `{kind}{origin} {number} {body}`.
    text: String,
    /// For a text too long for NOTIFY that only some nodes need: its [`route`], carried by its
    /// announcement so that the others do not fetch it. `None`: every node fetches it.
    route: Option<String>,
    /// A presence write of this node that goes with it.
    presence: Option<PresenceWrite>,
}

/// One local connection's presence row, set or deleted.
struct PresenceWrite {
    connection: String,
    /// The record as JSON; `None`: the connection left (its row is deleted).
    record: Option<String>,
    /// The node's presence generation when it was queued (see [`Generation`]).
    generation: u64,
}

/// Operations the publisher holds at most (a full queue drops, with a warning).
const PUBLISH_QUEUE: usize = 65_536;
/// Notifications received and not yet handled, at most: a node further behind reconnects
/// (and rereads everyone's presence) rather than holding more.
const NOTIFY_QUEUE: usize = 65_536;
/// Announcements of large payloads fetched in one query at most.
const FETCH_BATCH: usize = 64;
/// Operations sent in one statement at most.
const BATCH: usize = 512;
/// Notifications this long or longer go through `hubbub_payloads` (PostgreSQL refuses
/// payloads of 8,000 bytes or more).
const NOTIFY_LIMIT: usize = 7_900;
/// How long a large payload is kept for the listeners to fetch.
const PAYLOAD_KEEP: Duration = Duration::from_secs(60);
/// Connections whose presence the database refused in one rewrite named in the log at most
/// (then their number).
const REFUSED_SHOWN: usize = 10;
/// How many times the publisher sends an operation that meets a refusal that passes (see
/// [`failure`]) before it gives it up.
const TRANSIENT_TRIES: u32 = 3;
/// Heartbeats between two sweeps of expired ids and old payloads.
const SWEEP_EVERY: u32 = 15;
/// The first key of the sweep's advisory lock (two-key form; the second is the hash of the
/// hub's `{prefix}{hub name}`): `0x68627377`, "hbsw" in ASCII.
const SWEEP_LOCK: i32 = 0x6862_7377;

/// A batch of operations in one statement (one transaction, one round trip): `$3`..`$7` are
/// the ops in order (kind `n` notify, `s` presence set, `d` presence delete; connection;
/// record; notification text; for a text too long for NOTIFY, the head of its `r`
/// announcement). Presence rows get each connection's last write; texts too long for NOTIFY
/// are stored in `hubbub_payloads` and announced by id; the notifications go out in order
/// (`pg_notify` is volatile: evaluated after the sort).
const PUBLISH: &str = "\
WITH ops AS (
  SELECT o.kind, o.conn, o.rec, o.body, o.head, o.ord
  FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
    WITH ORDINALITY AS o(kind, conn, rec, body, head, ord)),
last AS (
  SELECT DISTINCT ON (conn) conn, kind, rec FROM ops WHERE kind <> 'n' ORDER BY conn, ord DESC),
del AS (
  DELETE FROM hubbub_presence p USING last l
  WHERE p.hub = $1 AND p.node = $2 AND p.connection = l.conn AND l.kind = 'd'),
put AS (
  INSERT INTO hubbub_presence (hub, node, connection, record)
  SELECT $1, $2, l.conn, l.rec FROM last l WHERE l.kind = 's'
  ON CONFLICT (hub, node, connection) DO UPDATE SET record = excluded.record),
big AS (
  SELECT ord, nextval(pg_get_serial_sequence('hubbub_payloads', 'id')) AS id, body
  FROM ops WHERE head IS NOT NULL),
ins AS (
  INSERT INTO hubbub_payloads (id, hub, body) SELECT id, $1, convert_to(body, 'UTF8') FROM big)
SELECT pg_notify($8, CASE WHEN o.head IS NULL THEN o.body ELSE o.head || b.id END)
FROM ops o LEFT JOIN big b ON b.ord = o.ord ORDER BY o.ord";

/// The listening connection, which also fetches large payloads (before the notifications
/// after them are handled: order is kept).
struct Listen {
    client: Client,
    /// `SELECT id, body FROM hubbub_payloads WHERE id = ANY($1)`.
    fetch: Statement,
}

/// One connection's statements, prepared once per connection.
struct Db {
    client: Client,
    publish: Statement,
    /// Renews this node's liveness; `true` when its row had to be inserted (forgotten).
    heartbeat: Statement,
    /// Every other node's liveness and presence rows.
    presence_all: Statement,
    /// The sweep (see `sweeper`).
    sweep: Statement,
    /// One node's presence rows.
    presence_of: Statement,
    /// The fleet's epoch (made on first use).
    epoch: Statement,
    /// A page of a history.
    history_page: Statement,
    first_time: Statement,
    append: Statement,
    history_exists: Statement,
}

impl Db {
    async fn prepare(client: Client) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            publish: client.prepare(PUBLISH).await?,
            heartbeat: client
                .prepare(
                    "INSERT INTO hubbub_nodes AS n (hub, node, expires) \
                     VALUES ($1, $2, now() + $3 * interval '1 millisecond') \
                     ON CONFLICT (hub, node) DO UPDATE SET expires = excluded.expires \
                     RETURNING (xmax = 0)",
                )
                .await?,
            presence_all: client
                .prepare(
                    "SELECT n.node, n.expires > now(), p.connection, p.record \
                     FROM hubbub_nodes n LEFT JOIN hubbub_presence p \
                     ON p.hub = n.hub AND p.node = n.node \
                     WHERE n.hub = $1 AND n.node <> $2",
                )
                .await?,
            sweep: client
                .prepare(
                    "WITH l AS (SELECT pg_try_advisory_xact_lock($1, hashtext($2)) AS got), \
                     i AS (DELETE FROM hubbub_ids WHERE hub = $2 AND expires < now() \
                     AND (SELECT got FROM l)), \
                     p AS (DELETE FROM hubbub_payloads WHERE hub = $2 \
                     AND at < now() - $3 * interval '1 millisecond' AND (SELECT got FROM l)), \
                     o AS (DELETE FROM hubbub_owners WHERE hub = $2 AND expires < now() \
                     AND (SELECT got FROM l)) \
                     SELECT got FROM l",
                )
                .await?,
            presence_of: client
                .prepare(
                    "SELECT connection, record FROM hubbub_presence WHERE hub = $1 AND node = $2",
                )
                .await?,
            epoch: client.prepare("SELECT hubbub_epoch($1, $2)").await?,
            history_page: client
                .prepare(
                    "SELECT seq, id, name, message, recipient FROM hubbub_history \
                     WHERE hub = $1 AND scope = $2 AND seq > $3 ORDER BY seq LIMIT $4",
                )
                .await?,
            first_time: client
                .prepare("SELECT hubbub_first_time($1, $2, $3)")
                .await?,
            append: client
                .prepare("SELECT * FROM hubbub_append_owned($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
                     $12)")
                .await?,
            history_exists: client
                .prepare(
                    "SELECT EXISTS (SELECT 1 FROM hubbub_scopes WHERE hub = $1 AND scope = $2)",
                )
                .await?,
            client,
        })
    }
}

/// One node's link to the PostgreSQL backplane for one hub endpoint.
pub(crate) struct PostgresNode {
    connected_gauge: prometheus_client::metrics::gauge::Gauge,
    publish_duration: prometheus_client::metrics::histogram::Histogram,
    /// `hubbub_backplane_large_payloads_total{outcome="fetched"}`: large payloads of other
    /// nodes fetched.
    payloads_fetched: prometheus_client::metrics::counter::Counter,
    /// `…{outcome="skipped"}`: announcements not fetched (no recipient on this node).
    payloads_skipped: prometheus_client::metrics::counter::Counter,
    /// This node's name: `{hostname}_{random}`.
    pub(crate) server: String,
    /// `{prefix}{hub name}`: the `hub` column of every row.
    base: String,
    /// The NOTIFY channel of this hub endpoint.
    channel: String,
    options: PostgresOptions,
    config: tokio_postgres::Config,
    /// The connection for everything but listening, while connected.
    db: Mutex<Option<Arc<Db>>>,
    router: Arc<Router>,
    publish: mpsc::Sender<Op>,
    mirror: Mutex<Mirror>,
    acks: Acks,
    /// Numbers this node's notifications: PostgreSQL folds identical payloads sent in one
    /// transaction into one, and two equal messages must stay two.
    next_notify: AtomicU64,
    up: AtomicBool,
    /// Presence writes against whole rewrites.
    generation: Generation,
    rejoined: Mutex<Option<tokio::time::Instant>>,
    lost: mpsc::UnboundedSender<Vec<LostConnection>>,
    /// A whole presence rewrite the heartbeat owes the fleet (the others forgot this node) and
    /// has not yet got through.
    rewrite: PendingRewrite,
}

impl std::fmt::Debug for PostgresNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresNode")
            .field("server", &self.server)
            .field("base", &self.base)
            .field("channel", &self.channel)
            .field("up", &self.up.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// How a failed call is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The database is out of reach: the node is down until it reconnects.
    Outage,
    /// The database refused the call for a reason that passes: the same call may succeed when
    /// made again (the node stays up).
    Transient,
    /// The database refused the call: made again, it would fail again.
    Refusal,
}

/// How to take an error: an [`Outage`](Failure::Outage) when the connection closed or failed
/// (I/O), or a SQLSTATE of class 08 (connection exception), 53 (insufficient resources), 57
/// (operator intervention: shutdown, restart, a statement cancelled by `statement_timeout`) or
/// 58 (system error); [`Transient`](Failure::Transient) for class 40 (transaction rollback: a
/// deadlock `40P01`, a serialization failure `40001`) and `55P03` (lock not available, as
/// `lock_timeout` or `NOWAIT` raise it), which PostgreSQL's documentation gives as errors to
/// retry; anything else (a statement refused, a value the client library cannot convert) is a
/// [`Refusal`](Failure::Refusal).
fn failure(e: &tokio_postgres::Error) -> Failure {
    if e.is_closed() {
        return Failure::Outage;
    }
    if let Some(db) = e.as_db_error() {
        return failure_of(db.code().code());
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return Failure::Outage;
        }
        source = s.source();
    }
    Failure::Refusal
}

/// How to take an error the server sent with this SQLSTATE (see [`failure`]).
fn failure_of(sqlstate: &str) -> Failure {
    match sqlstate.get(..2) {
        Some("08" | "53" | "57" | "58") => Failure::Outage,
        Some("40") => Failure::Transient,
        _ if sqlstate == "55P03" => Failure::Transient,
        _ => Failure::Refusal,
    }
}

/// An error with its SQLSTATE when the server sent one (`SQLSTATE 42501: ERROR: permission
/// denied for schema public`), for logs and for the errors callers see.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("SQLSTATE {}: {db}", db.code().code()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// Refuses text PostgreSQL's `text` cannot hold (U+0000, SQLSTATE 22021) before sending it:
/// a clear, permanent error rather than a failed call.
fn storable(texts: &[&str]) -> Result<(), BackplaneError> {
    if texts.iter().any(|t| t.contains('\0')) {
        return Err(BackplaneError::Unstorable(
            "text containing U+0000 (NUL) cannot be stored in PostgreSQL: remove it".to_owned(),
        ));
    }
    Ok(())
}

fn scope_item(scope: &Scope) -> (&'static str, &str) {
    match scope {
        Scope::All => ("a", ""),
        Scope::Group(g) => ("g", g),
        Scope::User(u) => ("u", u),
        Scope::Connection(c) => ("c", c),
    }
}

fn scope_of(kind: &str, name: &str) -> Option<Scope> {
    Some(match kind {
        "a" => Scope::All,
        "g" => Scope::Group(name.to_owned()),
        "u" => Scope::User(name.to_owned()),
        "c" => Scope::Connection(name.to_owned()),
        _ => return None,
    })
}

/// A published invocation: MessagePack `[scope kind, scope name, invocation]` (the invocation
/// in the Redis backplane's form, `envelope.rs`), base64 in a notification.
fn encode_invocation(scope: &Scope, invocation: &Invocation) -> String {
    let (kind, name) = scope_item(scope);
    let mut out = Vec::new();
    let _ = rmpv::encode::write_value(
        &mut out,
        &Value::Array(vec![
            Value::from(kind),
            Value::from(name),
            Value::Binary(invocation.encode()),
        ]),
    );
    base64::engine::general_purpose::STANDARD.encode(out)
}

fn decode_invocation(body: &str) -> Option<(Scope, Invocation)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()?;
    let Value::Array(items) = rmpv::decode::read_value(&mut &bytes[..]).ok()? else {
        return None;
    };
    let scope = scope_of(items.first()?.as_str()?, items.get(1)?.as_str()?)?;
    let Value::Binary(inv) = items.get(2)? else {
        return None;
    };
    Some((scope, Invocation::decode(inv)?))
}

/// The series of `hubbub_backplane_large_payloads_total` with this outcome.
fn large_payloads(
    prom: &crate::metrics::Prom,
    outcome: &'static str,
) -> prometheus_client::metrics::counter::Counter {
    prom.backplane_large_payloads
        .get_or_create_owned(&crate::metrics::OutcomeLabel { outcome })
}

/// The connection settings from the options' string, with the node's timeouts and name.
fn parse_config(options: &PostgresOptions) -> Result<tokio_postgres::Config, BackplaneError> {
    let mut config: tokio_postgres::Config = options
        .url
        .parse()
        .map_err(|e: tokio_postgres::Error| BackplaneError::PostgresUrl(e.to_string()))?;
    if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
        return Err(BackplaneError::PostgresUrl(
            "sslmode=require: TLS to PostgreSQL is not built in (use a database on loopback \
             or a private network)"
                .to_owned(),
        ));
    }
    // The server gives up on a statement when the node does: an abandoned call does not keep
    // running there. A lock wait ends sooner, at three quarters of it, so a call that waited
    // on a lock comes back as such (SQLSTATE 55P03, which passes: `Failure::Transient`) rather
    // than as no answer, which would count as an outage (the node's own timeout starts before
    // the statement reaches the server).
    let ms = options.call_timeout.as_millis().max(1);
    let lock_ms = (ms * 3 / 4).max(1);
    let mut server_options = config.get_options().unwrap_or_default().to_owned();
    server_options.push_str(&format!(
        " -c statement_timeout={ms} -c lock_timeout={lock_ms}"
    ));
    config
        .connect_timeout(options.call_timeout)
        .application_name("hubbub")
        .options(server_options.trim_start());
    Ok(config)
}

impl PostgresNode {
    /// Parses the connection string (one asking for TLS, `sslmode=require`, is refused:
    /// [`BackplaneError::PostgresUrl`]), then connects lazily (a node starts while the database is
    /// down, and serves its own clients) and starts the node's tasks.
    pub(crate) fn start(
        options: PostgresOptions,
        hub_name: &str,
        router: Arc<Router>,
        shutdown: CancellationToken,
        tasks: &TaskTracker,
        prom: &crate::metrics::Prom,
    ) -> Result<(Arc<Self>, mpsc::UnboundedReceiver<Vec<LostConnection>>), BackplaneError> {
        let config = parse_config(&options)?;
        let base = format!("{}{hub_name}", options.prefix);
        let digest = sha2::Sha256::digest(base.as_bytes());
        let channel = format!(
            "hubbub_{}",
            digest[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let (publish, publish_rx) = mpsc::channel(PUBLISH_QUEUE);
        let (lost, lost_rx) = mpsc::unbounded_channel();
        let node = Arc::new(Self {
            connected_gauge: prom.backplane_connected.clone(),
            publish_duration: prom.backplane_publish_duration.clone(),
            payloads_fetched: large_payloads(prom, "fetched"),
            payloads_skipped: large_payloads(prom, "skipped"),
            server: format!("{}_{}", hostname(), random_hex(16)),
            base,
            channel,
            options,
            config,
            db: Mutex::default(),
            router,
            publish,
            mirror: Mutex::default(),
            acks: Acks::default(),
            next_notify: AtomicU64::new(1),
            up: AtomicBool::new(false),
            generation: Generation::default(),
            rejoined: Mutex::default(),
            lost,
            rewrite: PendingRewrite::default(),
        });
        tracing::info!(server = %node.server, channel = %node.channel, hub = %node.base, "joining the PostgreSQL backplane");
        tasks.spawn(publisher(node.clone(), publish_rx, shutdown.clone()));
        tasks.spawn(listener(node.clone(), shutdown.clone()));
        tasks.spawn(heartbeat(node.clone(), shutdown.clone()));
        tasks.spawn(sweeper(node.clone(), shutdown));
        Ok((node, lost_rx))
    }

    /// Whether the node is connected, listening and has written its presence.
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    fn went_down(&self, reason: &str) {
        if self.up.swap(false, Ordering::SeqCst) {
            self.connected_gauge.set(0);
            tracing::warn!(%reason, "PostgreSQL backplane unavailable: serving this node's connections only until it is back");
        }
    }

    fn db(&self) -> Option<Arc<Db>> {
        self.db.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The text of a notification: `{kind}{origin} {number} {body}`.
    fn notification(&self, kind: char, body: &str) -> String {
        let n = self.next_notify.fetch_add(1, Ordering::Relaxed);
        format!("{kind}{} {n} {body}", self.server)
    }

    /// Queues an operation for the publisher; dropped while the database is unreachable.
    fn queue(&self, op: Op) {
        if !self.is_up() && !self.generation.restoring() {
            return;
        }
        if self.publish.try_send(op).is_err() {
            tracing::warn!("backplane publish queue full: a message for other nodes was dropped");
        }
    }

    /// Publishes a message for the connections of other nodes in `scope`.
    pub(crate) fn publish(&self, scope: &Scope, frame: &Frame, exclude: &[String]) {
        if !self.is_up() {
            return;
        }
        let invocation = Invocation {
            excluded: exclude.to_vec(),
            json: frame.bytes(Protocol::Json).cloned(),
            msgpack: frame.bytes(Protocol::MessagePack).cloned(),
            origin: Some(self.server.clone()),
        };
        let text = self.notification('i', &encode_invocation(scope, &invocation));
        let route = (text.len() >= NOTIFY_LIMIT).then(|| route(scope)).flatten();
        self.queue(Op {
            text,
            route,
            presence: None,
        });
    }

    /// Every node listens to the whole hub's channel: nothing to subscribe.
    #[allow(clippy::unused_async)]
    pub(crate) async fn sync(&self, _scope: &Scope) {}

    /// As [`sync`](Self::sync).
    pub(crate) fn sync_later(&self, _scope: &Scope) {}

    /// Writes one local connection's presence (`None`: it left) and tells the other nodes.
    pub(crate) fn presence(&self, connection: &str, record: Option<Record>) {
        let json = record
            .as_ref()
            .map(|r| serde_json::to_string(r).unwrap_or_default());
        let delta = Delta {
            c: Some(connection.to_owned()),
            r: record,
            reload: false,
            gone: false,
        };
        let text = self.notification('p', &serde_json::to_string(&delta).unwrap_or_default());
        self.queue(Op {
            text,
            route: None,
            presence: Some(PresenceWrite {
                connection: connection.to_owned(),
                record: json,
                generation: self.generation.current(),
            }),
        });
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
                let body = base64::engine::general_purpose::STANDARD.encode(action.encode());
                let text = self.notification('g', &body);
                // Only the node holding the connection acts on it.
                let route = (text.len() >= NOTIFY_LIMIT)
                    .then(|| route(&Scope::Connection(connection.to_owned())))
                    .flatten();
                self.queue(Op {
                    text,
                    route,
                    presence: None,
                });
            })
            .await;
        if acked {
            Ok(())
        } else {
            Err(BackplaneError::NoAck(connection.to_owned()))
        }
    }

    /// Runs one database call within `call_timeout`; an outage marks the node down
    /// ([`BackplaneError::Down`]), a refusal that passes is [`BackplaneError::Transient`] (see
    /// [`failure`]).
    async fn call<T>(
        &self,
        what: &'static str,
        run: impl AsyncFnOnce(Arc<Db>) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, BackplaneError> {
        let db = match self.db() {
            Some(db) if self.is_up() => db,
            _ => return Err(BackplaneError::Down("PostgreSQL")),
        };
        match tokio::time::timeout(self.options.call_timeout, run(db)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => match failure(&e) {
                Failure::Outage => {
                    self.went_down(&format!("{what}: {}", describe(&e)));
                    Err(BackplaneError::Down("PostgreSQL"))
                }
                Failure::Transient => Err(BackplaneError::Transient(format!(
                    "{what}: {}",
                    describe(&e)
                ))),
                Failure::Refusal => Err(BackplaneError::Postgres(format!(
                    "{what}: {}",
                    describe(&e)
                ))),
            },
            Err(_) => {
                self.went_down(&format!("{what}: no answer"));
                Err(BackplaneError::Down("PostgreSQL"))
            }
        }
    }

    fn dedupe_key(user: &str, id: &str) -> String {
        // The length keeps `a:b` + `c` apart from `a` + `b:c`.
        format!("{}:{user}:{id}", user.len())
    }

    /// Whether `user` sends `id` for the first time within `window`, across the fleet.
    pub(crate) async fn first_time(
        &self,
        user: &str,
        id: &str,
        window: Duration,
    ) -> Result<bool, BackplaneError> {
        storable(&[user, id])?;
        let (base, key, ms) = (
            self.base.clone(),
            Self::dedupe_key(user, id),
            window.as_secs_f64() * 1000.0,
        );
        self.call("dedupe", async move |db| {
            let row = db
                .client
                .query_one(&db.first_time, &[&base, &key, &ms])
                .await?;
            row.try_get::<_, bool>(0)
        })
        .await
    }

    /// Records a chat message in the fleet's history of `scope` (see `Fleet::chat_append`).
    pub(crate) async fn chat_append(
        &self,
        scope: &str,
        user: &str,
        id: Option<&str>,
        name: &str,
        message: &str,
        to: Option<&str>,
    ) -> Result<Result<Option<(Entry, String)>, crate::HistoryError>, BackplaneError> {
        storable(&[
            scope,
            user,
            id.unwrap_or(""),
            name,
            message,
            to.unwrap_or(""),
        ])?;
        let (window, capacity) = (crate::DEDUPE_WINDOW, crate::MEMORY_CAPACITY as i64);
        let owner = (
            crate::history::owner(user).to_owned(),
            ID_OWNER_TTL.as_secs_f64() * 1000.0,
        );
        let args = (
            self.base.clone(),
            Self::dedupe_key(user, id.unwrap_or("")),
            window.as_secs_f64() * 1000.0,
            id.unwrap_or("").to_owned(),
            scope.to_owned(),
            name.to_owned(),
            message.to_owned(),
            to.unwrap_or("").to_owned(),
            capacity,
            random_hex(8),
        );
        let row = self
            .call("history append", async move |db| {
                db.client
                    .query_opt(
                        &db.append,
                        &[
                            &args.0, &args.1, &args.2, &args.3, &args.4, &args.5, &args.6, &args.7,
                            &args.8, &args.9, &owner.0, &owner.1,
                        ],
                    )
                    .await
            })
            .await?;
        let Some(row) = row else { return Ok(Ok(None)) };
        let read = || -> Result<(i64, String, String), tokio_postgres::Error> {
            Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
        };
        let (seq, id, epoch) = read().map_err(|e| BackplaneError::Postgres(e.to_string()))?;
        if seq < 0 {
            return Ok(Err(crate::HistoryError::IdTaken(id)));
        }
        Ok(Ok(Some((
            Entry {
                seq: seq as u64,
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
        let (base, scope, fresh, theirs) = (
            self.base.clone(),
            scope.to_owned(),
            random_hex(8),
            epoch.to_owned(),
        );
        let (after, limit) = (after as i64, limit as i64);
        self.call("history read", async move |db| {
            let epoch: String = db
                .client
                .query_one(&db.epoch, &[&base, &fresh])
                .await?
                .try_get(0)?;
            let after = if epoch == theirs { after } else { 0 };
            let rows = db
                .client
                .query(&db.history_page, &[&base, &scope, &after, &limit])
                .await?;
            let entries = rows
                .iter()
                .map(|r| {
                    Ok(Entry {
                        seq: r.try_get::<_, i64>(0)? as u64,
                        id: r.try_get(1)?,
                        name: r.try_get(2)?,
                        message: r.try_get(3)?,
                        to: r.try_get(4)?,
                    })
                })
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
            Ok((epoch, entries))
        })
        .await
    }

    /// Announcements of large payloads (`r{origin} {number}[:{route}] {id}`, see
    /// [`large_head`]), fetched in one query, then handled in order. A payload whose route names
    /// a scope without a connection here is not fetched.
    async fn on_large(self: &Arc<Self>, listen: &Listen, announcements: &[String]) {
        let mut skipped = 0;
        let ids: Vec<i64> = announcements
            .iter()
            .filter_map(|a| {
                let (origin, route, id) = parse_announcement(a)?;
                if origin == self.server {
                    return None;
                }
                if route.is_some_and(|r| !self.serves(r)) {
                    skipped += 1;
                    return None;
                }
                Some(id)
            })
            .collect();
        self.payloads_skipped.inc_by(skipped);
        if ids.is_empty() {
            return;
        }
        let fetched = tokio::time::timeout(
            self.options.call_timeout,
            listen.client.query(&listen.fetch, &[&ids]),
        )
        .await;
        let rows = match fetched {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                tracing::warn!(error = %describe(&e), count = ids.len(), "large backplane payloads could not be fetched");
                return;
            }
            Err(_) => {
                tracing::warn!(
                    count = ids.len(),
                    "large backplane payloads: no answer in time"
                );
                return;
            }
        };
        let mut bodies: HashMap<i64, Vec<u8>> = rows
            .iter()
            .filter_map(|r| Some((r.try_get(0).ok()?, r.try_get(1).ok()?)))
            .collect();
        self.payloads_fetched.inc_by(bodies.len() as u64);
        for id in ids {
            let Some(bytes) = bodies.remove(&id) else {
                tracing::warn!(id, "a large backplane payload was already swept away");
                continue;
            };
            match String::from_utf8(bytes) {
                Ok(text) if !text.starts_with('r') => self.on_notification(listen, &text).await,
                _ => {}
            }
        }
    }

    /// Whether this node has a connection in the scope of a payload's `route` (see [`route`]):
    /// decided now, as for a notification small enough to arrive whole. A route it cannot
    /// read counts as one it serves (the payload is fetched).
    fn serves(&self, route: &str) -> bool {
        let (Some(kind), Some(name)) = (route.chars().next(), route.get(1..)) else {
            return true;
        };
        let Some(name) = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(name)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
        else {
            return true;
        };
        match kind {
            'g' => self.router.has_group(&name),
            'u' => self.router.has_user(&name),
            'c' => self.router.has_connection(&name),
            _ => true,
        }
    }

    /// A notification of this hub's channel.
    async fn on_notification(self: &Arc<Self>, listen: &Listen, payload: &str) {
        let kind = payload.chars().next().unwrap_or(' ');
        let mut parts = payload[kind.len_utf8().min(payload.len())..].splitn(3, ' ');
        let (Some(origin), Some(_n), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        if origin == self.server {
            return;
        }
        match kind {
            'r' => Box::pin(self.on_large(listen, &[payload.to_owned()])).await,
            'i' => {
                let Some((scope, invocation)) = decode_invocation(body) else {
                    tracing::warn!("a backplane message that is not an invocation was ignored");
                    return;
                };
                let frame = Frame::encoded(invocation.json, invocation.msgpack);
                self.router.deliver(&scope, &frame, &invocation.excluded);
            }
            'p' => self.on_presence(origin, body),
            'g' => {
                let action = base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .ok()
                    .and_then(|b| GroupAction::decode(&b));
                if let Some(action) = action {
                    let node = self.clone();
                    tokio::spawn(async move { node.on_group_action(action).await });
                }
            }
            'a' => {
                let Some((server, id)) = body.split_once(' ') else {
                    return;
                };
                if server != self.server {
                    return;
                }
                if let Ok(id) = id.parse::<u32>() {
                    self.acks.acked(id);
                }
            }
            _ => {}
        }
    }

    fn on_presence(self: &Arc<Self>, origin: &str, body: &str) {
        let Ok(delta) = serde_json::from_str::<Delta>(body) else {
            return;
        };
        if delta.gone {
            self.mirror
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .replace(origin, None);
        } else if delta.reload {
            let (node, origin) = (self.clone(), origin.to_owned());
            tokio::spawn(async move {
                if let Ok(records) = node.load(&origin).await {
                    node.mirror
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .replace(&origin, Some(records));
                }
            });
        } else if let Some(c) = &delta.c {
            self.mirror
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .apply(origin, c, delta.r);
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
        let body = format!("{} {}", action.server, action.id);
        self.queue(Op {
            text: self.notification('a', &body),
            route: None,
            presence: None,
        });
    }

    /// A local connection joins a group: registry and presence.
    pub(crate) async fn local_add(&self, connection: &str, group: &str) -> bool {
        match self.router.add_to_group(connection, group) {
            None => false,
            Some(_) => {
                self.presence(connection, self.record(connection));
                true
            }
        }
    }

    /// A local connection leaves a group.
    pub(crate) async fn local_remove(&self, connection: &str, group: &str) -> bool {
        match self.router.remove_from_group(connection, group) {
            None => false,
            Some(_) => {
                self.presence(connection, self.record(connection));
                true
            }
        }
    }

    /// A local connection's presence record.
    pub(crate) fn record(&self, connection: &str) -> Option<Record> {
        super::local_record(&self.router, connection)
    }

    /// Another node's presence.
    async fn load(&self, server: &str) -> Result<HashMap<String, Record>, BackplaneError> {
        let (base, server) = (self.base.clone(), server.to_owned());
        let rows = self
            .call("presence read", async move |db| {
                db.client.query(&db.presence_of, &[&base, &server]).await
            })
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let c: String = r.try_get(0).ok()?;
                let json: String = r.try_get(1).ok()?;
                Some((c, serde_json::from_str(&json).ok()?))
            })
            .collect())
    }

    /// Renews this node's liveness; rereads the presence of every live node (liveness and
    /// presence in one statement, one snapshot) and forgets the dead ones (deleting what they
    /// left). A node the others forgot while it was alive (stalled longer than its TTL: its
    /// liveness row was gone, and the renewal inserted it) rewrites its whole presence.
    async fn refresh(&self) -> Result<(), BackplaneError> {
        let (base, server, ttl) = (
            self.base.clone(),
            self.server.clone(),
            self.options.node_ttl.as_secs_f64() * 1000.0,
        );
        let forgotten: bool = self
            .call("heartbeat", async |db| {
                db.client
                    .query_one(&db.heartbeat, &[&base, &server, &ttl])
                    .await?
                    .try_get(0)
            })
            .await?;
        // Recorded at once: the liveness row is back, so no later heartbeat finds this node
        // forgotten; the rewrite is owed until one goes through, whatever fails meanwhile.
        if forgotten {
            tracing::warn!(
                "the other backplane nodes forgot this one (it stalled longer than its TTL): rewriting its presence"
            );
            self.rewrite.owe();
        }
        self.rewrite_if_due().await?;
        let rows = self
            .call("presence read", async move |db| {
                db.client.query(&db.presence_all, &[&base, &server]).await
            })
            .await?;
        let mut alive: HashMap<String, HashMap<String, Record>> = HashMap::new();
        let mut dead: HashSet<String> = HashSet::new();
        for row in &rows {
            let (Ok(node), Ok(live)) = (row.try_get::<_, String>(0), row.try_get::<_, bool>(1))
            else {
                continue;
            };
            if !live {
                dead.insert(node);
                continue;
            }
            let records = alive.entry(node).or_default();
            if let (Ok(Some(c)), Ok(Some(json))) = (
                row.try_get::<_, Option<String>>(2),
                row.try_get::<_, Option<String>>(3),
            ) {
                if let Ok(record) = serde_json::from_str(&json) {
                    records.insert(c, record);
                }
            }
        }
        let live: HashSet<String> = alive.keys().cloned().collect();
        for (server, records) in alive {
            self.mirror
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .replace(&server, Some(records));
        }
        for server in dead {
            tracing::info!(node = %server, "a backplane node stopped renewing its heartbeat: its connections are forgotten");
            let base = self.base.clone();
            self.call("forget node", async move |db| {
                db.client
                    .execute(
                        "WITH d AS (DELETE FROM hubbub_nodes WHERE hub = $1 AND node = $2 \
                         AND expires <= now() RETURNING node) \
                         DELETE FROM hubbub_presence p USING d WHERE p.hub = $1 AND p.node = d.node",
                        &[&base, &server],
                    )
                    .await
            })
            .await?;
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

    /// Makes the [`PendingRewrite`] if it is due (see [`PendingRewrite::make_if_due`]).
    async fn rewrite_if_due(&self) -> Result<(), BackplaneError> {
        self.rewrite
            .make_if_due(async || {
                self.call("presence rewrite", async move |db| self.restore(&db).await)
                    .await
            })
            .await
    }

    /// After (re)connecting: this node's presence written afresh, the others told to reread it
    /// (`hubbub_restore_each`). A row the database refuses for a reason that will not pass (a
    /// constraint or trigger of its own) is left out with a warning naming its connection and
    /// the reason, as the publisher does with a refused write: the rest is written.
    async fn restore(&self, db: &Db) -> Result<(), tokio_postgres::Error> {
        // Before reading the router: what was queued until now is in this rewrite.
        self.generation.rewrite();
        let (mut connections, mut records) = (Vec::new(), Vec::new());
        for (id, user, mut groups) in self.router.records() {
            groups.sort();
            connections.push(id);
            records.push(serde_json::to_string(&Record { user, groups }).unwrap_or_default());
        }
        let delta = Delta {
            c: None,
            r: None,
            reload: true,
            gone: false,
        };
        let text = self.notification('p', &serde_json::to_string(&delta).unwrap_or_default());
        let refused = db
            .client
            .query(
                "SELECT r_connection, r_error FROM hubbub_restore_each($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &self.base,
                    &self.server,
                    &connections,
                    &records,
                    &(self.options.node_ttl.as_secs_f64() * 1000.0),
                    &self.channel,
                    &text,
                ],
            )
            .await?;
        for row in refused.iter().take(REFUSED_SHOWN) {
            let (connection, error): (String, String) = (row.try_get(0)?, row.try_get(1)?);
            tracing::warn!(%connection, %error, "the database refused this connection's presence: the other nodes do not see it");
        }
        if refused.len() > REFUSED_SHOWN {
            tracing::warn!(
                refused = refused.len(),
                shown = REFUSED_SHOWN,
                "the database refused more connections' presence than shown"
            );
        }
        self.rewrite.paid();
        Ok(())
    }

    /// On shutdown: this node's rows removed, the others told at once.
    async fn leave(&self) {
        let Some(db) = self.db() else { return };
        let delta = Delta {
            c: None,
            r: None,
            reload: false,
            gone: true,
        };
        let text = self.notification('p', &serde_json::to_string(&delta).unwrap_or_default());
        let run = async {
            db.client
                .execute(
                    "WITH a AS (DELETE FROM hubbub_presence WHERE hub = $1 AND node = $2), \
                     b AS (DELETE FROM hubbub_nodes WHERE hub = $1 AND node = $2) \
                     SELECT pg_notify($3, $4)",
                    &[&self.base, &self.server, &self.channel, &text],
                )
                .await
        };
        let _ = tokio::time::timeout(self.options.call_timeout, run).await;
    }

    /// Sends one operation: a refusal that passes (see [`failure`]) is tried again, up to
    /// [`TRANSIENT_TRIES`] times in all, 100 ms apart and doubling; a refusal loses it, with a
    /// warning. `false` when the database went out of reach (the node is down).
    async fn send_one(&self, db: &Db, op: &Op, shutdown: &CancellationToken) -> bool {
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=TRANSIENT_TRIES {
            let one = std::slice::from_ref(op);
            match tokio::time::timeout(self.options.call_timeout, self.send_batch(db, one)).await {
                Ok(Ok(())) => return true,
                Ok(Err(e)) => match failure(&e) {
                    Failure::Outage => {
                        self.went_down(&format!("publish: {}", describe(&e)));
                        return false;
                    }
                    Failure::Transient if attempt < TRANSIENT_TRIES => {
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            () = shutdown.cancelled() => return false,
                        }
                        delay *= 2;
                    }
                    _ => {
                        tracing::warn!(error = %describe(&e), "a backplane publish was refused");
                        return true;
                    }
                },
                Err(_) => {
                    self.went_down("publish: no answer");
                    return false;
                }
            }
        }
        true
    }

    /// Sends one batch in order, in one statement (see [`PUBLISH`]).
    async fn send_batch(&self, db: &Db, ops: &[Op]) -> Result<(), tokio_postgres::Error> {
        let n = ops.len();
        let (mut kinds, mut connections, mut records, mut texts, mut heads) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for op in ops {
            let (kind, connection, record) = match &op.presence {
                None => ("n", None, None),
                Some(w) => (
                    if w.record.is_some() { "s" } else { "d" },
                    Some(w.connection.as_str()),
                    w.record.as_deref(),
                ),
            };
            kinds.push(kind);
            connections.push(connection);
            records.push(record);
            texts.push(op.text.as_str());
            heads.push(
                (op.text.len() >= NOTIFY_LIMIT).then(|| large_head(&op.text, op.route.as_deref())),
            );
        }
        db.client
            .execute(
                &db.publish,
                &[
                    &self.base,
                    &self.server,
                    &kinds,
                    &connections,
                    &records,
                    &texts,
                    &heads,
                    &self.channel,
                ],
            )
            .await?;
        Ok(())
    }

    /// Connects both connections, checks the server's encoding, migrates the schema, listens
    /// and prepares.
    async fn connect(&self) -> Result<(Listen, mpsc::Receiver<String>, Arc<Db>), SetupError> {
        let (listen, mut listen_conn) = self.config.connect(NoTls).await?;
        let (tx, rx) = mpsc::channel(NOTIFY_QUEUE);
        let channel = self.channel.clone();
        tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| listen_conn.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if n.channel() != channel {
                            continue;
                        }
                        // Full: this node fell too far behind. Ending the connection makes it
                        // reconnect and reread everyone's presence.
                        if let Err(e) = tx.try_send(n.payload().to_owned()) {
                            if matches!(e, mpsc::error::TrySendError::Full(_)) {
                                tracing::warn!(
                                    queued = NOTIFY_QUEUE,
                                    "the backplane's notifications arrive faster than this node handles them: reconnecting"
                                );
                            }
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "the backplane's listening connection ended");
                        return;
                    }
                    None => return,
                }
            }
        });
        let (mut query, query_conn) = self.config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = query_conn.await {
                tracing::debug!(error = %e, "the backplane's query connection ended");
            }
        });
        let encoding: String = query
            .query_one("SHOW server_encoding", &[])
            .await?
            .try_get(0)?;
        if encoding != "UTF8" {
            return Err(SetupError::Encoding(encoding));
        }
        migrate(&mut query, self.options.call_timeout * 4).await?;
        listen
            .batch_execute(&format!("LISTEN \"{}\"", self.channel))
            .await?;
        let db = Arc::new(Db::prepare(query).await?);
        let fetch = listen
            .prepare("SELECT id, body FROM hubbub_payloads WHERE id = ANY($1)")
            .await?;
        Ok((
            Listen {
                client: listen,
                fetch,
            },
            rx,
            db,
        ))
    }
}

/// The announcement of a notification too long for NOTIFY, without its id:
/// `r{origin} {number} `, or with the scope of its recipients `r{origin} {number}:{route} `
/// (the listener fetches the text by the id that follows, unless the route names a scope it
/// has no connection of). The route rides in the number's field, which nodes of earlier
/// versions read past: they fetch every payload, as before.
fn large_head(text: &str, route: Option<&str>) -> String {
    let mut head = text.get(1..).unwrap_or_default().splitn(3, ' ');
    let (origin, number) = (
        head.next().unwrap_or_default(),
        head.next().unwrap_or_default(),
    );
    match route {
        Some(route) => format!("r{origin} {number}:{route} "),
        None => format!("r{origin} {number} "),
    }
}

/// The longest scope name (bytes) an announcement carries; a payload for a longer one is
/// announced without it (every node fetches it). Keeps an announcement far below NOTIFY's
/// 8,000 bytes: 1 + 4/3 of this, plus the origin, number and id.
const ROUTE_NAME_LIMIT: usize = 1_024;

/// The route of a payload for `scope`: `g`, `u` or `c` and the name in unpadded URL-safe
/// base64 (no spaces: the announcement's fields are split on them). `None` for every
/// connection ([`Scope::All`]) or a name over [`ROUTE_NAME_LIMIT`]: every node fetches it.
fn route(scope: &Scope) -> Option<String> {
    let (kind, name) = match scope {
        Scope::All => return None,
        Scope::Group(g) => ('g', g),
        Scope::User(u) => ('u', u),
        Scope::Connection(c) => ('c', c),
    };
    if name.len() > ROUTE_NAME_LIMIT {
        return None;
    }
    let mut out = String::with_capacity(1 + name.len().div_ceil(3) * 4);
    out.push(kind);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(name, &mut out);
    Some(out)
}

/// An announcement's fields: origin, route (when it has one) and payload id. `None`: not an
/// announcement.
fn parse_announcement(announcement: &str) -> Option<(&str, Option<&str>, i64)> {
    let mut parts = announcement.strip_prefix('r')?.splitn(3, ' ');
    let (origin, number, id) = (parts.next()?, parts.next()?, parts.next()?);
    let route = number.split_once(':').map(|(_, route)| route);
    Some((origin, route, id.parse().ok()?))
}

/// Why a node could not join: a failed call, or a database it cannot use.
#[derive(Debug, thiserror::Error)]
enum SetupError {
    #[error("{}", describe(.0))]
    Db(#[from] tokio_postgres::Error),
    /// Chat text is Unicode: a database in another encoding would refuse some of it.
    #[error("the database's encoding is {0}, not UTF8: create the database with ENCODING 'UTF8'")]
    Encoding(String),
}

/// The advisory lock the schema is migrated under: the 64-bit key 0x646c74f8e562, which
/// hubbub has used since its first schema (keep it: nodes of two versions must agree on it).
const MIGRATION_LOCK: i64 = 110_416_981_714_274;

/// Brings the schema to the newest version, one step at a time, under an advisory lock so
/// that nodes starting together do not race; waits at most `limit` for that lock and for
/// each step (longer than one call: another node may be migrating).
async fn migrate(client: &mut Client, limit: Duration) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let ms = limit.as_millis().max(1);
    tx.batch_execute(&format!(
        "SET LOCAL statement_timeout = {ms}; SET LOCAL lock_timeout = {ms}; \
         SELECT pg_advisory_xact_lock({MIGRATION_LOCK}); \
         CREATE TABLE IF NOT EXISTS hubbub_schema (version integer PRIMARY KEY, \
         applied timestamptz NOT NULL DEFAULT now())"
    ))
    .await?;
    let have: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM hubbub_schema", &[])
        .await?
        .try_get(0)?;
    let known = MIGRATIONS.len() as i32;
    if have > known {
        tracing::warn!(
            database = have,
            hub = known,
            "the backplane's schema is newer than this hub knows: carrying on with it"
        );
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(have.max(0) as usize) {
        let version = i as i32 + 1;
        tx.batch_execute(step).await?;
        tx.execute(
            "INSERT INTO hubbub_schema (version) VALUES ($1)",
            &[&version],
        )
        .await?;
        tracing::info!(version, "backplane schema migrated");
    }
    tx.commit().await
}

async fn publisher(
    node: Arc<PostgresNode>,
    mut rx: mpsc::Receiver<Op>,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            op = rx.recv() => match op { Some(op) => op, None => return },
            () = shutdown.cancelled() => return,
        };
        let mut ops = vec![first];
        while ops.len() < BATCH {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        // A presence write from before the node last rewrote its presence is in that rewrite.
        let limit = node.options.call_timeout * 2;
        if !node.generation.wait_up(&node.up, limit, &shutdown).await {
            continue;
        }
        ops.retain(|op| {
            op.presence
                .as_ref()
                .is_none_or(|w| !node.generation.is_stale(w.generation))
        });
        if ops.is_empty() {
            continue;
        }
        let Some(db) = node.db() else { continue };
        let start = std::time::Instant::now();
        match tokio::time::timeout(node.options.call_timeout, node.send_batch(&db, &ops)).await {
            Ok(Ok(())) => node.publish_duration.observe(start.elapsed().as_secs_f64()),
            Ok(Err(e)) if failure(&e) == Failure::Outage => {
                node.went_down(&format!("publish: {}", describe(&e)));
            }
            Ok(Err(e)) => {
                // One op is refused, or the batch met a conflict that passes: send them one by
                // one, so that only a refused op is lost.
                if failure(&e) == Failure::Transient {
                    tracing::debug!(error = %describe(&e), "a backplane publish met a conflict that passes; sending its operations one by one");
                } else {
                    tracing::warn!(error = %describe(&e), "a backplane publish was refused; sending its operations one by one");
                }
                for op in ops {
                    if !node.send_one(&db, &op, &shutdown).await {
                        break;
                    }
                }
            }
            Err(_) => node.went_down("publish: no answer"),
        }
    }
}

async fn listener(node: Arc<PostgresNode>, shutdown: CancellationToken) {
    let mut delay = Duration::from_millis(100);
    let mut ever = false;
    // Setup failures warned about: repeated every SETUP_WARN_EVERY (or at once when the reason
    // changes) so a lasting misconfiguration stays visible.
    let mut warned = Throttle::default();
    loop {
        // Migrating may wait for another node's migration: a longer limit than one call.
        let limit = node.options.call_timeout * 5;
        let connected = tokio::select! {
            r = tokio::time::timeout(limit, node.connect()) => r,
            () = shutdown.cancelled() => return,
        };
        let (listen, mut notifications, db) = match connected {
            Ok(Ok(c)) => c,
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no answer".to_owned(),
                };
                if warned.warn_now(&error) {
                    tracing::warn!(%error, "cannot join the PostgreSQL backplane; retrying");
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => return,
                }
                delay = (delay * 2).min(RECONNECT_MAX_DELAY);
                continue;
            }
        };
        *node.db.lock().unwrap_or_else(|e| e.into_inner()) = Some(db.clone());
        node.generation.set_restoring(true);
        let restored = tokio::time::timeout(node.options.call_timeout, node.restore(&db)).await;
        if !matches!(restored, Ok(Ok(()))) {
            let error = match restored {
                Ok(Err(e)) => describe(&e),
                _ => "no answer".to_owned(),
            };
            if warned.warn_now(&error) {
                tracing::warn!(%error, "cannot write this node's presence to the PostgreSQL backplane; retrying");
            }
            node.generation.set_restoring(false);
            *node.db.lock().unwrap_or_else(|e| e.into_inner()) = None;
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => return,
            }
            delay = (delay * 2).min(RECONNECT_MAX_DELAY);
            continue;
        }
        if ever {
            *node.rejoined.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(tokio::time::Instant::now());
        }
        node.up.store(true, Ordering::SeqCst);
        node.generation.set_restoring(false);
        node.connected_gauge.set(1);
        if let Err(e) = node.refresh().await {
            tracing::debug!(error = %e, "presence reload after connecting failed");
        }
        if ever {
            tracing::info!("PostgreSQL backplane back: listening again, presence restored");
        } else {
            tracing::info!(channel = %node.channel, "PostgreSQL backplane connected");
        }
        ever = true;
        warned = Throttle::default();
        delay = Duration::from_millis(100);
        let mut check = tokio::time::interval(node.options.heartbeat);
        let reason = loop {
            tokio::select! {
                n = notifications.recv() => match n {
                    Some(payload) if payload.starts_with('r') => {
                        // A run of large payloads is fetched in one query.
                        let mut run = vec![payload];
                        let mut after = None;
                        while run.len() < FETCH_BATCH {
                            match notifications.try_recv() {
                                Ok(p) if p.starts_with('r') => run.push(p),
                                Ok(p) => {
                                    after = Some(p);
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        node.on_large(&listen, &run).await;
                        if let Some(p) = after {
                            node.on_notification(&listen, &p).await;
                        }
                    }
                    Some(payload) => node.on_notification(&listen, &payload).await,
                    None => break "the listening connection closed",
                },
                _ = check.tick() => {
                    if !node.is_up() { break "a PostgreSQL call failed" }
                    if db.client.is_closed() { break "the query connection closed" }
                },
                () = shutdown.cancelled() => return,
            }
        };
        node.went_down(reason);
        *node.db.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Histories no one owns, on PostgreSQL: the inboxes whose user connected are rows of
/// `hubbub_claimed` (kept for ever, as a history file's `claimed` table); the others are
/// deleted, numbering and messages, once their newest message is older than the TTL
/// (`hubbub_scopes.touched`).
impl PostgresNode {
    /// Whether the fleet holds the history `scope` (it has a numbering row).
    pub(crate) async fn history_exists(&self, scope: &str) -> Result<bool, BackplaneError> {
        let (base, scope) = (self.base.clone(), scope.to_owned());
        self.call("history exists", async move |db| {
            db.client
                .query_one(&db.history_exists, &[&base, &scope])
                .await?
                .try_get(0)
        })
        .await
    }

    /// Marks the inbox `scope` as claimed: it never expires.
    pub(crate) async fn claim_inbox(&self, scope: &str) -> Result<(), BackplaneError> {
        let (base, scope) = (self.base.clone(), scope.to_owned());
        self.call("claim inbox", async move |db| {
            db.client
                .execute(
                    "INSERT INTO hubbub_claimed (hub, scope) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING",
                    &[&base, &scope],
                )
                .await
        })
        .await
        .map(drop)
    }

    /// Deletes the histories whose key starts with `prefix`, that no one claimed and that took
    /// no message for `ttl` (at most [`EXPIRE_BATCH`] per call). Returns how many messages went.
    pub(crate) async fn expire_unclaimed(
        &self,
        prefix: &str,
        ttl: Duration,
    ) -> Result<u64, BackplaneError> {
        let (base, prefix) = (self.base.clone(), prefix.to_owned());
        let (ms, batch) = (ttl.as_secs_f64() * 1000.0, EXPIRE_BATCH);
        self.call("inbox expiry", async move |db| {
            db.client
                .query_one(
                    "WITH gone AS (DELETE FROM hubbub_scopes s WHERE s.hub = $1 \
                     AND s.touched < now() - $3 * interval '1 millisecond' \
                     AND s.scope IN (SELECT c.scope FROM hubbub_scopes c WHERE c.hub = $1 \
                     AND starts_with(c.scope, $2) \
                     AND c.touched < now() - $3 * interval '1 millisecond' \
                     AND NOT EXISTS (SELECT 1 FROM hubbub_claimed k \
                     WHERE k.hub = c.hub AND k.scope = c.scope) LIMIT $4) \
                     RETURNING s.scope), \
                     h AS (DELETE FROM hubbub_history h USING gone \
                     WHERE h.hub = $1 AND h.scope = gone.scope RETURNING 1) \
                     SELECT count(*) FROM h",
                    &[&base, &prefix, &ms, &batch],
                )
                .await?
                .try_get::<_, i64>(0)
        })
        .await
        .map(|n| n as u64)
    }
}

/// The most unclaimed histories one expiry deletes (the next one goes on).
const EXPIRE_BATCH: i64 = 10_000;

async fn heartbeat(node: Arc<PostgresNode>, shutdown: CancellationToken) {
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

/// Deletes expired message ids and large payloads older than [`PAYLOAD_KEEP`], every
/// [`SWEEP_EVERY`] heartbeats, apart from the heartbeat (a slow sweep delays nothing and is
/// not an outage). One node of the hub sweeps at a time: the others skip their turn while it
/// holds the sweep's advisory lock.
async fn sweeper(node: Arc<PostgresNode>, shutdown: CancellationToken) {
    let every = node.options.heartbeat * SWEEP_EVERY;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let keep_ms = PAYLOAD_KEEP.as_secs_f64() * 1000.0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let Some(db) = node.db().filter(|_| node.is_up()) else {
            continue;
        };
        let args: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
            [&SWEEP_LOCK, &node.base, &keep_ms];
        let run = db.client.execute(&db.sweep, &args);
        match tokio::time::timeout(node.options.call_timeout, run).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(error = %describe(&e), "backplane sweep failed"),
            Err(_) => tracing::debug!("backplane sweep: no answer in time"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocations_round_trip_with_their_scope() {
        let inv = Invocation {
            excluded: vec!["c1".into()],
            json: Some(bytes::Bytes::from_static(b"{\"type\":1}\x1e")),
            msgpack: None,
            origin: Some("n".into()),
        };
        for scope in [
            Scope::All,
            Scope::Group("room:a b".into()),
            Scope::User("ann".into()),
            Scope::Connection("x".into()),
        ] {
            let text = encode_invocation(&scope, &inv);
            assert!(!text.contains(' '), "{text}");
            let (s, i) = decode_invocation(&text).unwrap();
            assert_eq!(s, scope);
            assert_eq!(i, inv);
        }
        assert!(decode_invocation("not base64!").is_none());
    }

    #[test]
    fn large_payload_announcements_carry_their_route_and_stay_readable_by_older_nodes() {
        let text = format!("inode_1 7 {}", "x".repeat(NOTIFY_LIMIT));
        let room = Scope::Group("room:a b:ü".into());
        let route = route(&room).unwrap();
        assert!(
            route.starts_with('g') && !route.contains([' ', ':']),
            "{route}"
        );
        let scoped = format!("{}42", large_head(&text, Some(&route)));
        assert_eq!(
            parse_announcement(&scoped),
            Some(("node_1", Some(route.as_str()), 42))
        );
        // The previous form (older nodes send it): no route, fetched by everyone.
        let plain = format!("{}42", large_head(&text, None));
        assert_eq!(plain, "rnode_1 7 42");
        assert_eq!(parse_announcement(&plain), Some(("node_1", None, 42)));
        // What nodes of the previous version read of an announcement: origin, a number they
        // skip and the id, which must still parse.
        let previous = |a: &str| -> Option<(String, i64)> {
            let mut parts = a.get(1..)?.splitn(3, ' ');
            let (origin, _, id) = (parts.next()?, parts.next()?, parts.next()?);
            Some((origin.to_owned(), id.parse().ok()?))
        };
        assert_eq!(previous(&scoped), Some(("node_1".to_owned(), 42)));
        // Every connection, or a name too long to carry: no route.
        assert_eq!(super::route(&Scope::All), None);
        let long = Scope::User("u".repeat(ROUTE_NAME_LIMIT + 1));
        assert_eq!(super::route(&long), None);
        let longest = super::route(&Scope::User("u".repeat(ROUTE_NAME_LIMIT))).unwrap();
        assert!(longest.len() < 1_400, "{}", longest.len());
        assert_eq!(parse_announcement("inode_1 7 body"), None);
        assert_eq!(parse_announcement("rnode_1 7 notanid"), None);
    }

    #[test]
    fn errors_that_pass_are_transient_and_outages_are_told_from_refusals() {
        // Deadlock, serialization failure, lock not available: PostgreSQL's own advice is to
        // retry the transaction.
        for code in ["40P01", "40001", "40000", "40003", "55P03"] {
            assert_eq!(failure_of(code), Failure::Transient, "{code}");
        }
        // Connection failure, too many connections, shutdown, statement timeout, I/O error.
        for code in ["08006", "53300", "57P01", "57014", "58030"] {
            assert_eq!(failure_of(code), Failure::Outage, "{code}");
        }
        // Raised by a trigger, unique violation, undefined table, object in use, bad data.
        for code in ["P0001", "23505", "42P01", "55006", "22021"] {
            assert_eq!(failure_of(code), Failure::Refusal, "{code}");
        }
    }

    #[test]
    fn passwords_are_redacted_in_every_form() {
        let cases = [
            (
                "postgres://hub:se%20cret@127.0.0.1:5432/db",
                "postgres://<redacted>@127.0.0.1:5432/db",
            ),
            (
                "postgresql://127.0.0.1/db?user=hub&password=secret&sslmode=disable",
                "postgresql://127.0.0.1/db?user=hub&password=<redacted>&sslmode=disable",
            ),
            (
                "host=127.0.0.1 user=hub password=secret dbname=db",
                "host=127.0.0.1 user=hub password=<redacted> dbname=db",
            ),
            (
                "host=127.0.0.1 password = 'sec ret\\'s' dbname=db",
                "host=127.0.0.1 password=<redacted> dbname=db",
            ),
            ("host=127.0.0.1 dbname=db", "host=127.0.0.1 dbname=db"),
            ("postgres://u@h/db?nonsense=secret", "<redacted>"),
        ];
        for (url, shown) in cases {
            assert_eq!(PostgresOptions::redact(url), shown, "{url}");
        }
    }

    #[test]
    fn connection_strings_parse_and_tls_is_refused_with_the_reason() {
        let options = |url: &str| PostgresOptions::new(url);
        assert!(parse_config(&options("postgres://hubbub@127.0.0.1:5432/hubbub")).is_ok());
        assert!(parse_config(&options("host=127.0.0.1 user=hubbub dbname=hubbub")).is_ok());
        let tls = parse_config(&options("postgres://u@h/db?sslmode=require")).unwrap_err();
        assert!(
            tls.to_string()
                .contains("TLS to PostgreSQL is not built in"),
            "{tls}"
        );
        let bad = parse_config(&options("postgres://u@h/db?nonsense=1")).unwrap_err();
        assert!(
            bad.to_string().starts_with("invalid PostgreSQL URL"),
            "{bad}"
        );
    }
}
