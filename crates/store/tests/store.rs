//! The store over real SQLite files.

use std::time::Duration;

use hubbub_store::*;

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hubbub-store-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("profile.sqlite3")
}

async fn setup(name: &str) -> (Store, HubId, ConversationId) {
    let store = Store::open(temp_db(name)).await.unwrap();
    let hub = store
        .upsert_hub("http://127.0.0.1:5000/chathub", "ann", "json", None)
        .await
        .unwrap();
    let conv = store
        .conversation(hub, ConversationKind::Broadcast)
        .await
        .unwrap();
    (store, hub, conv)
}

#[tokio::test]
async fn wal_mode_and_schema_version() {
    let (store, _, _) = setup("wal").await;
    let (mode, version): (String, u32) = store
        .call(|c| {
            Ok((
                c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?,
                c.query_row("PRAGMA user_version", [], |r| r.get(0))?,
            ))
        })
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(version, schema_version());
}

#[tokio::test]
async fn every_migration_applies_to_the_previous_schema_and_keeps_data() {
    let path = temp_db("migrations");
    // Reopening an up-to-date file is a no-op that keeps its rows.
    let (store, _, conv) = {
        let store = Store::open(&path).await.unwrap();
        let hub = store.upsert_hub("u", "ann", "json", None).await.unwrap();
        let conv = store
            .conversation(hub, ConversationKind::Room("r".into()))
            .await
            .unwrap();
        store
            .receive(conv, "m1", "bob", "kept across reopen")
            .await
            .unwrap();
        (store, hub, conv)
    };
    drop(store);
    let store = Store::open(&path).await.unwrap();
    assert_eq!(
        store.newest(conv, 10).await.unwrap()[0].body,
        "kept across reopen"
    );
    // A file from the future is refused, not clobbered.
    store
        .call(|c| Ok(c.pragma_update(None, "user_version", 99)?))
        .await
        .unwrap();
    drop(store);
    let err = Store::open(&path).await.unwrap_err();
    assert!(matches!(err, Error::TooNew { found: 99, .. }), "{err}");
}

#[tokio::test]
async fn outbox_lifecycle_in_typed_order() {
    let (store, hub, conv) = setup("outbox").await;
    let room = store
        .conversation(hub, ConversationKind::Room("r".into()))
        .await
        .unwrap();
    for (c, id) in [(conv, "a1"), (room, "r1"), (conv, "a2"), (conv, "a3")] {
        let m = store
            .enqueue(c, id, "ann", &format!("text {id}"))
            .await
            .unwrap();
        assert_eq!(m.state, MessageState::Sending);
        assert!(m.outgoing);
    }
    // Enqueueing the same id again makes no second row.
    store.enqueue(conv, "a1", "ann", "text a1").await.unwrap();
    let ids: Vec<String> = store
        .outbox(hub)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.msg_id)
        .collect();
    assert_eq!(ids, ["a1", "r1", "a2", "a3"]);
    let sent = store.mark_sent(conv, "a1").await.unwrap();
    assert_eq!(sent.state, MessageState::Sent);
    assert!(sent.sent_at.is_some());
    let failed = store
        .mark_failed(conv, "a2", "Join the room 'x' before sending to it.")
        .await
        .unwrap();
    assert_eq!(
        (failed.state, failed.error.as_deref()),
        (
            MessageState::Failed,
            Some("Join the room 'x' before sending to it.")
        )
    );
    let ids: Vec<String> = store
        .outbox(hub)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.msg_id)
        .collect();
    assert_eq!(ids, ["r1", "a3"]);
    store.retry(conv, "a2").await.unwrap();
    let ids: Vec<String> = store
        .outbox(hub)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.msg_id)
        .collect();
    assert_eq!(
        ids,
        ["r1", "a2", "a3"],
        "a retried message keeps its place in the typed order"
    );
    store.discard(conv, "a3").await.unwrap();
    assert!(matches!(
        store.mark_sent(conv, "a3").await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn received_messages_are_stored_once_and_echoes_complete_the_outbox() {
    let (store, _, conv) = setup("receive").await;
    assert!(
        store
            .receive(conv, "b1", "bob", "hi")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .receive(conv, "b1", "bob", "hi")
            .await
            .unwrap()
            .is_none(),
        "a repeat"
    );
    store.enqueue(conv, "a1", "ann", "mine").await.unwrap();
    assert!(
        store
            .receive(conv, "a1", "ann", "mine")
            .await
            .unwrap()
            .is_none(),
        "my own, echoed by the hub"
    );
    let page = store.newest(conv, 10).await.unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(page[1].state, MessageState::Sent);
}

#[tokio::test]
async fn paging_is_stable_while_messages_arrive() {
    let (store, _, conv) = setup("paging").await;
    for i in 0..250 {
        store
            .receive(conv, &format!("m{i}"), "bob", &format!("message {i}"))
            .await
            .unwrap();
    }
    let newest = store.newest(conv, 100).await.unwrap();
    assert_eq!(newest.first().unwrap().body, "message 150");
    assert_eq!(newest.last().unwrap().body, "message 249");
    // New messages arrive between page loads; older pages do not shift.
    for i in 250..300 {
        store
            .receive(conv, &format!("m{i}"), "bob", &format!("message {i}"))
            .await
            .unwrap();
    }
    let older = store.before(conv, newest[0].seq, 100).await.unwrap();
    assert_eq!(older.first().unwrap().body, "message 50");
    assert_eq!(older.last().unwrap().body, "message 149");
    let oldest = store.before(conv, older[0].seq, 100).await.unwrap();
    assert_eq!(oldest.len(), 50);
    assert!(
        store
            .before(conv, oldest[0].seq, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn search_by_words_in_any_language() {
    let (store, hub, conv) = setup("search").await;
    let texts = [
        "Meet at the café at noon",
        "Grüße aus München",
        "Привет, как дела?",
        "the <script>alert(1)</script> test",
        "quote \" and OR and NEAR",
        "nothing to see",
    ];
    for (i, t) in texts.iter().enumerate() {
        store
            .receive(conv, &format!("m{i}"), "bob", t)
            .await
            .unwrap();
    }
    let found = |q: &'static str| {
        let store = store.clone();
        async move {
            store
                .search(Some(hub), q, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.body)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        found("cafe").await,
        ["Meet at the café at noon"],
        "accents are ignored"
    );
    assert_eq!(found("grüße münchen").await, ["Grüße aus München"]);
    assert_eq!(found("привет").await, ["Привет, как дела?"]);
    assert_eq!(
        found("script").await,
        ["the <script>alert(1)</script> test"]
    );
    assert_eq!(
        found("\" OR").await,
        ["quote \" and OR and NEAR"],
        "query syntax is searched literally"
    );
    assert!(found("absent").await.is_empty());
    assert!(found("   ").await.is_empty());
    // By sender too.
    assert_eq!(
        store.search(None, "bob", 100).await.unwrap().len(),
        texts.len()
    );
}

#[tokio::test]
async fn unread_counts_per_conversation() {
    let (store, hub, conv) = setup("unread").await;
    let dm = store
        .conversation(hub, ConversationKind::Direct("bob".into()))
        .await
        .unwrap();
    for i in 0..5 {
        store
            .receive(conv, &format!("c{i}"), "bob", "x")
            .await
            .unwrap();
    }
    let last_dm = store
        .receive(dm, "d0", "bob", "psst")
        .await
        .unwrap()
        .unwrap();
    store
        .enqueue(conv, "mine", "ann", "my own messages are never unread")
        .await
        .unwrap();
    assert_eq!(
        store.unread_counts(hub).await.unwrap(),
        vec![(conv, 5), (dm, 1)]
    );
    let page = store.newest(conv, 3).await.unwrap();
    store.mark_read(conv, page[0].seq).await.unwrap();
    store.mark_read(dm, last_dm.seq).await.unwrap();
    // Read up to c3 of c0..c4: c4 is left (own messages never count).
    assert_eq!(store.unread_counts(hub).await.unwrap(), vec![(conv, 1)]);
}

#[tokio::test]
async fn retention_by_count_and_age_keeps_the_outbox() {
    let (store, _, conv) = setup("retention").await;
    store
        .enqueue(conv, "pending", "ann", "not sent yet")
        .await
        .unwrap();
    for i in 0..20 {
        store
            .receive(conv, &format!("m{i}"), "bob", &format!("{i}"))
            .await
            .unwrap();
    }
    let deleted = store.retain(None, Some(5)).await.unwrap();
    assert_eq!(deleted, 15);
    let left: Vec<String> = store
        .newest(conv, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.msg_id)
        .collect();
    assert_eq!(left, ["pending", "m15", "m16", "m17", "m18", "m19"]);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        store
            .retain(Some(Duration::from_millis(1)), None)
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        store.newest(conv, 100).await.unwrap().len(),
        1,
        "the outbox survives retention"
    );
    assert!(
        store.search(None, "m15", 10).await.unwrap().is_empty(),
        "search forgets deleted rows"
    );
}

#[tokio::test]
async fn a_damaged_file_gets_a_clear_error_and_a_recovery_path() {
    let path = temp_db("corrupt");
    std::fs::write(
        &path,
        b"this is not a SQLite database, but it is somebody's file",
    )
    .unwrap();
    let err = Store::open(&path).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("move it aside"), "{err}");
    assert!(
        std::fs::read(&path).unwrap().starts_with(b"this is not"),
        "nothing was wiped"
    );
    let (store, aside) = Store::recover(&path).await.unwrap();
    assert!(
        std::fs::read(&aside).unwrap().starts_with(b"this is not"),
        "the old file is kept aside"
    );
    let hub = store.upsert_hub("u", "n", "json", None).await.unwrap();
    assert_eq!(store.hubs().await.unwrap()[0].id, hub);

    // A real database with a damaged page.
    let path = temp_db("corrupt-page");
    {
        let store = Store::open(&path).await.unwrap();
        let hub = store.upsert_hub("u", "n", "json", None).await.unwrap();
        let conv = store
            .conversation(hub, ConversationKind::Broadcast)
            .await
            .unwrap();
        for i in 0..200 {
            store
                .receive(conv, &format!("m{i}"), "bob", &"filler ".repeat(50))
                .await
                .unwrap();
        }
        store
            .call(|c| Ok(c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?))
            .await
            .unwrap();
    }
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len();
    for b in &mut bytes[len / 2..len / 2 + 4096] {
        *b = 0xA5;
    }
    std::fs::write(&path, bytes).unwrap();
    let err = Store::open(&path).await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}

#[tokio::test]
async fn an_unreadable_location_is_a_clear_error() {
    let err = Store::open("/proc/hubbub-cannot-write-here/profile.sqlite3")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Open { .. }), "{err}");
}

#[tokio::test]
async fn migration_2_applies_to_a_version_1_database_and_keeps_its_rows() {
    let path = temp_db("migration-2");
    // A database as version 1 of the schema left it.
    {
        let store = Store::open(&path).await.unwrap();
        let hub = store
            .upsert_hub("http://old/chathub", "ann", "json", None)
            .await
            .unwrap();
        let conv = store
            .conversation(hub, ConversationKind::Broadcast)
            .await
            .unwrap();
        store
            .receive(conv, "old", "bob", "from version 1")
            .await
            .unwrap();
        store
            .call(|c| {
                c.execute_batch(
                    "CREATE TABLE hubs_v1 AS SELECT id, url, display_name, protocol, transport, created_at FROM hubs;
                     PRAGMA foreign_keys = OFF;
                     DROP TABLE hubs;
                     CREATE TABLE hubs (id INTEGER PRIMARY KEY, url TEXT NOT NULL UNIQUE, display_name TEXT NOT NULL,
                                        protocol TEXT NOT NULL DEFAULT 'json', transport TEXT, created_at INTEGER NOT NULL);
                     INSERT INTO hubs SELECT * FROM hubs_v1;
                     DROP TABLE hubs_v1;
                     ALTER TABLE conversations DROP COLUMN archived;
                     ALTER TABLE conversations DROP COLUMN hub_epoch;
                     ALTER TABLE conversations DROP COLUMN hub_seq;
                     PRAGMA foreign_keys = ON;
                     PRAGMA user_version = 1;",
                )?;
                Ok(())
            })
            .await
            .unwrap();
    }
    let store = Store::open(&path).await.unwrap();
    let hub = store.hubs().await.unwrap()[0].id;
    assert_eq!(store.history_cursor(hub).await.unwrap(), (None, 0));
    store.set_history_cursor(hub, "e1", 42).await.unwrap();
    assert_eq!(
        store.history_cursor(hub).await.unwrap(),
        (Some("e1".to_owned()), 42)
    );
    let conv = store
        .conversation(hub, ConversationKind::Broadcast)
        .await
        .unwrap();
    assert_eq!(
        store.newest(conv, 10).await.unwrap()[0].body,
        "from version 1"
    );
    // Later migrations too: the inbox and room cursors start at the beginning.
    assert_eq!(store.inbox_cursor(hub).await.unwrap(), (None, 0));
    assert_eq!(store.conversation_cursor(conv).await.unwrap(), (None, 0));
    store.set_conversation_cursor(conv, "e2", 7).await.unwrap();
    assert_eq!(
        store.conversation_cursor(conv).await.unwrap(),
        (Some("e2".to_owned()), 7)
    );
    assert!(schema_version() >= 4);
}

#[tokio::test]
async fn accounts_keep_a_keychain_flag_list_conversations_and_are_removed_whole() {
    let (store, hub, broadcast) = setup("accounts").await;
    assert!(!store.hubs().await.unwrap()[0].token_in_keychain);
    store.set_token_in_keychain(hub, true).await.unwrap();
    assert!(store.hubs().await.unwrap()[0].token_in_keychain);

    let room = store
        .conversation(hub, ConversationKind::Room("ops".to_owned()))
        .await
        .unwrap();
    store
        .conversation(hub, ConversationKind::Direct("bob".to_owned()))
        .await
        .unwrap();
    store.set_archived(room, true).await.unwrap();
    let listed = store.conversations(hub).await.unwrap();
    let kinds: Vec<_> = listed
        .iter()
        .map(|c| (c.kind.clone(), c.archived))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (ConversationKind::Broadcast, false),
            (ConversationKind::Room("ops".to_owned()), true),
            (ConversationKind::Direct("bob".to_owned()), false),
        ]
    );
    assert_eq!(listed[0].id, broadcast);

    store
        .enqueue(broadcast, "m1", "ann", "queued")
        .await
        .unwrap();
    store.remove_hub(hub).await.unwrap();
    assert!(store.hubs().await.unwrap().is_empty());
    assert!(store.conversations(hub).await.unwrap().is_empty());
    assert!(store.outbox(hub).await.unwrap().is_empty());
    assert!(store.newest(broadcast, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_hubs_chat_contract_is_kept_per_hub_and_survives_reopening() {
    let path = temp_db("methods");
    let store = Store::open(&path).await.unwrap();
    let ann = store
        .upsert_hub("http://127.0.0.1:5000/chathub", "ann", "json", None)
        .await
        .unwrap();
    let other = store
        .upsert_hub("http://127.0.0.1:5001/chatHub", "ann", "json", None)
        .await
        .unwrap();
    assert_eq!(store.hub_methods(ann).await.unwrap(), None);
    let contract = r#"{"send":{"method":"SendMessage","args":["name","text"]}}"#;
    store.set_hub_methods(ann, Some(contract)).await.unwrap();
    // Changing an account's other settings leaves its contract alone.
    store
        .upsert_hub("http://127.0.0.1:5000/chathub", "ann", "messagepack", None)
        .await
        .unwrap();
    drop(store);
    let store = Store::open(&path).await.unwrap();
    assert_eq!(
        store.hub_methods(ann).await.unwrap().as_deref(),
        Some(contract)
    );
    assert_eq!(store.hub_methods(other).await.unwrap(), None);
    store.set_hub_methods(ann, None).await.unwrap();
    assert_eq!(store.hub_methods(ann).await.unwrap(), None);
    assert!(schema_version() >= 5);
}

#[tokio::test]
async fn a_hubs_family_and_classic_hub_name_are_kept_per_hub_and_older_files_open() {
    let path = temp_db("family");
    let store = Store::open(&path).await.unwrap();
    let ann = store
        .upsert_hub("http://127.0.0.1:5000/signalr", "ann", "json", None)
        .await
        .unwrap();
    let other = store
        .upsert_hub("http://127.0.0.1:5001/chathub", "ann", "json", None)
        .await
        .unwrap();
    let hub = |hubs: &[Hub], id: HubId| hubs.iter().find(|h| h.id == id).unwrap().clone();
    let hubs = store.hubs().await.unwrap();
    assert_eq!(
        (hub(&hubs, ann).family, hub(&hubs, ann).hub_name),
        (None, None)
    );
    store
        .set_hub_family(ann, Some("classic"), Some("roomHub"))
        .await
        .unwrap();
    // Changing an account's other settings leaves them alone.
    store
        .upsert_hub("http://127.0.0.1:5000/signalr", "ann", "messagepack", None)
        .await
        .unwrap();
    drop(store);
    let store = Store::open(&path).await.unwrap();
    let hubs = store.hubs().await.unwrap();
    assert_eq!(hub(&hubs, ann).family.as_deref(), Some("classic"));
    assert_eq!(hub(&hubs, ann).hub_name.as_deref(), Some("roomHub"));
    assert_eq!(
        (hub(&hubs, other).family, hub(&hubs, other).hub_name),
        (None, None)
    );
    store.set_hub_family(ann, None, None).await.unwrap();
    let hubs = store.hubs().await.unwrap();
    assert_eq!(
        (hub(&hubs, ann).family, hub(&hubs, ann).hub_name),
        (None, None)
    );
    assert!(schema_version() >= 6);

    // A file from before migration 6 (version 5: no family, no hub name) opens, its hubs on
    // auto with the default hub name.
    store
        .call(|c| {
            c.execute_batch(
                "ALTER TABLE hubs DROP COLUMN family;
                 ALTER TABLE hubs DROP COLUMN hub_name;
                 ALTER TABLE hubs DROP COLUMN ca_pem;
                 PRAGMA user_version = 5;",
            )?;
            Ok(())
        })
        .await
        .unwrap();
    drop(store);
    let store = Store::open(&path).await.unwrap();
    let hubs = store.hubs().await.unwrap();
    assert_eq!(hubs.len(), 2);
    assert_eq!(
        (hub(&hubs, ann).family, hub(&hubs, ann).hub_name),
        (None, None)
    );
    store.set_hub_family(ann, Some("core"), None).await.unwrap();
    assert_eq!(
        hub(&store.hubs().await.unwrap(), ann).family.as_deref(),
        Some("core")
    );
}

#[tokio::test]
async fn a_hubs_extra_ca_is_kept_per_hub_and_older_files_open() {
    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let path = temp_db("ca");
    let store = Store::open(&path).await.unwrap();
    let ann = store
        .upsert_hub("https://127.0.0.1:5000/chathub", "ann", "json", None)
        .await
        .unwrap();
    let other = store
        .upsert_hub("https://127.0.0.1:5001/chathub", "ann", "json", None)
        .await
        .unwrap();
    let ca = |hubs: &[Hub], id: HubId| hubs.iter().find(|h| h.id == id).unwrap().ca_pem.clone();
    assert_eq!(ca(&store.hubs().await.unwrap(), ann), None);
    store.set_hub_ca(ann, Some(PEM)).await.unwrap();
    // Changing an account's other settings leaves it alone.
    store
        .upsert_hub("https://127.0.0.1:5000/chathub", "ann", "messagepack", None)
        .await
        .unwrap();
    store.set_hub_family(ann, Some("core"), None).await.unwrap();
    drop(store);
    let store = Store::open(&path).await.unwrap();
    let hubs = store.hubs().await.unwrap();
    assert_eq!(ca(&hubs, ann).as_deref(), Some(PEM));
    assert_eq!(ca(&hubs, other), None);
    store.set_hub_ca(ann, None).await.unwrap();
    assert_eq!(ca(&store.hubs().await.unwrap(), ann), None);
    assert!(schema_version() >= 7);

    // A file from before migration 7 (version 6: no CA) opens, its hubs on the system's roots.
    store
        .call(|c| {
            c.execute_batch(
                "ALTER TABLE hubs DROP COLUMN ca_pem;
                 PRAGMA user_version = 6;",
            )?;
            Ok(())
        })
        .await
        .unwrap();
    drop(store);
    let store = Store::open(&path).await.unwrap();
    let hubs = store.hubs().await.unwrap();
    assert_eq!(hubs.len(), 2);
    assert_eq!(ca(&hubs, ann), None);
    store.set_hub_ca(other, Some(PEM)).await.unwrap();
    assert_eq!(
        ca(&store.hubs().await.unwrap(), other).as_deref(),
        Some(PEM)
    );
}
