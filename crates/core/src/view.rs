//! What a UI sees: the serializable types of the IPC boundary (`ui/IPC.md`). They are a
//! compatibility promise to the UI, so they are separate from the store's and the client's own
//! types and change only together with `ui/IPC.md` and `ui/src/api.ts`.

use hubbub_client::SlowReason;
use hubbub_store::{ConversationKind, MessageState};
use serde::{Deserialize, Serialize};

/// An account's id (the store's hub row id).
pub type AccountId = i64;

/// Where the app runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Platform {
    /// Linux, macOS, Windows.
    Desktop,
    /// Android, iOS: connections pause in the background.
    Mobile,
}

/// The keychain's availability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeychainInfo {
    /// Tokens can be kept in the OS keychain.
    pub available: bool,
    /// Why not, when not.
    pub detail: Option<String>,
}

/// Facts about the running app.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppInfo {
    /// The app's version.
    pub version: String,
    /// Desktop or mobile.
    pub platform: Platform,
    /// Whether tokens can be kept in the OS keychain.
    pub keychain: KeychainInfo,
    /// The embedded hub's URL while it runs.
    pub local_hub_url: Option<String>,
}

/// A connection's state, for the UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StateView {
    /// Not connected and not trying.
    Disconnected,
    /// Starting.
    Connecting,
    /// Connected.
    Connected,
    /// Lost; trying again.
    Reconnecting,
    /// Paused by the app lifecycle (a phone in the background).
    Suspended,
}

impl From<hubbub_client::State> for StateView {
    fn from(s: hubbub_client::State) -> Self {
        use hubbub_client::State as S;
        match s {
            S::Disconnected => Self::Disconnected,
            S::Connecting => Self::Connecting,
            S::Connected => Self::Connected,
            S::Reconnecting => Self::Reconnecting,
            S::Suspended => Self::Suspended,
        }
    }
}

/// Why a connection is slow, for the UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SlowView {
    /// Nothing arrived from the hub for a while.
    HubSilent,
    /// Sends are not getting out.
    SendsStalled,
}

impl From<SlowReason> for SlowView {
    fn from(r: SlowReason) -> Self {
        match r {
            SlowReason::HubSilent => Self::HubSilent,
            SlowReason::SendsStalled => Self::SendsStalled,
        }
    }
}

/// Everything the UI shows about a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The state.
    pub state: StateView,
    /// Reconnecting: which retry is next (1 for the first).
    pub attempt: Option<u32>,
    /// Reconnecting: when the next try starts (ms since the Unix epoch).
    pub next_retry_at: Option<i64>,
    /// Reconnecting or disconnected: why the connection was lost or closed.
    pub reason: Option<String>,
    /// Set while the connection is slow.
    pub slow: Option<SlowView>,
    /// The transport in use while connected.
    pub transport: Option<String>,
    /// The protocol family spoken since the last connect (`core` or `classic`): what auto
    /// found in the negotiate response, or what the account forces. `None` before the first
    /// connect.
    pub family: Option<FamilyChoice>,
}

impl Default for Status {
    fn default() -> Self {
        Self {
            state: StateView::Disconnected,
            attempt: None,
            next_retry_at: None,
            reason: None,
            slow: None,
            transport: None,
            family: None,
        }
    }
}

/// The SignalR protocol family an account speaks (`hubbub_client::Family`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum FamilyChoice {
    /// Decided by the hub's negotiate response (the default).
    #[default]
    Auto,
    /// ASP.NET Core SignalR only.
    Core,
    /// Classic ASP.NET SignalR 2.x only (a URL naming the endpoint, `…/signalr`).
    Classic,
}

impl FamilyChoice {
    pub(crate) fn as_stored(self) -> Option<&'static str> {
        match self {
            Self::Auto => None,
            Self::Core => Some("core"),
            Self::Classic => Some("classic"),
        }
    }

    pub(crate) fn parse(s: Option<&str>) -> Self {
        match s {
            Some("core") => Self::Core,
            Some("classic") => Self::Classic,
            _ => Self::Auto,
        }
    }
}

impl From<FamilyChoice> for hubbub_client::Family {
    fn from(f: FamilyChoice) -> Self {
        match f {
            FamilyChoice::Auto => Self::Auto,
            FamilyChoice::Core => Self::Core,
            FamilyChoice::Classic => Self::Classic,
        }
    }
}

impl From<hubbub_client::Family> for FamilyChoice {
    fn from(f: hubbub_client::Family) -> Self {
        match f {
            hubbub_client::Family::Auto => Self::Auto,
            hubbub_client::Family::Core => Self::Core,
            hubbub_client::Family::Classic => Self::Classic,
        }
    }
}

/// The wire protocol an account uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum ProtocolChoice {
    /// JSON (text frames).
    #[default]
    Json,
    /// MessagePack (binary frames).
    Messagepack,
}

impl ProtocolChoice {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Messagepack => "messagepack",
        }
    }

    pub(crate) fn parse(s: &str) -> Self {
        if s.eq_ignore_ascii_case("messagepack") {
            Self::Messagepack
        } else {
            Self::Json
        }
    }
}

/// The transport an account uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum TransportChoice {
    /// Whatever the hub offers, best first.
    #[default]
    Auto,
    /// WebSockets only.
    WebSockets,
    /// Server-Sent Events only.
    ServerSentEvents,
    /// Long polling only.
    LongPolling,
}

impl TransportChoice {
    pub(crate) fn as_stored(self) -> Option<&'static str> {
        match self {
            Self::Auto => None,
            Self::WebSockets => Some("webSockets"),
            Self::ServerSentEvents => Some("serverSentEvents"),
            Self::LongPolling => Some("longPolling"),
        }
    }

    pub(crate) fn parse(s: Option<&str>) -> Self {
        match s {
            Some("webSockets") => Self::WebSockets,
            Some("serverSentEvents") => Self::ServerSentEvents,
            Some("longPolling") => Self::LongPolling,
            _ => Self::Auto,
        }
    }
}

/// Where an account's token lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TokenPlace {
    /// No token.
    None,
    /// In the OS keychain.
    Keychain,
    /// Only in memory, for this session (no keychain was reachable).
    Session,
}

/// An account: one hub, one display name.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// Its id.
    pub id: AccountId,
    /// The hub URL (the embedded hub's current URL for the local account).
    pub url: String,
    /// The user's name there.
    pub display_name: String,
    /// The wire protocol.
    pub protocol: ProtocolChoice,
    /// The transport.
    pub transport: TransportChoice,
    /// The protocol family it is set to (auto by default; what auto found is in
    /// [`Status::family`]).
    pub family: FamilyChoice,
    /// The hub asked for on a classic endpoint; `None`: the default, `chatHub`.
    pub hub_name: Option<String>,
    /// Certificates (PEM) trusted besides the system's roots for the hub's TLS (a private
    /// CA); `None`: the system's roots only.
    pub ca_pem: Option<String>,
    /// Uses the embedded hub.
    pub local: bool,
    /// Where its token lives.
    pub token: TokenPlace,
    /// Its connection.
    pub status: Status,
    /// The hub's chat methods in use (auto until the first send found them).
    pub methods: MethodsView,
    /// Hubbub's extras this hub was found to lack, and why.
    pub unavailable: Vec<Unavailable>,
}

/// A hub's chat contract as the UI edits it: the methods in their written form
/// (`hubbub_client::methods`: `SendMessage(name,text)`, `ReceiveMessage(0.user,0.message)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MethodsView {
    /// `auto`, `hubbub`, `classicTutorial`, `coreTutorial` or `custom`.
    pub preset: hubbub_client::Preset,
    /// The method to send with; `None` under auto until the first send found it.
    pub send: Option<String>,
    /// The methods that deliver messages; empty: every known one (auto).
    #[serde(default)]
    pub receive: Vec<String>,
}

impl From<&hubbub_client::HubMethods> for MethodsView {
    fn from(m: &hubbub_client::HubMethods) -> Self {
        Self {
            preset: m.preset,
            send: m.send.as_ref().map(ToString::to_string),
            receive: m.receive.iter().map(ToString::to_string).collect(),
        }
    }
}

/// One of Hubbub's extras (`history`, `inbox`, `rooms`, `presence`) a hub lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unavailable {
    /// Which extra.
    pub feature: String,
    /// The hub's answer.
    pub reason: String,
}

/// One entry of an account's inspector: everything the hub sent and what happened to the
/// connection, as it came.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum InspectorEntry {
    /// An invocation from the hub.
    Invocation {
        /// When it arrived (ms since the Unix epoch).
        at_ms: i64,
        /// The method the hub invoked.
        target: String,
        /// Its arguments as JSON.
        arguments: Vec<serde_json::Value>,
        /// It was taken as a chat message (also shown in a conversation).
        chat: bool,
    },
    /// A connection event (the client's `Event`, as JSON).
    Connection {
        /// When (ms since the Unix epoch).
        at_ms: i64,
        /// The event.
        event: serde_json::Value,
    },
}

/// What the connect screen sends.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAccount {
    /// The hub URL; empty or missing for the embedded hub.
    pub url: Option<String>,
    /// The user's name there.
    pub display_name: String,
    /// A bearer token, if the hub wants one.
    pub token: Option<String>,
    /// The wire protocol.
    #[serde(default)]
    pub protocol: ProtocolChoice,
    /// The transport.
    #[serde(default)]
    pub transport: TransportChoice,
    /// The protocol family (auto when missing).
    #[serde(default)]
    pub family: FamilyChoice,
    /// The hub asked for on a classic endpoint (`chatHub` when missing or empty).
    #[serde(default)]
    pub hub_name: Option<String>,
    /// Certificates (PEM) trusted besides the system's roots (none when missing or blank).
    #[serde(default)]
    pub ca_pem: Option<String>,
}

/// A conversation's key on the wire: `broadcast`, `room:NAME` or `dm:USER`.
pub fn conversation_key(kind: &ConversationKind) -> String {
    match kind {
        ConversationKind::Broadcast => "broadcast".to_owned(),
        ConversationKind::Room(name) => format!("room:{name}"),
        ConversationKind::Direct(user) => format!("dm:{user}"),
    }
}

/// Parses a conversation key.
pub fn parse_conversation_key(key: &str) -> Option<ConversationKind> {
    if key == "broadcast" {
        return Some(ConversationKind::Broadcast);
    }
    if let Some(room) = key.strip_prefix("room:") {
        return (!room.is_empty()).then(|| ConversationKind::Room(room.to_owned()));
    }
    if let Some(user) = key.strip_prefix("dm:") {
        return (!user.is_empty()).then(|| ConversationKind::Direct(user.to_owned()));
    }
    None
}

/// A conversation's kind, for the UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ConversationKindView {
    /// Everyone on the hub.
    Broadcast,
    /// A room.
    Room,
    /// Direct messages with one user.
    Direct,
}

/// A conversation in the sidebar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conversation {
    /// Its key.
    pub key: String,
    /// Its kind.
    pub kind: ConversationKindView,
    /// "Everyone", the room's name, or the other user's name.
    pub name: String,
    /// Unread messages.
    pub unread: u64,
}

impl Conversation {
    pub(crate) fn new(kind: &ConversationKind, unread: u64) -> Self {
        let (k, name) = match kind {
            ConversationKind::Broadcast => (ConversationKindView::Broadcast, "Everyone".to_owned()),
            ConversationKind::Room(r) => (ConversationKindView::Room, r.clone()),
            ConversationKind::Direct(u) => (ConversationKindView::Direct, u.clone()),
        };
        Self {
            key: conversation_key(kind),
            kind: k,
            name,
            unread,
        }
    }
}

/// A message's state, for the UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum MessageStateView {
    /// In the outbox.
    Sending,
    /// Completed by the hub.
    Sent,
    /// Refused; can be retried.
    Failed,
    /// From someone else (or this user elsewhere).
    Received,
}

impl From<MessageState> for MessageStateView {
    fn from(s: MessageState) -> Self {
        match s {
            MessageState::Sending => Self::Sending,
            MessageState::Sent => Self::Sent,
            MessageState::Failed => Self::Failed,
            MessageState::Received => Self::Received,
        }
    }
}

/// A message, for the UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    /// Local position (the paging key).
    pub seq: i64,
    /// The stable id.
    pub id: String,
    /// Its conversation's key.
    pub conversation: String,
    /// Who wrote it.
    pub sender: String,
    /// The text (plain text; the UI never renders it as HTML).
    pub body: String,
    /// Typed on this device.
    pub outgoing: bool,
    /// Where it stands.
    pub state: MessageStateView,
    /// Why the hub refused it.
    pub error: Option<String>,
    /// When it was written or first seen (ms since the Unix epoch).
    pub created_at: i64,
}

impl MessageView {
    pub(crate) fn new(m: &hubbub_store::Message, conversation: &ConversationKind) -> Self {
        Self {
            seq: m.seq,
            id: m.msg_id.clone(),
            conversation: conversation_key(conversation),
            sender: m.sender.clone(),
            body: m.body.clone(),
            outgoing: m.outgoing,
            state: m.state.into(),
            error: m.error.clone(),
            created_at: m.created_at,
        }
    }
}

/// How loud a notice is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Level {
    /// For information.
    Info,
    /// Something the user should know (the keychain is locked).
    Warning,
    /// Something failed.
    Error,
}

/// Everything the core tells a UI, in order.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum AppEvent {
    /// The account list changed (added, removed, token moved).
    Accounts {
        /// All accounts.
        accounts: Vec<Account>,
    },
    /// An account's connection status changed.
    Status {
        /// Which account.
        account: AccountId,
        /// Its status now.
        status: Status,
    },
    /// A message was stored for the first time (typed here or received).
    Message {
        /// Which account.
        account: AccountId,
        /// The message.
        message: MessageView,
    },
    /// A stored message changed state.
    #[serde(rename = "messageUpdated")]
    MessageUpdated {
        /// Which account.
        account: AccountId,
        /// The message now.
        message: MessageView,
    },
    /// A conversation appeared or its unread count changed.
    Conversation {
        /// Which account.
        account: AccountId,
        /// The conversation now.
        conversation: Conversation,
    },
    /// Someone came or went.
    Presence {
        /// Which account.
        account: AccountId,
        /// Who.
        user: String,
        /// Came (true) or went.
        joined: bool,
        /// Everyone online now, sorted.
        online: Vec<String>,
    },
    /// The inspector's next entry for an account.
    Inspector {
        /// Which account.
        account: AccountId,
        /// What the hub sent, or what happened to the connection.
        entry: InspectorEntry,
    },
    /// An account's hub contract changed (auto found the send method, or the user chose), or
    /// one more of Hubbub's extras was found missing.
    #[serde(rename = "hubMethods")]
    HubMethods {
        /// Which account.
        account: AccountId,
        /// The methods in use.
        methods: MethodsView,
        /// What the hub lacks.
        unavailable: Vec<Unavailable>,
    },
    /// Something the user should read.
    Notice {
        /// Which account, if one.
        account: Option<AccountId>,
        /// How loud.
        level: Level,
        /// What.
        text: String,
    },
}

/// A desktop notification the shell should show (when its window is not focused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The title: who, and where.
    pub title: String,
    /// The text (shortened).
    pub body: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_keys_round_trip_and_reject_garbage() {
        for kind in [
            ConversationKind::Broadcast,
            ConversationKind::Room("ops:night".to_owned()),
            ConversationKind::Direct("zoë".to_owned()),
        ] {
            assert_eq!(parse_conversation_key(&conversation_key(&kind)), Some(kind));
        }
        for bad in ["", "room:", "dm:", "Broadcast", "group:x"] {
            assert_eq!(parse_conversation_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn events_serialize_as_the_ipc_contract_says() {
        let event = AppEvent::Status {
            account: 3,
            status: Status {
                state: StateView::Reconnecting,
                attempt: Some(2),
                next_retry_at: Some(1_700_000_000_000),
                reason: Some("hub went away".to_owned()),
                slow: Some(SlowView::HubSilent),
                transport: None,
                family: Some(FamilyChoice::Classic),
            },
        };
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            serde_json::json!({
                "type": "status", "account": 3,
                "status": {"state": "reconnecting", "attempt": 2, "nextRetryAt": 1_700_000_000_000_i64,
                           "reason": "hub went away", "slow": "hubSilent", "transport": null,
                           "family": "classic"}
            })
        );
        let updated = AppEvent::MessageUpdated {
            account: 1,
            message: MessageView {
                seq: 7,
                id: "m".to_owned(),
                conversation: "room:ops".to_owned(),
                sender: "ann".to_owned(),
                body: "<b>hi</b>".to_owned(),
                outgoing: true,
                state: MessageStateView::Failed,
                error: Some("too long".to_owned()),
                created_at: 5,
            },
        };
        assert_eq!(
            serde_json::to_value(&updated).unwrap(),
            serde_json::json!({
                "type": "messageUpdated", "account": 1,
                "message": {"seq": 7, "id": "m", "conversation": "room:ops", "sender": "ann",
                            "body": "<b>hi</b>", "outgoing": true, "state": "failed",
                            "error": "too long", "createdAt": 5}
            })
        );
        let new: NewAccount = serde_json::from_value(serde_json::json!({
            "url": null, "displayName": "ann", "token": null,
            "protocol": "messagepack", "transport": "longPolling"
        }))
        .unwrap();
        assert_eq!(new.protocol, ProtocolChoice::Messagepack);
        assert_eq!(new.transport, TransportChoice::LongPolling);
        assert_eq!((new.family, new.hub_name), (FamilyChoice::Auto, None));
        let new: NewAccount = serde_json::from_value(serde_json::json!({
            "url": "http://h/signalr", "displayName": "ann", "family": "classic",
            "hubName": "roomHub"
        }))
        .unwrap();
        assert_eq!(new.family, FamilyChoice::Classic);
        assert_eq!(new.hub_name.as_deref(), Some("roomHub"));
        assert_eq!(new.ca_pem, None);
        let new: NewAccount = serde_json::from_value(serde_json::json!({
            "url": "https://h/hub", "displayName": "ann", "caPem": "-----BEGIN CERTIFICATE-----"
        }))
        .unwrap();
        assert_eq!(new.ca_pem.as_deref(), Some("-----BEGIN CERTIFICATE-----"));
    }
}
