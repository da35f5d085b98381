//! The app core under every Hubbub shell: what the desktop and mobile apps do, minus the window.
//!
//! A shell creates one [`Core`], forwards [`Core::subscribe`]'s [`AppEvent`]s to its UI, and maps
//! each UI command to one `Core` method. Everything else lives here:
//!
//! - **Accounts**: hubs the user added, kept in the store (`crates/store`); one live session
//!   each (a [`hubbub_client::Chat`] over a self-healing [`hubbub_client::HubConnection`]),
//!   connected at start and retried without end while the hub is down.
//! - **Tokens** in the OS keychain ([`KeychainMode`]); when none answers, the user is told and
//!   the token is kept in memory for this session, so connecting still works.
//! - **The embedded hub**: an account without a URL uses a hub this process runs on
//!   127.0.0.1, so a first run works with zero setup. Its history lives in the profile
//!   directory.
//! - **What the UI shows**: connection status (state, attempt, next try, reason, slow),
//!   presence, unread counts and messages, as serializable views ([`view`]).
//! - **Any compatible hub**: each account's hub methods (auto, a preset or custom:
//!   [`Core::set_methods`]), its protocol family (auto, ASP.NET Core or classic ASP.NET
//!   SignalR 2.x, with the classic hub name: [`Core::set_family`]; what auto found shows in
//!   [`Status::family`]), what its hub lacks, an inspector feed of everything the hub sends
//!   ([`AppEvent::Inspector`]) and a console ([`Core::invoke`]).
//! - **Notifications**: which received messages deserve a desktop notification
//!   ([`Core::notification_for`]); the shell only checks whether its window has focus.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hubbub_client::store::{self, ConversationKind, Hub, HubId, Store};
use tokio::sync::broadcast;

mod session;
mod vault;
pub mod view;

pub use vault::KeychainMode;
pub use view::*;

use session::{Connect, Session};
use vault::Vault;

/// The store's URL for the account that uses the embedded hub (its real URL can change).
pub const LOCAL_HUB: &str = "local";

/// The longest message text, as JSON-encoded bytes: the hub's default message limit (32 KiB)
/// minus room for the frame around it. Longer text is refused before it enters the outbox, so
/// it can never block the outbox by being refused by the hub over and over.
pub const MAX_MESSAGE_BYTES: usize = 30 * 1024;

/// The most messages one `history` call returns: enough that jumping to a search result far
/// back in a long conversation takes a few calls, not hundreds.
pub const HISTORY_PAGE_MAX: u32 = 5_000;

/// How long the inspector's console waits for a hub's answer.
pub const INVOKE_LIMIT: Duration = Duration::from_secs(30);

/// The longest display name or room name.
pub const MAX_NAME_CHARS: usize = 64;

/// Errors of the core. Each has a kind the UI can act on and a message for the user.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No such account.
    #[error("no account {0}")]
    NoAccount(AccountId),
    /// An unknown conversation key.
    #[error("no conversation {0:?}")]
    NoConversation(String),
    /// No such message.
    #[error("no message {0:?} in that conversation")]
    NoMessage(String),
    /// Input the user can fix.
    #[error("{0}")]
    Invalid(String),
    /// The account already exists.
    #[error("there is already an account on {0}")]
    Duplicate(String),
    /// Not connected, for something that needs the hub now.
    #[error("not connected to the hub")]
    NotConnected,
    /// The embedded hub did not start.
    #[error("the local hub could not start: {0}")]
    LocalHub(String),
    /// The local history.
    #[error("local history: {0}")]
    Store(#[from] store::Error),
    /// The hub or the connection.
    #[error("{0}")]
    Client(#[from] hubbub_client::Error),
}

impl Error {
    /// A short machine-readable kind, for the UI.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoAccount(_) => "noAccount",
            Self::NoConversation(_) => "noConversation",
            Self::NoMessage(_) => "noMessage",
            Self::Invalid(_) => "invalid",
            Self::Duplicate(_) => "duplicate",
            Self::NotConnected => "notConnected",
            Self::LocalHub(_) => "localHub",
            Self::Store(_) => "store",
            Self::Client(_) => "hub",
        }
    }
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The account made on a first run (no accounts yet).
#[derive(Debug, Clone)]
pub struct FirstRun {
    /// A hub URL, or `None` for the embedded hub.
    pub url: Option<String>,
    /// The display name.
    pub display_name: String,
}

/// How a [`Core`] runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The profile directory: the history database and the embedded hub's history.
    pub data_dir: PathBuf,
    /// Desktop or mobile (mobile suspends connections in the background).
    pub platform: Platform,
    /// The keychain service name tokens are kept under.
    pub keychain_service: String,
    /// Whether to use the OS keychain.
    pub keychain: KeychainMode,
    /// The account to make when there is none.
    pub first_run: Option<FirstRun>,
    /// Where the embedded hub listens if it can (else any free port on 127.0.0.1).
    pub local_hub_addr: std::net::SocketAddr,
    /// The longest wait between reconnect attempts.
    pub retry_max: Duration,
    /// The connection-slow threshold (the client's default when `None`).
    pub slow_threshold: Option<Duration>,
    /// The app's version, for [`AppInfo`].
    pub version: String,
}

impl Config {
    /// A desktop configuration for `data_dir`, with the OS keychain, the embedded hub on
    /// 127.0.0.1:5170 (or any free port) and a first-run account named after the OS user.
    pub fn desktop(data_dir: impl Into<PathBuf>) -> Self {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .ok()
            .filter(|u| !u.is_empty() && u != "root")
            .unwrap_or_else(|| "me".to_owned());
        Self {
            data_dir: data_dir.into(),
            platform: Platform::Desktop,
            keychain_service: "app.hubbub.chat".to_owned(),
            keychain: KeychainMode::Os,
            first_run: Some(FirstRun {
                url: None,
                display_name: user,
            }),
            local_hub_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 5170)),
            retry_max: Duration::from_secs(10),
            slow_threshold: None,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// The app core. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Core {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    store: Store,
    vault: Vault,
    local_hub: tokio::sync::Mutex<Option<hubbub_hub::RunningServer>>,
    local_url: Mutex<Option<String>>,
    sessions: Mutex<BTreeMap<AccountId, Arc<Session>>>,
    /// Serialises account changes (add, remove), so two adds of one URL cannot race.
    accounts_lock: tokio::sync::Mutex<()>,
    events: broadcast::Sender<AppEvent>,
    notified: Mutex<HashMap<(AccountId, String), Instant>>,
}

/// How often one conversation may notify.
const NOTIFY_EVERY: Duration = Duration::from_secs(5);

fn validate_name(what: &str, name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::Invalid(format!("the {what} is empty")));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::Invalid(format!(
            "the {what} is longer than {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "the {what} contains control characters"
        )));
    }
    Ok(name.to_owned())
}

/// A classic hub name as the app accepts it: `None` stays the default (`chatHub`); a given name
/// is trimmed and must look like a JavaScript identifier (letters, digits, `_`, `$`, not
/// starting with a digit, at most [`MAX_NAME_CHARS`]), as the hubs of classic ASP.NET SignalR
/// are named in their generated proxies (`$.connection.chatHub`).
fn validate_hub_name(name: Option<&str>) -> Result<Option<String>> {
    let Some(name) = name.map(str::trim) else {
        return Ok(None);
    };
    if name.is_empty() {
        return Err(Error::Invalid(
            "the classic hub name is empty (leave it out for the default, chatHub)".to_owned(),
        ));
    }
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$';
    if name.chars().count() > MAX_NAME_CHARS
        || name.starts_with(|c: char| c.is_ascii_digit())
        || !name.chars().all(word)
    {
        return Err(Error::Invalid(format!(
            "{name:?} is not a hub name: use letters, digits, _ or $, not starting with a \
             digit, at most {MAX_NAME_CHARS} characters (such as chatHub)"
        )));
    }
    Ok(Some(name.to_owned()))
}

/// The largest extra CA text accepted: room for a bundle of a few hundred certificates.
const MAX_CA_PEM_BYTES: usize = 512 * 1024;

/// An account's extra CA as the app accepts it: `None` or blank text means the system's roots
/// only; otherwise one or more PEM `CERTIFICATE` blocks, each usable as a root
/// ([`hubbub_client::check_extra_ca_pem`]), at most [`MAX_CA_PEM_BYTES`]. Returned trimmed.
fn validate_ca_pem(pem: Option<&str>) -> Result<Option<String>> {
    let Some(pem) = pem.map(str::trim).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    if pem.len() > MAX_CA_PEM_BYTES {
        return Err(Error::Invalid(format!(
            "the CA certificate text is longer than {} KiB",
            MAX_CA_PEM_BYTES / 1024
        )));
    }
    match hubbub_client::check_extra_ca_pem(pem.as_bytes()) {
        Ok(_) => Ok(Some(pem.to_owned())),
        Err(e) => Err(Error::Invalid(format!(
            "{e}: paste the CA's certificate in PEM form (-----BEGIN CERTIFICATE----- …)"
        ))),
    }
}

fn validate_url(url: &str) -> Result<String> {
    let url = url.trim();
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| Error::Invalid("a hub URL starts with http:// or https://".to_owned()))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::Invalid(format!("{url:?} is not a hub URL")));
    }
    Ok(url.to_owned())
}

impl Core {
    /// Opens the profile, starts a session for every account (and the first-run account when
    /// there is none) and starts connecting them.
    pub async fn start(config: Config) -> Result<Self> {
        std::fs::create_dir_all(&config.data_dir).map_err(store::Error::Io)?;
        let db = config.data_dir.join("history.sqlite3");
        let (events, _) = broadcast::channel(65_536);
        let mut notices = Vec::new();
        let store = match Store::open(&db).await {
            Ok(store) => store,
            Err(store::Error::Corrupt { .. }) => {
                let (store, aside) = Store::recover(&db).await?;
                notices.push(format!(
                    "The local history was damaged; it was moved to {} and a new one started.",
                    aside.display()
                ));
                store
            }
            Err(e) => return Err(e.into()),
        };
        let vault = Vault::open(&config.keychain_service, config.keychain.clone()).await;
        let core = Self {
            inner: Arc::new(Inner {
                config,
                store,
                vault,
                local_hub: tokio::sync::Mutex::new(None),
                local_url: Mutex::new(None),
                sessions: Mutex::default(),
                accounts_lock: tokio::sync::Mutex::new(()),
                events,
                notified: Mutex::default(),
            }),
        };
        for text in notices {
            core.notice(None, Level::Warning, text);
        }
        let hubs = core.inner.store.hubs().await?;
        if hubs.is_empty() {
            if let Some(first) = core.inner.config.first_run.clone() {
                core.add_account(NewAccount {
                    url: first.url,
                    display_name: first.display_name,
                    token: None,
                    protocol: ProtocolChoice::Json,
                    transport: TransportChoice::Auto,
                    family: FamilyChoice::Auto,
                    hub_name: None,
                    ca_pem: None,
                })
                .await?;
            }
        } else {
            for hub in hubs {
                match core.open_session(&hub).await {
                    Ok(session) => session.connect(),
                    Err(e) => {
                        core.notice(Some(hub.id.0), Level::Error, format!("{}: {e}", hub.url))
                    }
                }
            }
        }
        Ok(core)
    }

    /// Every event from now on. Slow subscribers that fall more than 65,536 events behind
    /// lose the oldest ones (and should reload).
    pub fn subscribe(&self) -> broadcast::Receiver<AppEvent> {
        self.inner.events.subscribe()
    }

    /// The store (for tests and diagnostics).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    fn notice(&self, account: Option<AccountId>, level: Level, text: String) {
        let _ = self.inner.events.send(AppEvent::Notice {
            account,
            level,
            text,
        });
    }

    /// Facts for the UI.
    pub fn info(&self) -> AppInfo {
        AppInfo {
            version: self.inner.config.version.clone(),
            platform: self.inner.config.platform,
            keychain: self.inner.vault.info(),
            local_hub_url: self
                .inner
                .local_url
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    fn session(&self, account: AccountId) -> Result<Arc<Session>> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&account)
            .cloned()
            .ok_or(Error::NoAccount(account))
    }

    /// The embedded hub's URL, starting it on first use.
    async fn local_hub_url(&self) -> Result<String> {
        let mut hub = self.inner.local_hub.lock().await;
        if let Some(server) = &*hub {
            return Ok(server.url("/chathub"));
        }
        let history = hubbub_hub::ChatHistory::open(
            &self.inner.config.data_dir.join("local-hub-history.sqlite3"),
        )
        .map_err(|e| Error::LocalHub(e.to_string()))?;
        let build = || {
            hubbub_hub::ServerBuilder::new()
                .hub("/chathub", hubbub_hub::chat_hub_with(history.clone()))
        };
        let server = match build().bind(self.inner.config.local_hub_addr).await {
            Ok(server) => server,
            // The preferred port is taken (another profile's hub, another program): any port.
            Err(_) => build()
                .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
                .await
                .map_err(|e| Error::LocalHub(e.to_string()))?,
        };
        let url = server.url("/chathub");
        tracing::info!(%url, "the embedded hub is listening");
        *self
            .inner
            .local_url
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(url.clone());
        *hub = Some(server);
        Ok(url)
    }

    async fn open_session(&self, hub: &Hub) -> Result<Arc<Session>> {
        let url = if hub.url == LOCAL_HUB {
            self.local_hub_url().await?
        } else {
            hub.url.clone()
        };
        let token = match self.inner.vault.get(hub.id.0, hub.token_in_keychain).await {
            Ok(token) => token,
            Err(why) => {
                self.notice(
                    Some(hub.id.0),
                    Level::Warning,
                    format!(
                        "The token for {} could not be read from the keychain ({why}); connecting without it. Enter it again to use it for this session.",
                        hub.url
                    ),
                );
                None
            }
        };
        let session = Arc::new(
            Session::open(
                hub,
                self.inner.store.clone(),
                Connect {
                    url,
                    token,
                    retry_max: self.inner.config.retry_max,
                    slow_threshold: self.inner.config.slow_threshold,
                },
                self.inner.events.clone(),
            )
            .await?,
        );
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(hub.id.0, session.clone());
        Ok(session)
    }

    fn account_view(&self, hub: &Hub, session: Option<&Session>) -> Account {
        let local = hub.url == LOCAL_HUB;
        let url = if local {
            self.inner
                .local_url
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_else(|| "local hub".to_owned())
        } else {
            hub.url.clone()
        };
        let token = if hub.token_in_keychain {
            TokenPlace::Keychain
        } else if self.inner.vault.has_session_token(hub.id.0) {
            TokenPlace::Session
        } else {
            TokenPlace::None
        };
        Account {
            id: hub.id.0,
            url,
            display_name: hub.display_name.clone(),
            protocol: ProtocolChoice::parse(&hub.protocol),
            transport: TransportChoice::parse(hub.transport.as_deref()),
            family: FamilyChoice::parse(hub.family.as_deref()),
            hub_name: hub.hub_name.clone(),
            ca_pem: hub.ca_pem.clone(),
            local,
            token,
            status: session.map(Session::status).unwrap_or_default(),
            methods: session
                .map(|s| MethodsView::from(&s.chat.methods()))
                .unwrap_or_else(|| MethodsView::from(&hubbub_client::HubMethods::default())),
            unavailable: session
                .map(|s| session::unavailable(&s.chat))
                .unwrap_or_default(),
        }
    }

    /// Every account, oldest first.
    pub async fn accounts(&self) -> Result<Vec<Account>> {
        let hubs = self.inner.store.hubs().await?;
        let sessions = self
            .inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok(hubs
            .iter()
            .map(|hub| self.account_view(hub, sessions.get(&hub.id.0).map(|s| &**s)))
            .collect())
    }

    async fn announce_accounts(&self) {
        if let Ok(accounts) = self.accounts().await {
            let _ = self.inner.events.send(AppEvent::Accounts { accounts });
        }
    }

    async fn hub(&self, account: AccountId) -> Result<Hub> {
        self.inner
            .store
            .hubs()
            .await?
            .into_iter()
            .find(|h| h.id.0 == account)
            .ok_or(Error::NoAccount(account))
    }

    /// Adds an account, keeps its token, and starts connecting.
    pub async fn add_account(&self, new: NewAccount) -> Result<Account> {
        let display_name = validate_name("display name", &new.display_name)?;
        let hub_name = validate_hub_name(new.hub_name.as_deref())?;
        let ca_pem = validate_ca_pem(new.ca_pem.as_deref())?;
        let url = match new.url.as_deref().map(str::trim) {
            None | Some("") => LOCAL_HUB.to_owned(),
            Some(url) => validate_url(url)?,
        };
        let _guard = self.inner.accounts_lock.lock().await;
        if self.inner.store.hubs().await?.iter().any(|h| h.url == url) {
            return Err(Error::Duplicate(if url == LOCAL_HUB {
                "the local hub".to_owned()
            } else {
                url
            }));
        }
        let id = self
            .inner
            .store
            .upsert_hub(
                &url,
                &display_name,
                new.protocol.as_str(),
                new.transport.as_stored(),
            )
            .await?;
        if new.family != FamilyChoice::Auto || hub_name.is_some() {
            self.inner
                .store
                .set_hub_family(id, new.family.as_stored(), hub_name.as_deref())
                .await?;
        }
        if ca_pem.is_some() {
            self.inner.store.set_hub_ca(id, ca_pem.as_deref()).await?;
        }
        if let Some(token) = new
            .token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            self.keep_token(id, token).await?;
        }
        let hub = self.hub(id.0).await?;
        let session = match self.open_session(&hub).await {
            Ok(session) => session,
            Err(e) => {
                // Nothing half-made stays behind.
                let _ = self.inner.store.remove_hub(id).await;
                self.inner.vault.forget(id.0, hub.token_in_keychain).await;
                return Err(e);
            }
        };
        session.connect();
        drop(_guard);
        self.announce_accounts().await;
        Ok(self.account_view(&hub, Some(&session)))
    }

    async fn keep_token(&self, id: HubId, token: &str) -> Result<()> {
        let (place, refused) = self.inner.vault.put(id.0, token).await;
        self.inner
            .store
            .set_token_in_keychain(id, place == TokenPlace::Keychain)
            .await?;
        if place == TokenPlace::Session {
            let why = refused
                .or_else(|| self.inner.vault.info().detail)
                .unwrap_or_default();
            self.notice(
                Some(id.0),
                Level::Warning,
                format!("The token is kept for this session only: {why}"),
            );
        }
        Ok(())
    }

    /// Removes an account: disconnects, forgets its token, history and outbox.
    pub async fn remove_account(&self, account: AccountId) -> Result<()> {
        let hub = self.hub(account).await?;
        let _guard = self.inner.accounts_lock.lock().await;
        let session = self
            .inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&account);
        if let Some(session) = session {
            session.connection().stop().await;
        }
        self.inner
            .vault
            .forget(account, hub.token_in_keychain)
            .await;
        self.inner.store.remove_hub(hub.id).await?;
        drop(_guard);
        self.announce_accounts().await;
        Ok(())
    }

    /// Replaces (or with `None` removes) an account's token; used from the next connect on.
    pub async fn set_token(&self, account: AccountId, token: Option<String>) -> Result<Account> {
        let hub = self.hub(account).await?;
        let session = self.session(account)?;
        self.inner
            .vault
            .forget(account, hub.token_in_keychain)
            .await;
        self.inner
            .store
            .set_token_in_keychain(hub.id, false)
            .await?;
        let token = token.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
        if let Some(token) = &token {
            self.keep_token(hub.id, token).await?;
        }
        session.set_token(token);
        self.announce_accounts().await;
        let hub = self.hub(account).await?;
        Ok(self.account_view(&hub, Some(&session)))
    }

    /// Starts connecting an account (retried until the hub answers).
    pub async fn connect(&self, account: AccountId) -> Result<()> {
        self.session(account)?.connect();
        Ok(())
    }

    /// Disconnects an account (its outbox waits for the next connect).
    pub async fn disconnect(&self, account: AccountId) -> Result<()> {
        self.session(account)?.disconnect().await;
        Ok(())
    }

    async fn conversation_id(
        &self,
        account: AccountId,
        key: &str,
    ) -> Result<(Arc<Session>, store::ConversationId, ConversationKind)> {
        let session = self.session(account)?;
        let kind =
            parse_conversation_key(key).ok_or_else(|| Error::NoConversation(key.to_owned()))?;
        let id = self
            .inner
            .store
            .conversation(session.chat.hub(), kind.clone())
            .await?;
        session.remember_kind(id, &kind);
        Ok((session, id, kind))
    }

    /// An account's conversations (rooms left are not listed), the broadcast first.
    pub async fn conversations(&self, account: AccountId) -> Result<Vec<Conversation>> {
        let session = self.session(account)?;
        // (The broadcast conversation exists from the start: `Chat::open_hub` makes it.)
        let hub = session.chat.hub();
        let unread: HashMap<_, _> = self
            .inner
            .store
            .unread_counts(hub)
            .await?
            .into_iter()
            .collect();
        let mut list: Vec<Conversation> = self
            .inner
            .store
            .conversations(hub)
            .await?
            .into_iter()
            .filter(|c| !c.archived)
            .map(|c| Conversation::new(&c.kind, unread.get(&c.id).copied().unwrap_or(0)))
            .collect();
        list.sort_by_key(|c| c.kind != ConversationKindView::Broadcast);
        Ok(list)
    }

    /// Up to `limit` (at most [`HISTORY_PAGE_MAX`]) messages before `before` (the newest without it), oldest
    /// first.
    pub async fn history(
        &self,
        account: AccountId,
        conversation: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<MessageView>> {
        let (_, id, kind) = self.conversation_id(account, conversation).await?;
        let limit = limit.clamp(1, HISTORY_PAGE_MAX);
        let page = self
            .inner
            .store
            .before(id, before.unwrap_or(i64::MAX), limit)
            .await?;
        Ok(page.iter().map(|m| MessageView::new(m, &kind)).collect())
    }

    /// Writes `text` to the outbox; it goes out as soon as the hub is reachable.
    pub async fn send(
        &self,
        account: AccountId,
        conversation: &str,
        text: &str,
    ) -> Result<MessageView> {
        if text.trim().is_empty() {
            return Err(Error::Invalid("the message is empty".to_owned()));
        }
        let encoded = serde_json::to_string(text).map_or(usize::MAX, |s| s.len());
        if encoded > MAX_MESSAGE_BYTES {
            return Err(Error::Invalid(format!(
                "the message is too long ({} KiB encoded; the limit is {} KiB)",
                encoded.div_ceil(1024),
                MAX_MESSAGE_BYTES / 1024
            )));
        }
        let (session, id, kind) = self.conversation_id(account, conversation).await?;
        if let ConversationKind::Room(_) = kind {
            self.inner.store.set_archived(id, false).await?;
        }
        let message = session.chat.send_to(kind.clone(), text).await?;
        Ok(MessageView::new(&message, &kind))
    }

    async fn stored_message(
        &self,
        account: AccountId,
        conversation: &str,
        msg_id: &str,
    ) -> Result<(Arc<Session>, store::Message, ConversationKind)> {
        let (session, id, kind) = self.conversation_id(account, conversation).await?;
        let message = self
            .inner
            .store
            .message(id, msg_id)
            .await?
            .ok_or_else(|| Error::NoMessage(msg_id.to_owned()))?;
        Ok((session, message, kind))
    }

    /// Puts a failed message back in the outbox.
    pub async fn retry(
        &self,
        account: AccountId,
        conversation: &str,
        msg_id: &str,
    ) -> Result<MessageView> {
        let (session, message, kind) = self.stored_message(account, conversation, msg_id).await?;
        let message = session.chat.retry(&message).await?;
        let view = MessageView::new(&message, &kind);
        let _ = self.inner.events.send(AppEvent::MessageUpdated {
            account,
            message: view.clone(),
        });
        Ok(view)
    }

    /// Drops a failed message.
    pub async fn discard(
        &self,
        account: AccountId,
        conversation: &str,
        msg_id: &str,
    ) -> Result<()> {
        let (session, message, _) = self.stored_message(account, conversation, msg_id).await?;
        session.chat.discard(&message).await?;
        Ok(())
    }

    /// Joins a room (now if connected, and after every reconnect).
    pub async fn join_room(&self, account: AccountId, room: &str) -> Result<Conversation> {
        let room = validate_name("room name", room)?;
        let (session, id, kind) = self
            .conversation_id(account, &format!("room:{room}"))
            .await?;
        self.inner.store.set_archived(id, false).await?;
        if session.connection().state() == hubbub_client::State::Connected {
            session.chat.join_room(&room).await?;
        } else {
            session.chat.remember_room(&room);
        }
        Ok(session::announce(&self.inner.store, &self.inner.events, account, id, &kind).await)
    }

    /// Leaves a room; its history stays.
    pub async fn leave_room(&self, account: AccountId, room: &str) -> Result<()> {
        let (session, id, _) = self
            .conversation_id(account, &format!("room:{room}"))
            .await?;
        self.inner.store.set_archived(id, true).await?;
        if let Err(e) = session.chat.leave_room(room).await {
            // Offline: the next connection starts in no room anyway.
            tracing::debug!(error = %e, "LeaveRoom while not connected");
        }
        Ok(())
    }

    /// Opens (or finds) the direct conversation with `user`.
    pub async fn open_direct(&self, account: AccountId, user: &str) -> Result<Conversation> {
        let user = validate_name("user name", user)?;
        let (_, id, kind) = self.conversation_id(account, &format!("dm:{user}")).await?;
        Ok(session::announce(&self.inner.store, &self.inner.events, account, id, &kind).await)
    }

    /// Uses `methods` for the account's hub from now on (kept in the store): a preset's
    /// methods, or (custom) the ones written in `send` and `receive`; auto (the default)
    /// finds the send method on the next send. Returns the account as it is now.
    ///
    /// Errors: [`Error::Invalid`] with why, when a method is not written as
    /// `hubbub_client::methods` reads it (`Name(name,text)`, `Name(0.user,0.message)`).
    pub async fn set_methods(&self, account: AccountId, methods: MethodsView) -> Result<Account> {
        use hubbub_client::Preset;
        let session = self.session(account)?;
        let contract = match methods.preset {
            Preset::Custom | Preset::Auto => {
                let send = match methods.send.as_deref().map(str::trim) {
                    None | Some("") => None,
                    Some(text) => Some(text.parse().map_err(
                        |e: hubbub_client::methods::ParseError| {
                            Error::Invalid(format!("send method: {e}"))
                        },
                    )?),
                };
                let receive = methods
                    .receive
                    .iter()
                    .map(|r| r.trim())
                    .filter(|r| !r.is_empty())
                    .map(|r| {
                        r.parse().map_err(|e: hubbub_client::methods::ParseError| {
                            Error::Invalid(format!("receive method: {e}"))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let preset = if send.is_none() && receive.is_empty() {
                    Preset::Auto
                } else {
                    methods.preset
                };
                hubbub_client::HubMethods {
                    preset,
                    send,
                    receive,
                }
            }
            preset => preset.methods(),
        };
        session.chat.set_methods(contract).await?;
        let hub = self.hub(account).await?;
        Ok(self.account_view(&hub, Some(&session)))
    }

    /// Speaks `family` with the account's hub from now on, asking a classic endpoint for
    /// `hub_name` (`None`: the default, `chatHub`); both are kept in the store. When either
    /// changed, the account reconnects with them: its session is stopped and opened again
    /// (the outbox and history stay in the store, and what is queued goes out on the new
    /// connection). Returns the account as it is now; the family the next connect speaks shows
    /// in its [`Status::family`].
    ///
    /// Errors: [`Error::Invalid`] with why, for a hub name that is empty or not a name
    /// (letters, digits, `_`, `$`; see [`hubbub_client::HubConnectionBuilder::hub_name`]).
    pub async fn set_family(
        &self,
        account: AccountId,
        family: FamilyChoice,
        hub_name: Option<String>,
    ) -> Result<Account> {
        let hub_name = validate_hub_name(hub_name.as_deref())?;
        let _guard = self.inner.accounts_lock.lock().await;
        let mut hub = self.hub(account).await?;
        let old = self.session(account)?;
        if FamilyChoice::parse(hub.family.as_deref()) == family && hub.hub_name == hub_name {
            return Ok(self.account_view(&hub, Some(&old)));
        }
        self.inner
            .store
            .set_hub_family(hub.id, family.as_stored(), hub_name.as_deref())
            .await?;
        hub.family = family.as_stored().map(str::to_owned);
        hub.hub_name = hub_name;
        self.reopen(&hub, old, _guard).await
    }

    /// Stops the account's session `old` and opens `hub`'s anew with its settings as stored
    /// (the outbox and history stay in the store), releases `guard` (the accounts lock), then
    /// announces the accounts. Returns the account as it is now.
    async fn reopen(
        &self,
        hub: &Hub,
        old: Arc<Session>,
        guard: tokio::sync::MutexGuard<'_, ()>,
    ) -> Result<Account> {
        old.disconnect().await;
        drop(old);
        let session = self.open_session(hub).await?;
        session.connect();
        drop(guard);
        self.announce_accounts().await;
        Ok(self.account_view(hub, Some(&session)))
    }

    /// Trusts the certificates in `ca_pem` (a private CA, PEM) besides the system's roots for
    /// the account's `https://`/`wss://` hub from now on; `None` or blank text: the system's
    /// roots only. Kept in the store; when it changed, the account reconnects with it (its
    /// session is stopped and opened again; the outbox and history stay). Returns the account
    /// as it is now.
    ///
    /// Errors: [`Error::Invalid`] with why, for text that holds no PEM certificate or one that
    /// cannot be used as a root (the setting in use stays, nothing is reconnected).
    pub async fn set_ca(&self, account: AccountId, ca_pem: Option<String>) -> Result<Account> {
        let ca_pem = validate_ca_pem(ca_pem.as_deref())?;
        let _guard = self.inner.accounts_lock.lock().await;
        let hub = self.hub(account).await?;
        let old = self.session(account)?;
        if hub.ca_pem == ca_pem {
            return Ok(self.account_view(&hub, Some(&old)));
        }
        self.inner
            .store
            .set_hub_ca(hub.id, ca_pem.as_deref())
            .await?;
        let hub = self.hub(account).await?;
        self.reopen(&hub, old, _guard).await
    }

    /// Invokes any method of the account's hub with JSON arguments and returns its result as
    /// JSON (`null` for none): the inspector's console. Waits at most 30 s for the answer.
    ///
    /// Errors: [`Error::Client`] with the hub's error (`Error::Hub`), or not connected.
    pub async fn invoke(
        &self,
        account: AccountId,
        method: &str,
        arguments: Vec<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let method = method.trim();
        if method.is_empty() {
            return Err(Error::Invalid("the method name is empty".to_owned()));
        }
        let session = self.session(account)?;
        let args = arguments
            .iter()
            .map(hubbub_client::Arg::serialize)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Invalid(format!("an argument cannot be sent: {e}")))?;
        let call = session
            .connection()
            .invoke::<serde_json::Value>(method, args);
        match tokio::time::timeout(INVOKE_LIMIT, call).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(Error::Client(hubbub_client::Error::Hub(format!(
                "no answer from the hub within {} s",
                INVOKE_LIMIT.as_secs()
            )))),
        }
    }

    /// Who is online on the account's hub, as last heard.
    pub fn online(&self, account: AccountId) -> Result<Vec<String>> {
        Ok(self.session(account)?.online())
    }

    /// Full-text search over an account's history, newest first.
    pub async fn search(
        &self,
        account: AccountId,
        query: &str,
        limit: u32,
    ) -> Result<Vec<MessageView>> {
        let session = self.session(account)?;
        let found = self
            .inner
            .store
            .search(Some(session.chat.hub()), query, limit.clamp(1, 500))
            .await?;
        let mut kinds = HashMap::new();
        let mut out = Vec::with_capacity(found.len());
        for m in found {
            if let std::collections::hash_map::Entry::Vacant(slot) = kinds.entry(m.conversation) {
                slot.insert(self.inner.store.conversation_kind(m.conversation).await?);
            }
            out.push(MessageView::new(&m, &kinds[&m.conversation]));
        }
        Ok(out)
    }

    /// Marks a conversation read up to `seq`.
    pub async fn mark_read(&self, account: AccountId, conversation: &str, seq: i64) -> Result<()> {
        let (_, id, kind) = self.conversation_id(account, conversation).await?;
        self.inner.store.mark_read(id, seq).await?;
        session::announce(&self.inner.store, &self.inner.events, account, id, &kind).await;
        Ok(())
    }

    /// The app went to the background (`false`) or came back. On phones connections are
    /// suspended in the background and resumed in front; on desktops a hidden window keeps
    /// its connections, and coming back only checks that the network still answers.
    pub fn lifecycle(&self, foreground: bool) {
        let sessions: Vec<_> = self
            .inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for session in sessions {
            match (self.inner.config.platform, foreground) {
                (Platform::Mobile, false) => session.connection().suspend(),
                (Platform::Mobile, true) => session.connection().resume(),
                (Platform::Desktop, true) => session.connection().notify_network_changed(),
                (Platform::Desktop, false) => {}
            }
        }
    }

    /// Whether `event` deserves a desktop notification (when the window is not focused): a
    /// message from someone else, at most one per conversation every few seconds so a burst
    /// or a catch-up after a reconnect shows once.
    pub fn notification_for(&self, event: &AppEvent) -> Option<Notification> {
        let AppEvent::Message { account, message } = event else {
            return None;
        };
        if message.outgoing {
            return None;
        }
        {
            let mut seen = self
                .inner
                .notified
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let key = (*account, message.conversation.clone());
            if seen
                .get(&key)
                .is_some_and(|t| now.duration_since(*t) < NOTIFY_EVERY)
            {
                return None;
            }
            seen.insert(key, now);
        }
        let place = match parse_conversation_key(&message.conversation) {
            Some(ConversationKind::Room(room)) => format!(" in {room}"),
            Some(ConversationKind::Direct(_)) => String::new(),
            _ => " to everyone".to_owned(),
        };
        let mut body: String = message.body.chars().take(140).collect();
        if body.len() < message.body.len() {
            body.push('…');
        }
        Some(Notification {
            title: format!("{}{place}", message.sender),
            body,
        })
    }

    /// Disconnects every account (each sends Close, all at once, each bounded by the client's
    /// 2 s close) and stops the embedded hub (its drain is bounded to 10 s: the shell bounds
    /// the whole to a few seconds).
    pub async fn shutdown(&self) {
        let sessions: Vec<_> = std::mem::take(
            &mut *self
                .inner
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
        .into_values()
        .collect();
        // All at once: each stop is bounded (the client gives a Close 2 s to go out), so the
        // whole takes as long as the slowest one, not their sum.
        futures_util::future::join_all(sessions.iter().map(|s| s.connection().stop())).await;
        drop(sessions);
        if let Some(server) = self.inner.local_hub.lock().await.take() {
            if let Err(e) = server.shutdown().await {
                tracing::warn!(error = %e, "the embedded hub did not stop cleanly");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_names_are_checked() {
        assert!(validate_url("http://127.0.0.1:5000/chathub").is_ok());
        assert!(validate_url(" https://chat.example.com/hub?x=1 ").is_ok());
        for bad in ["ftp://x/hub", "http://", "127.0.0.1:5000", "http://a b/hub"] {
            assert!(matches!(validate_url(bad), Err(Error::Invalid(_))), "{bad}");
        }
        assert_eq!(validate_hub_name(None).unwrap(), None);
        assert_eq!(
            validate_hub_name(Some(" chatHub ")).unwrap().as_deref(),
            Some("chatHub")
        );
        assert_eq!(
            validate_hub_name(Some("$my_Hub2")).unwrap().as_deref(),
            Some("$my_Hub2")
        );
        for bad in ["", "  ", "2hub", "chat hub", "chat-hub", "chat.hub", "hüb"] {
            assert!(
                matches!(validate_hub_name(Some(bad)), Err(Error::Invalid(_))),
                "{bad:?}"
            );
        }
        assert!(validate_hub_name(Some(&"h".repeat(65))).is_err());
        assert_eq!(validate_name("n", "  ann ").unwrap(), "ann");
        assert!(validate_name("n", "   ").is_err());
        assert!(validate_name("n", &"x".repeat(65)).is_err());
        assert!(validate_name("n", "a\u{7}b").is_err());
    }
}
