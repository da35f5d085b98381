//! The chat hub's message histories, numbered, so clients that missed messages (they connected
//! late, or the hub restarted) catch up: one per scope (broadcasts, `History`), one per room
//! (`RoomHistory`) and one per user (their inbox of direct messages, sent and received,
//! `Inbox`). Each is a *key* here; the chat hub names them.
//!
//! In memory by default (the newest [`MEMORY_CAPACITY`] messages per key, numbered afresh
//! each time the hub starts: a new *epoch*). With a file, SQLite keeps it across restarts (one
//! epoch for the file's life), and message ids stay deduplicated across restarts too. A message
//! is recorded before it is delivered or completed: nothing is acknowledged that a later
//! call cannot return.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::OptionalExtension;

/// Messages kept per scope in memory.
pub const MEMORY_CAPACITY: usize = 10_000;

/// One recorded message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// Its number in the scope (per epoch).
    pub seq: u64,
    /// Its id (the sender's, or one the hub made).
    pub id: String,
    /// The display name it was sent with.
    pub name: String,
    /// The text.
    pub message: String,
    /// On a direct message (an inbox entry): the user it was sent to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// What recording a message gave it: its number in its history and its id (the sender's, or
/// one the hub made), which its delivery carries (`hubbub-seq`, `hubbub-msg-id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recorded {
    pub(crate) seq: u64,
    pub(crate) id: String,
}

impl From<Entry> for Recorded {
    fn from(entry: Entry) -> Self {
        Self {
            seq: entry.seq,
            id: entry.id,
        }
    }
}

/// Why history could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// The storage failed (SQLite's reason).
    #[error("chat history: {0}")]
    Storage(String),
    /// The message id is another sender's (each sender's ids are its own: a message never
    /// takes the id of another sender's message, so receivers that drop repeats by id never
    /// drop it for someone else's).
    #[error("The message id '{0}' belongs to another sender's message: choose another id.")]
    IdTaken(String),
}

impl From<rusqlite::Error> for HistoryError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Storage(e.to_string())
    }
}

/// What marks a sender's own copy of a direct message in its inbox: `{user}` + this.
const SENT_COPY: &str = "\u{1}sent";

/// The sender recorded on a sender's own copy of a direct message.
pub(crate) fn sent_copy(user: &str) -> String {
    format!("{user}{SENT_COPY}")
}

/// The sender an id belongs to: the user, without the suffix that marks a sender's own copy of
/// a direct message ([`sent_copy`]).
pub(crate) fn owner(user: &str) -> &str {
    user.strip_suffix(SENT_COPY).unwrap_or(user)
}

/// The in-memory histories, and who sent each id they hold (with how many entries hold it).
/// Ids the hub made (`h-`, [`random_id`]) are not in `owners`: no one else can hold them
/// (clients may not send such ids), so there is nothing to check them against.
#[derive(Default)]
struct Memory {
    logs: HashMap<String, Log>,
    owners: HashMap<String, (String, usize)>,
    /// Histories whose owner has connected ([`ChatHistory::claim`]).
    claimed: std::collections::HashSet<String>,
}

/// The history of every scope of a chat hub. Cheap to clone.
#[derive(Clone)]
pub struct ChatHistory {
    /// Shared by every clone (the chat hub clones its history per message).
    epoch: Arc<str>,
    backend: Arc<Backend>,
    /// Messages kept now (every scope, room and inbox): `hubbub_history_messages`.
    pub(crate) size: prometheus_client::metrics::gauge::Gauge,
}

impl std::fmt::Debug for ChatHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatHistory")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// One in-memory history.
struct Log {
    entries: VecDeque<Entry>,
    /// When it last took a message (for [`ChatHistory::expire_unclaimed`]).
    touched: std::time::Instant,
}

/// Whether `owners` keeps track of `id`: not for an id the hub made ([`Memory`]).
fn owned(id: &str) -> bool {
    !id.starts_with(crate::chat::HUB_ID_PREFIX)
}

/// One entry holding `id` went: `owners` forgets the id with its last entry.
fn release(owners: &mut HashMap<String, (String, usize)>, id: &str) {
    if !owned(id) {
        return;
    }
    if let Some((_, held)) = owners.get_mut(id) {
        *held -= 1;
        if *held == 0 {
            owners.remove(id);
        }
    }
}

enum Backend {
    Memory(Mutex<Memory>),
    Sqlite(Mutex<rusqlite::Connection>),
}

/// A fresh message id, for a message its sender gave none: `h-` and 128 random bits in hex
/// (no one can predict it; clients may not use ids starting with `h-`). The bits come from the
/// thread's CSPRNG (`rand::rng()`: ChaCha12, seeded and reseeded from the OS), not from a
/// system call per message.
pub(crate) fn random_id() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes: [u8; 16] = rand::random();
    let mut id = String::with_capacity(2 + 32);
    id.push_str("h-");
    for b in bytes {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    id
}

fn random_epoch() -> String {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl ChatHistory {
    /// History in memory: lost when the hub stops.
    pub fn in_memory() -> Self {
        Self {
            epoch: random_epoch().into(),
            backend: Arc::new(Backend::Memory(Mutex::default())),
            size: Default::default(),
        }
    }

    /// History in a SQLite file, kept across restarts.
    pub fn open(path: &Path) -> Result<Self, HistoryError> {
        let conn = rusqlite::Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS history (
                 rowid_   INTEGER PRIMARY KEY AUTOINCREMENT,
                 scope    TEXT NOT NULL,
                 seq      INTEGER NOT NULL,
                 user     TEXT NOT NULL,
                 id       TEXT NOT NULL,
                 name     TEXT NOT NULL,
                 message  TEXT NOT NULL,
                 at       INTEGER NOT NULL,
                 UNIQUE (user, id),
                 UNIQUE (scope, seq)
             );",
        )?;
        // Histories whose owner has connected: they never expire (`expire_unclaimed`).
        conn.execute(
            "CREATE TABLE IF NOT EXISTS claimed (scope TEXT PRIMARY KEY)",
            [],
        )?;
        // Who sent an id is looked up by id alone (ids are their sender's).
        conn.execute(
            "CREATE INDEX IF NOT EXISTS history_by_id ON history (id)",
            [],
        )?;
        // Added with inboxes (direct messages): files from before have no such column.
        let has_to = conn
            .prepare("SELECT 1 FROM pragma_table_info('history') WHERE name = 'recipient'")?
            .exists([])?;
        if !has_to {
            conn.execute("ALTER TABLE history ADD COLUMN recipient TEXT", [])?;
        }
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?1)",
            [random_epoch()],
        )?;
        let epoch: String =
            conn.query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| {
                r.get(0)
            })?;
        let count: i64 = conn.query_row("SELECT count(*) FROM history", [], |r| r.get(0))?;
        let size = prometheus_client::metrics::gauge::Gauge::default();
        size.set(count);
        Ok(Self {
            epoch: epoch.into(),
            backend: Arc::new(Backend::Sqlite(Mutex::new(conn))),
            size,
        })
    }

    /// The epoch: numbers are comparable only within one epoch.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Records a message; `None` when `user` already sent `id` (a repeat, not to deliver again).
    /// `to`: on a direct message (an inbox entry), the user it went to. Persistent history is
    /// written through blocking I/O: call from a blocking context.
    pub(crate) fn append(
        &self,
        scope: &str,
        user: &str,
        id: Option<&str>,
        name: &str,
        message: &str,
        to: Option<&str>,
    ) -> Result<Option<Recorded>, HistoryError> {
        match &*self.backend {
            Backend::Memory(memory) => {
                let mut memory = memory.lock().unwrap_or_else(|e| e.into_inner());
                let Memory { logs, owners, .. } = &mut *memory;
                let id = match id {
                    Some(id) => {
                        let sender = owner(user);
                        match owners.get_mut(id) {
                            Some((other, _)) if other != sender => {
                                return Err(HistoryError::IdTaken(id.to_owned()));
                            }
                            Some((_, held)) => *held += 1,
                            None if owned(id) => {
                                owners.insert(id.to_owned(), (sender.to_owned(), 1));
                            }
                            None => {}
                        }
                        id.to_owned()
                    }
                    None => random_id(),
                };
                let now = std::time::Instant::now();
                // Looked up once; the scope's name is copied only for a new history.
                let log = match logs.get_mut(scope) {
                    Some(log) => log,
                    None => logs.entry(scope.to_owned()).or_insert(Log {
                        entries: VecDeque::new(),
                        touched: now,
                    }),
                };
                log.touched = now;
                let seq = log.entries.back().map_or(1, |e| e.seq + 1);
                if log.entries.len() >= MEMORY_CAPACITY {
                    if let Some(old) = log.entries.pop_front() {
                        self.size.dec();
                        release(owners, &old.id);
                    }
                }
                let recorded = Recorded {
                    seq,
                    id: id.clone(),
                };
                log.entries.push_back(Entry {
                    seq,
                    id,
                    name: name.to_owned(),
                    message: message.to_owned(),
                    to: to.map(str::to_owned),
                });
                self.size.inc();
                Ok(Some(recorded))
            }
            Backend::Sqlite(conn) => {
                let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                // Without an id the hub makes one nobody else can have.
                let provisional = id.map_or_else(random_id, str::to_owned);
                let sender = owner(user);
                // One transaction, and statements parsed once per connection: each statement
                // in a transaction of its own, parsed anew, cost three rounds of the file's
                // locks and writes per message (issue 19).
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let taken: Option<String> = tx
                    .prepare_cached(
                        "SELECT user FROM history WHERE id = ?1 AND user <> ?2 AND user <> ?3 LIMIT 1",
                    )?
                    .query_row(rusqlite::params![provisional, sender, sent_copy(sender)], |r| {
                        r.get(0)
                    })
                    .optional()?;
                if taken.is_some() {
                    return Err(HistoryError::IdTaken(provisional));
                }
                // Numbers are contiguous per scope, so a client can tell when it missed one.
                let seq: i64 = tx
                    .prepare_cached(
                        "SELECT COALESCE(MAX(seq), 0) + 1 FROM history WHERE scope = ?1",
                    )?
                    .query_row([scope], |r| r.get(0))?;
                let inserted = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO history (scope, seq, user, id, name, message, at, recipient) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )?
                    .execute(rusqlite::params![scope, seq, user, provisional, name, message, now, to])?;
                tx.commit()?;
                if inserted == 0 {
                    return Ok(None);
                }
                self.size.inc();
                Ok(Some(Recorded {
                    seq: seq as u64,
                    id: provisional,
                }))
            }
        }
    }

    /// Messages of `scope` after `after`, oldest first, at most `limit`.
    pub(crate) fn since(
        &self,
        scope: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Entry>, HistoryError> {
        match &*self.backend {
            Backend::Memory(memory) => {
                let memory = memory.lock().unwrap_or_else(|e| e.into_inner());
                Ok(memory
                    .logs
                    .get(scope)
                    .map(|log| {
                        log.entries
                            .iter()
                            .filter(|e| e.seq > after)
                            .take(limit)
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default())
            }
            Backend::Sqlite(conn) => {
                let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
                let mut stmt = conn.prepare_cached(
                    "SELECT seq, id, name, message, recipient FROM history WHERE scope = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )?;
                let rows =
                    stmt.query_map(rusqlite::params![scope, after as i64, limit as i64], |r| {
                        Ok(Entry {
                            seq: r.get::<_, i64>(0)? as u64,
                            id: r.get(1)?,
                            name: r.get(2)?,
                            message: r.get(3)?,
                            to: r.get(4)?,
                        })
                    })?;
                Ok(rows.collect::<Result<_, _>>()?)
            }
        }
    }

    /// Whether the history `scope` holds any message.
    pub(crate) fn exists(&self, scope: &str) -> Result<bool, HistoryError> {
        match &*self.backend {
            Backend::Memory(memory) => Ok(memory
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .logs
                .contains_key(scope)),
            Backend::Sqlite(conn) => {
                let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
                Ok(conn
                    .prepare_cached("SELECT 1 FROM history WHERE scope = ?1 LIMIT 1")?
                    .exists([scope])?)
            }
        }
    }

    /// Marks the history `scope` as owned (its user connected): it never expires.
    pub(crate) fn claim(&self, scope: &str) -> Result<(), HistoryError> {
        match &*self.backend {
            Backend::Memory(memory) => {
                memory
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .claimed
                    .insert(scope.to_owned());
            }
            Backend::Sqlite(conn) => {
                let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
                conn.prepare_cached("INSERT OR IGNORE INTO claimed (scope) VALUES (?1)")?
                    .execute([scope])?;
            }
        }
        Ok(())
    }

    /// Deletes the histories whose key starts with `prefix`, that no one claimed, and that took
    /// no message for `ttl`: what was kept for a name that never connected. Returns how many
    /// messages went.
    pub(crate) fn expire_unclaimed(
        &self,
        prefix: &str,
        ttl: std::time::Duration,
    ) -> Result<usize, HistoryError> {
        let removed = match &*self.backend {
            Backend::Memory(memory) => {
                let mut memory = memory.lock().unwrap_or_else(|e| e.into_inner());
                let Memory {
                    logs,
                    owners,
                    claimed,
                } = &mut *memory;
                let expired: Vec<String> = logs
                    .iter()
                    .filter(|(key, log)| {
                        key.starts_with(prefix)
                            && !claimed.contains(*key)
                            && log.touched.elapsed() >= ttl
                    })
                    .map(|(key, _)| key.clone())
                    .collect();
                let mut removed = 0;
                for key in expired {
                    for old in logs.remove(&key).map(|log| log.entries).unwrap_or_default() {
                        removed += 1;
                        release(owners, &old.id);
                    }
                }
                removed
            }
            Backend::Sqlite(conn) => {
                let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
                let before = std::time::SystemTime::now()
                    .checked_sub(ttl)
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_millis() as i64);
                // `prefix` is the chat hub's own (`inbox:`), no LIKE wildcard in it.
                conn.execute(
                    "DELETE FROM history WHERE scope IN (
                         SELECT scope FROM history
                         WHERE scope >= ?1 AND scope < ?1 || char(1114111)
                           AND scope NOT IN (SELECT scope FROM claimed)
                         GROUP BY scope HAVING MAX(at) < ?2)",
                    rusqlite::params![prefix, before],
                )?
            }
        };
        self.size.dec_by(removed as i64);
        Ok(removed)
    }

    /// Whether writes block (persistent history), so callers move them off the async threads.
    pub(crate) fn is_persistent(&self) -> bool {
        matches!(&*self.backend, Backend::Sqlite(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners_held(history: &ChatHistory) -> usize {
        match &*history.backend {
            Backend::Memory(memory) => memory.lock().unwrap().owners.len(),
            Backend::Sqlite(_) => unreachable!(),
        }
    }

    /// In memory: a sender's id is theirs while a message of theirs holds it (another sender
    /// is refused it, the same sender may use it again); it is free again once the last of
    /// those messages has left the history; ids the hub made are numbered and kept, but not
    /// tracked (no one else can send them).
    #[test]
    fn in_memory_ids_belong_to_their_sender_until_their_messages_leave() {
        let history = ChatHistory::in_memory();
        let first = history
            .append("scope:a", "ann", Some("m1"), "Ann", "one", None)
            .unwrap()
            .unwrap();
        assert_eq!(
            first,
            Recorded {
                seq: 1,
                id: "m1".to_owned()
            }
        );
        assert!(matches!(
            history.append("scope:b", "bob", Some("m1"), "Bob", "mine?", None),
            Err(HistoryError::IdTaken(id)) if id == "m1"
        ));
        // The same sender again (in memory, repeats are caught before: see chat's window).
        let again = history
            .append("scope:a", "ann", Some("m1"), "Ann", "one", None)
            .unwrap()
            .unwrap();
        assert_eq!(again.seq, 2);
        let made = history
            .append("scope:a", "ann", None, "Ann", "two", None)
            .unwrap()
            .unwrap();
        assert_eq!(made.seq, 3);
        assert!(
            made.id.starts_with(crate::chat::HUB_ID_PREFIX),
            "{}",
            made.id
        );
        assert_eq!(
            owners_held(&history),
            1,
            "only the sender's own id is tracked"
        );
        let kept = history.since("scope:a", 0, 10).unwrap();
        let ids: Vec<_> = kept.iter().map(|e| (e.seq, e.id.as_str())).collect();
        assert_eq!(ids, [(1, "m1"), (2, "m1"), (3, made.id.as_str())]);
        // Push both messages holding m1 out of scope:a's history: bob may use it then.
        for i in 0..MEMORY_CAPACITY - 2 {
            history
                .append("scope:a", "ann", None, "Ann", &i.to_string(), None)
                .unwrap()
                .unwrap();
        }
        assert!(
            history
                .append("scope:b", "bob", Some("m1"), "Bob", "mine?", None)
                .is_err(),
            "one message still holds m1"
        );
        history
            .append("scope:a", "ann", None, "Ann", "last", None)
            .unwrap()
            .unwrap();
        assert_eq!(owners_held(&history), 0);
        let now_bobs = history
            .append("scope:b", "bob", Some("m1"), "Bob", "mine", None)
            .unwrap()
            .unwrap();
        assert_eq!(
            now_bobs,
            Recorded {
                seq: 1,
                id: "m1".to_owned()
            }
        );
        assert_eq!(history.since("scope:a", 0, 1).unwrap()[0].seq, 3);
    }

    /// A history file written before inboxes existed opens, keeps its messages, and takes
    /// direct messages with their recipient from then on.
    #[test]
    fn a_file_from_before_inboxes_opens_and_takes_recipients() {
        let dir = std::env::temp_dir().join(format!("hubbub-history-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("old.sqlite3");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO meta VALUES ('epoch', 'e1');
                 CREATE TABLE history (
                     rowid_ INTEGER PRIMARY KEY AUTOINCREMENT, scope TEXT NOT NULL,
                     seq INTEGER NOT NULL, user TEXT NOT NULL, id TEXT NOT NULL,
                     name TEXT NOT NULL, message TEXT NOT NULL, at INTEGER NOT NULL,
                     UNIQUE (user, id), UNIQUE (scope, seq));
                 INSERT INTO history (scope, seq, user, id, name, message, at)
                     VALUES ('scope:', 1, 'ann', 'a1', 'Ann', 'old', 0);",
            )
            .unwrap();
        }
        let history = ChatHistory::open(&path).unwrap();
        assert_eq!(history.epoch(), "e1");
        let old = history.since("scope:", 0, 10).unwrap();
        assert_eq!(old.len(), 1);
        assert_eq!(
            (old[0].message.as_str(), old[0].to.as_deref()),
            ("old", None)
        );
        let dm = history
            .append(
                "inbox:\u{1f}bob",
                "ann",
                Some("d1"),
                "ann",
                "hi",
                Some("bob"),
            )
            .unwrap()
            .unwrap();
        assert_eq!(dm.seq, 1);
        // The same sender and id again is a repeat.
        assert!(
            history
                .append(
                    "inbox:\u{1f}bob",
                    "ann",
                    Some("d1"),
                    "ann",
                    "hi",
                    Some("bob")
                )
                .unwrap()
                .is_none()
        );
        drop(history);
        let reopened = ChatHistory::open(&path).unwrap();
        let inbox = reopened.since("inbox:\u{1f}bob", 0, 10).unwrap();
        assert_eq!(inbox.len(), 1);
        assert_eq!(Recorded::from(inbox[0].clone()), dm);
        assert_eq!(
            (inbox[0].name.as_str(), inbox[0].message.as_str()),
            ("ann", "hi")
        );
        assert_eq!(inbox[0].to.as_deref(), Some("bob"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
