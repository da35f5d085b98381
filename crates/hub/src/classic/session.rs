//! One classic connection: its hub memberships, its numbered messages, the transport requests
//! attached to it, and its life from `connect` until `abort` or the disconnect timeout.
//!
//! A classic connection outlives its transports: a socket may drop and come back
//! (`reconnect`), a long poll ends and the next one starts. The session lives on while no
//! transport is attached for up to `DisconnectTimeout` (30 s), then the hubs' disconnected
//! callbacks run. Every message for the connection is numbered in its replay buffer, so the
//! next transport request picks up after the client's cursor.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use hubbub_protocol::Headers;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::protect::Protector;
use super::replay::{ClientCursor, Cursor, Replay};
use super::wire::{self, HubRequest, Outcome};
use super::{Endpoint, Transport};
use crate::connection::{Connection, RateLimit, Refused, Turns, prepare};
use crate::frame::Outbound;
use crate::hub::{Context, Reply};
use crate::metrics::{ConnLabels, ConnMetrics, FamilyLabel};
use crate::state::Counters;

/// How long a message waits for room in the buffer while the client is there but not reading.
const MAX_DELIVERY_WAIT: Duration = Duration::from_secs(10);

/// How long after its last transport request a client counts as there: as long as a client
/// with a transport attached may go without reading ([`MAX_DELIVERY_WAIT`]). Long polling is
/// detached between two polls, and a client busy with what it received (its handlers, a
/// loaded machine) polls again only when done: with a shorter window (2 s before) such a
/// client counted as away in the middle of a flood, and the buffer dropped messages it had
/// never been sent.
const PRESENT_FOR: Duration = MAX_DELIVERY_WAIT;

/// How many hub requests over the rate limit may wait at once per connection (sends over HTTP
/// can arrive together; WebSockets stop reading instead): past this they are refused.
const MAX_PACED_CALLS: usize = 256;

/// How long a hub request over the connection's rate limit may be held back before it runs;
/// beyond that it is refused (`429`, or a close over WebSockets). Requests within it are only
/// slowed, as Core connections are.
pub(crate) const MAX_PACING_WAIT: Duration = Duration::from_secs(10);

/// How many groups a groups token carries at most (a larger token would grow every URL).
const MAX_GROUPS_IN_TOKEN: usize = 100;

/// A classic connection's membership in one hub.
#[derive(Debug)]
struct Member {
    hub: usize,
    conn: Arc<Connection>,
    /// In the hub's router (listed in `connectionData`), with its lifecycle callbacks run;
    /// else only used to call the hub's methods.
    joined: bool,
}

/// One classic connection.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) user: String,
    query: HashMap<String, String>,
    transport: Mutex<Transport>,
    members: Mutex<Vec<Member>>,
    buffer: Mutex<Buffer>,
    /// The newest message a transport has taken to send (its envelope built).
    delivered: AtomicU64,
    /// Fires when a transport takes messages and a push waits for room
    /// ([`Buffer::push_waiting`]).
    drained: Notify,
    /// Hub requests held back by the rate limit, waiting to run.
    paced: Arc<AtomicUsize>,
    /// The groups the last groups token sent carried.
    groups_sent: Mutex<Vec<String>>,
    /// The groups' fingerprint when they were last compared with `groups_sent`.
    groups_fingerprint_sent: Mutex<u64>,
    /// The fingerprint's hash keys, random per connection: a client cannot choose group names
    /// whose fingerprints collide (and so keep a new groups token from being sent).
    groups_hash_keys: std::hash::RandomState,
    /// Transport requests attached now (a socket, an event stream, a held poll).
    active: AtomicUsize,
    idle_since: Mutex<Instant>,
    activity: Notify,
    /// Fires once the hubs have been joined (their connected callbacks done).
    pub(crate) started: CancellationToken,
    /// Fires when the connection has ended.
    pub(crate) ended: CancellationToken,
    /// The client asked to stop (`abort`).
    stop_called: AtomicBool,
    /// Counts transport requests: a newer one replaces an older one still attached.
    generation: AtomicU64,
    pub(crate) superseded: Notify,
    order: Turns,
    rate: Mutex<RateLimit>,
    /// Names this connection's message buffer in its cursors ([`Cursor::stream`]): random, so
    /// a cursor from an earlier opening of the connection (here or on another node) is told
    /// apart.
    stream: u32,
}

/// The numbered messages and who waits on them, under one lock: a push, a transport taking
/// messages and a transport going to sleep each take it once.
#[derive(Debug)]
struct Buffer {
    replay: Replay,
    /// The transport request waiting for a message after its cursor, as its generation and
    /// its task's waker: woken (and taken) by the next push, or by a newer request attaching.
    /// Only the newest request waits here: an older one is superseded and ends.
    reader: Option<(u64, Waker)>,
    /// A push found no room and waits on `drained`: the next transport taking messages
    /// notifies it (and clears this), others do not pay for a notification.
    push_waiting: bool,
}

/// Holds a transport request attached to its session; the session counts as idle (towards
/// its disconnect timeout) only while none is.
#[derive(Debug)]
pub(crate) struct Attached(Arc<Session>);

impl Drop for Attached {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            *self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            self.0.activity.notify_one();
        }
    }
}

impl Session {
    fn new(
        id: String,
        user: String,
        query: HashMap<String, String>,
        transport: Transport,
        endpoint: &Endpoint,
    ) -> Self {
        Self {
            id,
            user,
            query,
            transport: Mutex::new(transport),
            members: Mutex::default(),
            buffer: Mutex::new(Buffer {
                replay: Replay::new(
                    endpoint.options.replay_messages,
                    endpoint.options.replay_bytes,
                ),
                reader: None,
                push_waiting: false,
            }),
            delivered: AtomicU64::new(0),
            drained: Notify::new(),
            paced: Arc::default(),
            groups_sent: Mutex::default(),
            groups_fingerprint_sent: Mutex::new(0),
            groups_hash_keys: std::hash::RandomState::new(),
            active: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            activity: Notify::new(),
            started: CancellationToken::new(),
            ended: CancellationToken::new(),
            stop_called: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            superseded: Notify::new(),
            order: Turns::default(),
            rate: Mutex::new(RateLimit::new(endpoint.hub_options.max_messages_per_second)),
            stream: {
                let mut b = [0u8; 4];
                getrandom::fill(&mut b).expect("the OS random number generator works");
                u32::from_le_bytes(b)
            },
        }
    }

    /// The transport the connection uses now.
    pub(crate) fn transport(&self) -> Transport {
        *self.transport.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Switches transports (a client falling back from WebSockets to SSE keeps its token).
    pub(crate) fn set_transport(&self, transport: Transport) {
        *self.transport.lock().unwrap_or_else(|e| e.into_inner()) = transport;
    }

    /// Attaches a transport request: it replaces any older one (which ends), and the
    /// connection is not idle while it lasts. Returns the guard and the request's generation.
    pub(crate) fn attach(self: &Arc<Self>) -> (Attached, u64) {
        self.active.fetch_add(1, Ordering::SeqCst);
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.superseded.notify_waiters();
        // The request it supersedes may be waiting for a message (see `next_message`).
        let reader = self.buffer().reader.take();
        if let Some((_, waker)) = reader {
            waker.wake();
        }
        (Attached(self.clone()), generation)
    }

    fn buffer(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a newer transport request took over from `generation`.
    pub(crate) fn is_superseded(&self, generation: u64) -> bool {
        self.generation.load(Ordering::SeqCst) != generation
    }

    /// Waits until there is a message after `cursor`, or transport request `generation` is
    /// superseded (a newer one attached). Cancel-safe; one lock per poll, and a push wakes the
    /// waiting request with one lock and no allocation (a `watch` channel's notification took
    /// eight locks per push, and its channel some 400 bytes per connection).
    pub(crate) fn next_message(
        &self,
        generation: u64,
        cursor: u64,
    ) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            let mut buffer = self.buffer();
            // Under the lock `attach` takes the waker with: a newer request attaching after
            // this check wakes what it stores.
            if buffer.replay.last() > cursor || self.is_superseded(generation) {
                return Poll::Ready(());
            }
            match &mut buffer.reader {
                Some((waiting, waker)) if *waiting == generation => {
                    waker.clone_from(cx.waker());
                }
                // A newer request waits: this one is superseded (woken by `attach`).
                Some((waiting, _)) if *waiting > generation => {}
                reader => *reader = Some((generation, cx.waker().clone())),
            }
            Poll::Pending
        })
    }

    /// Numbers a message (an `M` item) and wakes the transports, once it can be buffered
    /// without dropping a message no transport has taken yet, while the client is there (a
    /// transport attached, or one detached less than [`PRESENT_FOR`], 10 s, ago: long polling
    /// between two polls). A client that is away, or does not read for [`MAX_DELIVERY_WAIT`]
    /// (10 s), gets the 2.x behaviour instead: the oldest messages go. Meanwhile the connection's send queue
    /// fills, and a hub send that finds it full closes the connection as too slow, as for
    /// Core clients. "Taken" means handed to a transport: what a long poll answer lost in
    /// flight carried may still be dropped before the client polls again.
    pub(crate) async fn push_when_room(&self, mut item: Bytes) {
        // The common case first, with nothing to wait on: there is room.
        match self.push_if_room(item, false) {
            Ok(()) => return,
            Err(back) => item = back,
        }
        let deadline = Instant::now() + MAX_DELIVERY_WAIT;
        loop {
            // Enabled before the check that sets `push_waiting`: the notification that
            // follows cannot be missed.
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            let present = self.active.load(Ordering::SeqCst) > 0
                || self
                    .idle_since
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .elapsed()
                    < PRESENT_FOR;
            let give_up = !present || Instant::now() >= deadline || self.ended.is_cancelled();
            match self.push_if_room(item, give_up) {
                Ok(()) => return,
                Err(back) => item = back,
            }
            tokio::select! {
                () = &mut drained => {}
                () = self.ended.cancelled() => {}
                // Re-checks presence now and then (a detach does not notify).
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// Pushes `item` if that drops no message a transport has not taken yet, or anyway when
    /// `force`; gives it back otherwise. Checked and pushed under one lock: another hub's pump
    /// or a call's progress cannot slip in between.
    fn push_if_room(&self, item: Bytes, force: bool) -> Result<(), Bytes> {
        let mut buffer = self.buffer();
        let safe = buffer
            .replay
            .evicted_by(item.len())
            .is_none_or(|newest| newest <= self.delivered.load(Ordering::SeqCst));
        if !safe && !force {
            buffer.push_waiting = true;
            return Err(item);
        }
        buffer.replay.push(item);
        let reader = buffer.reader.take();
        drop(buffer);
        if let Some((_, waker)) = reader {
            waker.wake();
        }
        Ok(())
    }

    /// The newest message's number.
    pub(crate) fn cursor(&self) -> u64 {
        self.buffer().replay.last()
    }

    /// Where a client's cursor points in this connection's messages: its number when it counts
    /// in this buffer, else 0 (a cursor from an earlier opening of the connection, on this node
    /// before it forgot the connection or on another node: everything here is new to it).
    pub(crate) fn position(&self, cursor: ClientCursor) -> u64 {
        match cursor {
            ClientCursor::Ours(cursor) if cursor.stream == self.stream => cursor.seq,
            ClientCursor::Ours(_) | ClientCursor::Foreign => 0,
        }
    }

    fn at(&self, seq: u64) -> Cursor {
        Cursor {
            stream: self.stream,
            seq,
        }
    }

    /// An envelope of the messages after `cursor` (up to about `max_bytes`), with a new groups
    /// token when the connection's groups changed since the last one sent; `None` when there
    /// is nothing to say. Returns the cursor after it.
    pub(crate) fn envelope_after(
        &self,
        cursor: u64,
        max_bytes: usize,
        protector: &Protector,
    ) -> Option<(Vec<u8>, u64)> {
        // Before the buffer's lock: the groups token comes first in the envelope.
        let groups = self.groups_token_if_changed(protector);
        let mut buffer = self.buffer();
        let (span, size, next) = buffer.replay.span_after(cursor, max_bytes);
        if span.is_empty() && groups.is_none() {
            return None;
        }
        // Under the lock `push_if_room` checks it and sets `push_waiting` under.
        let drained = !span.is_empty()
            && self.delivered.fetch_max(next, Ordering::SeqCst) < next
            && std::mem::take(&mut buffer.push_waiting);
        // Written from the buffer under its lock: no copy of the list, no count per item. Sized
        // exactly when it can be: the text frame's `Bytes` then takes the buffer as it is (a
        // `Vec` with spare capacity costs it an allocation of its own).
        let capacity = match &groups {
            None => wire::plain_envelope_len(self.at(next), size, span.len()),
            Some(groups) => 48 + groups.len() + size + span.len(),
        };
        let mut out = Vec::with_capacity(capacity);
        wire::write_envelope_into(
            self.at(next),
            false,
            groups.as_deref(),
            buffer.replay.items(span),
            &mut out,
        );
        drop(buffer);
        if drained {
            self.drained.notify_waiters();
        }
        Some((out, next))
    }

    /// The init message `{"C":…,"S":1,"M":[]}` (a transport's first, on `connect`).
    pub(crate) fn init_message(&self) -> (Vec<u8>, u64) {
        let cursor = self.cursor();
        (wire::envelope(self.at(cursor), true, None, &[]), cursor)
    }

    /// An envelope with no messages, only the cursor (a long poll that timed out).
    pub(crate) fn empty_envelope(&self, cursor: u64) -> Vec<u8> {
        wire::envelope(self.at(cursor), false, None, &[])
    }

    /// An envelope asking the client to reconnect (`T`): the server is shutting down.
    pub(crate) fn reconnect_envelope(&self, cursor: u64) -> Vec<u8> {
        wire::reconnect_envelope(self.at(cursor))
    }

    /// A sum of the keyed hashes of the joined memberships' group names: equal when the groups
    /// did not change (almost always, for an envelope), read without copying a name.
    fn groups_fingerprint(&self) -> u64 {
        use std::hash::BuildHasher;
        let members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        let mut sum = 0u64;
        for member in members.iter().filter(|m| m.joined) {
            for group in member
                .conn
                .groups
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
            {
                sum = sum.wrapping_add(self.groups_hash_keys.hash_one(group));
            }
        }
        sum
    }

    fn groups_token_if_changed(&self, protector: &Protector) -> Option<String> {
        // Before the names are read: a change made after this is seen next time.
        let fingerprint = self.groups_fingerprint();
        if *self
            .groups_fingerprint_sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            == fingerprint
        {
            return None;
        }
        let mut groups: Vec<String> = self
            .members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|m| m.joined)
            .flat_map(|m| m.conn.group_names())
            .collect();
        groups.sort();
        groups.dedup();
        groups.truncate(MAX_GROUPS_IN_TOKEN);
        let mut sent = self.groups_sent.lock().unwrap_or_else(|e| e.into_inner());
        *self
            .groups_fingerprint_sent
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = fingerprint;
        if *sent == groups {
            return None;
        }
        let token = protector.groups_token(&self.id, &groups);
        *sent = groups;
        Some(token)
    }

    /// Ends the connection now: the client stopped, or the hub ends it.
    pub(crate) fn stop(&self, stop_called: bool) {
        if stop_called {
            self.stop_called.store(true, Ordering::SeqCst);
        }
        self.ended.cancel();
    }

    /// Ends the connection because its client does not read what it is sent (reason label
    /// `queue_full`), as a Core connection whose queue is full.
    pub(crate) fn close_too_slow(&self) {
        let members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(member) = members.iter().find(|m| m.joined) {
            member.conn.close_with(
                "the client does not read its messages fast enough",
                crate::metrics::reason::QUEUE_FULL,
            );
        } else {
            self.ended.cancel();
        }
    }

    /// Whether the client stopped the connection itself (`abort`).
    pub(crate) fn stop_called(&self) -> bool {
        self.stop_called.load(Ordering::SeqCst)
    }

    /// The connection to call hub `hub`'s methods with: its membership, or (for a hub not in
    /// `connectionData`) one that only calls methods.
    fn connection_for(&self, endpoint: &Endpoint, hub: usize) -> Arc<Connection> {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = members.iter().find(|m| m.hub == hub) {
            return m.conn.clone();
        }
        let state = &endpoint.hubs[hub].state;
        // Nothing is delivered to a connection outside the router; the channel only keeps
        // the type whole.
        let (tx, _rx) = crate::queue::queue(1, 0);
        let conn = Arc::new(Connection::new(
            self.id.clone(),
            self.user.clone(),
            Arc::new(self.query.clone().into()),
            tx,
            ConnMetrics::new(
                state.counters.clone(),
                ConnLabels::classic(self.transport().name()),
                None,
            ),
        ));
        members.push(Member {
            hub,
            conn: conn.clone(),
            joined: false,
        });
        conn
    }
}

/// Creates a session, registers it, and starts its life: it joins `hubs` (restoring `groups`
/// after a reconnect to a node that did not know it), then waits for its end.
pub(crate) fn open(
    endpoint: &Arc<Endpoint>,
    id: String,
    user: String,
    query: HashMap<String, String>,
    transport: Transport,
    hubs: Vec<usize>,
    groups: Vec<String>,
) -> Arc<Session> {
    let session = Arc::new(Session::new(id, user, query, transport, endpoint));
    endpoint
        .sessions
        .insert(session.id.clone(), session.clone());
    let (endpoint, task) = (endpoint.clone(), session.clone());
    endpoint.tasks.clone().spawn(async move {
        run(&endpoint, &task, hubs, groups).await;
    });
    session
}

async fn run(
    endpoint: &Arc<Endpoint>,
    session: &Arc<Session>,
    hubs: Vec<usize>,
    groups: Vec<String>,
) {
    let mut contexts = Vec::new();
    for hub in hubs {
        let entry = &endpoint.hubs[hub];
        let state = &entry.state;
        let (tx, rx) = crate::queue::queue(
            state.options.send_queue_capacity,
            state.options.send_queue_bytes,
        );
        let conn = Arc::new(Connection::new(
            session.id.clone(),
            session.user.clone(),
            Arc::new(session.query.clone().into()),
            tx,
            ConnMetrics::new(
                state.counters.clone(),
                ConnLabels::classic(session.transport().name()),
                None,
            ),
        ));
        session
            .members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Member {
                hub,
                conn: conn.clone(),
                joined: true,
            });
        endpoint
            .tasks
            .spawn(pump(session.clone(), entry.name.clone(), rx, conn.clone()));
        state.connected(conn.clone()).await;
        Counters::add(&state.counters.connections_total, 1);
        Counters::add(&state.counters.connections_open, 1);
        conn.metrics.opened();
        tracing::info!(connection = %session.id, user = %session.user, hub = %entry.name, transport = session.transport().name(), family = "classic", "connected");
        for group in &groups {
            let _ = state.add_to_group(&session.id, group).await;
        }
        let ctx = Context {
            conn: conn.clone(),
            state: state.clone(),
            headers: Arc::default(),
            uploads: Arc::default(),
        };
        if let Some(on_connected) = &state.hub.on_connected {
            on_connected(ctx.clone()).await;
        }
        contexts.push(ctx);
    }
    session.started.cancel();

    let timeout = endpoint.options.disconnect_timeout;
    use crate::metrics::reason as why;
    let (reason, kind) = loop {
        let aborted = async {
            let conns: Vec<_> = contexts.iter().map(|c| c.conn.clone()).collect();
            if conns.is_empty() {
                return std::future::pending::<(String, &'static str)>().await;
            }
            let waits = conns.iter().map(|c| Box::pin(c.aborted().cancelled()));
            let ((), i, _) = futures_util::future::select_all(waits).await;
            (
                conns[i].abort_reason().unwrap_or_default().to_owned(),
                conns[i].abort_kind().unwrap_or(why::CLOSED_BY_HUB),
            )
        };
        let idle_deadline = {
            let since = *session.idle_since.lock().unwrap_or_else(|e| e.into_inner());
            since + timeout
        };
        let idle = session.active.load(Ordering::SeqCst) == 0;
        tokio::select! {
            () = session.ended.cancelled() => {
                break if session.stop_called() { ("the client stopped".to_owned(), why::CLIENT_CLOSED) } else { ("ended".to_owned(), why::CLIENT_CLOSED) };
            }
            () = endpoint.shutdown.cancelled() => break ("the server is shutting down".to_owned(), why::SERVER_SHUTDOWN),
            reason = aborted => break reason,
            () = session.activity.notified() => {}
            () = tokio::time::sleep_until(idle_deadline), if idle => {
                if session.active.load(Ordering::SeqCst) == 0
                    && session.idle_since.lock().unwrap_or_else(|e| e.into_inner()).elapsed() >= timeout
                {
                    break (format!("no transport for {} s (DisconnectTimeout)", timeout.as_secs()), why::CLIENT_TIMEOUT);
                }
            }
            // Re-reads the idle state now and then (an attach does not wake this loop).
            () = tokio::time::sleep(Duration::from_secs(1)), if !idle => {}
        }
    };
    session.ended.cancel();
    if session.stop_called() {
        endpoint.note_stopped(&session.id);
    }
    endpoint
        .sessions
        .remove_if(&session.id, |_, s| Arc::ptr_eq(s, session));
    for ctx in contexts {
        let state = &ctx.state;
        state.disconnected(&ctx.conn);
        state
            .counters
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
        ctx.conn.metrics.closed(kind);
        ctx.conn.finish();
        tracing::info!(connection = %session.id, %reason, family = "classic", "disconnected");
        if let Some(on_disconnected) = &state.hub.on_disconnected {
            on_disconnected(ctx.clone()).await;
        }
    }
}

/// Moves what the hub sends one membership into the session's numbered messages, each encoded
/// once per frame for every classic recipient.
async fn pump(
    session: Arc<Session>,
    hub: String,
    mut rx: crate::queue::QueueRx,
    conn: Arc<Connection>,
) {
    // Made once: a new wait per message costs a lock of the token's tree; and polled only
    // after it woke the task (each poll takes a lock), not after every message.
    let ended = session.ended.cancelled();
    tokio::pin!(ended);
    let gate = super::gate::Gate::new();
    loop {
        let recv = rx.recv();
        tokio::pin!(recv);
        let out = std::future::poll_fn(|cx| {
            if gate.poll(cx, |cx| ended.as_mut().poll(cx)).is_ready() {
                return Poll::Ready(None);
            }
            recv.as_mut().poll(cx)
        })
        .await;
        let Some(out) = out else { break };
        match out {
            Outbound::Message(frame) => {
                if let Some(item) = frame.classic_item(&hub) {
                    conn.metrics.sent_bytes.inc_by(item.len() as u64);
                    // Almost always there is room: no wait's future made (and moved).
                    if let Err(item) = session.push_if_room(item.clone(), false) {
                        session.push_when_room(item).await;
                    }
                }
            }
            Outbound::Raw(_) => {}
            Outbound::End => break,
        }
    }
}

/// Why a hub request could not even be read.
#[derive(Debug)]
pub(crate) enum DispatchError {
    /// Not a hub request.
    Malformed(String),
    /// So far over the connection's rate limit that it would wait more than
    /// [`MAX_PACING_WAIT`].
    TooMany(u32),
}

/// A hub request that has been read and has taken its turn (one at a time per connection, in
/// arrival order); [`Call::run`] runs it.
#[derive(Debug)]
pub(crate) struct Call {
    request: HubRequest,
    previous: Option<oneshot::Receiver<()>>,
    turn: oneshot::Sender<()>,
    /// Over the rate limit: when it may run.
    not_before: Option<Instant>,
    /// Counts the call among the session's paced ones until it is dropped.
    _paced: Option<Paced>,
}

/// One paced call, counted in its session while it lives.
#[derive(Debug)]
struct Paced(Arc<AtomicUsize>);

impl Paced {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count.clone())
    }
}

impl Drop for Paced {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Reads a hub request `{"H","M","A","I","S"}` and takes its turn. Called where the request
/// arrived, before anything is spawned, so calls run in the order they came.
pub(crate) fn begin(
    endpoint: &Endpoint,
    session: &Session,
    data: &[u8],
) -> Result<Call, DispatchError> {
    if data.len() > endpoint.hub_options.max_message_size {
        return Err(DispatchError::Malformed(format!(
            "the hub request is larger than the maximum message size of {} bytes",
            endpoint.hub_options.max_message_size
        )));
    }
    let request = HubRequest::decode(&Bytes::copy_from_slice(data))
        .map_err(|e| DispatchError::Malformed(e.to_string()))?;
    if let Some(hub) = endpoint.hub_index(&request.hub) {
        endpoint.hubs[hub]
            .received_bytes(session.transport())
            .inc_by(data.len() as u64);
    }
    let too_many = || DispatchError::TooMany(endpoint.hub_options.max_messages_per_second);
    if session.paced.load(Ordering::SeqCst) >= MAX_PACED_CALLS {
        return Err(too_many());
    }
    let not_before = session
        .rate
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .reserve(MAX_PACING_WAIT)
        .map_err(|_| too_many())?;
    let paced = not_before.map(|_| Paced::new(&session.paced));
    let (previous, turn) = session.order.take();
    Ok(Call {
        request,
        previous,
        turn,
        not_before,
        _paced: paced,
    })
}

/// The prefix of Hubbub's own invocation headers (`hubbub-msg-id`, …).
const HUBBUB_HEADER_PREFIX: &str = "hubbub-";

/// A classic request has no headers: Hubbub's classic client sends its invocation headers as
/// keys of the caller state `S` (`crates/client/src/classic.rs`). Splits `S` into those
/// headers (the `hubbub-` keys with string values, such as the chat layer's message id, so a
/// message sent again is dropped as on ASP.NET Core) and the caller state proper (`None` when
/// nothing else is left), which stays the client's: results do not echo it.
fn split_state(state: Option<&hubbub_protocol::Arg>) -> (Headers, Option<hubbub_protocol::Arg>) {
    let Some(state) = state else {
        return (Headers::new(), None);
    };
    let Ok(mut map) = state.decode::<serde_json::Map<String, serde_json::Value>>() else {
        return (Headers::new(), Some(state.clone()));
    };
    let keys: Vec<String> = map
        .iter()
        .filter(|(k, v)| k.starts_with(HUBBUB_HEADER_PREFIX) && v.is_string())
        .map(|(k, _)| k.clone())
        .collect();
    if keys.is_empty() {
        return (Headers::new(), Some(state.clone()));
    }
    let mut headers = Headers::new();
    for key in keys {
        if let Some(serde_json::Value::String(value)) = map.remove(&key) {
            headers.insert(key, value);
        }
    }
    let rest = (!map.is_empty())
        .then(|| hubbub_protocol::Arg::serialize_for(hubbub_protocol::Protocol::Json, &map).ok())
        .flatten();
    (headers, rest)
}

impl Call {
    /// Over the rate limit: when the call may run (a WebSocket reads nothing more until then).
    pub(crate) fn not_before(&self) -> Option<Instant> {
        self.not_before
    }

    /// Runs the call on the hub it names, through the same dispatch as Core invocations, and
    /// returns its result `{"I",…}`. A method that streams reports each item as progress, then
    /// its result, all as numbered messages (so they arrive in order on every transport), and
    /// returns `None`.
    pub(crate) async fn run(self, endpoint: &Endpoint, session: &Arc<Session>) -> Option<Vec<u8>> {
        let Self {
            request,
            previous,
            turn: _turn,
            not_before,
            _paced,
        } = self;
        let id = Some(request.id.as_str());
        // The rest of the caller state is the client's: results do not echo it (see
        // `wire::hub_result`).
        let (headers, _caller_state) = split_state(request.state.as_ref());
        let result = |outcome: Outcome<'_>| id.map(|id| wire::hub_result(id, outcome));
        let Some(hub) = endpoint.hub_index(&request.hub) else {
            return result(Outcome::Error(&format!(
                "'{}' Hub could not be resolved.",
                request.hub
            )));
        };
        let state = endpoint.hubs[hub].state.clone();
        // Counted here: the membership's connection may not be there before `started`.
        let family = FamilyLabel { family: "classic" };
        Counters::add(&state.counters.messages_in, 1);
        let prom = &state.counters.prom;
        endpoint.hubs[hub].messages_received().inc();
        if let Some(at) = not_before {
            // Over the rate limit: slowed, as Core connections are, not refused.
            Counters::add(&state.counters.rate_limit_pauses, 1);
            prom.rate_limit_pauses.get_or_create(&family).inc();
            tokio::select! {
                () = tokio::time::sleep_until(at) => {}
                () = session.ended.cancelled() => return None,
            }
        }
        // The client may call as soon as it has sent `start`: wait for the hubs to be joined.
        let _ = tokio::time::timeout(Duration::from_secs(10), session.started.cancelled()).await;
        let conn = session.connection_for(endpoint, hub);
        let future = match prepare(&state, &conn, headers, &request.method, &request.args, &[]) {
            Ok((future, _no_streams)) => future,
            Err(Refused::UnknownMethod(method)) => {
                return result(Outcome::Error(&format!(
                    "'{method}' method could not be resolved on hub '{}'.",
                    endpoint.hubs[hub].name
                )));
            }
            Err(refused @ (Refused::Binding(..) | Refused::Streams(_))) => {
                return result(Outcome::Error(&refused.to_string()));
            }
        };
        if let Some(previous) = previous {
            // Done or dropped: either way it is this one's turn.
            let _ = previous.await;
        }
        // A panicking method is an error result, as 2.x words a failed invocation without
        // detailed errors; the panic is logged (it would otherwise end the socket's task).
        let outcome = match std::panic::AssertUnwindSafe(future).catch_unwind().await {
            Ok(outcome) => outcome,
            Err(panic) => {
                tracing::error!(connection = %session.id, method = %request.method, panic = crate::connection::panic_text(&*panic), "hub method panicked");
                return result(Outcome::Error(&format!(
                    "There was an error invoking Hub method '{}.{}'.",
                    endpoint.hubs[hub].name, request.method
                )));
            }
        };
        match outcome {
            Ok(Reply::Void) => result(Outcome::Void),
            Ok(Reply::Value(value)) => result(Outcome::Value(&value)),
            Ok(Reply::Stream(mut items)) => {
                let call = id?;
                // A stream runs as a task of its own (see `Call::run`'s callers): its items
                // may all be ready at once, and the socket's loop must go on meanwhile.
                tokio::task::yield_now().await;
                let done = loop {
                    let item = tokio::select! {
                        item = items.next() => item,
                        () = session.ended.cancelled() => return None,
                    };
                    match item {
                        Some(Ok(item)) => match wire::progress(call, &item) {
                            Ok(bytes) => session.push_when_room(Bytes::from(bytes)).await,
                            Err(e) => {
                                tracing::debug!(connection = %session.id, error = %e, "progress item cannot be written as JSON");
                            }
                        },
                        Some(Err(e)) => break result(Outcome::HubError(&e.0, e.data())),
                        None => break result(Outcome::Void),
                    }
                };
                // The result follows its progress reports on the same ordered path (on long
                // polling and SSE the send request's answer could overtake them).
                if let Some(done) = done {
                    session.push_when_room(Bytes::from(done)).await;
                }
                None
            }
            Err(e) => result(Outcome::HubError(&e.0, e.data())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubbub_protocol::Arg;

    fn json(arg: &Option<Arg>) -> Option<serde_json::Value> {
        arg.as_ref().map(|a| a.decode().unwrap())
    }

    #[test]
    fn hubbub_headers_in_the_caller_state_become_headers_and_are_not_echoed() {
        let state = Arg::from_json(br#"{"hubbub-msg-id":"m1","hubbub-n":3,"user":"ann"}"#.to_vec())
            .unwrap();
        let (headers, rest) = split_state(Some(&state));
        assert_eq!(
            headers,
            Headers::from([("hubbub-msg-id".to_owned(), "m1".to_owned())])
        );
        // Not a string: caller state, as a 2.x client may keep anything there.
        assert_eq!(
            json(&rest),
            Some(serde_json::json!({"hubbub-n": 3, "user": "ann"}))
        );
        let only = Arg::from_json(br#"{"hubbub-msg-id":"m2"}"#.to_vec()).unwrap();
        let (headers, rest) = split_state(Some(&only));
        assert_eq!(headers.len(), 1);
        assert!(rest.is_none(), "nothing but headers");
        // Ordinary caller state is left as it came.
        let plain = Arg::from_json(br#"{"user":"ann"}"#.to_vec()).unwrap();
        let (headers, rest) = split_state(Some(&plain));
        assert!(headers.is_empty());
        assert_eq!(json(&rest), Some(serde_json::json!({"user": "ann"})));
        assert_eq!(split_state(None), (Headers::new(), None));
    }
}
