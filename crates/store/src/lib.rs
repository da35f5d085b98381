//! Hubbub's local history and durable outbox.
//!
//! One SQLite file per profile (bundled SQLite, WAL mode, versioned migrations) holds hubs,
//! conversations and messages, with full-text search (FTS5) kept in sync by triggers. All
//! database work runs on one dedicated thread; the API is async and never blocks the caller's
//! runtime.
//!
//! The outbox is the `sending` state of outgoing messages: a message is written first, handed to
//! the connection second, and marked `sent` when the hub completes it (or `failed` with the
//! hub's reason). Each message has a stable, client-made id, so a retry after an ambiguous
//! failure is dropped by the hub's duplicate window and by receivers (one row per conversation
//! and id).

mod schema;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file is not a usable database. Nothing was changed: [`Store::recover`] moves it
    /// aside and starts a fresh one.
    #[error(
        "the history database {path} is damaged or not a database ({detail}); \
         move it aside and start fresh with Store::recover (the old file is kept)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        detail: String,
    },
    /// The file could not be opened (permissions, missing directory, locked).
    #[error("cannot open the history database {path}: {detail}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// The database was written by a newer Hubbub.
    #[error("the history database has schema version {found}; this Hubbub knows up to {known}")]
    TooNew {
        /// The file's version.
        found: u32,
        /// The newest this build knows.
        known: u32,
    },
    /// A query failed.
    #[error("history database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The store's thread is gone.
    #[error("the history database is closed")]
    Closed,
    /// No such message.
    #[error("no message with id {0}")]
    NotFound(String),
    /// I/O while moving a damaged file aside.
    #[error("cannot move the damaged database aside: {0}")]
    Io(#[from] std::io::Error),
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A hub (account) row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HubId(pub i64);

/// A conversation row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConversationId(pub i64);

/// Which conversation on a hub.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConversationKind {
    /// The hub's broadcast (`Send` / `broadcastMessage`) in the connection's scope.
    Broadcast,
    /// A room.
    Room(String),
    /// Direct messages with one user.
    Direct(String),
}

impl ConversationKind {
    fn parts(&self) -> (&'static str, &str) {
        match self {
            Self::Broadcast => ("broadcast", ""),
            Self::Room(name) => ("room", name),
            Self::Direct(user) => ("direct", user),
        }
    }
}

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageState {
    /// Written, not yet completed by the hub (the outbox).
    Sending,
    /// Completed by the hub.
    Sent,
    /// Refused by the hub; see the error. Can be retried or discarded.
    Failed,
    /// From someone (or from this user on another device).
    Received,
}

impl MessageState {
    /// The name stored in the database (and shown to shells).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Received => "received",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "sending" => Self::Sending,
            "sent" => Self::Sent,
            "failed" => Self::Failed,
            _ => Self::Received,
        }
    }
}

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Position in the database: increases with every stored message (stable paging key).
    pub seq: i64,
    /// The conversation.
    pub conversation: ConversationId,
    /// The stable, client-made id.
    pub msg_id: String,
    /// Who wrote it.
    pub sender: String,
    /// The text.
    pub body: String,
    /// Written here (outbox) rather than received.
    pub outgoing: bool,
    /// Where it stands.
    pub state: MessageState,
    /// The hub's reason, for a failed message.
    pub error: Option<String>,
    /// When it was written or first seen (ms since the Unix epoch).
    pub created_at: i64,
    /// When the hub completed it (ms), for outgoing messages.
    pub sent_at: Option<i64>,
    /// When it arrived (ms), for received messages.
    pub received_at: Option<i64>,
}

/// A hub the user has added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hub {
    /// Row id.
    pub id: HubId,
    /// The hub URL.
    pub url: String,
    /// The user's display name there.
    pub display_name: String,
    /// `json` or `messagepack`.
    pub protocol: String,
    /// A transport restriction, if any.
    pub transport: Option<String>,
    /// Its token is kept in the OS keychain (never here).
    pub token_in_keychain: bool,
    /// The protocol family it is forced to (`core` or `classic`); `None`: decided by the
    /// negotiate response (auto). Set with [`Store::set_hub_family`].
    pub family: Option<String>,
    /// The hub a classic endpoint (`…/signalr`) is asked for; `None`: the client's default
    /// (`chatHub`). Set with [`Store::set_hub_family`].
    pub hub_name: Option<String>,
    /// Certificates (PEM) trusted besides the system's roots for this hub's TLS (a private
    /// CA); `None`: the system's roots only. Set with [`Store::set_hub_ca`].
    pub ca_pem: Option<String>,
}

/// A conversation on a hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// Row id.
    pub id: ConversationId,
    /// Which one.
    pub kind: ConversationKind,
    /// A room the user left: kept for its history, not joined again.
    pub archived: bool,
}

fn kind_from_parts(kind: &str, name: String) -> ConversationKind {
    match kind {
        "room" => ConversationKind::Room(name),
        "direct" => ConversationKind::Direct(name),
        _ => ConversationKind::Broadcast,
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The default database file for a profile: `$XDG_DATA_HOME/hubbub/<profile>.sqlite3` on Linux,
/// the platform's data directory elsewhere.
pub fn default_path(profile: &str) -> PathBuf {
    dirs::data_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("hubbub")
        .join(format!("{profile}.sqlite3"))
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The store: a handle to the database thread. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    jobs: mpsc::UnboundedSender<Job>,
    path: PathBuf,
}

const MESSAGE_COLUMNS: &str = "seq, conversation_id, msg_id, sender, body, outgoing, state, error, created_at, sent_at, received_at";

fn message_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        seq: row.get(0)?,
        conversation: ConversationId(row.get(1)?),
        msg_id: row.get(2)?,
        sender: row.get(3)?,
        body: row.get(4)?,
        outgoing: row.get::<_, i64>(5)? == 1,
        state: MessageState::parse(&row.get::<_, String>(6)?),
        error: row.get(7)?,
        created_at: row.get(8)?,
        sent_at: row.get(9)?,
        received_at: row.get(10)?,
    })
}

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
    )
}

/// Opens (creating if needed) and migrates a database file; runs on the caller's thread.
fn open_connection(path: &Path) -> Result<Connection> {
    // What SQLite says becomes "damaged" (keep the file, offer recovery) or "cannot open".
    let classify = |e: rusqlite::Error| {
        let detail = e.to_string();
        if is_corruption(&e) {
            Error::Corrupt {
                path: path.to_owned(),
                detail,
            }
        } else {
            Error::Open {
                path: path.to_owned(),
                detail,
            }
        }
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::Open {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    }
    let mut conn = Connection::open(path).map_err(classify)?;
    // A damaged file shows itself on the first read; check the whole file before trusting it.
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(classify)?;
    if check != "ok" {
        return Err(Error::Corrupt {
            path: path.to_owned(),
            detail: check,
        });
    }
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(classify)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(Duration::from_secs(5))?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// Applies the migrations the file does not have yet.
fn migrate(conn: &mut Connection) -> Result<()> {
    let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = schema::MIGRATIONS.len() as u32;
    if version > known {
        return Err(Error::TooNew {
            found: version,
            known,
        });
    }
    for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as u32 + 1)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "history database migrated");
    }
    Ok(())
}

impl Store {
    /// Opens the database at `path` (creating it and its directory if needed) and starts its
    /// thread. A damaged file is reported as [`Error::Corrupt`] and left as it is.
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let (ready_tx, ready_rx) = oneshot::channel();
        let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
        let thread_path = path.clone();
        std::thread::Builder::new()
            .name("hubbub-store".to_owned())
            .spawn(move || {
                let mut conn = match open_connection(&thread_path) {
                    Ok(conn) => {
                        let _ = ready_tx.send(Ok(()));
                        conn
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Some(job) = rx.blocking_recv() {
                    job(&mut conn);
                }
            })?;
        ready_rx.await.map_err(|_| Error::Closed)??;
        Ok(Self { jobs, path })
    }

    /// Moves a damaged database (and its WAL and shared-memory files) aside as
    /// `<name>.corrupt-<ms>` and opens a fresh one. Returns the store and where the old file went.
    pub async fn recover(path: impl Into<PathBuf>) -> Result<(Self, PathBuf)> {
        let path = path.into();
        let aside = path.with_extension(format!("corrupt-{}", now_ms()));
        std::fs::rename(&path, &aside)?;
        for suffix in ["-wal", "-shm"] {
            let side = PathBuf::from(format!("{}{suffix}", path.display()));
            if side.exists() {
                std::fs::rename(&side, format!("{}{suffix}", aside.display()))?;
            }
        }
        tracing::warn!(old = %aside.display(), "damaged history database moved aside; starting fresh");
        Ok((Self::open(path).await?, aside))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the database thread.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send(Box::new(move |conn| {
                let _ = tx.send(f(conn));
            }))
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// Adds a hub, or updates its settings; never stores a token.
    pub async fn upsert_hub(
        &self,
        url: &str,
        display_name: &str,
        protocol: &str,
        transport: Option<&str>,
    ) -> Result<HubId> {
        let (url, name, protocol, transport) = (
            url.to_owned(),
            display_name.to_owned(),
            protocol.to_owned(),
            transport.map(str::to_owned),
        );
        self.call(move |c| {
            c.execute(
                "INSERT INTO hubs (url, display_name, protocol, transport, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (url) DO UPDATE SET display_name = ?2, protocol = ?3, transport = ?4",
                params![url, name, protocol, transport, now_ms()],
            )?;
            Ok(HubId(c.query_row("SELECT id FROM hubs WHERE url = ?1", [&url], |r| r.get(0))?))
        })
        .await
    }

    /// Every hub, oldest first.
    pub async fn hubs(&self) -> Result<Vec<Hub>> {
        self.call(|c| {
            let mut stmt = c.prepare(
                "SELECT id, url, display_name, protocol, transport, token_in_keychain, family, hub_name,
                        ca_pem
                 FROM hubs ORDER BY id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(Hub {
                    id: HubId(r.get(0)?),
                    url: r.get(1)?,
                    display_name: r.get(2)?,
                    protocol: r.get(3)?,
                    transport: r.get(4)?,
                    token_in_keychain: r.get(5)?,
                    family: r.get(6)?,
                    hub_name: r.get(7)?,
                    ca_pem: r.get(8)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// Forgets a hub with its conversations and messages (its outbox too).
    pub async fn remove_hub(&self, hub: HubId) -> Result<()> {
        self.call(move |c| {
            c.execute("DELETE FROM hubs WHERE id = ?1", [hub.0])?;
            Ok(())
        })
        .await
    }

    /// Records whether the hub's token is in the OS keychain.
    pub async fn set_token_in_keychain(&self, hub: HubId, in_keychain: bool) -> Result<()> {
        self.call(move |c| {
            c.execute(
                "UPDATE hubs SET token_in_keychain = ?2 WHERE id = ?1",
                params![hub.0, in_keychain],
            )?;
            Ok(())
        })
        .await
    }

    /// The hub's conversations, in the order they were first used.
    pub async fn conversations(&self, hub: HubId) -> Result<Vec<Conversation>> {
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, kind, name, archived FROM conversations WHERE hub_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([hub.0], |r| {
                let (kind, name): (String, String) = (r.get(1)?, r.get(2)?);
                Ok(Conversation {
                    id: ConversationId(r.get(0)?),
                    kind: kind_from_parts(&kind, name),
                    archived: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// Archives a conversation (a room left) or brings it back.
    pub async fn set_archived(&self, conversation: ConversationId, archived: bool) -> Result<()> {
        self.call(move |c| {
            c.execute(
                "UPDATE conversations SET archived = ?2 WHERE id = ?1",
                params![conversation.0, archived],
            )?;
            Ok(())
        })
        .await
    }

    /// Which conversation a row id is.
    pub async fn conversation_kind(
        &self,
        conversation: ConversationId,
    ) -> Result<ConversationKind> {
        self.call(move |c| {
            let (kind, name): (String, String) = c.query_row(
                "SELECT kind, name FROM conversations WHERE id = ?1",
                [conversation.0],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok(kind_from_parts(&kind, name))
        })
        .await
    }

    /// The hub's chat contract as stored by [`Store::set_hub_methods`] (JSON written by
    /// `hubbub_client::methods::HubMethods`); `None` when none was chosen or found yet (auto).
    pub async fn hub_methods(&self, hub: HubId) -> Result<Option<String>> {
        self.call(move |c| {
            Ok(
                c.query_row("SELECT methods FROM hubs WHERE id = ?1", [hub.0], |r| {
                    r.get(0)
                })?,
            )
        })
        .await
    }

    /// Records the hub's chat contract (`None`: back to auto-detection). The store keeps it as
    /// an opaque JSON text; the chat layer gives it meaning.
    pub async fn set_hub_methods(&self, hub: HubId, methods: Option<&str>) -> Result<()> {
        let methods = methods.map(str::to_owned);
        self.call(move |c| {
            c.execute(
                "UPDATE hubs SET methods = ?2 WHERE id = ?1",
                params![hub.0, methods],
            )?;
            Ok(())
        })
        .await
    }

    /// Records the protocol family the hub is forced to (`core` or `classic`; `None`: auto) and
    /// the classic hub name (`None`: the default). The store keeps both as given; the core
    /// checks them and gives them meaning. Read back in [`Hub::family`] and [`Hub::hub_name`].
    pub async fn set_hub_family(
        &self,
        hub: HubId,
        family: Option<&str>,
        hub_name: Option<&str>,
    ) -> Result<()> {
        let (family, hub_name) = (family.map(str::to_owned), hub_name.map(str::to_owned));
        self.call(move |c| {
            c.execute(
                "UPDATE hubs SET family = ?2, hub_name = ?3 WHERE id = ?1",
                params![hub.0, family, hub_name],
            )?;
            Ok(())
        })
        .await
    }

    /// Records the certificates (PEM) trusted besides the system's roots for the hub's TLS
    /// (`None`: the system's roots only). The store keeps the text as given; the core checks
    /// it. Read back in [`Hub::ca_pem`].
    pub async fn set_hub_ca(&self, hub: HubId, ca_pem: Option<&str>) -> Result<()> {
        let ca_pem = ca_pem.map(str::to_owned);
        self.call(move |c| {
            c.execute(
                "UPDATE hubs SET ca_pem = ?2 WHERE id = ?1",
                params![hub.0, ca_pem],
            )?;
            Ok(())
        })
        .await
    }

    /// Where this client is in the hub's history: the epoch and the last message number seen.
    pub async fn history_cursor(&self, hub: HubId) -> Result<(Option<String>, u64)> {
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT history_epoch, history_seq FROM hubs WHERE id = ?1",
                [hub.0],
                |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)),
            )?)
        })
        .await
    }

    /// Records where this client is in the hub's history.
    pub async fn set_history_cursor(&self, hub: HubId, epoch: &str, seq: u64) -> Result<()> {
        let epoch = epoch.to_owned();
        self.call(move |c| {
            c.execute(
                "UPDATE hubs SET history_epoch = ?2, history_seq = ?3 WHERE id = ?1",
                params![hub.0, epoch, seq as i64],
            )?;
            Ok(())
        })
        .await
    }

    /// Where this client is in its inbox on the hub (direct messages): the epoch and the last
    /// number seen.
    pub async fn inbox_cursor(&self, hub: HubId) -> Result<(Option<String>, u64)> {
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT inbox_epoch, inbox_seq FROM hubs WHERE id = ?1",
                [hub.0],
                |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)),
            )?)
        })
        .await
    }

    /// Records where this client is in its inbox.
    pub async fn set_inbox_cursor(&self, hub: HubId, epoch: &str, seq: u64) -> Result<()> {
        let epoch = epoch.to_owned();
        self.call(move |c| {
            c.execute(
                "UPDATE hubs SET inbox_epoch = ?2, inbox_seq = ?3 WHERE id = ?1",
                params![hub.0, epoch, seq as i64],
            )?;
            Ok(())
        })
        .await
    }

    /// Where this client is in a conversation's history on the hub (a room's): the epoch and
    /// the last number seen.
    pub async fn conversation_cursor(
        &self,
        conversation: ConversationId,
    ) -> Result<(Option<String>, u64)> {
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT hub_epoch, hub_seq FROM conversations WHERE id = ?1",
                [conversation.0],
                |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)),
            )?)
        })
        .await
    }

    /// Records where this client is in a conversation's history on the hub.
    pub async fn set_conversation_cursor(
        &self,
        conversation: ConversationId,
        epoch: &str,
        seq: u64,
    ) -> Result<()> {
        let epoch = epoch.to_owned();
        self.call(move |c| {
            c.execute(
                "UPDATE conversations SET hub_epoch = ?2, hub_seq = ?3 WHERE id = ?1",
                params![conversation.0, epoch, seq as i64],
            )?;
            Ok(())
        })
        .await
    }

    /// The conversation for `kind` on `hub`, created on first use.
    pub async fn conversation(&self, hub: HubId, kind: ConversationKind) -> Result<ConversationId> {
        self.call(move |c| {
            let (k, name) = kind.parts();
            c.execute(
                "INSERT INTO conversations (hub_id, kind, name) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![hub.0, k, name],
            )?;
            Ok(ConversationId(c.query_row(
                "SELECT id FROM conversations WHERE hub_id = ?1 AND kind = ?2 AND name = ?3",
                params![hub.0, k, name],
                |r| r.get(0),
            )?))
        })
        .await
    }

    /// The outbox's first step: writes an outgoing message as `sending`. Writing the same id
    /// again returns the stored message unchanged (a retry never makes a second row).
    pub async fn enqueue(
        &self,
        conversation: ConversationId,
        msg_id: &str,
        sender: &str,
        body: &str,
    ) -> Result<Message> {
        let (msg_id, sender, body) = (msg_id.to_owned(), sender.to_owned(), body.to_owned());
        self.call(move |c| {
            c.execute(
                "INSERT INTO messages (conversation_id, msg_id, sender, body, outgoing, state, created_at)
                 VALUES (?1, ?2, ?3, ?4, 1, 'sending', ?5) ON CONFLICT DO NOTHING",
                params![conversation.0, msg_id, sender, body, now_ms()],
            )?;
            get_message(c, conversation, &msg_id)?.ok_or(Error::NotFound(msg_id))
        })
        .await
    }

    /// Outgoing messages still `sending` on a hub, in the order they were written (per
    /// conversation that is the order typed).
    pub async fn outbox(&self, hub: HubId) -> Result<Vec<Message>> {
        self.call(move |c| {
            let sql = format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE state = 'sending' AND conversation_id IN
                 (SELECT id FROM conversations WHERE hub_id = ?1) ORDER BY seq"
            );
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map([hub.0], message_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// The hub completed the message.
    pub async fn mark_sent(&self, conversation: ConversationId, msg_id: &str) -> Result<Message> {
        self.set_state(conversation, msg_id, "sent", None).await
    }

    /// The hub refused the message, with its reason.
    pub async fn mark_failed(
        &self,
        conversation: ConversationId,
        msg_id: &str,
        reason: &str,
    ) -> Result<Message> {
        self.set_state(conversation, msg_id, "failed", Some(reason.to_owned()))
            .await
    }

    /// Puts a failed message back in the outbox.
    pub async fn retry(&self, conversation: ConversationId, msg_id: &str) -> Result<Message> {
        self.set_state(conversation, msg_id, "sending", None).await
    }

    async fn set_state(
        &self,
        conversation: ConversationId,
        msg_id: &str,
        state: &'static str,
        error: Option<String>,
    ) -> Result<Message> {
        let msg_id = msg_id.to_owned();
        self.call(move |c| {
            let sent_at = (state == "sent").then(now_ms);
            let n = c.execute(
                "UPDATE messages SET state = ?3, error = ?4, sent_at = COALESCE(?5, sent_at)
                 WHERE conversation_id = ?1 AND msg_id = ?2 AND outgoing = 1",
                params![conversation.0, msg_id, state, error, sent_at],
            )?;
            if n == 0 {
                return Err(Error::NotFound(msg_id));
            }
            get_message(c, conversation, &msg_id)?.ok_or(Error::NotFound(msg_id))
        })
        .await
    }

    /// Deletes a failed (or any outgoing) message.
    pub async fn discard(&self, conversation: ConversationId, msg_id: &str) -> Result<()> {
        let msg_id = msg_id.to_owned();
        self.call(move |c| {
            let n = c.execute(
                "DELETE FROM messages WHERE conversation_id = ?1 AND msg_id = ?2 AND outgoing = 1",
                params![conversation.0, msg_id],
            )?;
            if n == 0 {
                Err(Error::NotFound(msg_id))
            } else {
                Ok(())
            }
        })
        .await
    }

    /// Stores a received message once: `Some` the first time its id is seen in the
    /// conversation, `None` for a repeat. A copy of this user's own outgoing message coming back
    /// from the hub is a repeat, and completes it (`sent`) if it was still `sending`.
    pub async fn receive(
        &self,
        conversation: ConversationId,
        msg_id: &str,
        sender: &str,
        body: &str,
    ) -> Result<Option<Message>> {
        let (msg_id, sender, body) = (msg_id.to_owned(), sender.to_owned(), body.to_owned());
        self.call(move |c| {
            let now = now_ms();
            let inserted = c.execute(
                "INSERT INTO messages (conversation_id, msg_id, sender, body, outgoing, state, created_at, received_at)
                 VALUES (?1, ?2, ?3, ?4, 0, 'received', ?5, ?5) ON CONFLICT DO NOTHING",
                params![conversation.0, msg_id, sender, body, now],
            )?;
            if inserted == 1 {
                return get_message(c, conversation, &msg_id);
            }
            c.execute(
                "UPDATE messages SET state = 'sent', sent_at = ?3
                 WHERE conversation_id = ?1 AND msg_id = ?2 AND outgoing = 1 AND state = 'sending'",
                params![conversation.0, msg_id, now],
            )?;
            Ok(None)
        })
        .await
    }

    /// One message of a conversation, by its id.
    pub async fn message(
        &self,
        conversation: ConversationId,
        msg_id: &str,
    ) -> Result<Option<Message>> {
        let msg_id = msg_id.to_owned();
        self.call(move |c| get_message(c, conversation, &msg_id))
            .await
    }

    /// The newest `n` messages of a conversation, oldest first.
    pub async fn newest(&self, conversation: ConversationId, n: u32) -> Result<Vec<Message>> {
        self.page(conversation, i64::MAX, n).await
    }

    /// The `n` messages before `seq` in a conversation, oldest first. Paging by `seq` is stable
    /// while new messages arrive (they only ever get larger `seq`s).
    pub async fn before(
        &self,
        conversation: ConversationId,
        seq: i64,
        n: u32,
    ) -> Result<Vec<Message>> {
        self.page(conversation, seq, n).await
    }

    async fn page(
        &self,
        conversation: ConversationId,
        before: i64,
        n: u32,
    ) -> Result<Vec<Message>> {
        self.call(move |c| {
            let sql = format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let mut rows: Vec<Message> =
                stmt.query_map(params![conversation.0, before, n], message_from_row)?.collect::<rusqlite::Result<_>>()?;
            rows.reverse();
            Ok(rows)
        })
        .await
    }

    /// Marks a conversation read up to and including `seq`.
    pub async fn mark_read(&self, conversation: ConversationId, seq: i64) -> Result<()> {
        self.call(move |c| {
            c.execute(
                "UPDATE conversations SET last_read_seq = MAX(last_read_seq, ?2) WHERE id = ?1",
                params![conversation.0, seq],
            )?;
            Ok(())
        })
        .await
    }

    /// Unread messages in one conversation (from others, after the read mark).
    pub async fn unread(&self, conversation: ConversationId) -> Result<u64> {
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT COUNT(m.seq) FROM conversations c JOIN messages m
                   ON m.conversation_id = c.id AND m.seq > c.last_read_seq AND m.outgoing = 0
                 WHERE c.id = ?1",
                [conversation.0],
                |r| r.get::<_, i64>(0),
            )? as u64)
        })
        .await
    }

    /// Unread received messages per conversation of a hub (conversations with none are left out).
    pub async fn unread_counts(&self, hub: HubId) -> Result<Vec<(ConversationId, u64)>> {
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT c.id, COUNT(m.seq) FROM conversations c JOIN messages m
                   ON m.conversation_id = c.id AND m.seq > c.last_read_seq AND m.outgoing = 0
                 WHERE c.hub_id = ?1 GROUP BY c.id ORDER BY c.id",
            )?;
            let rows = stmt.query_map([hub.0], |r| {
                Ok((ConversationId(r.get(0)?), r.get::<_, i64>(1)? as u64))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// Messages whose text or sender contain every word of `query` (any language; accents are
    /// ignored), newest first. The query is words, not FTS syntax: quotes and operators in it
    /// are searched for literally.
    pub async fn search(
        &self,
        hub: Option<HubId>,
        query: &str,
        limit: u32,
    ) -> Result<Vec<Message>> {
        let terms: Vec<String> = query
            .split_whitespace()
            .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
            .collect();
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let expression = terms.join(" ");
        self.call(move |c| {
            let columns = MESSAGE_COLUMNS.split(", ").map(|col| format!("m.{col}")).collect::<Vec<_>>().join(", ");
            let sql = format!(
                "SELECT {columns} FROM messages_fts f JOIN messages m ON m.seq = f.rowid
                 WHERE messages_fts MATCH ?1
                   AND (?2 IS NULL OR m.conversation_id IN (SELECT id FROM conversations WHERE hub_id = ?2))
                 ORDER BY f.rowid DESC LIMIT ?3"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![expression, hub.map(|h| h.0), limit], message_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// Deletes messages older than `max_age` and, per conversation, all but the newest
    /// `max_per_conversation`. Messages still in the outbox are always kept. Returns how many
    /// were deleted.
    pub async fn retain(
        &self,
        max_age: Option<Duration>,
        max_per_conversation: Option<u32>,
    ) -> Result<u64> {
        self.call(move |c| {
            let tx = c.transaction()?;
            let mut deleted = 0;
            if let Some(age) = max_age {
                let cutoff = now_ms() - age.as_millis() as i64;
                deleted += tx.execute("DELETE FROM messages WHERE created_at < ?1 AND state != 'sending'", [cutoff])?;
            }
            if let Some(keep) = max_per_conversation {
                deleted += tx.execute(
                    "DELETE FROM messages WHERE state != 'sending' AND seq IN (
                        SELECT seq FROM (SELECT seq, ROW_NUMBER() OVER (PARTITION BY conversation_id ORDER BY seq DESC) AS rank
                                         FROM messages) WHERE rank > ?1)",
                    [keep],
                )?;
            }
            tx.commit()?;
            Ok(deleted as u64)
        })
        .await
    }
}

fn get_message(
    c: &Connection,
    conversation: ConversationId,
    msg_id: &str,
) -> Result<Option<Message>> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ?1 AND msg_id = ?2"
    );
    Ok(c.prepare_cached(&sql)?
        .query_row(params![conversation.0, msg_id], message_from_row)
        .optional()?)
}

/// The schema version this build writes.
pub fn schema_version() -> u32 {
    schema::MIGRATIONS.len() as u32
}
