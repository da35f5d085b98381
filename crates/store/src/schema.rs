//! The schema, as an ordered list of migrations. `PRAGMA user_version` records how many were
//! applied; each runs in its own transaction. Never edit a migration that shipped: add one.

/// Every migration, oldest first.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: hubs, conversations, messages, full-text search.
    r#"
    CREATE TABLE hubs (
        id            INTEGER PRIMARY KEY,
        url           TEXT NOT NULL UNIQUE,
        display_name  TEXT NOT NULL,
        protocol      TEXT NOT NULL DEFAULT 'json',
        transport     TEXT,
        created_at    INTEGER NOT NULL
    );
    CREATE TABLE conversations (
        id             INTEGER PRIMARY KEY,
        hub_id         INTEGER NOT NULL REFERENCES hubs(id) ON DELETE CASCADE,
        kind           TEXT NOT NULL CHECK (kind IN ('broadcast', 'room', 'direct')),
        name           TEXT NOT NULL DEFAULT '',
        last_read_seq  INTEGER NOT NULL DEFAULT 0,
        UNIQUE (hub_id, kind, name)
    );
    CREATE TABLE messages (
        seq              INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id  INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        msg_id           TEXT NOT NULL,
        sender           TEXT NOT NULL,
        body             TEXT NOT NULL,
        outgoing         INTEGER NOT NULL CHECK (outgoing IN (0, 1)),
        state            TEXT NOT NULL CHECK (state IN ('sending', 'sent', 'failed', 'received')),
        error            TEXT,
        created_at       INTEGER NOT NULL,
        sent_at          INTEGER,
        received_at      INTEGER,
        UNIQUE (conversation_id, msg_id)
    );
    CREATE INDEX messages_by_conversation ON messages (conversation_id, seq);
    CREATE INDEX messages_outbox ON messages (conversation_id, seq) WHERE state = 'sending';
    CREATE VIRTUAL TABLE messages_fts USING fts5 (
        body, sender,
        content = 'messages', content_rowid = 'seq',
        tokenize = 'unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts (rowid, body, sender) VALUES (new.seq, new.body, new.sender);
    END;
    CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, body, sender)
            VALUES ('delete', old.seq, old.body, old.sender);
    END;
    CREATE TRIGGER messages_fts_update AFTER UPDATE OF body, sender ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, body, sender)
            VALUES ('delete', old.seq, old.body, old.sender);
        INSERT INTO messages_fts (rowid, body, sender) VALUES (new.seq, new.body, new.sender);
    END;
    "#,
    // 2: where the client is in each hub's history (for catching up after missing messages).
    r#"
    ALTER TABLE hubs ADD COLUMN history_epoch TEXT;
    ALTER TABLE hubs ADD COLUMN history_seq INTEGER NOT NULL DEFAULT 0;
    "#,
    // 3: for the app's accounts: whether the hub's token is in the OS keychain (the token itself
    // never is in this database), and rooms the user left (kept for their history, not rejoined).
    r#"
    ALTER TABLE hubs ADD COLUMN token_in_keychain INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE conversations ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
    "#,
    // 4: where the client is in its inbox on each hub (direct messages, sent and received), and
    // in each room's history.
    r#"
    ALTER TABLE hubs ADD COLUMN inbox_epoch TEXT;
    ALTER TABLE hubs ADD COLUMN inbox_seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE conversations ADD COLUMN hub_epoch TEXT;
    ALTER TABLE conversations ADD COLUMN hub_seq INTEGER NOT NULL DEFAULT 0;
    "#,
    // 5: the hub's chat contract (which methods send and deliver messages, and where the sender
    // and the text are), as JSON written by `hubbub_client::methods`; NULL means auto-detect.
    r#"
    ALTER TABLE hubs ADD COLUMN methods TEXT;
    "#,
    // 6: the protocol family the account speaks (`core` or `classic`; NULL means decided by the
    // negotiate response) and the hub a classic endpoint is asked for (NULL: `chatHub`).
    r#"
    ALTER TABLE hubs ADD COLUMN family TEXT;
    ALTER TABLE hubs ADD COLUMN hub_name TEXT;
    "#,
    // 7: certificates (PEM) the account trusts besides the system's roots for its hub's
    // `https://`/`wss://`: a private CA. NULL: the system's roots only.
    r#"
    ALTER TABLE hubs ADD COLUMN ca_pem TEXT;
    "#,
];
