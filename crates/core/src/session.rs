//! One account's live session: its connection, its chat layer, and the status, presence and
//! unread counts a UI shows, turned into [`AppEvent`]s.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hubbub_client::methods::hubbub;
use hubbub_client::store::{ConversationId, ConversationKind, Hub, Store};
use hubbub_client::{
    Arg, Chat, ChatEvent, Event, ExponentialBackoff, HubConnection, HubConnectionBuilder, Protocol,
    State, TransportKind, with_query,
};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::view::{
    AccountId, AppEvent, Conversation, FamilyChoice, InspectorEntry, MessageView, MethodsView,
    ProtocolChoice, SlowView, StateView, Status, TransportChoice, Unavailable,
};

/// How a session connects.
#[derive(Debug, Clone)]
pub(crate) struct Connect {
    /// The URL to connect to (the embedded hub's for the local account).
    pub(crate) url: String,
    pub(crate) token: Option<String>,
    pub(crate) retry_max: Duration,
    pub(crate) slow_threshold: Option<Duration>,
}

#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) chat: Chat,
    pub(crate) status: Arc<Mutex<Status>>,
    online: Arc<Mutex<BTreeMap<String, u64>>>,
    token: Arc<Mutex<Option<String>>>,
    kinds: Arc<Mutex<HashMap<ConversationId, ConversationKind>>>,
    /// Whether the user asked to disconnect: a close without a reason is theirs, not the hub's.
    stopping: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[derive(Debug, serde::Deserialize)]
struct OnlineReply {
    users: Vec<OnlineUser>,
}

#[derive(Debug, serde::Deserialize)]
struct OnlineUser {
    name: String,
    connections: u64,
}

fn now_ms() -> i64 {
    hubbub_client::store::now_ms()
}

impl Session {
    /// Opens `hub`'s session (not yet connected).
    pub(crate) async fn open(
        hub: &Hub,
        store: Store,
        connect: Connect,
        events: broadcast::Sender<AppEvent>,
    ) -> Result<Self, crate::Error> {
        let id = hub.id.0;
        let token = Arc::new(Mutex::new(connect.token.clone()));
        let mut builder =
            HubConnectionBuilder::new(with_query(&connect.url, "name", &hub.display_name))
                .protocol(match ProtocolChoice::parse(&hub.protocol) {
                    ProtocolChoice::Json => Protocol::Json,
                    ProtocolChoice::Messagepack => Protocol::MessagePack,
                })
                .with_automatic_reconnect()
                .retry_policy(ExponentialBackoff {
                    base: Duration::from_millis(500),
                    max: connect.retry_max,
                    give_up_after: None,
                })
                .retry_first_start(true)
                .access_token({
                    let token = token.clone();
                    move || {
                        let token = token.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        async move { Ok(token.unwrap_or_default()) }
                    }
                });
        if let Some(threshold) = connect.slow_threshold {
            builder = builder.slow_threshold(threshold);
        }
        builder = builder.family(FamilyChoice::parse(hub.family.as_deref()).into());
        if let Some(name) = &hub.hub_name {
            builder = builder.hub_name(name);
        }
        if let Some(pem) = &hub.ca_pem {
            builder = builder.extra_ca_pem(pem.as_bytes());
        }
        let only = match TransportChoice::parse(hub.transport.as_deref()) {
            TransportChoice::Auto => None,
            TransportChoice::WebSockets => Some(TransportKind::WebSockets),
            TransportChoice::ServerSentEvents => Some(TransportKind::ServerSentEvents),
            TransportChoice::LongPolling => Some(TransportKind::LongPolling),
        };
        if let Some(kind) = only {
            builder = builder.transports(&[kind]);
        }
        let connection = builder.build()?;

        // Arrivals and departures go to the forwarding task. A departure's count is the
        // scope's, not the user's (who may still be online from another device), so the task
        // asks the hub who is online rather than guessing.
        let online: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let (presence_tx, presence_rx) = tokio::sync::mpsc::unbounded_channel();
        for (method, joined) in [(hubbub::USER_JOINED, true), (hubbub::USER_LEFT, false)] {
            let presence_tx = presence_tx.clone();
            connection.on(method, move |args| {
                let user = args.first().and_then(|a| a.decode::<String>().ok())?;
                let _ = presence_tx.send((user, joined));
                None
            });
        }

        let chat = Chat::open_hub(connection, store.clone(), hub.id, &hub.display_name).await?;
        let kinds: Arc<Mutex<HashMap<ConversationId, ConversationKind>>> = Arc::default();
        for c in store.conversations(hub.id).await? {
            if let ConversationKind::Room(room) = &c.kind {
                if !c.archived {
                    chat.remember_room(room);
                }
            }
            kinds
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(c.id, c.kind);
        }

        let status = Arc::new(Mutex::new(Status::default()));
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let forward = tokio::spawn(forward(
            id,
            chat.clone(),
            presence_rx,
            store,
            status.clone(),
            online.clone(),
            kinds.clone(),
            stopping.clone(),
            events,
        ));
        Ok(Self {
            chat,
            status,
            online,
            token,
            kinds,
            stopping,
            tasks: vec![forward],
        })
    }

    pub(crate) fn connection(&self) -> &HubConnection {
        self.chat.connection()
    }

    /// Starts connecting (in the background: a hub that is down is retried until it is up).
    pub(crate) fn connect(&self) {
        self.stopping
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let connection = self.connection().clone();
        tokio::spawn(async move {
            if let Err(e) = connection.start().await {
                tracing::debug!(error = %e, "start ended without a connection");
            }
        });
    }

    /// Disconnects at the user's request (the status then shows no reason).
    pub(crate) async fn disconnect(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.connection().stop().await;
    }

    pub(crate) fn set_token(&self, token: Option<String>) {
        *self.token.lock().unwrap_or_else(|e| e.into_inner()) = token;
    }

    pub(crate) fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn online(&self) -> Vec<String> {
        self.online
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    pub(crate) fn remember_kind(&self, id: ConversationId, kind: &ConversationKind) {
        self.kinds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, kind.clone());
    }
}

/// Turns the chat layer's events into the UI's, in order, keeping status and unread counts.
#[allow(clippy::too_many_arguments)]
async fn forward(
    account: AccountId,
    chat: Chat,
    mut presence: tokio::sync::mpsc::UnboundedReceiver<(String, bool)>,
    store: Store,
    status: Arc<Mutex<Status>>,
    online: Arc<Mutex<BTreeMap<String, u64>>>,
    kinds: Arc<Mutex<HashMap<ConversationId, ConversationKind>>>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
    events: broadcast::Sender<AppEvent>,
) {
    let mut rx = chat.events();
    let kind_of = |id: ConversationId| {
        let kinds = kinds.clone();
        let store = store.clone();
        async move {
            let known = kinds
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&id)
                .cloned();
            match known {
                Some(kind) => Some((kind, false)),
                None => {
                    let kind = store.conversation_kind(id).await.ok()?;
                    kinds
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(id, kind.clone());
                    Some((kind, true))
                }
            }
        }
    };
    // Conversations whose unread count changed: recounted once a burst has been worked
    // through (a catch-up stores thousands of messages in a row; a count per message would
    // fall behind the chat layer's events).
    let mut changed: BTreeMap<ConversationId, ConversationKind> = BTreeMap::new();
    loop {
        if rx.is_empty() {
            for (id, kind) in std::mem::take(&mut changed) {
                announce(&store, &events, account, id, &kind).await;
            }
        }
        let received = tokio::select! {
            received = rx.recv() => received,
            Some((user, joined)) = presence.recv() => {
                if joined {
                    let list = {
                        let mut map = online.lock().unwrap_or_else(|e| e.into_inner());
                        *map.entry(user.clone()).or_insert(0) += 1;
                        map.keys().cloned().collect()
                    };
                    let _ = events.send(AppEvent::Presence { account, user, joined, online: list });
                } else {
                    tokio::spawn(refresh_online(
                        account,
                        chat.clone(),
                        online.clone(),
                        events.clone(),
                        Some(user),
                    ));
                }
                continue;
            }
        };
        let event = match received {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "the UI fell behind the chat layer's events");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        match event {
            ChatEvent::Stored(m) => {
                let Some((kind, new)) = kind_of(m.conversation).await else {
                    continue;
                };
                let _ = events.send(AppEvent::Message {
                    account,
                    message: MessageView::new(&m, &kind),
                });
                if new || !m.outgoing {
                    changed.insert(m.conversation, kind);
                }
            }
            ChatEvent::Updated(m) => {
                let Some((kind, _)) = kind_of(m.conversation).await else {
                    continue;
                };
                let _ = events.send(AppEvent::MessageUpdated {
                    account,
                    message: MessageView::new(&m, &kind),
                });
            }
            ChatEvent::Invocation(call) => {
                let _ = events.send(AppEvent::Inspector {
                    account,
                    entry: InspectorEntry::Invocation {
                        at_ms: call.at_ms,
                        target: call.target,
                        arguments: call
                            .arguments
                            .iter()
                            .map(|a| {
                                a.decode::<serde_json::Value>().unwrap_or_else(
                                    |e| serde_json::json!({ "undecodable": e.to_string() }),
                                )
                            })
                            .collect(),
                        chat: call.chat,
                    },
                });
            }
            ChatEvent::Methods(_) | ChatEvent::Unavailable { .. } => {
                let _ = events.send(hub_methods_event(account, &chat));
            }
            ChatEvent::Connection(event) => {
                let _ = events.send(AppEvent::Inspector {
                    account,
                    entry: InspectorEntry::Connection {
                        at_ms: now_ms(),
                        event: serde_json::to_value(&event).unwrap_or_default(),
                    },
                });
                if matches!(event, Event::Connected { .. } | Event::Reconnected { .. }) {
                    tokio::spawn(refresh_online(
                        account,
                        chat.clone(),
                        online.clone(),
                        events.clone(),
                        None,
                    ));
                }
                let changed = {
                    let mut s = status.lock().unwrap_or_else(|e| e.into_inner());
                    let before = s.clone();
                    apply(&mut s, &event);
                    // The client reports a clean Close from the hub without a reason, as the
                    // official clients do; unless the user asked for it, say who ended it.
                    if matches!(event, Event::Closed { reason: None })
                        && !stopping.load(std::sync::atomic::Ordering::SeqCst)
                    {
                        s.reason = Some("the hub closed the connection".to_owned());
                    }
                    (*s != before).then(|| s.clone())
                };
                if let Some(status) = changed {
                    let _ = events.send(AppEvent::Status { account, status });
                }
            }
        }
    }
}

/// The account's hub contract and what its hub lacks, as the UI is told.
pub(crate) fn hub_methods_event(account: AccountId, chat: &Chat) -> AppEvent {
    AppEvent::HubMethods {
        account,
        methods: MethodsView::from(&chat.methods()),
        unavailable: unavailable(chat),
    }
}

/// What the account's hub lacks.
pub(crate) fn unavailable(chat: &Chat) -> Vec<Unavailable> {
    chat.unavailable()
        .into_iter()
        .map(|(feature, reason)| Unavailable {
            feature: feature.to_owned(),
            reason,
        })
        .collect()
}

/// A conversation's unread count (0 if it cannot be read: the count is informational).
/// Tells the UI a conversation's state (its unread count read now); returns what it said.
pub(crate) async fn announce(
    store: &Store,
    events: &broadcast::Sender<AppEvent>,
    account: AccountId,
    id: ConversationId,
    kind: &ConversationKind,
) -> Conversation {
    let conversation = Conversation::new(kind, unread_of(store, id).await);
    let _ = events.send(AppEvent::Conversation {
        account,
        conversation: conversation.clone(),
    });
    conversation
}

pub(crate) async fn unread_of(store: &Store, conversation: ConversationId) -> u64 {
    store.unread(conversation).await.unwrap_or(0)
}

/// Asks the hub who is online and announces the list: after a (re)connect (`left` is `None`:
/// this user arrived) or after `left` departed from one of their connections.
async fn refresh_online(
    account: AccountId,
    chat: Chat,
    online: Arc<Mutex<BTreeMap<String, u64>>>,
    events: broadcast::Sender<AppEvent>,
    left: Option<String>,
) {
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        chat.connection()
            .invoke::<OnlineReply>(hubbub::GET_ONLINE, Vec::<Arg>::new()),
    )
    .await;
    let list: Vec<String> = {
        let mut map = online.lock().unwrap_or_else(|e| e.into_inner());
        match reply {
            Ok(Ok(reply)) => {
                map.clear();
                for user in reply.users {
                    map.insert(user.name, user.connections);
                }
            }
            failed => {
                // Not every hub has GetOnline: presence then follows join/leave events alone.
                if let Ok(Err(hubbub_client::Error::Hub(reason))) = &failed {
                    if hubbub_client::methods::is_missing_method(reason) {
                        chat.mark_unavailable("presence", reason);
                    }
                }
                tracing::debug!(?failed, "GetOnline failed");
                match &left {
                    Some(user) => {
                        map.remove(user);
                    }
                    None => return,
                }
            }
        }
        map.keys().cloned().collect()
    };
    let (user, joined) = match left {
        Some(user) => (user, false),
        None => (chat.me().to_owned(), true),
    };
    let _ = events.send(AppEvent::Presence {
        account,
        user,
        joined,
        online: list,
    });
}

/// Folds a connection event into the status a UI shows.
pub(crate) fn apply(status: &mut Status, event: &Event) {
    match event {
        Event::StateChanged { new, .. } => {
            status.state = StateView::from(*new);
            match new {
                State::Connected => {
                    status.attempt = None;
                    status.next_retry_at = None;
                    status.reason = None;
                }
                State::Connecting => {
                    status.next_retry_at = None;
                }
                State::Disconnected | State::Suspended => {
                    status.attempt = None;
                    status.next_retry_at = None;
                    status.slow = None;
                    status.transport = None;
                }
                State::Reconnecting => {
                    status.slow = None;
                    status.transport = None;
                }
            }
        }
        Event::Reconnecting {
            attempt,
            delay,
            reason,
        } => {
            status.state = StateView::Reconnecting;
            status.attempt = Some(*attempt);
            status.next_retry_at = Some(now_ms() + delay.as_millis() as i64);
            status.reason = Some(reason.clone());
            status.slow = None;
            status.transport = None;
        }
        Event::Connected {
            transport, family, ..
        } => {
            status.transport = Some(transport.clone());
            status.family = Some((*family).into());
        }
        Event::Reconnected { .. } => {}
        Event::Slow { reason } => status.slow = Some(SlowView::from(*reason)),
        Event::Recovered => status.slow = None,
        Event::Closed { reason } => {
            status.state = StateView::Disconnected;
            status.reason = reason.clone();
            status.attempt = None;
            status.next_retry_at = None;
            status.slow = None;
            status.transport = None;
        }
        Event::Error { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_percent_encoded_into_the_query() {
        assert_eq!(
            with_query("http://h/chathub", "name", "Zoë K"),
            "http://h/chathub?name=Zo%C3%AB%20K"
        );
        assert_eq!(
            with_query("http://h/chathub?scope=a", "name", "a&b=c"),
            "http://h/chathub?scope=a&name=a%26b%3Dc"
        );
    }

    #[test]
    fn status_follows_a_loss_a_retry_and_a_recovery() {
        let mut s = Status::default();
        apply(
            &mut s,
            &Event::StateChanged {
                old: State::Disconnected,
                new: State::Connecting,
            },
        );
        apply(
            &mut s,
            &Event::Connected {
                connection_id: None,
                transport: "WebSockets".to_owned(),
                family: hubbub_client::Family::Classic,
            },
        );
        apply(
            &mut s,
            &Event::StateChanged {
                old: State::Connecting,
                new: State::Connected,
            },
        );
        assert_eq!(s.state, StateView::Connected);
        assert_eq!(s.transport.as_deref(), Some("WebSockets"));
        assert_eq!(s.family, Some(FamilyChoice::Classic));
        apply(
            &mut s,
            &Event::Slow {
                reason: hubbub_client::SlowReason::HubSilent,
            },
        );
        assert_eq!(s.slow, Some(SlowView::HubSilent));
        let before = now_ms();
        apply(
            &mut s,
            &Event::Reconnecting {
                attempt: 3,
                delay: Duration::from_secs(2),
                reason: "connection reset".to_owned(),
            },
        );
        assert_eq!(s.state, StateView::Reconnecting);
        assert_eq!(s.attempt, Some(3));
        assert!(s.next_retry_at.unwrap() >= before + 2000);
        assert_eq!(s.reason.as_deref(), Some("connection reset"));
        assert_eq!(s.slow, None, "a lost connection is not 'slow'");
        apply(
            &mut s,
            &Event::StateChanged {
                old: State::Reconnecting,
                new: State::Connected,
            },
        );
        assert_eq!(
            (s.attempt, s.next_retry_at, s.reason.clone()),
            (None, None, None)
        );
        apply(
            &mut s,
            &Event::Closed {
                reason: Some("the hub closed the connection: bye".to_owned()),
            },
        );
        assert_eq!(s.state, StateView::Disconnected);
        assert_eq!(
            s.reason.as_deref(),
            Some("the hub closed the connection: bye")
        );
    }
}
