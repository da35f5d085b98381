//! One hub connection: its handshake, its message loop, its timers, and how it ends.
//!
//! Each connection is one task (`run`) fed by its transport through a channel of received
//! bytes; everything it sends goes through a bounded queue that the transport's writer drains.
//! A client too slow to drain its queue is closed with a reason instead of slowing anyone else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use std::panic::AssertUnwindSafe;

use futures_util::{FutureExt, StreamExt};
use hubbub_protocol::handshake::{HandshakeRequest, HandshakeResponse, errors};
use hubbub_protocol::negotiate::{TransferFormat, TransportKind};
use hubbub_protocol::{
    Ack, Arg, Close, Completion, Error as ProtocolError, Headers, HubMessage, Invocation,
    MessageReader, Outcome, Protocol, StreamItem,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::frame::{Frame, Outbound};
use crate::hub::{Context, HubError, Reply};
use crate::metrics::{ConnLabels, ConnMetrics, ReasonLabel};
use crate::queue::{self, QueueTx};
use crate::state::{Counters, HubState};
use crate::transport::HttpConnection;
use hubbub_protocol::stateful::Received;

/// What a transport hands to its connection.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// Bytes from the client.
    Data(Bytes),
    /// The transport is gone (socket closed, SSE response dropped, long polling stopped).
    Closed,
    /// The socket dropped, but a stateful connection may resume on a new one.
    Lost,
    /// A new socket took over after [`Inbound::Lost`].
    Resumed,
    /// The socket failed because the client took nothing of what was written to it for the
    /// write stall limit: it does not read (reason label `queue_full`).
    Stalled,
}

/// The query parameters of the URL a connection was opened with. A connection has a few: a
/// list costs less than a map's table (issue 19: memory per idle connection).
#[derive(Debug, Default)]
pub(crate) struct QueryParams(Box<[(String, String)]>);

impl QueryParams {
    /// The value of `key` (the first, were it given twice).
    pub(crate) fn get(&self, key: &str) -> Option<&String> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

impl From<HashMap<String, String>> for QueryParams {
    fn from(map: HashMap<String, String>) -> Self {
        Self(map.into_iter().collect())
    }
}

/// A connected client, as hub methods and the router see it.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) id: String,
    pub(crate) user: String,
    /// The query string of the request that opened it (shared with its transport's record).
    pub(crate) query: Arc<QueryParams>,
    /// The groups it is in (a few, so a list: a set's table costs more than a scan).
    pub(crate) groups: Mutex<Vec<String>>,
    tx: QueueTx,
    pub(crate) metrics: ConnMetrics,
    closed: AtomicBool,
    /// Where it is in the router's list of all connections (`Router::all`), so its removal
    /// finds it at once; changed only under that list's write lock. A `u32` took room the
    /// layout left unused: `Connection` is 448 bytes with it and without it (measured).
    pub(crate) slot: AtomicU32,
    abort: crate::latch::Latch,
    /// Why the hub closed it, and the `reason` label of that close.
    abort_reason: OnceLock<(String, &'static str)>,
    pending_results: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    next_invocation: AtomicU64,
    /// Client-to-server streams in progress, by stream id.
    uploads: Mutex<HashMap<String, UploadTx>>,
    /// Bytes of client-to-server stream items received and not yet read by their methods
    /// (all the connection's streams), bounded by `HubOptions::stream_buffer_bytes`.
    upload_bytes: Arc<AtomicUsize>,
}

/// Invocations of one connection take turns in the order they arrived: each waits until the
/// one before it is done (its turn's sender dropped). A tokio task may first run after a
/// later-spawned one, so waiting in a queue joined from inside the task (a semaphore acquired
/// there) would not keep the arrival order.
#[derive(Debug, Default)]
pub(crate) struct Turns(Mutex<Option<oneshot::Receiver<()>>>);

impl Turns {
    /// The end of the previous invocation's turn to wait for (none: go now), and this one's,
    /// which ends when dropped.
    pub(crate) fn take(&self) -> (Option<oneshot::Receiver<()>>, oneshot::Sender<()>) {
        let (done, next) = oneshot::channel();
        let previous = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(next);
        (previous, done)
    }
}

/// The receiving ends of an invocation's client-to-server streams, in `streamIds` order.
pub(crate) type Uploads = Vec<Option<UploadRx>>;

/// The sending end of one client-to-server stream: items, each with the bytes it is charged.
type UploadTx = mpsc::UnboundedSender<(Result<Arg, String>, usize)>;

/// The receiving end of one client-to-server stream. Each item comes with the bytes it is
/// charged in the connection's stream buffer, returned when the method reads it, or when the
/// stream is dropped with items unread.
#[derive(Debug)]
pub(crate) struct UploadRx {
    rx: mpsc::UnboundedReceiver<(Result<Arg, String>, usize)>,
    buffered: Arc<AtomicUsize>,
}

impl UploadRx {
    /// The next item; `None` once the stream has ended.
    pub(crate) async fn recv(&mut self) -> Option<Result<Arg, String>> {
        let (item, size) = self.rx.recv().await?;
        self.buffered.fetch_sub(size, Ordering::AcqRel);
        Some(item)
    }
}

impl Drop for UploadRx {
    fn drop(&mut self) {
        self.rx.close();
        while let Ok((_, size)) = self.rx.try_recv() {
            self.buffered.fetch_sub(size, Ordering::AcqRel);
        }
    }
}

/// What a client-to-server stream item is charged besides its bytes (so that empty items
/// count too).
const UPLOAD_ITEM_OVERHEAD: usize = 64;

impl Connection {
    /// A connection of `user`, whose messages go to `tx` (the transport's side drains it).
    pub(crate) fn new(
        id: String,
        user: String,
        query: Arc<QueryParams>,
        tx: QueueTx,
        metrics: ConnMetrics,
    ) -> Self {
        Self {
            id,
            user,
            query,
            groups: Mutex::default(),
            tx,
            metrics,
            closed: AtomicBool::new(false),
            slot: AtomicU32::new(u32::MAX),
            abort: crate::latch::Latch::new(),
            abort_reason: OnceLock::new(),
            pending_results: Mutex::default(),
            next_invocation: AtomicU64::new(0),
            uploads: Mutex::default(),
            upload_bytes: Arc::default(),
        }
    }

    /// Fires when the hub asked to close the connection ([`close_with`](Self::close_with)).
    pub(crate) fn aborted(&self) -> &crate::latch::Latch {
        &self.abort
    }

    /// Why the hub asked to close the connection.
    pub(crate) fn abort_reason(&self) -> Option<&str> {
        self.abort_reason.get().map(|(reason, _)| reason.as_str())
    }

    /// The `reason` label of the hub's close ([`close_with`](Self::close_with)).
    pub(crate) fn abort_kind(&self) -> Option<&'static str> {
        self.abort_reason.get().map(|(_, kind)| *kind)
    }

    /// The size of a message to count in `/metrics` once it is queued (`None`: not a hub
    /// message: pings, acks and raw bytes are not counted there).
    fn size_of(&self, out: &Outbound) -> Option<u64> {
        let Outbound::Message(frame) = out else {
            return None;
        };
        if !frame.is_sequenced() {
            return None;
        }
        Some(
            self.metrics
                .protocol
                .and_then(|p| frame.bytes(p))
                .map_or(0, |b| b.len() as u64),
        )
    }

    /// The bytes `out` is charged in the outbound queue: its encoding in the connection's
    /// protocol (JSON for a classic connection, whose item is about as long).
    fn queued_size(&self, out: &Outbound) -> usize {
        match out {
            Outbound::Raw(bytes) => bytes.len(),
            Outbound::Message(frame) => frame
                .bytes(self.metrics.protocol.unwrap_or(Protocol::Json))
                .map_or(0, Bytes::len),
            Outbound::End => 0,
        }
    }

    /// Counts a message queued for the client.
    fn count_sent(&self, size: Option<u64>) {
        Counters::add(&self.metrics.counters.messages_out, 1);
        let Some(size) = size else { return };
        self.metrics.sent.inc();
        self.metrics.sent_bytes.inc_by(size);
    }

    /// The connection is over: nothing more is queued, pending client results and
    /// client-to-server streams end now.
    pub(crate) fn finish(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.pending_results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The groups the connection is in, sorted.
    pub(crate) fn group_names(&self) -> Vec<String> {
        let mut groups: Vec<String> = self
            .groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        groups.sort();
        groups
    }

    /// Queues a message for the client. A full queue means the client cannot keep up: it is
    /// closed rather than allowed to slow the sender or grow memory.
    pub(crate) fn enqueue(&self, out: Outbound) -> bool {
        if self.closed.load(Ordering::Relaxed) {
            return false;
        }
        let size = self.size_of(&out);
        let queued = self.queued_size(&out);
        let result = self.tx.try_send(out, queued);
        self.queued(result, size)
    }

    /// What queueing a message of `size` bytes came to: counted as sent, or a full queue closing the client
    /// as too slow; `true` when queued.
    fn queued(&self, result: Result<(), queue::Refused>, size: Option<u64>) -> bool {
        match result {
            Ok(()) => {
                self.count_sent(size);
                true
            }
            Err(queue::Refused::Full) => {
                self.close_with(
                    "the client does not read its messages fast enough",
                    crate::metrics::reason::QUEUE_FULL,
                );
                false
            }
            Err(queue::Refused::Closed) => false,
        }
    }

    /// Queues a message, waiting for room in the queue instead of closing the client at once
    /// (for methods that produce many messages for their own caller): `true` once queued,
    /// `false` when the connection is over (it closed, or the hub is closing it) or too slow.
    ///
    /// The wait has a limit, `stall` (`HubOptions::write_stall_timeout`, 30 s) plus a second per
    /// 16 KiB of the message: while the client takes something of its queue the wait goes on,
    /// but once it has taken nothing for that long the connection is closed as too slow
    /// (reason label `queue_full`, as [`enqueue`](Self::enqueue) closes it when the queue is
    /// full) and this returns `false`. ASP.NET Core likewise closes a client that cannot keep
    /// up rather than waiting or buffering for it without limit.
    pub(crate) async fn enqueue_waiting(&self, out: Outbound, stall: Duration) -> bool {
        if self.closed.load(Ordering::Relaxed) {
            return false;
        }
        let size = self.size_of(&out);
        let queued = self.queued_size(&out);
        let limit = crate::transport::ws::write_stall_limit(stall, queued);
        let over = || self.closed.load(Ordering::Relaxed) || self.abort.is_cancelled();
        let result = self.tx.send_within(out, queued, limit, over).await;
        self.queued(result, size)
    }

    fn send(&self, message: HubMessage) -> bool {
        self.enqueue(Outbound::Message(Frame::new(message)))
    }

    /// Asks the connection's task to close the connection, telling the client why.
    /// `kind`: the `reason` label of `hubbub_disconnects_total`.
    pub(crate) fn close_with(&self, reason: &str, kind: &'static str) {
        let _ = self.abort_reason.set((reason.to_owned(), kind));
        self.abort.cancel();
    }

    /// Invokes a client method and waits for the client's Completion.
    pub(crate) async fn invoke_client(
        &self,
        method: &str,
        arguments: Vec<Arg>,
        timeout: Duration,
    ) -> Result<Arg, HubError> {
        let id = format!("s{}", self.next_invocation.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        self.pending_results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), tx);
        let invocation = HubMessage::Invocation(Invocation {
            invocation_id: Some(id.clone()),
            target: method.to_owned(),
            arguments,
            ..Invocation::default()
        });
        if !self.send(invocation) {
            self.pending_results
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            return Err(HubError::new("The connection is closed."));
        }
        let outcome = tokio::time::timeout(timeout, rx).await;
        self.pending_results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        match outcome {
            Ok(Ok(Outcome::Result(arg))) => Ok(arg),
            Ok(Ok(Outcome::Void)) => Ok(Arg::from_value(hubbub_protocol::Value::Nil)),
            Ok(Ok(Outcome::Error(e))) => Err(HubError::new(e)),
            Ok(Err(_)) => Err(HubError::new(
                "Connection disconnected before the client answered.",
            )),
            Err(_) => Err(HubError::new(format!(
                "The client did not answer '{method}' within {} s.",
                timeout.as_secs()
            ))),
        }
    }
}

/// Runs one connection from handshake to close. `http` is its transport-side record.
pub(crate) async fn run(
    state: Arc<HubState>,
    http: Arc<HttpConnection>,
    mut inbound: crate::queue::LaneRx<Inbound>,
    tx: QueueTx,
) {
    let Some((protocol, rest)) = handshake(&state, &http, &mut inbound, &tx).await else {
        return;
    };
    let _ = http.protocol.set(protocol);
    let conn = Arc::new(Connection::new(
        http.id.clone(),
        http.user.clone(),
        http.query.clone(),
        tx.clone(),
        ConnMetrics::new(
            state.counters.clone(),
            ConnLabels::core(http.transport.get().copied(), protocol),
            Some(protocol),
        ),
    ));
    state.connected(conn.clone()).await;
    Counters::add(&state.counters.connections_total, 1);
    Counters::add(&state.counters.connections_open, 1);
    conn.metrics.opened();
    tracing::info!(connection = %conn.id, user = %conn.user, %protocol, transport = ?http.transport.get(), "connected");
    let ctx = Context {
        conn: conn.clone(),
        state: state.clone(),
        headers: Arc::default(),
        uploads: Arc::default(),
    };
    if let Some(on_connected) = &state.hub.on_connected {
        on_connected(ctx.clone()).await;
    }

    let (close, reason) = message_loop(&state, &conn, &http, protocol, rest, &mut inbound).await;

    state.disconnected(&conn);
    conn.metrics.closed(reason);
    state
        .counters
        .connections_open
        .fetch_sub(1, Ordering::Relaxed);
    // Pending client results fail now (their senders drop) instead of waiting for a timeout.
    conn.pending_results
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    // Client-to-server streams end with the connection, as an error for the methods reading
    // them (ASP.NET Core completes them with "The underlying connection was closed."), not as
    // if the client had ended them.
    for (_, upload) in conn
        .uploads
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
    {
        let _ = upload.send((Err("The underlying connection was closed.".to_owned()), 0));
    }
    if let Some(close) = &close {
        conn.send(HubMessage::Close(close.clone()));
    }
    conn.closed.store(true, Ordering::Relaxed);
    // Writers drain what is queued (the Close included) once `ended` fires.
    let _ = tx.try_send(Outbound::End, 0);
    http.ended.cancel();
    tracing::info!(connection = %conn.id, reason = ?close.as_ref().and_then(|c| c.error.as_deref()), "disconnected");
    if let Some(on_disconnected) = &state.hub.on_disconnected {
        on_disconnected(ctx).await;
    }
}

async fn handshake(
    state: &HubState,
    http: &HttpConnection,
    inbound: &mut crate::queue::LaneRx<Inbound>,
    tx: &QueueTx,
) -> Option<(Protocol, Bytes)> {
    let deadline = Instant::now() + state.options.handshake_timeout;
    let mut buf = BytesMut::new();
    let refuse = |reason: String, kind: &'static str| {
        tracing::debug!(connection = %http.id, %reason, "handshake refused");
        state
            .counters
            .prom
            .handshake_failures
            .get_or_create(&ReasonLabel { reason: kind })
            .inc();
        let answer = HandshakeResponse::error(reason).encode();
        let len = answer.len();
        let _ = tx.try_send(Outbound::Raw(answer.into()), len);
        let _ = tx.try_send(Outbound::End, 0);
        http.ended.cancel();
        None
    };
    loop {
        let received = tokio::select! {
            r = inbound.recv() => r,
            () = sleep_until(deadline) => return refuse(errors::CANCELED.to_owned(), "timeout"),
            () = state.shutdown.cancelled() => return refuse(errors::CANCELED.to_owned(), "server_shutdown"),
        };
        let Some(Inbound::Data(data)) = received else {
            state
                .counters
                .prom
                .handshake_failures
                .get_or_create(&ReasonLabel {
                    reason: "client_closed",
                })
                .inc();
            http.ended.cancel();
            return None;
        };
        buf.extend_from_slice(&data);
        let (request, used) = match HandshakeRequest::parse(&buf, state.options.max_message_size) {
            Ok(None) => continue,
            Ok(Some(parsed)) => parsed,
            Err(ProtocolError::MessageTooLarge { .. }) => {
                return refuse(errors::CANCELED.to_owned(), "message_too_large");
            }
            Err(e) => return refuse(e.to_string(), "protocol_error"),
        };
        let Some(protocol) = Protocol::from_name(&request.protocol) else {
            return refuse(
                errors::unsupported_protocol(&request.protocol),
                "unsupported_protocol",
            );
        };
        if !protocol.is_version_supported(request.version) {
            return refuse(
                errors::unsupported_version(protocol.name(), request.version),
                "unsupported_version",
            );
        }
        // Data may come before the first poll or event stream that picks the transport (as in
        // ASP.NET Core); the client reads this handshake's answer there, so it comes next. It
        // decides the formats allowed and labels the connection's metrics ("unknown" if it
        // does not come within 2 s).
        let set = http.transport_set.notified();
        tokio::pin!(set);
        set.as_mut().enable();
        if http.transport.get().is_none() {
            tokio::select! {
                _ = tokio::time::timeout(Duration::from_secs(2), set) => {}
                () = http.ended.cancelled() => {}
            }
        }
        let kind = http
            .transport
            .get()
            .copied()
            .unwrap_or(TransportKind::WebSockets);
        if protocol.transfer_format() == TransferFormat::Binary
            && !kind.transfer_formats().contains(&TransferFormat::Binary)
        {
            return refuse(
                errors::transport_mismatch(protocol.name(), TransferFormat::Binary),
                "transport_mismatch",
            );
        }
        // Stateful reconnect needs version 2 of the protocol and a WebSocket.
        if request.version >= 2
            && kind == TransportKind::WebSockets
            && http.stateful.load(std::sync::atomic::Ordering::SeqCst)
        {
            http.make_resumable(state.options.stateful_reconnect_buffer);
        }
        let answer = HandshakeResponse::ok().encode();
        let len = answer.len();
        let _ = tx.try_send(Outbound::Raw(answer.into()), len);
        return Some((protocol, buf.split_off(used).freeze()));
    }
}

/// A token bucket: `rate` messages per second, bursts up to twice that.
#[derive(Debug)]
pub(crate) struct RateLimit {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    pub(crate) fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            rate,
            tokens: rate * 2.0,
            at: Instant::now(),
        }
    }

    /// Takes a token now, or reserves the next one free: `Ok(None)` to go at once,
    /// `Ok(Some(at))` to wait until `at` (later reservations queue behind it). `Err` when
    /// that would be more than `max_wait` away; nothing is taken then. The classic endpoint
    /// paces its sends with this (slowed, as Core connections are, and refused only past
    /// `max_wait`, which bounds what a flooding client can queue).
    pub(crate) fn reserve(&mut self, max_wait: Duration) -> Result<Option<Instant>, Instant> {
        let now = Instant::now();
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(None);
        }
        let at = now + Duration::from_secs_f64((1.0 - self.tokens) / self.rate);
        if at - now > max_wait {
            return Err(at);
        }
        self.tokens -= 1.0;
        Ok(Some(at))
    }

    fn refill(&mut self, now: Instant) {
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate)
            .min(self.rate * 2.0);
        self.at = now;
    }

    /// Takes a token; without one, says when the next is there.
    fn take(&mut self) -> Result<(), Instant> {
        let now = Instant::now();
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(now + Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

fn close_error(reason: impl Into<String>) -> Option<Close> {
    Some(Close {
        error: Some(reason.into()),
        allow_reconnect: false,
    })
}

/// A batch of client messages (handled before their recipients' writers are woken, see
/// `DeferWakes`) takes no more of what the transport has read once it has taken this many
/// bytes (it may end up to one transport read, a WebSocket message, past it) ...
const BATCH_READ: usize = 64 * 1024;

/// ... and ends after this many messages, and lets the writers it woke run before the next: a
/// batch holds every recipient's writer back, and 1,024 messages queued for one connection
/// (`HubOptions::send_queue_capacity`) close it as too slow.
const BATCH_MESSAGES: usize = 128;

/// Reads and dispatches messages until the connection ends; returns the Close to send, if any,
/// and the `reason` label of the end (`crate::metrics::reason`).
async fn message_loop(
    state: &Arc<HubState>,
    conn: &Arc<Connection>,
    http: &HttpConnection,
    protocol: Protocol,
    rest: Bytes,
    inbound: &mut crate::queue::LaneRx<Inbound>,
) -> (Option<Close>, &'static str) {
    use crate::metrics::reason;
    let options = &state.options;
    let stateful = http.resumable().is_some();
    let mut reader = MessageReader::new(protocol, options.max_message_size);
    reader.push(&rest);
    // Every timer of the connection is one deadline in the loop below (a pinned `Sleep`): the
    // next keep-alive ping, the once-a-second checks, the end of a rate-limit pause, and the
    // client's silence (or reconnect) window; a timer per purpose would cost every idle
    // connection an allocation each.
    let mut ping_at = Instant::now() + options.keep_alive_interval;
    // Long polling keeps itself alive (ASP.NET Core's inherent keep-alive): no pings there, and
    // no client timeout, since its clients send no pings either; instead, as ASP.NET Core's
    // connection manager, a connection with no poll open for the disconnect timeout
    // (`reconnect_window`, 15 s) has lost its client. Checked about once a second, as there.
    // The same check sends stateful reconnect's acknowledgements (WebSockets only, so the two
    // never meet on one connection).
    let every = Duration::from_secs(1)
        .min(options.reconnect_window)
        .max(Duration::from_millis(10));
    let mut second_at = Instant::now() + every;
    let mut last_heard = Instant::now();
    // Stateful reconnect: when the socket dropped, how long the client has to come back.
    let mut lost_until: Option<Instant> = None;
    let mut received = Received::default();
    let mut rate = RateLimit::new(options.max_messages_per_second);
    // Over the rate limit: the message that has to wait, and until when. Meanwhile nothing more
    // is read from the client (its transport stops reading, so its sends wait): slowed, not
    // closed.
    // Boxed: rare, and kept out of every connection's task.
    let mut held: Option<Box<HubMessage>> = None;
    let mut paused_until: Option<Instant> = None;
    // Invocations run one at a time per connection, in order (MaximumParallelInvocationsPerClient
    // = 1); one that has to wait does so off this loop (`run_inline_first`), so pings and
    // client-result answers keep flowing meanwhile.
    let order = Arc::new(Turns::default());
    let streams: Arc<Mutex<HashMap<String, CancellationToken>>> = Arc::default();
    let (close, why) = 'serve: loop {
        let (mut handled, mut taken) = (0, 0);
        // Everything read so far is handled in one go, its recipients' writers woken once at
        // the end (`DeferWakes`: no await in this block).
        {
            let _batch = crate::queue::DeferWakes::begin();
            while paused_until.is_none() {
                let message = match held.take() {
                    Some(message) => *message,
                    None => match reader.next_message() {
                        Ok(Some(message)) => {
                            Counters::add(&state.counters.messages_in, 1);
                            if message.is_sequenced() {
                                conn.metrics.received_message();
                            }
                            message
                        }
                        Ok(None) => {
                            // Dry: what else the transport has read already (the rest of its
                            // socket read, most often) goes into this batch too, unless it is
                            // full. Taken only now, into an empty reader, it is not copied;
                            // and a pause (below) stops the batch before it takes more.
                            if taken >= BATCH_READ {
                                break;
                            }
                            match inbound.try_recv_if(|item| matches!(item, Inbound::Data(_))) {
                                Some(Inbound::Data(data)) => {
                                    taken += data.len();
                                    conn.metrics.received_bytes.inc_by(data.len() as u64);
                                    reader.push_bytes(data);
                                    continue;
                                }
                                _ => break,
                            }
                        }
                        Err(ProtocolError::MessageTooLarge { max, .. }) => {
                            break 'serve (
                                close_error(format!(
                                    "Connection closed with an error: the maximum message size of \
                                     {max}B was exceeded."
                                )),
                                reason::MESSAGE_TOO_LARGE,
                            );
                        }
                        Err(e) => {
                            break 'serve (
                                close_error(format!("Connection closed with an error: {e}")),
                                reason::PROTOCOL_ERROR,
                            );
                        }
                    },
                };
                if let Err(ready) = rate.take() {
                    Counters::add(&state.counters.rate_limit_pauses, 1);
                    conn.metrics.paused();
                    tracing::trace!(connection = %conn.id, "over the rate limit; reading paused");
                    held = Some(Box::new(message));
                    paused_until = Some(ready);
                    break;
                }
                if stateful {
                    match &message {
                        HubMessage::Ack(ack) => {
                            if let Some(resumable) = http.resumable() {
                                resumable
                                    .replay
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .ack(ack.sequence_id);
                                resumable.acked.notify_waiters();
                            }
                            continue;
                        }
                        HubMessage::Sequence(seq) => {
                            if let Err(e) = received.sequence(seq.sequence_id) {
                                break 'serve (
                                    close_error(format!("Connection closed with an error: {e}")),
                                    reason::PROTOCOL_ERROR,
                                );
                            }
                            continue;
                        }
                        m if m.is_sequenced() && !received.accept() => continue,
                        _ => {}
                    }
                }
                if let Some(close) = handle(state, conn, message, &order, &streams) {
                    break 'serve (close, reason::CLIENT_CLOSED);
                }
                handled += 1;
                if handled == BATCH_MESSAGES {
                    break;
                }
            }
        }
        if taken > 0 {
            // What the batch took from the transport was heard just now.
            last_heard = Instant::now();
        }
        let full = handled == BATCH_MESSAGES;
        if full {
            // A full batch: the writers it woke get their turn (on this worker too) before
            // the next one, so no recipient's queue takes more than a batch meanwhile.
            tokio::task::yield_now().await;
        }
        let window = lost_until.unwrap_or_else(|| last_heard + options.client_timeout);
        // Known once the first poll or stream arrives (data may come first).
        let long_polling = http.transport.get() == Some(&TransportKind::LongPolling);
        let window_open = !long_polling || lost_until.is_some();
        let timer = [
            paused_until,
            window_open.then_some(window),
            (!long_polling).then_some(ping_at),
            (long_polling || stateful).then_some(second_at),
        ]
        .into_iter()
        .flatten()
        .min();
        // What the client sent is often there already: it is taken without the select below
        // (which makes a timer and registers two waits each time, issue 19) unless something
        // else is due: a pause, a timer, the hub ending the connection or shutting down.
        let nothing_due = paused_until.is_none()
            && !conn.abort.is_cancelled()
            && !state.shutdown.is_cancelled()
            && timer.is_none_or(|at| Instant::now() < at);
        if full && nothing_due {
            // The rest of what was read is handled next. (With something due, the select
            // below sees to it first: a client that keeps every batch full still gets its
            // pings, and its end, the hub's shutdown or a too-slow close still end it.)
            continue;
        }
        let waiting = if nothing_due {
            match inbound.try_recv() {
                Ok(item) => Some(Some(item)),
                Err(crate::queue::TryRecvError::Disconnected) => Some(None),
                Err(crate::queue::TryRecvError::Empty) => None,
            }
        } else {
            None
        };
        let item = match waiting {
            Some(item) => item,
            None => tokio::select! {
                item = inbound.recv(), if paused_until.is_none() => item,
                () = sleep_until(timer.unwrap_or(window)), if timer.is_some() => {
                    let now = Instant::now();
                    if !long_polling && ping_at <= now {
                        conn.enqueue(Outbound::Message(state.ping.clone()));
                        ping_at = now + options.keep_alive_interval;
                    }
                    if (long_polling || stateful) && second_at <= now {
                        second_at = now + every;
                        if long_polling && http.poll_idle_for() > options.reconnect_window {
                            tracing::debug!(connection = %conn.id, "the long-polling client stopped polling");
                            break (None, reason::CLIENT_TIMEOUT);
                        }
                        if stateful {
                            if let Some(id) = received.to_ack() {
                                conn.send(HubMessage::Ack(Ack { sequence_id: id }));
                            }
                        }
                    }
                    if paused_until.is_some_and(|p| p <= now) {
                        paused_until = None;
                        // The held messages did arrive: the client is not silent.
                        last_heard = now;
                        continue;
                    }
                    if !window_open || now < window {
                        continue;
                    }
                    if lost_until.is_some() {
                        tracing::debug!(connection = %conn.id, "the client did not reconnect in time");
                        break (None, reason::RECONNECT_TIMEOUT);
                    }
                    break (
                        close_error(format!(
                            "Connection closed: nothing arrived from the client for {} s.",
                            options.client_timeout.as_secs()
                        )),
                        reason::CLIENT_TIMEOUT,
                    );
                }
                () = conn.abort.cancelled() => {
                    let why = conn.abort_reason().unwrap_or_default().to_owned();
                    break (
                        close_error(format!("Connection closed: {why}.")),
                        conn.abort_kind().unwrap_or(reason::CLOSED_BY_HUB),
                    );
                }
                () = state.shutdown.cancelled() => {
                    break (
                        Some(Close {
                            error: Some("The server is shutting down.".to_owned()),
                            allow_reconnect: true,
                        }),
                        reason::SERVER_SHUTDOWN,
                    );
                }
            },
        };
        match item {
            Some(Inbound::Data(data)) => {
                last_heard = Instant::now();
                conn.metrics.received_bytes.inc_by(data.len() as u64);
                reader.push_bytes(data);
            }
            Some(Inbound::Lost) if stateful => {
                tracing::debug!(connection = %conn.id, "socket lost; waiting for the client to reconnect");
                lost_until = Some(Instant::now() + options.reconnect_window);
                // What was half-received on the old socket is not completed by the new one.
                reader = MessageReader::new(protocol, options.max_message_size);
            }
            Some(Inbound::Resumed) => {
                tracing::debug!(connection = %conn.id, "socket resumed");
                lost_until = None;
                last_heard = Instant::now();
                received.resumed();
            }
            Some(Inbound::Stalled) => break (None, reason::QUEUE_FULL),
            Some(Inbound::Closed | Inbound::Lost) | None => break (None, reason::CLIENT_CLOSED),
        }
    };
    for token in streams.lock().unwrap_or_else(|e| e.into_inner()).values() {
        token.cancel();
    }
    (close, why)
}

/// Handles one message; `Some` ends the connection (with an optional Close to send).
fn handle(
    state: &Arc<HubState>,
    conn: &Arc<Connection>,
    message: HubMessage,
    order: &Arc<Turns>,
    streams: &Arc<Mutex<HashMap<String, CancellationToken>>>,
) -> Option<Option<Close>> {
    match message {
        HubMessage::Invocation(inv) => {
            invoke(
                state,
                conn,
                inv.headers,
                inv.invocation_id,
                inv.target,
                inv.arguments,
                &inv.stream_ids,
                order,
                None,
            );
        }
        HubMessage::StreamInvocation(inv) => {
            let token = CancellationToken::new();
            {
                let mut registry = streams.lock().unwrap_or_else(|e| e.into_inner());
                if registry.contains_key(&inv.invocation_id) {
                    // As ASP.NET Core: the second one is refused, the first goes on.
                    drop(registry);
                    let error = format!("Invocation ID '{}' is already in use.", inv.invocation_id);
                    conn.send(HubMessage::Completion(Completion::error(
                        inv.invocation_id,
                        error,
                    )));
                    return None;
                }
                registry.insert(inv.invocation_id.clone(), token.clone());
            }
            let streams = streams.clone();
            invoke(
                state,
                conn,
                inv.headers,
                Some(inv.invocation_id),
                inv.target,
                inv.arguments,
                &inv.stream_ids,
                order,
                Some((token, streams)),
            );
        }
        HubMessage::CancelInvocation(cancel) => {
            if let Some(token) = streams
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&cancel.invocation_id)
            {
                token.cancel();
            }
        }
        HubMessage::Completion(completion)
            if conn
                .uploads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&completion.invocation_id) =>
        {
            // The end of a client-to-server stream.
            let upload = conn
                .uploads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&completion.invocation_id);
            if let (Some(tx), Outcome::Error(e)) = (upload, completion.outcome) {
                let _ = tx.send((Err(e), 0));
            }
        }
        HubMessage::Completion(completion) => {
            let waiter = conn
                .pending_results
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&completion.invocation_id);
            match waiter {
                Some(tx) => {
                    let _ = tx.send(completion.outcome);
                }
                None => {
                    tracing::debug!(connection = %conn.id, id = %completion.invocation_id, "completion for no pending invocation")
                }
            }
        }
        HubMessage::StreamItem(item) => {
            let uploads = conn.uploads.lock().unwrap_or_else(|e| e.into_inner());
            match uploads.get(&item.invocation_id) {
                Some(tx) => {
                    // Charged until the method reads it: items sent faster than the method
                    // takes them fill the connection's budget, and then the connection is
                    // closed as too slow a reader's would be, instead of growing memory.
                    let size = item.item.raw().map_or(0, |(_, b)| b.len()) + UPLOAD_ITEM_OVERHEAD;
                    let queued = conn.upload_bytes.fetch_add(size, Ordering::AcqRel);
                    if queued > 0 && queued + size > state.options.stream_buffer_bytes {
                        conn.upload_bytes.fetch_sub(size, Ordering::AcqRel);
                        drop(uploads);
                        conn.close_with(
                            "client-to-server stream items arrive faster than the hub method reads them",
                            crate::metrics::reason::QUEUE_FULL,
                        );
                        return None;
                    }
                    if tx.send((Ok(item.item), size)).is_err() {
                        conn.upload_bytes.fetch_sub(size, Ordering::AcqRel);
                    }
                }
                None => {
                    tracing::debug!(connection = %conn.id, id = %item.invocation_id, "item for no open stream dropped");
                }
            }
        }
        HubMessage::Ping | HubMessage::Ack(_) | HubMessage::Sequence(_) => {}
        HubMessage::Close(close) => {
            tracing::debug!(connection = %conn.id, error = ?close.error, "client closed the connection");
            return Some(None);
        }
    }
    None
}

type StreamRegistry = Arc<Mutex<HashMap<String, CancellationToken>>>;

/// The client-to-server streams an invocation opened; they close (items sent to them after
/// are dropped) when this is dropped, at the end of the invocation, as ASP.NET Core removes an
/// invocation's streams when it completes.
#[derive(Debug)]
pub(crate) struct OpenStreams {
    conn: Arc<Connection>,
    ids: Vec<String>,
}

impl Drop for OpenStreams {
    fn drop(&mut self) {
        if self.ids.is_empty() {
            return;
        }
        let mut uploads = self.conn.uploads.lock().unwrap_or_else(|e| e.into_inner());
        for id in &self.ids {
            uploads.remove(id);
        }
    }
}

/// Why a hub method could not be called.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    /// No method of that name (ASP.NET Core's text).
    #[error("Unknown hub method '{0}'")]
    UnknownMethod(String),
    /// The arguments (or the number of `streamIds`) did not fit the method.
    #[error("Failed to invoke '{0}' due to an error on the server. {1}")]
    Binding(String, String),
    /// The invocation's streams cannot be opened: an id already open on the connection, or
    /// more than [`MAX_STREAMS_PER_CONNECTION`] open at once.
    #[error("{0}")]
    Streams(String),
}

/// How many client-to-server streams one connection may hold open at once (across all its
/// invocations, those waiting for their turn included). Each open stream costs a channel; an
/// invocation that would go past this is refused and opens none.
pub const MAX_STREAMS_PER_CONNECTION: usize = 32;

/// Finds a hub method by name (without regard to case), checks the invocation's `streamIds`
/// against it and binds its arguments: the call, ready to run, with the streams it opened, or
/// why it cannot be made (then nothing was opened). Both protocol families dispatch through
/// here (classic requests carry no stream ids).
pub(crate) fn prepare(
    state: &Arc<HubState>,
    conn: &Arc<Connection>,
    headers: Headers,
    target: &str,
    arguments: &[Arg],
    stream_ids: &[String],
) -> Result<(crate::hub::BoxFuture<Result<Reply, HubError>>, OpenStreams), Refused> {
    let Some(method) = state.hub.method_named(target) else {
        tracing::debug!(connection = %conn.id, %target, "unknown hub method");
        return Err(Refused::UnknownMethod(target.to_owned()));
    };
    if stream_ids.len() != method.streams {
        // ASP.NET Core's binding error for a count that does not match the stream parameters.
        return Err(Refused::Binding(
            target.to_owned(),
            format!(
                "Client sent {} stream(s), Hub method expects {}.",
                stream_ids.len(),
                method.streams
            ),
        ));
    }
    let mut senders = Vec::with_capacity(stream_ids.len());
    let mut receivers: Uploads = Vec::with_capacity(stream_ids.len());
    if !stream_ids.is_empty() {
        let open = conn.uploads.lock().unwrap_or_else(|e| e.into_inner());
        if open.len() + stream_ids.len() > MAX_STREAMS_PER_CONNECTION {
            return Err(Refused::Streams(format!(
                "Too many open streams: a connection may have at most {MAX_STREAMS_PER_CONNECTION} client-to-server streams open at once."
            )));
        }
        for (i, id) in stream_ids.iter().enumerate() {
            if open.contains_key(id) || stream_ids[..i].contains(id) {
                return Err(Refused::Streams(format!(
                    "Stream ID '{id}' is already in use."
                )));
            }
        }
        for _ in stream_ids {
            let (tx, rx) = mpsc::unbounded_channel();
            senders.push(tx);
            receivers.push(Some(UploadRx {
                rx,
                buffered: conn.upload_bytes.clone(),
            }));
        }
    }
    let ctx = Context {
        conn: conn.clone(),
        state: state.clone(),
        headers: Arc::new(headers),
        uploads: Arc::new(Mutex::new(receivers)),
    };
    let future = (method.handler)(ctx, arguments)
        .map_err(|binding| Refused::Binding(target.to_owned(), binding))?;
    let duration = conn.metrics.invocation_duration();
    let future: crate::hub::BoxFuture<Result<Reply, HubError>> = Box::pin(async move {
        let start = std::time::Instant::now();
        let result = future.await;
        duration.observe(start.elapsed().as_secs_f64());
        result
    });
    // Opened only now that the call is certain to run.
    let mut open = conn.uploads.lock().unwrap_or_else(|e| e.into_inner());
    for (id, tx) in stream_ids.iter().zip(senders) {
        open.insert(id.clone(), tx);
    }
    drop(open);
    Ok((
        future,
        OpenStreams {
            conn: conn.clone(),
            ids: stream_ids.to_vec(),
        },
    ))
}

#[allow(clippy::too_many_arguments)]
fn invoke(
    state: &Arc<HubState>,
    conn: &Arc<Connection>,
    headers: Headers,
    invocation_id: Option<String>,
    target: String,
    arguments: Vec<Arg>,
    stream_ids: &[String],
    order: &Arc<Turns>,
    stream: Option<(CancellationToken, StreamRegistry)>,
) {
    // An invocation that cannot start still ends with its one Completion, and a stream's
    // registration goes with it.
    let reply_error = |error: String| {
        if let Some(id) = &invocation_id {
            if let Some((_, registry)) = &stream {
                registry
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(id);
            }
            conn.send(HubMessage::Completion(Completion::error(id.clone(), error)));
        }
    };
    let (future, open_streams) =
        match prepare(state, conn, headers, &target, &arguments, stream_ids) {
            Ok(prepared) => prepared,
            Err(refused) => {
                reply_error(refused.to_string());
                return;
            }
        };
    // The turn is taken here, in arrival order; the task may start running in any order.
    let (previous, _permit) = order.take();
    let conn = conn.clone();
    crate::state::run_inline_first(&state.tasks, async move {
        // The invocation's streams stay open until its task is over (stream items included).
        let _open_streams = open_streams;
        if let Some(previous) = previous {
            // Done or dropped: either way it is this one's turn.
            let _ = previous.await;
        }
        // A panicking method is an error Completion, worded as ASP.NET Core words an unexpected
        // exception without detailed errors; the panic is logged.
        let result = match AssertUnwindSafe(future).catch_unwind().await {
            Ok(result) => result,
            Err(panic) => {
                tracing::error!(connection = %conn.id, %target, panic = panic_text(&*panic), "hub method panicked");
                Err(HubError::new(format!(
                    "An unexpected error occurred invoking '{target}' on the server."
                )))
            }
        };
        let Some(id) = invocation_id else {
            if let Err(e) = result {
                tracing::debug!(connection = %conn.id, %target, error = %e, "fire-and-forget invocation failed");
            }
            return;
        };
        let completion = match (result, stream) {
            (Err(e), _) => Completion::error(id, e.0),
            (Ok(Reply::Stream(_)), None) => Completion::error(
                id,
                format!(
                    "The client attempted to invoke the streaming '{target}' method with a non-streaming invocation."
                ),
            ),
            (Ok(Reply::Void | Reply::Value(_)), Some(_)) => Completion::error(
                id,
                format!(
                    "The client attempted to invoke the non-streaming '{target}' method with a streaming invocation."
                ),
            ),
            (Ok(Reply::Void), None) => Completion::void(id),
            (Ok(Reply::Value(v)), None) => Completion::result(id, v),
            (Ok(Reply::Stream(mut items)), Some((cancel, registry))) => {
                drop(_permit);
                // A stream always runs as a task of its own: its items may all be ready at
                // once, and run in the connection's loop (`run_inline_first`) it would keep
                // the loop from reading a CancelInvocation, or seeing the connection end.
                tokio::task::yield_now().await;
                let completion = loop {
                    let item = tokio::select! {
                        item = AssertUnwindSafe(items.next()).catch_unwind() => item,
                        // Cancelled by the client: no more items, and a Completion without
                        // error, as ASP.NET Core ends a cancelled stream.
                        () = cancel.cancelled() => break Completion::void(id.clone()),
                    };
                    match item {
                        Ok(Some(Ok(item))) => {
                            conn.send(HubMessage::StreamItem(StreamItem {
                                headers: Headers::new(),
                                invocation_id: id.clone(),
                                item,
                            }));
                        }
                        Ok(Some(Err(e))) => break Completion::error(id.clone(), e.0),
                        Ok(None) => break Completion::void(id.clone()),
                        Err(panic) => {
                            tracing::error!(connection = %conn.id, %target, panic = panic_text(&*panic), "hub stream panicked");
                            break Completion::error(
                                id.clone(),
                                "An error occurred on the server while streaming results.",
                            );
                        }
                    }
                };
                registry
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                completion
            }
        };
        conn.send(HubMessage::Completion(completion));
    });
}

/// The message of a panic payload (a `&str` or `String`), for the log.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not text)")
}
