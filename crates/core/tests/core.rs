//! The app core over real parts: a real hub on loopback, real SQLite profiles, two cores
//! talking through the hub, the embedded hub, a hub that dies and comes back.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use hubbub_core::*;
use support::{expect, new_account};

fn profile(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hubbub-core-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn config(name: &str, first_run: Option<FirstRun>) -> Config {
    let mut config = Config::desktop(profile(name));
    config.keychain = KeychainMode::Off("tests".to_owned());
    config.first_run = first_run;
    config.local_hub_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.retry_max = Duration::from_millis(500);
    config
}

async fn hub_at(addr: SocketAddr) -> hubbub_hub::RunningServer {
    hubbub_hub::ServerBuilder::new()
        .hub("/chathub", hubbub_hub::chat_hub())
        .bind(addr)
        .await
        .unwrap()
}

async fn hub() -> hubbub_hub::RunningServer {
    hub_at(SocketAddr::from(([127, 0, 0, 1], 0))).await
}

fn connected(account: AccountId) -> impl FnMut(&AppEvent) -> Option<()> {
    move |e| match e {
        AppEvent::Status { account: a, status }
            if *a == account && status.state == StateView::Connected =>
        {
            Some(())
        }
        _ => None,
    }
}

fn received(body: &'static str) -> impl FnMut(&AppEvent) -> Option<MessageView> {
    move |e| match e {
        AppEvent::Message { message, .. } if message.body == body && !message.outgoing => {
            Some(message.clone())
        }
        _ => None,
    }
}

#[tokio::test]
async fn two_cores_chat_through_a_hub_with_rooms_direct_messages_presence_and_unread() {
    let server = hub().await;
    let url = server.url("/chathub");
    let ann = Core::start(config("ann", None)).await.unwrap();
    let bob = Core::start(config("bob", None)).await.unwrap();
    let mut ann_rx = ann.subscribe();
    let mut bob_rx = bob.subscribe();

    let a = ann.add_account(new_account(&url, "ann")).await.unwrap();
    expect(&mut ann_rx, "ann connected", connected(a.id)).await;
    let b = bob.add_account(new_account(&url, "bob")).await.unwrap();
    expect(&mut bob_rx, "bob connected", connected(b.id)).await;

    // Presence: ann hears bob arrive; bob's list has both.
    let online = expect(&mut ann_rx, "bob's arrival", |e| match e {
        AppEvent::Presence {
            user,
            joined: true,
            online,
            ..
        } if user == "bob" => Some(online.clone()),
        _ => None,
    })
    .await;
    assert_eq!(online, vec!["ann".to_owned(), "bob".to_owned()]);

    // A broadcast: sending → sent for ann, received (and unread) for bob.
    let sent = ann
        .send(a.id, "broadcast", "hello <b>all</b>")
        .await
        .unwrap();
    assert_eq!(sent.state, MessageStateView::Sending);
    expect(&mut ann_rx, "ann's message sent", |e| match e {
        AppEvent::MessageUpdated { message, .. }
            if message.id == sent.id && message.state == MessageStateView::Sent =>
        {
            Some(())
        }
        _ => None,
    })
    .await;
    let got = expect(&mut bob_rx, "bob receives", received("hello <b>all</b>")).await;
    assert_eq!(
        (got.sender.as_str(), got.id.as_str()),
        ("ann", sent.id.as_str())
    );
    let unread = expect(&mut bob_rx, "bob's unread count", |e| match e {
        AppEvent::Conversation { conversation, .. } if conversation.key == "broadcast" => {
            Some(conversation.unread)
        }
        _ => None,
    })
    .await;
    assert_eq!(unread, 1);
    bob.mark_read(b.id, "broadcast", got.seq).await.unwrap();
    assert_eq!(bob.conversations(b.id).await.unwrap()[0].unread, 0);

    // Rooms: only members hear a room message.
    ann.join_room(a.id, "ops").await.unwrap();
    bob.join_room(b.id, "ops").await.unwrap();
    ann.send(a.id, "room:ops", "deploy at 5").await.unwrap();
    let room_msg = expect(&mut bob_rx, "room message", received("deploy at 5")).await;
    assert_eq!(room_msg.conversation, "room:ops");
    let keys: Vec<String> = bob
        .conversations(b.id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.key)
        .collect();
    assert_eq!(keys, vec!["broadcast".to_owned(), "room:ops".to_owned()]);

    // Direct messages appear as a conversation with the sender.
    bob.send(b.id, "dm:ann", "psst").await.unwrap();
    let dm = expect(&mut ann_rx, "direct message", received("psst")).await;
    assert_eq!(dm.conversation, "dm:bob");
    assert!(
        ann.conversations(a.id)
            .await
            .unwrap()
            .iter()
            .any(|c| c.key == "dm:bob" && c.kind == ConversationKindView::Direct)
    );

    // History and search over the local store.
    let history = bob.history(b.id, "broadcast", None, 50).await.unwrap();
    assert_eq!(history.last().unwrap().body, "hello <b>all</b>");
    let found = bob.search(b.id, "deploy", 10).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].conversation, "room:ops");

    // Leaving: bob goes, ann hears it.
    bob.remove_account(b.id).await.unwrap();
    let online = expect(&mut ann_rx, "bob's departure", |e| match e {
        AppEvent::Presence {
            user,
            joined: false,
            online,
            ..
        } if user == "bob" => Some(online.clone()),
        _ => None,
    })
    .await;
    assert_eq!(online, vec!["ann".to_owned()]);
    assert!(bob.accounts().await.unwrap().is_empty());
    ann.shutdown().await;
    bob.shutdown().await;
}

#[tokio::test]
async fn a_first_run_chats_on_the_embedded_hub_with_zero_setup() {
    let core = Core::start(config(
        "first-run",
        Some(FirstRun {
            url: None,
            display_name: "ann".to_owned(),
        }),
    ))
    .await
    .unwrap();
    let mut rx = core.subscribe();
    let accounts = core.accounts().await.unwrap();
    assert_eq!(accounts.len(), 1);
    let account = &accounts[0];
    assert!(account.local);
    let local_url = core.info().local_hub_url.expect("the embedded hub runs");
    assert!(local_url.starts_with("http://127.0.0.1:"), "{local_url}");
    assert_eq!(account.url, local_url);
    if account.status.state != StateView::Connected {
        expect(
            &mut rx,
            "connected to the embedded hub",
            connected(account.id),
        )
        .await;
    }

    // Someone else on this machine joins the embedded hub with the CLI's client.
    let other = hubbub_client::HubConnectionBuilder::new(format!("{local_url}?name=bob"))
        .build()
        .unwrap();
    let (tx, mut heard) = tokio::sync::mpsc::unbounded_channel();
    other.on("broadcastMessage", move |args| {
        let _ = tx.send(args[1].decode::<String>().unwrap());
        None
    });
    other.start().await.unwrap();
    core.send(account.id, "broadcast", "anyone here?")
        .await
        .unwrap();
    let text = tokio::time::timeout(Duration::from_secs(10), heard.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(text, "anyone here?");

    // A second local account is refused: there is one embedded hub.
    let again = core
        .add_account(NewAccount {
            url: None,
            ..new_account("", "zed")
        })
        .await;
    assert!(matches!(again, Err(Error::Duplicate(_))), "{again:?}");
    other.stop().await;
    core.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_changes_nothing() {
    let server = hub().await;
    let core = Core::start(config("bad-input", None)).await.unwrap();
    for (url, name) in [
        ("ftp://x/hub", "ann"),
        ("http://127.0.0.1:1/hub", "  "),
        ("not a url", "ann"),
    ] {
        let e = core.add_account(new_account(url, name)).await.unwrap_err();
        assert_eq!(e.kind(), "invalid", "{url} {name}: {e}");
    }
    assert!(core.accounts().await.unwrap().is_empty());

    let a = core
        .add_account(new_account(&server.url("/chathub"), "ann"))
        .await
        .unwrap();
    let dup = core
        .add_account(new_account(&server.url("/chathub"), "ann2"))
        .await
        .unwrap_err();
    assert_eq!(dup.kind(), "duplicate");

    let empty = core.send(a.id, "broadcast", "  \n ").await.unwrap_err();
    assert_eq!(empty.kind(), "invalid");
    let huge = core
        .send(a.id, "broadcast", &"x".repeat(MAX_MESSAGE_BYTES))
        .await
        .unwrap_err();
    assert!(huge.to_string().contains("too long"), "{huge}");
    // JSON escaping counts: 6 bytes per control character.
    let escaped = core
        .send(a.id, "broadcast", &"\u{1}".repeat(MAX_MESSAGE_BYTES / 5))
        .await
        .unwrap_err();
    assert_eq!(escaped.kind(), "invalid");
    assert!(
        core.history(a.id, "broadcast", None, 10)
            .await
            .unwrap()
            .is_empty(),
        "refused text never enters the outbox"
    );
    let unknown = core.send(a.id, "channel:x", "hi").await.unwrap_err();
    assert_eq!(unknown.kind(), "noConversation");
    assert_eq!(
        core.send(999, "broadcast", "hi").await.unwrap_err().kind(),
        "noAccount"
    );
    core.shutdown().await;
}

#[tokio::test]
async fn the_hub_dies_and_comes_back_status_shows_it_and_the_outbox_loses_nothing() {
    let server = hub().await;
    let addr = server.local_addr();
    let url = server.url("/chathub");
    let ann = Core::start(config("outage-ann", None)).await.unwrap();
    let bob = Core::start(config("outage-bob", None)).await.unwrap();
    let mut ann_rx = ann.subscribe();
    let mut bob_rx = bob.subscribe();
    let a = ann.add_account(new_account(&url, "ann")).await.unwrap();
    let b = bob.add_account(new_account(&url, "bob")).await.unwrap();
    expect(&mut ann_rx, "ann connected", connected(a.id)).await;
    expect(&mut bob_rx, "bob connected", connected(b.id)).await;

    server.shutdown().await.unwrap();
    let status = expect(&mut ann_rx, "reconnecting", |e| match e {
        AppEvent::Status { status, .. }
            if status.state == StateView::Reconnecting && status.attempt.is_some() =>
        {
            Some(status.clone())
        }
        _ => None,
    })
    .await;
    assert!(
        status.next_retry_at.is_some() && status.reason.is_some(),
        "{status:?}"
    );

    // Typed while the hub is down: stored as sending, delivered once it is back.
    let queued = ann.send(a.id, "broadcast", "typed offline").await.unwrap();
    assert_eq!(queued.state, MessageStateView::Sending);
    let _server = hub_at(addr).await;
    expect(&mut ann_rx, "ann reconnected", connected(a.id)).await;
    let got = expect(&mut bob_rx, "the queued message", received("typed offline")).await;
    assert_eq!(got.id, queued.id);
    expect(&mut ann_rx, "queued message sent", |e| match e {
        AppEvent::MessageUpdated { message, .. }
            if message.id == queued.id && message.state == MessageStateView::Sent =>
        {
            Some(())
        }
        _ => None,
    })
    .await;
    let copies = bob
        .history(b.id, "broadcast", None, 50)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.body == "typed offline")
        .count();
    assert_eq!(copies, 1);

    // Disconnect is a plain stop: no reason, no retries; connect restores.
    ann.disconnect(a.id).await.unwrap();
    let account = ann.accounts().await.unwrap().remove(0);
    assert_eq!(account.status.state, StateView::Disconnected);
    assert_eq!(account.status.reason, None);
    ann.connect(a.id).await.unwrap();
    expect(&mut ann_rx, "connected again", connected(a.id)).await;
    ann.shutdown().await;
    bob.shutdown().await;
}

#[tokio::test]
async fn without_a_keychain_tokens_stay_in_memory_and_never_reach_the_database() {
    let secret = "tok-3f9c1e-never-on-disk";
    let jwt_server = hub().await;
    let dir = profile("no-keychain");
    let mut cfg = config("no-keychain", None);
    cfg.keychain = KeychainMode::Off("no Secret Service on this bus".to_owned());
    let core = Core::start(cfg).await.unwrap();
    let info = core.info();
    assert!(!info.keychain.available);
    assert_eq!(
        info.keychain.detail.as_deref(),
        Some("no Secret Service on this bus")
    );
    let mut rx = core.subscribe();
    let account = core
        .add_account(NewAccount {
            token: Some(secret.to_owned()),
            ..new_account(&jwt_server.url("/chathub"), "ann")
        })
        .await
        .unwrap();
    assert_eq!(account.token, TokenPlace::Session);
    let notice = expect(&mut rx, "the user is told", |e| match e {
        AppEvent::Notice {
            level: Level::Warning,
            text,
            ..
        } => Some(text.clone()),
        _ => None,
    })
    .await;
    assert!(notice.contains("this session only"), "{notice}");
    expect(&mut rx, "connected anyway", connected(account.id)).await;
    core.send(account.id, "broadcast", "with a token")
        .await
        .unwrap();
    core.shutdown().await;
    drop(core);

    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the token is in {}",
            path.display()
        );
    }
}

#[tokio::test]
async fn on_a_phone_the_background_suspends_and_the_foreground_resumes() {
    let server = hub().await;
    let mut cfg = config("mobile", None);
    cfg.platform = Platform::Mobile;
    let core = Core::start(cfg).await.unwrap();
    let mut rx = core.subscribe();
    let a = core
        .add_account(new_account(&server.url("/chathub"), "ann"))
        .await
        .unwrap();
    expect(&mut rx, "connected", connected(a.id)).await;
    core.lifecycle(false);
    expect(&mut rx, "suspended", |e| match e {
        AppEvent::Status { status, .. } if status.state == StateView::Suspended => Some(()),
        _ => None,
    })
    .await;
    // Typed in the background: kept, and sent after the app comes back.
    let queued = core
        .send(a.id, "broadcast", "from the pocket")
        .await
        .unwrap();
    core.lifecycle(true);
    expect(&mut rx, "resumed", connected(a.id)).await;
    expect(&mut rx, "sent after resuming", |e| match e {
        AppEvent::MessageUpdated { message, .. }
            if message.id == queued.id && message.state == MessageStateView::Sent =>
        {
            Some(())
        }
        _ => None,
    })
    .await;
    core.shutdown().await;
}

#[tokio::test]
async fn notifications_for_others_messages_once_per_conversation_burst() {
    let core = Core::start(config("notify", None)).await.unwrap();
    let message = |id: &str, conversation: &str, outgoing: bool, body: &str| AppEvent::Message {
        account: 1,
        message: MessageView {
            seq: 1,
            id: id.to_owned(),
            conversation: conversation.to_owned(),
            sender: "bob".to_owned(),
            body: body.to_owned(),
            outgoing,
            state: if outgoing {
                MessageStateView::Sending
            } else {
                MessageStateView::Received
            },
            error: None,
            created_at: 0,
        },
    };
    assert_eq!(
        core.notification_for(&message("1", "broadcast", true, "mine")),
        None,
        "own messages never notify"
    );
    let first = core
        .notification_for(&message("2", "room:ops", false, &"long ".repeat(60)))
        .unwrap();
    assert_eq!(first.title, "bob in ops");
    assert!(first.body.ends_with('…') && first.body.chars().count() == 141);
    assert_eq!(
        core.notification_for(&message("3", "room:ops", false, "again")),
        None,
        "a burst in one conversation notifies once"
    );
    let dm = core
        .notification_for(&message("4", "dm:bob", false, "psst"))
        .unwrap();
    assert_eq!((dm.title.as_str(), dm.body.as_str()), ("bob", "psst"));
    core.shutdown().await;
}

/// Joining a room with a long backlog: the whole backlog is caught up from the hub and reaches
/// the UI's event stream, every message once, then one unread count for the room (a catch-up
/// of thousands does not fall behind the chat layer, whose queue holds 4,096 events).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_backlog_of_thousands_reaches_the_ui_whole() {
    const BACKLOG: usize = 6_000;
    let server = hubbub_hub::ServerBuilder::new()
        .options(hubbub_hub::HubOptions {
            max_messages_per_second: 100_000,
            // The sender hears its own room messages too: room for all of them at once.
            send_queue_capacity: 100_000,
            ..hubbub_hub::HubOptions::default()
        })
        .hub("/chathub", hubbub_hub::chat_hub())
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = server.url("/chathub");
    // pat fills the room first.
    let pat = hubbub_client::HubConnectionBuilder::new(format!("{url}?name=pat"))
        .build()
        .unwrap();
    pat.start().await.unwrap();
    let _: u64 = pat
        .invoke("JoinRoom", vec![hubbub_client::Arg::from("big")])
        .await
        .unwrap();
    for i in 0..BACKLOG {
        let args = vec![
            hubbub_client::Arg::from("big"),
            hubbub_client::Arg::from("pat"),
            hubbub_client::Arg::from(format!("backlog {i}")),
        ];
        pat.send("SendToRoom", args).await.unwrap();
    }
    let _: String = pat
        .invoke("Echo", vec![hubbub_client::Arg::from("flushed")])
        .await
        .unwrap();

    let bob = Core::start(config("backlog-bob", None)).await.unwrap();
    let mut rx = bob.subscribe();
    let b = bob.add_account(new_account(&url, "bob")).await.unwrap();
    expect(&mut rx, "bob connected", connected(b.id)).await;
    bob.join_room(b.id, "big").await.unwrap();
    let mut seen = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut last_unread = 0;
    while seen.len() < BACKLOG || last_unread < BACKLOG as u64 {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "timed out: {} of {BACKLOG} messages, unread {last_unread}",
                    seen.len()
                )
            })
            .expect("the UI's event stream never lags");
        match event {
            AppEvent::Message { message, .. } if message.conversation == "room:big" => {
                assert!(seen.insert(message.body.clone()), "twice: {}", message.body);
            }
            AppEvent::Conversation { conversation, .. } if conversation.key == "room:big" => {
                last_unread = conversation.unread;
            }
            _ => {}
        }
    }
    assert_eq!(seen.len(), BACKLOG);
    assert_eq!(last_unread, BACKLOG as u64);
    let page = bob.history(b.id, "room:big", None, 5_000).await.unwrap();
    assert_eq!(page.len(), 5_000);
    assert_eq!(
        page.last().unwrap().body,
        format!("backlog {}", BACKLOG - 1)
    );
    server.shutdown().await.unwrap();
}
