//! The chat layer: a connection bound to the local store, so nothing a user types is lost.
//!
//! - [`Chat::send`] writes the message to the store first (`sending`), then the outbox task
//!   hands it to the hub; it becomes `sent` when the hub completes it, or `failed` with the
//!   hub's reason. While disconnected the outbox waits; after a reconnect it sends again, in
//!   the order typed. Every message carries a stable id in the `hubbub-msg-id` header, so a
//!   resend after an ambiguous failure is dropped by the hub and by receivers. The outbox
//!   paces itself ([`OUTBOX_MESSAGES_PER_SECOND`]) below a Hubbub hub's default rate limit.
//! - Every received chat message is stored once (by id) before [`ChatEvent::Stored`] tells the
//!   shell. After every (re)connect, and whenever numbers show a gap, the chat catches up from
//!   the hub's numbered histories: the scope's broadcasts (`History`) and this user's inbox of
//!   direct messages (`Inbox`: those sent to them while away, and their own from other
//!   devices).
//! - After a crash, [`Chat::open`] finds the outbox where it was and resumes it.
//! - Which methods send and deliver broadcasts is the account's [`HubMethods`] (auto by
//!   default: found on the first send and remembered in the store). Every invocation the hub
//!   sends is reported as [`ChatEvent::Invocation`] (the inspector), whether or not it was a
//!   chat message, so nothing a hub sends is hidden. What a hub lacks (history, inbox, rooms)
//!   is reported once as [`ChatEvent::Unavailable`].

use std::sync::Arc;

use hubbub_protocol::{Arg, Headers};
use hubbub_store::{ConversationId, ConversationKind, HubId, Message, MessageState, Store};
use tokio::sync::{Notify, broadcast, mpsc};

use crate::methods::{self, HubMethods, SendError, hubbub};
use crate::{Error, Event, HubConnection, State};

/// The invocation header that carries a message's id (the hub's `MESSAGE_ID_HEADER`).
pub const MESSAGE_ID_HEADER: &str = "hubbub-msg-id";
/// The header with a broadcast's number in the hub's history.
pub const SEQ_HEADER: &str = "hubbub-seq";
/// The start of a hub error that means "not now, send it again later" (a Hubbub hub whose
/// Redis backplane is unreachable); such a message stays in the outbox.
pub const UNAVAILABLE: &str = "Unavailable:";
/// The header with the epoch of that number.
pub const EPOCH_HEADER: &str = "hubbub-epoch";
/// On a direct message: the user it went to.
pub const TO_HEADER: &str = "hubbub-to";
/// How many messages per second the outbox sends at most, sustained (bursts of as many pass
/// at once): below a Hubbub hub's default limit of 200 hub messages per second per connection
/// (`HubOptions::max_messages_per_second`), leaving room for pings, acknowledgements and
/// history calls, so emptying a long outbox (a paste, a day offline) is never slowed by the
/// hub. A hub with a lower limit slows the connection down instead (it reads no more until the
/// connection is back under it); the outbox sends one message at a time and waits for each
/// completion, so it follows.
pub const OUTBOX_MESSAGES_PER_SECOND: u32 = 150;

/// What the chat layer tells a shell.
#[derive(Debug, Clone)]
pub enum ChatEvent {
    /// A message was stored for the first time (typed here, or received).
    Stored(Message),
    /// A stored message changed state (sent, failed).
    Updated(Message),
    /// The connection's own events.
    Connection(Event),
    /// An invocation the hub sent, whatever it was (for an inspector).
    Invocation(Inspected),
    /// The account's hub contract changed (auto found the send method; it is stored).
    Methods(HubMethods),
    /// The hub lacks one of Hubbub's extras: `feature` is `history`, `inbox` or `rooms`,
    /// `reason` the hub's answer. Reported once per chat.
    Unavailable {
        /// Which extra.
        feature: &'static str,
        /// The hub's answer.
        reason: String,
    },
}

/// One invocation received from the hub, as an inspector shows it.
#[derive(Debug, Clone)]
pub struct Inspected {
    /// The method the hub invoked.
    pub target: String,
    /// Its arguments as they arrived (decode with `Arg::decode::<serde_json::Value>`).
    pub arguments: Vec<Arg>,
    /// Its headers.
    pub headers: Headers,
    /// When it arrived (ms since the Unix epoch).
    pub at_ms: i64,
    /// The chat layer took it as a chat message (it is also in a conversation).
    pub chat: bool,
}

/// A chat on one hub, backed by the store.
#[derive(Clone)]
pub struct Chat {
    inner: Arc<Inner>,
}

struct Inner {
    connection: HubConnection,
    store: Store,
    hub: HubId,
    me: String,
    broadcast: ConversationId,
    events: broadcast::Sender<ChatEvent>,
    wake: Notify,
    /// Rooms joined through this chat: joined again after every reconnect (a new connection
    /// starts in no group).
    rooms: std::sync::Mutex<std::collections::BTreeSet<String>>,
    rejoin: std::sync::atomic::AtomicBool,
    /// The receive task has caught up with the hub's history since the last (re)connect: new
    /// messages go out after what was said meanwhile has been stored and shown.
    caught_up: std::sync::atomic::AtomicBool,
    /// The receive task's queue (to ask it to catch up with a room).
    received: mpsc::UnboundedSender<Incoming>,
    /// The hub's chat contract (the account's, or auto).
    methods: std::sync::RwLock<HubMethods>,
    /// Texts of our own broadcasts sent recently, for recognizing their echo from a hub that
    /// passes no message id (such a hub sends the sender its own message back): (text, when).
    echoes: std::sync::Mutex<std::collections::VecDeque<(String, std::time::Instant)>>,
    /// Extras the hub was found to lack, with its answer (reported once each).
    lacks: std::sync::Mutex<std::collections::BTreeMap<&'static str, String>>,
}

/// How long an echo of our own message from a hub without message ids is waited for.
const ECHO_WINDOW: std::time::Duration = std::time::Duration::from_secs(120);
/// The most echoes waited for at once (the oldest is forgotten first).
const ECHO_MAX: usize = 1024;

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat")
            .field("me", &self.inner.me)
            .finish_non_exhaustive()
    }
}

fn new_message_id() -> String {
    let mut bytes = [0u8; 16];
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Chat {
    /// Binds `connection` (not yet started) to `store` as user `me` on the hub at `hub_url`,
    /// and starts the outbox and receive tasks. Start the connection afterwards.
    pub async fn open(
        connection: HubConnection,
        store: Store,
        hub_url: &str,
        me: &str,
    ) -> Result<Self, hubbub_store::Error> {
        let hub = store.upsert_hub(hub_url, me, "json", None).await?;
        Self::open_hub(connection, store, hub, me).await
    }

    /// Like [`Chat::open`], for a hub already in the store (an app's account, with its own
    /// protocol and transport settings, which this leaves as they are).
    pub async fn open_hub(
        connection: HubConnection,
        store: Store,
        hub: HubId,
        me: &str,
    ) -> Result<Self, hubbub_store::Error> {
        let broadcast = store.conversation(hub, ConversationKind::Broadcast).await?;
        let methods = HubMethods::from_stored(store.hub_methods(hub).await?.as_deref());
        let (events, _) = broadcast::channel(4096);
        // Received messages go through one queue and are stored by one task, in order; the
        // same task catches up from the hub's histories when numbers show a gap, and after
        // every (re)connect.
        let (received_tx, mut received_rx) = mpsc::unbounded_channel::<Incoming>();
        let inner = Arc::new(Inner {
            connection,
            store,
            hub,
            me: me.to_owned(),
            broadcast,
            events,
            wake: Notify::new(),
            rooms: std::sync::Mutex::default(),
            rejoin: std::sync::atomic::AtomicBool::new(false),
            caught_up: std::sync::atomic::AtomicBool::new(false),
            received: received_tx.clone(),
            methods: std::sync::RwLock::new(methods),
            echoes: std::sync::Mutex::default(),
            lacks: std::sync::Mutex::default(),
        });

        let observer = Arc::downgrade(&inner);
        inner.connection.on_any({
            let received_tx = received_tx.clone();
            move |target, args, headers| {
                let Some(inner) = observer.upgrade() else {
                    return;
                };
                let chat = take_message(&inner, &received_tx, target, args, headers);
                let _ = inner.events.send(ChatEvent::Invocation(Inspected {
                    target: target.to_owned(),
                    arguments: args.to_vec(),
                    headers: headers.clone(),
                    at_ms: hubbub_store::now_ms(),
                    chat,
                }));
            }
        });
        let receiver = Arc::downgrade(&inner);
        tokio::spawn(async move {
            let (mut cursor, mut inbox) = match receiver.upgrade() {
                Some(inner) => (
                    inner
                        .store
                        .history_cursor(inner.hub)
                        .await
                        .unwrap_or((None, 0)),
                    inner
                        .store
                        .inbox_cursor(inner.hub)
                        .await
                        .unwrap_or((None, 0)),
                ),
                None => return,
            };
            // Each room's conversation and cursor, read from the store on first use.
            let mut rooms: std::collections::HashMap<String, (ConversationId, Cursor)> =
                std::collections::HashMap::new();
            while let Some(item) = received_rx.recv().await {
                let Some(inner) = receiver.upgrade() else {
                    return;
                };
                match item {
                    Incoming::CatchUp => {
                        catch_up(&inner, &Stream::Broadcast, &mut cursor).await;
                        catch_up(&inner, &Stream::Inbox, &mut inbox).await;
                        inner
                            .caught_up
                            .store(true, std::sync::atomic::Ordering::SeqCst);
                        inner.wake.notify_one();
                    }
                    Incoming::CatchUpRoom(room) => {
                        if let Some((stream, cursor)) = room_cursor(&inner, &mut rooms, room).await
                        {
                            catch_up(&inner, &stream, cursor).await;
                        }
                    }
                    Incoming::Message {
                        target,
                        id,
                        name,
                        text,
                        position,
                    } => {
                        let (stream, cursor, to) = match target {
                            Target::Broadcast => (Stream::Broadcast, &mut cursor, None),
                            Target::Direct { to } => (Stream::Inbox, &mut inbox, to),
                            Target::Room(room) => {
                                match room_cursor(&inner, &mut rooms, room).await {
                                    Some((stream, cursor)) => (stream, cursor, None),
                                    None => continue,
                                }
                            }
                        };
                        let message = (id.as_str(), name.as_str(), text.as_str(), to.as_ref());
                        receive(&inner, &stream, cursor, message, position).await;
                    }
                }
            }
        });

        // Connection events pass through, and a (re)connect wakes the outbox and catches up.
        let catch_up_tx = received_tx;
        let mut connection_events = inner.connection.events();
        let forwarder = Arc::downgrade(&inner);
        tokio::spawn(async move {
            loop {
                let event = match connection_events.recv().await {
                    Ok(event) => event,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let Some(inner) = forwarder.upgrade() else {
                    return;
                };
                if matches!(event, Event::Connected { .. } | Event::Reconnected { .. }) {
                    inner
                        .rejoin
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                    inner
                        .caught_up
                        .store(false, std::sync::atomic::Ordering::SeqCst);
                    inner.wake.notify_one();
                    let _ = catch_up_tx.send(Incoming::CatchUp);
                }
                let _ = inner.events.send(ChatEvent::Connection(event));
            }
        });

        let chat = Self { inner };
        let outbox = Arc::downgrade(&chat.inner);
        tokio::spawn(async move { outbox_loop(outbox).await });
        Ok(chat)
    }

    /// The connection (to start, stop, or observe it).
    pub fn connection(&self) -> &HubConnection {
        &self.inner.connection
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The broadcast conversation of this hub.
    pub fn conversation(&self) -> ConversationId {
        self.inner.broadcast
    }

    /// Everything the chat layer reports from now on.
    pub fn events(&self) -> broadcast::Receiver<ChatEvent> {
        self.inner.events.subscribe()
    }

    /// Writes `text` to the outbox (durably, before anything is sent) and returns the stored
    /// message; the outbox task sends it as soon as the hub is reachable.
    pub async fn send(&self, text: &str) -> Result<Message, hubbub_store::Error> {
        self.send_to(ConversationKind::Broadcast, text).await
    }

    /// Writes `text` for a room or a direct conversation to the outbox (see [`Chat::send`]).
    pub async fn send_to(
        &self,
        kind: ConversationKind,
        text: &str,
    ) -> Result<Message, hubbub_store::Error> {
        let conversation = self.inner.store.conversation(self.inner.hub, kind).await?;
        let message = self
            .inner
            .store
            .enqueue(conversation, &new_message_id(), &self.inner.me, text)
            .await?;
        let _ = self.inner.events.send(ChatEvent::Stored(message.clone()));
        self.inner.wake.notify_one();
        Ok(message)
    }

    /// Joins a room now and after every reconnect, and catches up with what was said in it;
    /// returns its connection count.
    pub async fn join_room(&self, room: &str) -> Result<u64, Error> {
        let count = match self
            .inner
            .connection
            .invoke(hubbub::JOIN_ROOM, vec![Arg::from(room)])
            .await
        {
            Ok(count) => count,
            Err(Error::Hub(reason)) if methods::is_missing_method(&reason) => {
                lacks(&self.inner, "rooms", &reason);
                return Err(Error::Hub(reason));
            }
            Err(e) => return Err(e),
        };
        self.inner
            .rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(room.to_owned());
        let _ = self
            .inner
            .received
            .send(Incoming::CatchUpRoom(room.to_owned()));
        Ok(count)
    }

    /// Joins `room` at the next (re)connect and after every one, without asking the hub now
    /// (rooms remembered from an earlier run).
    pub fn remember_room(&self, room: &str) {
        self.inner
            .rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(room.to_owned());
    }

    /// The hub's chat contract in use (auto until a send found the method).
    pub fn methods(&self) -> HubMethods {
        self.inner
            .methods
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Uses `methods` from now on and keeps it for the account (`HubMethods::default()`: back
    /// to auto-detection).
    pub async fn set_methods(&self, methods: HubMethods) -> Result<(), hubbub_store::Error> {
        let stored = (methods != HubMethods::default()).then(|| methods.to_stored());
        self.inner
            .store
            .set_hub_methods(self.inner.hub, stored.as_deref())
            .await?;
        *self
            .inner
            .methods
            .write()
            .unwrap_or_else(|e| e.into_inner()) = methods.clone();
        let _ = self.inner.events.send(ChatEvent::Methods(methods));
        self.inner.wake.notify_one();
        Ok(())
    }

    /// The extras this hub was found to lack so far (`history`, `inbox`, `rooms`, and what
    /// a shell reported with [`Chat::mark_unavailable`]), each with the hub's answer.
    pub fn unavailable(&self) -> Vec<(&'static str, String)> {
        self.inner
            .lacks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect()
    }

    /// Records that the hub lacks `feature` (found by a shell, such as `presence`), with the
    /// hub's answer; reported once as [`ChatEvent::Unavailable`].
    pub fn mark_unavailable(&self, feature: &'static str, reason: &str) {
        lacks(&self.inner, feature, reason);
    }

    /// The hub's row in the store.
    pub fn hub(&self) -> HubId {
        self.inner.hub
    }

    /// This user's name on the hub.
    pub fn me(&self) -> &str {
        &self.inner.me
    }

    /// Leaves a room.
    pub async fn leave_room(&self, room: &str) -> Result<u64, Error> {
        self.inner
            .rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(room);
        self.inner
            .connection
            .invoke(hubbub::LEAVE_ROOM, vec![Arg::from(room)])
            .await
    }

    /// Puts a failed message back in the outbox.
    pub async fn retry(&self, failed: &Message) -> Result<Message, hubbub_store::Error> {
        let message = self
            .inner
            .store
            .retry(failed.conversation, &failed.msg_id)
            .await?;
        self.inner.wake.notify_one();
        Ok(message)
    }

    /// Takes a failed message out of the outbox for good.
    pub async fn discard(&self, failed: &Message) -> Result<(), hubbub_store::Error> {
        self.inner
            .store
            .discard(failed.conversation, &failed.msg_id)
            .await
    }

    /// How many messages wait in the outbox.
    pub async fn pending(&self) -> Result<usize, hubbub_store::Error> {
        Ok(self.inner.store.outbox(self.inner.hub).await?.len())
    }
}

/// Hands a chat message in an invocation to the receive task; `false` when the invocation is
/// not one (the inspector still shows it).
fn take_message(
    inner: &Inner,
    received_tx: &mpsc::UnboundedSender<Incoming>,
    target: &str,
    args: &[Arg],
    headers: &Headers,
) -> bool {
    let id = || {
        headers
            .get(MESSAGE_ID_HEADER)
            .cloned()
            .unwrap_or_else(new_message_id)
    };
    let text = |a: &Arg| a.decode::<String>().ok();
    // Hubbub's chat hub's extras (its preset): rooms and direct messages.
    if target.eq_ignore_ascii_case(hubbub::ROOM_MESSAGE) {
        if let [room, name, body] = args {
            if let (Some(room), Some(name), Some(body)) = (text(room), text(name), text(body)) {
                let _ = received_tx.send(Incoming::Message {
                    target: Target::Room(room),
                    id: id(),
                    name,
                    text: body,
                    position: position(headers),
                });
                return true;
            }
        }
        return false;
    }
    if target.eq_ignore_ascii_case(hubbub::DIRECT_MESSAGE) {
        if let [from, body] = args {
            if let (Some(from), Some(body)) = (text(from), text(body)) {
                let _ = received_tx.send(Incoming::Message {
                    target: Target::Direct {
                        to: headers.get(TO_HEADER).cloned(),
                    },
                    id: id(),
                    name: from,
                    text: body,
                    position: position(headers),
                });
                return true;
            }
        }
        return false;
    }
    let recognized = inner
        .methods
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .recognize(target, args);
    let Some(message) = recognized else {
        return false;
    };
    let name = message
        .sender
        .unwrap_or_else(|| methods::UNKNOWN_SENDER.to_owned());
    let id = match headers.get(MESSAGE_ID_HEADER) {
        Some(id) => id.clone(),
        // A hub that passes no id sends us our own message back: it is already
        // stored (as ours), so its echo is not stored again.
        None if is_own_echo(inner, &name, &message.text) => return true,
        // A message from a hub that sends no id cannot be deduplicated: it gets one
        // here.
        None => new_message_id(),
    };
    let _ = received_tx.send(Incoming::Message {
        target: Target::Broadcast,
        id,
        name,
        text: message.text,
        position: position(headers),
    });
    true
}

/// What the receive task works through, in order.
enum Incoming {
    /// A chat message as it arrived, with its place in the hub's numbered history for it when
    /// the hub numbers them.
    Message {
        target: Target,
        id: String,
        name: String,
        text: String,
        position: Option<(String, u64)>,
    },
    /// Connected: fetch what was missed.
    CatchUp,
    /// A room was joined (again): fetch what was said in it meanwhile.
    CatchUpRoom(String),
}

/// Where a received message belongs.
enum Target {
    Broadcast,
    /// A direct message (`to`: the user it went to, on our own copies).
    Direct {
        to: Option<String>,
    },
    Room(String),
}

/// Where the client is in one of the hub's numbered histories: its epoch and the last number.
type Cursor = (Option<String>, u64);

/// A room's stream and cursor, its conversation and cursor read from the store the first time.
async fn room_cursor<'a>(
    inner: &Inner,
    rooms: &'a mut std::collections::HashMap<String, (ConversationId, Cursor)>,
    room: String,
) -> Option<(Stream, &'a mut Cursor)> {
    if !rooms.contains_key(&room) {
        let kind = ConversationKind::Room(room.clone());
        let conversation = match inner.store.conversation(inner.hub, kind).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "a room's conversation could not be opened");
                return None;
            }
        };
        let cursor = inner
            .store
            .conversation_cursor(conversation)
            .await
            .unwrap_or((None, 0));
        rooms.insert(room.clone(), (conversation, cursor));
    }
    let (conversation, cursor) = rooms.get_mut(&room)?;
    let conversation = *conversation;
    Some((Stream::Room { room, conversation }, cursor))
}

/// The other user of a direct message: our own messages (from any device) are filed under the
/// user they went to.
fn peer(me: &str, from: &str, to: Option<&String>) -> String {
    match to {
        Some(to) if from == me => to.clone(),
        _ => from.to_owned(),
    }
}

/// Stores a message as it arrived. When its number shows a gap (or a new epoch), what was
/// missed is fetched first; the cursor only moves over messages with no gap before them, so
/// if that catch-up failed (the connection dropped again), the next one starts where the gap
/// began.
async fn receive(
    inner: &Inner,
    stream: &Stream,
    cursor: &mut Cursor,
    (id, name, text, to): (&str, &str, &str, Option<&String>),
    position: Option<(String, u64)>,
) {
    if let Some((epoch, seq)) = &position {
        if cursor.0.as_deref() != Some(epoch.as_str()) || *seq > cursor.1 + 1 {
            catch_up(inner, stream, cursor).await;
        }
    }
    if let Some(conversation) = stream.conversation(inner, name, to).await {
        store_received(inner, conversation, id, name, text).await;
    }
    if let Some((epoch, seq)) = position {
        if cursor.0.as_deref() == Some(epoch.as_str()) && seq == cursor.1 + 1 {
            cursor.1 = seq;
            stream.save(inner, &epoch, seq).await;
        }
    }
}

/// Whether an id-less broadcast from `name` (or from no one said) is the echo of a message we
/// sent within [`ECHO_WINDOW`]; if so, that echo is used up.
fn is_own_echo(inner: &Inner, name: &str, text: &str) -> bool {
    if name != inner.me && name != methods::UNKNOWN_SENDER {
        return false;
    }
    let mut echoes = inner.echoes.lock().unwrap_or_else(|e| e.into_inner());
    let now = std::time::Instant::now();
    while echoes
        .front()
        .is_some_and(|(_, at)| now.duration_since(*at) > ECHO_WINDOW)
    {
        echoes.pop_front();
    }
    match echoes.iter().position(|(t, _)| t == text) {
        Some(i) => {
            echoes.remove(i);
            true
        }
        None => false,
    }
}

/// Records, once, that the hub lacks one of Hubbub's extras, and tells the shell.
fn lacks(inner: &Inner, feature: &'static str, reason: &str) {
    let new = inner
        .lacks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(feature, reason.to_owned())
        .is_none();
    if new {
        tracing::info!(feature, reason, "this hub lacks one of Hubbub's extras");
        let _ = inner.events.send(ChatEvent::Unavailable {
            feature,
            reason: reason.to_owned(),
        });
    }
}

/// Stores a received message once; a repeat of our own message marks it sent.
async fn store_received(
    inner: &Inner,
    conversation: ConversationId,
    id: &str,
    name: &str,
    text: &str,
) {
    match inner.store.receive(conversation, id, name, text).await {
        Ok(Some(stored)) => {
            let _ = inner.events.send(ChatEvent::Stored(stored));
        }
        Ok(None) => {
            if let Ok(Some(m)) = inner.store.message(conversation, id).await {
                if m.outgoing {
                    let _ = inner.events.send(ChatEvent::Updated(m));
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "a received message could not be stored"),
    }
}

#[derive(serde::Deserialize)]
struct HistoryPage {
    epoch: String,
    messages: Vec<HistoryItem>,
}

#[derive(serde::Deserialize)]
struct HistoryItem {
    seq: u64,
    id: String,
    name: String,
    message: String,
    /// On an inbox entry: the user the message went to.
    #[serde(default)]
    to: Option<String>,
}

/// A numbered history on the hub that this client follows, and where its messages go.
#[derive(Debug, Clone)]
enum Stream {
    /// The scope's broadcasts (`History`).
    Broadcast,
    /// This user's direct messages, sent and received (`Inbox`); filed per peer.
    Inbox,
    /// A room's messages (`RoomHistory`).
    Room {
        room: String,
        conversation: ConversationId,
    },
}

impl Stream {
    /// The hub method that pages through it, and the arguments before the cursor.
    fn method(&self) -> (&'static str, Option<&str>) {
        match self {
            Self::Broadcast => (hubbub::HISTORY, None),
            Self::Inbox => (hubbub::INBOX, None),
            Self::Room { room, .. } => (hubbub::ROOM_HISTORY, Some(room)),
        }
    }

    /// The conversation a message of it belongs in (`to`: on a direct message, the user it
    /// went to).
    async fn conversation(
        &self,
        inner: &Inner,
        sender: &str,
        to: Option<&String>,
    ) -> Option<ConversationId> {
        let kind = match self {
            Self::Broadcast => return Some(inner.broadcast),
            Self::Room { conversation, .. } => return Some(*conversation),
            Self::Inbox => ConversationKind::Direct(peer(&inner.me, sender, to)),
        };
        match inner.store.conversation(inner.hub, kind).await {
            Ok(conversation) => Some(conversation),
            Err(e) => {
                tracing::error!(error = %e, "a received message could not be stored");
                None
            }
        }
    }

    /// The extra a hub without this history lacks.
    fn feature(&self) -> &'static str {
        match self {
            Self::Broadcast => "history",
            Self::Inbox => "inbox",
            Self::Room { .. } => "rooms",
        }
    }

    /// Records where the client is in it.
    async fn save(&self, inner: &Inner, epoch: &str, seq: u64) {
        let _ = match self {
            Self::Broadcast => inner.store.set_history_cursor(inner.hub, epoch, seq).await,
            Self::Inbox => inner.store.set_inbox_cursor(inner.hub, epoch, seq).await,
            Self::Room { conversation, .. } => {
                inner
                    .store
                    .set_conversation_cursor(*conversation, epoch, seq)
                    .await
            }
        };
    }
}

/// A message's place in a numbered history, from its headers.
fn position(headers: &Headers) -> Option<(String, u64)> {
    match (
        headers.get(EPOCH_HEADER),
        headers.get(SEQ_HEADER).and_then(|s| s.parse().ok()),
    ) {
        (Some(epoch), Some(seq)) => Some((epoch.clone(), seq)),
        _ => None,
    }
}

/// Fetches a history of the hub after `cursor` (all of it when the epoch changed) and stores
/// what is new, in order. A hub without it (not a Hubbub hub, or an older one) is left alone.
async fn catch_up(inner: &Inner, stream: &Stream, cursor: &mut Cursor) {
    let (method, first) = stream.method();
    loop {
        let mut args: Vec<Arg> = first.map(Arg::from).into_iter().collect();
        args.push(Arg::from(cursor.0.clone().unwrap_or_default()));
        args.push(Arg::from_value(cursor.1.into()));
        let page: HistoryPage = match inner.connection.invoke(method, args).await {
            Ok(page) => page,
            Err(Error::Hub(reason)) if methods::is_missing_method(&reason) => {
                lacks(inner, stream.feature(), &reason);
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, method, "no history from this hub");
                return;
            }
        };
        if cursor.0.as_deref() != Some(page.epoch.as_str()) {
            *cursor = (Some(page.epoch.clone()), 0);
        }
        let full = page.messages.len() >= 500;
        for item in page.messages {
            if let Some(conversation) = stream
                .conversation(inner, &item.name, item.to.as_ref())
                .await
            {
                store_received(inner, conversation, &item.id, &item.name, &item.message).await;
            }
            cursor.1 = cursor.1.max(item.seq);
        }
        stream.save(inner, &page.epoch, cursor.1).await;
        if !full {
            return;
        }
    }
}

/// A token bucket: `rate` messages per second, bursts of up to `rate`.
struct Pacer {
    rate: f64,
    tokens: f64,
    at: tokio::time::Instant,
}

impl Pacer {
    fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            rate,
            tokens: rate,
            at: tokio::time::Instant::now(),
        }
    }

    /// Waits (at most 1/rate s) until a message may go, and counts it.
    async fn ready(&mut self) {
        let now = tokio::time::Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.rate);
        self.at = now;
        if self.tokens < 1.0 {
            let wait = std::time::Duration::from_secs_f64((1.0 - self.tokens) / self.rate);
            tokio::time::sleep(wait).await;
            self.tokens = 1.0;
            self.at = tokio::time::Instant::now();
        }
        self.tokens -= 1.0;
    }
}

/// Marks `message` sent now that the hub has it, and tells the shell when that changed it
/// (an echo may have marked it already).
async fn mark_sent(inner: &Inner, message: &Message) {
    if let Ok(sent) = inner
        .store
        .mark_sent(message.conversation, &message.msg_id)
        .await
    {
        if sent.state == MessageState::Sent {
            let _ = inner.events.send(ChatEvent::Updated(sent));
        }
    }
}

/// Sends a broadcast with the hub's send method (found first under auto, then remembered) and
/// marks it sent or failed; `Err` leaves it in the outbox (not connected, or no answer).
async fn send_broadcast(inner: &Inner, message: &Message, headers: Headers) -> Result<(), String> {
    let contract = inner
        .methods
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    {
        // Pruned here too: on a hub that passes ids no echo is ever looked for.
        let mut echoes = inner.echoes.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        while echoes.front().is_some_and(|(_, at)| {
            now.duration_since(*at) > ECHO_WINDOW || echoes.len() >= ECHO_MAX
        }) {
            echoes.pop_front();
        }
        echoes.push_back((message.body.clone(), now));
    }
    let forget_echo = || {
        let mut echoes = inner.echoes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = echoes.iter().rposition(|(t, _)| *t == message.body) {
            echoes.remove(i);
        }
    };
    let result = methods::send_message(
        &inner.connection,
        &contract,
        &message.sender,
        &message.body,
        headers,
    )
    .await;
    let failed = |reason: String| async move {
        forget_echo();
        if let Ok(failed) = inner
            .store
            .mark_failed(message.conversation, &message.msg_id, &reason)
            .await
        {
            let _ = inner.events.send(ChatEvent::Updated(failed));
        }
        Ok(())
    };
    match result {
        Ok(used) => {
            if contract.send.is_none() {
                // Auto found it: remembered for the account.
                let mut found = contract;
                found.send = Some(used);
                let _ = inner
                    .store
                    .set_hub_methods(inner.hub, Some(&found.to_stored()))
                    .await;
                *inner.methods.write().unwrap_or_else(|e| e.into_inner()) = found.clone();
                let _ = inner.events.send(ChatEvent::Methods(found));
            }
            mark_sent(inner, message).await;
            Ok(())
        }
        Err(e @ SendError::NoMethod { .. }) => failed(e.to_string()).await,
        Err(SendError::Call(Error::Hub(reason))) if reason.starts_with(UNAVAILABLE) => {
            forget_echo();
            Err(reason)
        }
        Err(SendError::Call(Error::Hub(reason)))
            if inner.connection.state() == State::Connected =>
        {
            failed(reason).await
        }
        Err(SendError::Call(e)) => Err(e.to_string()),
    }
}

/// Sends the outbox in order, one message at a time and at most
/// [`OUTBOX_MESSAGES_PER_SECOND`], whenever the connection is up.
async fn outbox_loop(inner: std::sync::Weak<Inner>) {
    let mut pacer = Pacer::new(OUTBOX_MESSAGES_PER_SECOND);
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let notified = strong.wake.notified();
        if strong.connection.state() == State::Connected {
            match drain(&strong, &mut pacer).await {
                Ok(()) => {}
                Err(e) => tracing::debug!(error = %e, "outbox paused"),
            }
        }
        // Woken by a new message or a (re)connect; a periodic look covers anything missed. The
        // loop ends within a second of the last `Chat` handle going away.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), notified).await;
    }
}

async fn drain(inner: &Inner, pacer: &mut Pacer) -> Result<(), String> {
    if !inner.caught_up.load(std::sync::atomic::Ordering::SeqCst) {
        return Err("catching up with the hub's history first".to_owned());
    }
    // A new connection is in no room: join them again before sending to them.
    if inner
        .rejoin
        .swap(false, std::sync::atomic::Ordering::SeqCst)
    {
        let rooms: Vec<String> = inner
            .rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        for room in rooms {
            if let Err(e) = inner
                .connection
                .invoke::<u64>(hubbub::JOIN_ROOM, vec![Arg::from(room.as_str())])
                .await
            {
                inner
                    .rejoin
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                return Err(e.to_string());
            }
            // Back in the room: what was said in it while we were away.
            let _ = inner.received.send(Incoming::CatchUpRoom(room));
        }
    }
    let pending = inner
        .store
        .outbox(inner.hub)
        .await
        .map_err(|e| e.to_string())?;
    let mut kinds = std::collections::HashMap::new();
    for message in pending {
        if let std::collections::hash_map::Entry::Vacant(slot) = kinds.entry(message.conversation) {
            let kind = inner.store.conversation_kind(message.conversation).await;
            slot.insert(kind.map_err(|e| e.to_string())?);
        }
        let headers = Headers::from([(MESSAGE_ID_HEADER.to_owned(), message.msg_id.clone())]);
        let body = Arg::from(message.body.clone());
        pacer.ready().await;
        let (method, args) = match &kinds[&message.conversation] {
            ConversationKind::Broadcast => {
                send_broadcast(inner, &message, headers).await?;
                continue;
            }
            ConversationKind::Room(room) => (
                hubbub::SEND_TO_ROOM,
                vec![
                    Arg::from(room.as_str()),
                    Arg::from(message.sender.clone()),
                    body,
                ],
            ),
            ConversationKind::Direct(user) => {
                (hubbub::SEND_TO_USER, vec![Arg::from(user.as_str()), body])
            }
        };
        match inner
            .connection
            .invoke_with_headers::<()>(method, args, headers)
            .await
        {
            Ok(()) => mark_sent(inner, &message).await,
            // The hub cannot take it now: it stays in the outbox, which tries again shortly.
            Err(Error::Hub(reason)) if reason.starts_with(UNAVAILABLE) => return Err(reason),
            // The hub refused it: failed, with the hub's reason; the rest of the outbox goes on.
            Err(Error::Hub(reason)) if inner.connection.state() == State::Connected => {
                if let Ok(failed) = inner
                    .store
                    .mark_failed(message.conversation, &message.msg_id, &reason)
                    .await
                {
                    let _ = inner.events.send(ChatEvent::Updated(failed));
                }
            }
            // Not connected, or the connection dropped with the call in flight (it may or may
            // not have arrived): stop here; after the reconnect it is sent again, and its id
            // makes the repeat harmless.
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}
