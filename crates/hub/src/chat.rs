//! The chat hub mounted at `/chathub`: broadcast, presence, rooms, direct messages.
//!
//! | client calls | the hub does |
//! |---|---|
//! | `Send(name, message)` | `broadcastMessage(name, message)` to every connection in the caller's scope, the caller included; recorded in the scope's history first |
//! | `History(epoch, afterSeq)` | `{epoch, messages: [{seq, id, name, message}]}`: the scope's messages after `afterSeq` (all of them when `epoch` is not the hub's), at most 500 |
//! | `JoinRoom(room)` / `LeaveRoom(room)` | room membership; returns the room's connection count |
//! | `SendToRoom(room, name, message)` | `roomMessage(room, name, message)` to the room's connections; recorded in the room's history first |
//! | `RoomHistory(room, epoch, afterSeq)` | `{epoch, messages: [{seq, id, name, message}]}`: the room's messages after `afterSeq`, at most 500; refused unless the caller is in the room |
//! | `SendToUser(user, message)` | `directMessage(from, message)` to every connection of `user` and of the sender in the caller's scope; kept in both users' inboxes first (`user` may be offline) |
//! | `Inbox(epoch, afterSeq)` | `{epoch, messages: [{seq, id, name, message, to}]}`: the caller's direct messages, sent and received, after `afterSeq`, at most 500 (a `directMessage` carries its number in the receiver's inbox) |
//! | `GetOnline()` | `{users: [{name, connections}], connections}` for the caller's scope |
//! | `Echo(value)` | returns `value` |
//! | `Counter(count, delayMs)` | streams `0..count` |
//! | `AskCaller(question)` | invokes the caller's `ask(question)` and returns its answer (a client result) |
//! | `Collect(stream)` | reads a client-to-server stream to its end; returns its items as an array |
//! | `Flood(count, size)` | sends the caller `count` × `broadcastMessage("flood", text of size bytes)`, at the pace the caller reads (load testing) |
//!
//! **Names**: with authentication on (a JWT), the `name` of `Send` and `SendToRoom` is replaced
//! by the authenticated user (the token's subject) in what is delivered and recorded, so no one
//! can speak as another; `directMessage` always names the connection's user.
//!
//! Arrivals and departures are announced to the rest of the scope as `userJoined(user,
//! connections)` and `userLeft(user, connections)`, in scopes of up to [`PRESENCE_LIMIT`]
//! connections. In a fleet, the users of a node that crashed are announced as left by the
//! surviving nodes once its heartbeat expires.
//!
//! **Scopes** keep tenants apart: a client that connects with `?scope=X` only hears, and is only
//! heard by, connections of scope X (no `scope` is a scope of its own): broadcasts, rooms,
//! direct messages, presence and histories are all keyed by scope, in keys no other scope can
//! spell. With `JwtAuth::scope_claim` the scope is the token's claim, not the client's choice.
//!
//! **Exactly once:** an invocation header `hubbub-msg-id` names a message. A repeat of the same
//! id from the same user within [`DEDUPE_WINDOW`] completes without being delivered again; the
//! id travels on to receivers in the same header, so they can drop repeats too. Ids are their
//! sender's: the hub makes random ones starting with [`HUB_ID_PREFIX`] for messages sent
//! without one (clients may not use that prefix), and refuses an id that another sender's
//! recorded message holds, so no message can make receivers drop another as a repeat.
//!
//! **Across nodes** (a Redis or PostgreSQL backplane): presence, room counts, the duplicate
//! window and the history (one numbering per scope) are the fleet's, kept in the backplane's
//! server. While it is unreachable, `Send`, `SendToRoom`, `SendToUser` and the history methods fail with an error
//! starting with [`UNAVAILABLE`] (nothing was delivered: send it again).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hubbub_protocol::{Arg, Headers, Value};

use crate::history::{ChatHistory, Recorded};
use crate::hub::{Context, Hub, HubError, RawArgs, Reply};

/// The invocation header that carries a message id.
pub const MESSAGE_ID_HEADER: &str = "hubbub-msg-id";

/// Scopes with more connections than this do not announce each arrival and departure: every
/// announcement goes to everyone in the scope, so a burst of N arrivals would cost N² messages.
/// Clients of large scopes ask `GetOnline` instead.
pub const PRESENCE_LIMIT: usize = 500;

/// How long the hub remembers message ids to drop repeats.
pub const DEDUPE_WINDOW: Duration = Duration::from_secs(600);

const MAX_REMEMBERED_IDS: usize = 200_000;

/// The most item bytes `Collect` (a client-to-server stream gathered into one answer) takes.
const COLLECT_LIMIT: usize = 1 << 20;

#[derive(Debug, Default)]
struct Seen {
    ids: HashMap<(String, String), Instant>,
}

impl Seen {
    /// Records `(user, id)`; `false` if it was already seen within the window.
    fn first_time(&mut self, user: &str, id: &str) -> bool {
        let now = Instant::now();
        if self.ids.len() >= MAX_REMEMBERED_IDS {
            self.ids
                .retain(|_, at| now.duration_since(*at) < DEDUPE_WINDOW);
        }
        let key = (user.to_owned(), id.to_owned());
        match self.ids.get(&key) {
            Some(at) if now.duration_since(*at) < DEDUPE_WINDOW => false,
            _ => {
                self.ids.insert(key, now);
                true
            }
        }
    }
}

/// The caller's scope, as it appears in the keys of groups and histories: `%` and the
/// separators `:` and U+001F written as `%25`, `%3A` and `%1F`, so that no scope and room (or
/// user) pair can spell another's key (`acme` + `corp:x` is not `acme:corp` + `x`). A scope
/// without those characters is written as it is (keys of existing history files stay valid).
fn scope_key(ctx: &Context) -> String {
    let scope = ctx.query("scope").unwrap_or("");
    escape_key_into(String::with_capacity(scope.len()), scope)
}

/// Appends `scope`, escaped as [`scope_key`] says, to `key`.
fn escape_key_into(mut key: String, scope: &str) -> String {
    for c in scope.chars() {
        match c {
            '%' => key.push_str("%25"),
            ':' => key.push_str("%3A"),
            '\u{1f}' => key.push_str("%1F"),
            c => key.push(c),
        }
    }
    key
}

/// The group of every connection of the caller's scope: `scope:{scope}`.
fn scope_group(ctx: &Context) -> String {
    // Written in one allocation: every message asks for it.
    let scope = ctx.query("scope").unwrap_or("");
    let mut key = String::with_capacity(6 + scope.len());
    key.push_str("scope:");
    escape_key_into(key, scope)
}

/// The group (and history key) of a room of the caller's scope: `room:{scope}:{room}`.
fn room_group(ctx: &Context, room: &str) -> String {
    format!("room:{}:{room}", scope_key(ctx))
}

/// The group of one user's connections in the caller's scope, `user:{scope}:{user}`: direct
/// messages go there, so they never reach the user's connections of another scope.
fn user_group(ctx: &Context, user: &str) -> String {
    format!("user:{}:{user}", scope_key(ctx))
}

/// The name a message goes out and is recorded with. With authentication on it is the
/// authenticated user's (the token's subject), whatever name the caller gave: a client cannot
/// speak as someone else. Without authentication, the name the caller gave (its users are
/// whoever they say they are: see the README's security notes). `args[at]`, the name argument,
/// is replaced by the authenticated name, or else forwarded as it came (no re-encoding).
fn sender_name(ctx: &Context, args: &mut [Arg], at: usize, claimed: String) -> String {
    if ctx.state.auth.is_some() {
        let name = ctx.user().to_owned();
        args[at] = Arg::from(name.as_str());
        name
    } else {
        claimed
    }
}

/// Checks the argument count and that each argument is a string; returns the raw arguments,
/// which are forwarded as they arrived (no re-encoding for receivers of the same protocol).
fn strings(args: RawArgs, expected: usize) -> Result<Vec<Arg>, HubError> {
    if args.0.len() != expected {
        return Err(HubError::new(format!(
            "Invocation provides {} argument(s) but target expects {expected}.",
            args.0.len()
        )));
    }
    if let Some(i) = args.0.iter().position(|arg| !arg.is_string()) {
        return Err(HubError::new(format!(
            "argument {} must be a string",
            i + 1
        )));
    }
    Ok(args.0)
}

/// Whether this message id is new for the caller (no id: always new), and the headers to pass on.
/// With a backplane the window is the fleet's (a repeat that reaches another node is caught);
/// while the backplane is unreachable, this node's.
async fn dedupe(ctx: &Context, seen: &Mutex<Seen>) -> (bool, Headers) {
    match ctx.headers().get(MESSAGE_ID_HEADER) {
        None => (true, Headers::new()),
        Some(id) => {
            let shared = match ctx.state.backplane.fleet() {
                Some(node) => node.first_time(ctx.user(), id, DEDUPE_WINDOW).await.ok(),
                None => None,
            };
            let fresh = shared.unwrap_or_else(|| {
                seen.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .first_time(ctx.user(), id)
            });
            (
                fresh,
                Headers::from([(MESSAGE_ID_HEADER.to_owned(), id.clone())]),
            )
        }
    }
}

/// The message id the caller gave (`hubbub-msg-id`), if any. Ids are their sender's: one
/// starting with `h-` (the hub's own, for messages sent without one) is refused, and the
/// history refuses an id another sender's message holds.
fn client_id(ctx: &Context) -> Result<Option<String>, HubError> {
    match ctx.headers().get(MESSAGE_ID_HEADER) {
        Some(id) if id.starts_with(HUB_ID_PREFIX) => Err(HubError::new(format!(
            "Message ids starting with '{HUB_ID_PREFIX}' are the hub's: choose another id."
        ))),
        id => Ok(id.cloned()),
    }
}

/// The start of every id the hub makes (for messages sent without one); clients may not use it.
pub const HUB_ID_PREFIX: &str = "h-";

/// Whether this is a repeat caught by the in-memory window. Only a hub whose history is in
/// memory asks: a history file or a backplane remembers ids itself, when the message is recorded.
async fn repeat_in_memory(ctx: &Context, history: &ChatHistory, seen: &Mutex<Seen>) -> bool {
    ctx.state.backplane.fleet().is_none() && !history.is_persistent() && !dedupe(ctx, seen).await.0
}

/// The headers of a recorded message: its id and its number in its history.
fn numbered(entry: &Recorded, epoch: String) -> Headers {
    Headers::from([
        (MESSAGE_ID_HEADER.to_owned(), entry.id.clone()),
        (SEQ_HEADER.to_owned(), entry.seq.to_string()),
        (EPOCH_HEADER.to_owned(), epoch),
    ])
}

/// A user's inbox: the direct messages to and from them, in the caller's scope.
fn inbox(ctx: &Context, user: &str) -> String {
    format!("inbox:{}\u{1f}{user}", scope_key(ctx))
}

/// Records a message in a history (`key`: a scope or an inbox) in the backplane or in this node's
/// history; `None` for a repeat of an id `user` already sent.
#[allow(clippy::too_many_arguments)]
async fn record(
    ctx: &Context,
    history: &ChatHistory,
    key: &str,
    user: &str,
    id: Option<&str>,
    name: &str,
    text: &str,
    to: Option<&str>,
) -> Result<Option<(Recorded, String)>, HubError> {
    if let Some(node) = ctx.state.backplane.fleet() {
        return node
            .chat_append(key, user, id, name, text, to)
            .await
            .map_err(|e| {
                if e.may_pass() {
                    HubError::new(format!(
                        "{UNAVAILABLE} the message could not be recorded ({e}); send it again"
                    ))
                } else {
                    // A refusal that does not pass: sending it again would fail again.
                    HubError::new(format!("The message could not be recorded: {e}"))
                }
            })?
            .map(|entry| entry.map(|(entry, epoch)| (entry.into(), epoch)))
            .map_err(|e| HubError::new(e.to_string()));
    }
    let entry = if history.is_persistent() {
        let (h, key, user) = (history.clone(), key.to_owned(), user.to_owned());
        let (id, name, text, to) = (
            id.map(str::to_owned),
            name.to_owned(),
            text.to_owned(),
            to.map(str::to_owned),
        );
        tokio::task::spawn_blocking(move || {
            h.append(&key, &user, id.as_deref(), &name, &text, to.as_deref())
        })
        .await
        .map_err(|e| HubError::new(e.to_string()))?
    } else {
        // In memory: no copies for another thread, a lock held for microseconds.
        history.append(key, user, id, name, text, to)
    }
    .map_err(|e| HubError::new(e.to_string()))?;
    Ok(entry.map(|e| (e, history.epoch().to_owned())))
}

/// The current epoch and the messages of a history (`key`: a scope or an inbox) after `after`
/// (all of them when `epoch` is not the current one), at most [`HISTORY_PAGE`].
async fn read(
    ctx: &Context,
    history: &ChatHistory,
    key: &str,
    epoch: &str,
    after: u64,
) -> Result<(String, Vec<crate::HistoryEntry>), HubError> {
    if let Some(node) = ctx.state.backplane.fleet() {
        return node
            .chat_since(key, epoch, after, HISTORY_PAGE)
            .await
            .map_err(|e| {
                if e.may_pass() {
                    HubError::new(format!("{UNAVAILABLE} {e}"))
                } else {
                    HubError::new(format!("The history could not be read: {e}"))
                }
            });
    }
    // Numbers from another epoch mean nothing here: start from the beginning.
    let after = if epoch == history.epoch() { after } else { 0 };
    let (h, key) = (history.clone(), key.to_owned());
    let entries = tokio::task::spawn_blocking(move || h.since(&key, after, HISTORY_PAGE))
        .await
        .map_err(|e| HubError::new(e.to_string()))?
        .map_err(|e| HubError::new(e.to_string()))?;
    Ok((history.epoch().to_owned(), entries))
}

fn count(n: usize) -> Arg {
    Arg::from_value(Value::from(n as u64))
}

/// The start of an error that means "not now": the hub could not record the message (its
/// backplane, Redis or PostgreSQL, is unreachable) and nothing was delivered. Hubbub's chat
/// layer keeps such a message in its outbox and sends it again later. Only an outage gives
/// it: a message the backplane refuses (PostgreSQL cannot store U+0000) gets a plain error.
pub const UNAVAILABLE: &str = "Unavailable:";

/// The chat hub.
pub fn chat_hub() -> Hub {
    chat_hub_with(ChatHistory::in_memory())
}

/// What the chat hub's clients may make it keep (issue 18: a history per made-up name, never
/// freed, grew memory or the history file without bound).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLimits {
    /// Histories (a scope's, a room's, another user's inbox) one sender may bring into being
    /// per minute (30); a message that would start one more is refused with an error saying
    /// so. A history that exists already, and the sender's own inbox, cost nothing.
    pub new_histories_per_minute: u32,
    /// How long an inbox whose user never connected to this hub is kept after its last
    /// message (7 days): a direct message to a name no one uses goes then. An inbox whose
    /// user has connected once is kept (a SQLite history remembers who connected).
    pub unclaimed_inbox_ttl: Duration,
}

impl Default for ChatLimits {
    fn default() -> Self {
        Self {
            new_histories_per_minute: 30,
            unclaimed_inbox_ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The senders' recent creations of histories, and when unclaimed inboxes were last expired.
#[derive(Debug)]
struct Budgets {
    limits: ChatLimits,
    created: Mutex<HashMap<String, (Instant, u32)>>,
    last_sweep: Mutex<Instant>,
}

/// Runs `f` on `history` where its I/O may block (a blocking thread for a SQLite file).
async fn on_history<T: Send + 'static>(
    history: &ChatHistory,
    f: impl FnOnce(&ChatHistory) -> Result<T, crate::HistoryError> + Send + 'static,
) -> Result<T, HubError> {
    let h = history.clone();
    if history.is_persistent() {
        tokio::task::spawn_blocking(move || f(&h))
            .await
            .map_err(|e| HubError::new(e.to_string()))?
    } else {
        f(&h)
    }
    .map_err(|e| HubError::new(e.to_string()))
}

impl Budgets {
    /// Charges the caller for bringing the history `key` into being, if it does not exist
    /// yet: refused past [`ChatLimits::new_histories_per_minute`]. With a backplane, whether
    /// it exists is the fleet's answer (the count is this node's); while the backplane cannot
    /// answer, the message is not refused for the budget (recording it reports the outage).
    async fn charge(
        &self,
        ctx: &Context,
        history: &ChatHistory,
        key: &str,
    ) -> Result<(), HubError> {
        let exists = match ctx.state.backplane.fleet() {
            Some(node) => node.history_exists(key).await.unwrap_or(true),
            None => {
                let owned = key.to_owned();
                on_history(history, move |h| h.exists(&owned)).await?
            }
        };
        if exists {
            return Ok(());
        }
        let now = Instant::now();
        let mut created = self.created.lock().unwrap_or_else(|e| e.into_inner());
        if created.len() >= 10_000 {
            created.retain(|_, (since, _)| now.duration_since(*since) < Duration::from_secs(60));
        }
        let (since, n) = created.entry(ctx.user().to_owned()).or_insert((now, 0));
        if now.duration_since(*since) >= Duration::from_secs(60) {
            *since = now;
            *n = 0;
        }
        if *n >= self.limits.new_histories_per_minute {
            return Err(HubError::new(format!(
                "Too many new conversations: a sender may start at most {} a minute (rooms, scopes, users' inboxes); try again later.",
                self.limits.new_histories_per_minute
            )));
        }
        *n += 1;
        Ok(())
    }

    /// Expires the inboxes no one claimed (see [`ChatLimits::unclaimed_inbox_ttl`]), at most
    /// every half TTL (every 30 s at most). With a backplane, the fleet's (Redis's expire by
    /// themselves: see [`Budgets::touched`]).
    async fn sweep(&self, ctx: &Context, history: &ChatHistory) {
        let ttl = self.limits.unclaimed_inbox_ttl;
        {
            let mut last = self.last_sweep.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() < (ttl / 2).min(Duration::from_secs(30)) {
                return;
            }
            *last = Instant::now();
        }
        let expired = match ctx.state.backplane.fleet() {
            Some(node) => node
                .expire_unclaimed("inbox:", ttl)
                .await
                .map(|n| n as usize)
                .map_err(|e| HubError::new(e.to_string())),
            None => on_history(history, move |h| h.expire_unclaimed("inbox:", ttl)).await,
        };
        match expired {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                messages = n,
                "expired the inboxes of users who never connected"
            ),
            Err(error) => tracing::warn!(%error, "could not expire unclaimed inboxes"),
        }
    }

    /// Marks the caller's inbox as theirs: it never expires.
    async fn claim(&self, ctx: &Context, history: &ChatHistory) {
        let key = inbox(ctx, ctx.user());
        let claimed = match ctx.state.backplane.fleet() {
            Some(node) => node
                .claim_inbox(&key)
                .await
                .map_err(|e| HubError::new(e.to_string())),
            None => on_history(history, move |h| h.claim(&key)).await,
        };
        if let Err(error) = claimed {
            tracing::warn!(%error, "could not mark an inbox as claimed");
        }
    }

    /// After a message was recorded in the inbox `key` of a fleet: unless claimed, it expires
    /// [`ChatLimits::unclaimed_inbox_ttl`] after this message (Redis: the keys' TTL).
    async fn touched(&self, ctx: &Context, key: &str) {
        if let Some(node) = ctx.state.backplane.fleet() {
            if let Err(error) = node
                .inbox_touched(key, self.limits.unclaimed_inbox_ttl)
                .await
            {
                tracing::warn!(%error, "could not set an unclaimed inbox's expiry");
            }
        }
    }
}

/// The invocation headers that number a broadcast in its scope's history.
pub const SEQ_HEADER: &str = "hubbub-seq";
/// The history epoch a broadcast's number belongs to.
pub const EPOCH_HEADER: &str = "hubbub-epoch";
/// On a direct message: the user it was sent to (so the sender's other devices can file it).
pub const TO_HEADER: &str = "hubbub-to";

/// How many messages one `History` call returns at most.
pub const HISTORY_PAGE: usize = 500;

/// The chat hub with the given history (in memory, or a file that survives restarts).
pub fn chat_hub_with(history: ChatHistory) -> Hub {
    chat_hub_with_limits(history, ChatLimits::default())
}

/// The chat hub with `history` and `limits` on what its clients may make it keep.
pub fn chat_hub_with_limits(history: ChatHistory, limits: ChatLimits) -> Hub {
    let budgets = Arc::new(Budgets {
        limits,
        created: Mutex::default(),
        last_sweep: Mutex::new(Instant::now()),
    });
    let (budgets_connected, budgets_send, budgets_room, budgets_direct) =
        (budgets.clone(), budgets.clone(), budgets.clone(), budgets);
    let history_for_claim = history.clone();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let seen_room = seen.clone();
    let seen_direct = seen.clone();
    let history_for_send = history.clone();
    let history_for_direct = history.clone();
    let history_for_room = history.clone();
    let history_for_room_read = history.clone();
    let history_for_inbox = history.clone();
    let mut hub = Hub::new("chat");
    hub.history_size = Some(history.size.clone());
    hub.on_connected(move |ctx| {
        let (budgets, history) = (budgets_connected.clone(), history_for_claim.clone());
        async move {
            // The user's inbox is theirs now: it never expires (unclaimed ones are expired first).
            // Off the connect path: a connect never waits for the backplane's database or the
            // history file (issue 17: local service does not wait for the database).
            let claim_ctx = ctx.clone();
            tokio::spawn(async move {
                budgets.sweep(&claim_ctx, &history).await;
                budgets.claim(&claim_ctx, &history).await;
            });
            let scope = scope_group(&ctx);
            // The caller's own connection: this cannot fail.
            let _ = ctx.add_to_group(ctx.connection_id(), &scope).await;
            let _ = ctx
                .add_to_group(ctx.connection_id(), &user_group(&ctx, ctx.user()))
                .await;
            let n = ctx.connection_count(Some(&scope));
            if n <= PRESENCE_LIMIT {
                ctx.clients()
                    .others_in_group(&scope)
                    .send("userJoined", vec![ctx.user().into(), count(n)]);
            }
        }
    })
    .on_disconnected(|ctx| async move {
        let scope = scope_group(&ctx);
        let n = ctx.connection_count(Some(&scope));
        if n < PRESENCE_LIMIT {
            ctx.clients()
                .group(&scope)
                .send("userLeft", vec![ctx.user().into(), count(n)]);
        }
    })
    // A crashed node's users said no goodbye: each surviving node tells its own clients
    // of every user who is now gone from a scope.
    .on_connections_lost(|lost| {
        let mut gone: Vec<(&str, &str)> = Vec::new();
        for c in lost.connections() {
            for scope in c.groups.iter().filter(|g| g.starts_with("scope:")) {
                if !gone.contains(&(scope.as_str(), c.user.as_str())) {
                    gone.push((scope, &c.user));
                }
            }
        }
        for (scope, user) in gone {
            // As `on_disconnected` does: a departure, with the scope's count after it.
            let n = lost.connection_count(Some(scope));
            if n < PRESENCE_LIMIT {
                lost.send_here(scope, "userLeft", vec![user.into(), count(n)]);
            }
        }
    })
    .method("Send", move |ctx, args: RawArgs| {
        let seen = seen.clone();
        let history = history_for_send.clone();
        let budgets = budgets_send.clone();
        async move {
            let mut args = strings(args, 2)?;
            let claimed: String = args[0].decode().map_err(|e| HubError::new(e.to_string()))?;
            let text: String = args[1].decode().map_err(|e| HubError::new(e.to_string()))?;
            let name = sender_name(&ctx, &mut args, 0, claimed);
            let id = client_id(&ctx)?;
            if repeat_in_memory(&ctx, &history, &seen).await {
                return Ok(());
            }
            let scope = scope_group(&ctx);
            budgets.charge(&ctx, &history, &scope).await?;
            // Recorded before it is broadcast or completed.
            let Some((entry, epoch)) = record(
                &ctx,
                &history,
                &scope,
                ctx.user(),
                id.as_deref(),
                &name,
                &text,
                None,
            )
            .await?
            else {
                return Ok(());
            };
            ctx.clients().group(&scope).send_with_headers(
                "broadcastMessage",
                args,
                numbered(&entry, epoch),
            );
            Ok(())
        }
    })
    .method("History", move |ctx, (epoch, after): (String, u64)| {
        let history = history.clone();
        async move {
            let scope = scope_group(&ctx);
            let (epoch, entries) = read(&ctx, &history, &scope, &epoch, after).await?;
            Reply::value(&serde_json::json!({ "epoch": epoch, "messages": entries }))
        }
    })
    .method("JoinRoom", |ctx, (room,): (String,)| async move {
        let group = room_group(&ctx, &room);
        ctx.add_to_group(ctx.connection_id(), &group).await?;
        Ok(Value::from(ctx.connection_count(Some(&group)) as u64))
    })
    .method("LeaveRoom", |ctx, (room,): (String,)| async move {
        let group = room_group(&ctx, &room);
        ctx.remove_from_group(ctx.connection_id(), &group).await?;
        Ok(Value::from(ctx.connection_count(Some(&group)) as u64))
    })
    .method("SendToRoom", move |ctx, args: RawArgs| {
        let (seen, history) = (seen_room.clone(), history_for_room.clone());
        let budgets = budgets_room.clone();
        async move {
            let mut args = strings(args, 3)?;
            let room: String = args[0].decode().map_err(|e| HubError::new(e.to_string()))?;
            let claimed: String = args[1].decode().map_err(|e| HubError::new(e.to_string()))?;
            let text: String = args[2].decode().map_err(|e| HubError::new(e.to_string()))?;
            let name = sender_name(&ctx, &mut args, 1, claimed);
            let group = room_group(&ctx, &room);
            let members = ctx.state.router.connection_count(Some(&group));
            let member = ctx
                .conn
                .groups
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&group);
            if !member || members == 0 {
                return Err(HubError::with_data(
                    format!("Join the room '{room}' before sending to it."),
                    serde_json::json!({ "room": room }),
                ));
            }
            let id = client_id(&ctx)?.unwrap_or_else(crate::history::random_id);
            if repeat_in_memory(&ctx, &history, &seen).await {
                return Ok(());
            }
            budgets.charge(&ctx, &history, &group).await?;
            // Recorded in the room's history before it is delivered.
            let Some((entry, epoch)) = record(
                &ctx,
                &history,
                &group,
                ctx.user(),
                Some(&id),
                &name,
                &text,
                None,
            )
            .await?
            else {
                return Ok(());
            };
            ctx.clients().group(&group).send_with_headers(
                "roomMessage",
                args,
                numbered(&entry, epoch),
            );
            Ok(())
        }
    })
    .method(
        "RoomHistory",
        move |ctx, (room, epoch, after): (String, String, u64)| {
            let history = history_for_room_read.clone();
            async move {
                let group = room_group(&ctx, &room);
                if !ctx
                    .conn
                    .groups
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(&group)
                {
                    return Err(HubError::with_data(
                        format!("Join the room '{room}' before reading its history."),
                        serde_json::json!({ "room": room }),
                    ));
                }
                let (epoch, entries) = read(&ctx, &history, &group, &epoch, after).await?;
                Reply::value(&serde_json::json!({ "epoch": epoch, "messages": entries }))
            }
        },
    )
    .method(
        "SendToUser",
        move |ctx, (user, message): (String, String)| {
            let (seen, history) = (seen_direct.clone(), history_for_direct.clone());
            let budgets = budgets_direct.clone();
            async move {
                let me = ctx.user().to_owned();
                // One id for both inboxes' copies (the hub makes one when the sender did not).
                let id = client_id(&ctx)?.unwrap_or_else(crate::history::random_id);
                if repeat_in_memory(&ctx, &history, &seen).await {
                    return Ok(());
                }
                budgets.sweep(&ctx, &history).await;
                if user != me {
                    budgets.charge(&ctx, &history, &inbox(&ctx, &user)).await?;
                }
                // Kept in the recipient's inbox first (a repeat stops here), then in the
                // sender's, so both catch up with `Inbox` after being away.
                let Some((entry, epoch)) = record(
                    &ctx,
                    &history,
                    &inbox(&ctx, &user),
                    &me,
                    Some(&id),
                    &me,
                    &message,
                    Some(&user),
                )
                .await?
                else {
                    return Ok(());
                };
                if user != me {
                    // Not awaited: the completion does not wait for the expiry's round trip.
                    let (budgets, touched_ctx) = (budgets.clone(), ctx.clone());
                    let key = inbox(&ctx, &user);
                    tokio::spawn(async move { budgets.touched(&touched_ctx, &key).await });
                }
                let headers = |entry: &Recorded| {
                    let mut headers = numbered(entry, epoch.clone());
                    // The sender's own copy says whom it went to.
                    headers.insert(TO_HEADER.to_owned(), user.clone());
                    headers
                };
                let args = vec![Arg::from(me.as_str()), Arg::from(message.as_str())];
                // To the user's connections in this scope only.
                ctx.clients()
                    .group(&user_group(&ctx, &user))
                    .send_with_headers("directMessage", args.clone(), headers(&entry));
                if user != me {
                    // The sender's copy has its own dedupe key: the recipient's took the id.
                    let copy = record(
                        &ctx,
                        &history,
                        &inbox(&ctx, &me),
                        &crate::history::sent_copy(&me),
                        Some(&entry.id),
                        &me,
                        &message,
                        Some(&user),
                    )
                    .await?;
                    if let Some((own, _)) = copy {
                        ctx.clients()
                            .group(&user_group(&ctx, &me))
                            .send_with_headers("directMessage", args, headers(&own));
                    }
                }
                Ok(())
            }
        },
    )
    .method("Inbox", move |ctx, (epoch, after): (String, u64)| {
        let history = history_for_inbox.clone();
        async move {
            let key = inbox(&ctx, ctx.user());
            let (epoch, entries) = read(&ctx, &history, &key, &epoch, after).await?;
            Reply::value(&serde_json::json!({ "epoch": epoch, "messages": entries }))
        }
    })
    .method("GetOnline", |ctx, (): ()| async move {
        let scope = scope_group(&ctx);
        let users: Vec<serde_json::Value> = ctx
            .users_online(Some(&scope))
            .into_iter()
            .map(|(name, n)| serde_json::json!({ "name": name, "connections": n }))
            .collect();
        Ok(serde_json::json!({ "users": users, "connections": ctx.connection_count(Some(&scope)) }))
    })
    .method("Echo", |_ctx, args: RawArgs| async move {
        match <[Arg; 1]>::try_from(args.0) {
            Ok([value]) => Ok(Reply::Value(value)),
            Err(args) => Err(HubError::new(format!(
                "Invocation provides {} argument(s) but target expects 1.",
                args.len()
            ))),
        }
    })
    .method("Counter", |_ctx, (n, delay_ms): (u32, u64)| async move {
        let items = futures_util::stream::unfold(0u32, move |i| async move {
            if i >= n {
                return None;
            }
            if i > 0 && delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            }
            Some((Ok(Arg::from_value(Value::from(i))), i + 1))
        });
        Ok(Reply::stream(items))
    })
    .method_with_streams("Collect", 1, |ctx, (): ()| async move {
        use futures_util::StreamExt;
        let Some(mut items) = ctx.upload(0) else {
            return Err(HubError::new("Collect needs a stream argument"));
        };
        // What it collects is answered at once: at most COLLECT_LIMIT bytes of items.
        let (mut values, mut bytes) = (Vec::new(), 0);
        while let Some(item) = items.next().await {
            let item = item?;
            bytes += item.raw().map_or(16, |(_, b)| b.len());
            if bytes > COLLECT_LIMIT {
                return Err(HubError::new(format!(
                    "Collect takes at most {COLLECT_LIMIT} bytes of items."
                )));
            }
            values.push(item.to_value().map_err(|e| HubError::new(e.to_string()))?);
        }
        Ok(Value::Array(values))
    })
    .method("Flood", |ctx, (count, size): (u32, u32)| async move {
        if count > 1_000_000 || size > 16 * 1024 {
            return Err(HubError::new(
                "Flood takes at most 1,000,000 messages of 16 KiB",
            ));
        }
        // One frame, encoded once, queued `count` times.
        let frame = crate::Frame::new(hubbub_protocol::HubMessage::Invocation(
            hubbub_protocol::Invocation {
                target: "broadcastMessage".to_owned(),
                arguments: vec!["flood".into(), "x".repeat(size as usize).into()],
                ..Default::default()
            },
        ));
        for _ in 0..count {
            if !ctx.send_to_caller_waiting(frame.clone()).await {
                break;
            }
        }
        Ok(())
    })
    .method("AskCaller", |ctx, (question,): (String,)| async move {
        ctx.invoke_caller("ask", vec![question.into()])
            .await
            .map(Reply::Value)
    })
}
