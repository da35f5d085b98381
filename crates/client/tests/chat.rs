//! The chat layer over a real hub and real SQLite files: rooms and direct messages through the
//! outbox, rooms joined again after a reconnect and caught up from their history, messages
//! typed while the hub is down, direct messages to a user who was away.

use std::time::Duration;

use hubbub_client::store::{ConversationKind, MessageState, Store};
use hubbub_client::{Chat, Delays, HubConnectionBuilder};

fn temp_db(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hubbub-chat-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("history.sqlite3")
}

async fn chat(url: &str, name: &str, test: &str) -> Chat {
    let store = Store::open(temp_db(&format!("{test}-{name}")))
        .await
        .unwrap();
    let conn = HubConnectionBuilder::new(format!("{url}?name={name}"))
        .retry_policy(Delays(vec![Duration::from_millis(100); 100]))
        .build()
        .unwrap();
    let chat = Chat::open(conn.clone(), store, url, name).await.unwrap();
    conn.start().await.unwrap();
    chat
}

async fn bodies(chat: &Chat, kind: ConversationKind) -> Vec<(String, String, MessageState)> {
    let store = chat.store();
    let hub = store.hubs().await.unwrap()[0].id;
    let conv = store.conversation(hub, kind).await.unwrap();
    store
        .newest(conv, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.sender, m.body, m.state))
        .collect()
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_and_direct_messages_survive_a_hub_restart() {
    let server = hubbub_hub::ServerBuilder::new()
        .hub("/chathub", hubbub_hub::chat_hub())
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr();
    let url = server.url("/chathub");
    let ann = chat(&url, "ann", "restart").await;
    let bob = chat(&url, "bob", "restart").await;
    ann.join_room("r").await.unwrap();
    bob.join_room("r").await.unwrap();
    let room = || ConversationKind::Room("r".to_owned());

    ann.send_to(room(), "room 1").await.unwrap();
    ann.send_to(ConversationKind::Direct("bob".to_owned()), "dm 1")
        .await
        .unwrap();
    eventually("bob's room and direct messages", || async {
        bodies(&bob, room()).await.len() == 1
            && bodies(&bob, ConversationKind::Direct("ann".to_owned()))
                .await
                .len()
                == 1
    })
    .await;
    assert_eq!(
        bodies(&bob, room()).await,
        vec![(
            "ann".to_owned(),
            "room 1".to_owned(),
            MessageState::Received
        )]
    );
    assert_eq!(
        bodies(&bob, ConversationKind::Direct("ann".to_owned())).await,
        vec![("ann".to_owned(), "dm 1".to_owned(), MessageState::Received)]
    );
    eventually("ann's own copies marked sent", || async {
        bodies(&ann, room()).await
            == vec![("ann".to_owned(), "room 1".to_owned(), MessageState::Sent)]
            && bodies(&ann, ConversationKind::Direct("bob".to_owned())).await
                == vec![("ann".to_owned(), "dm 1".to_owned(), MessageState::Sent)]
    })
    .await;

    // The hub goes away; ann types meanwhile; the hub comes back on the same address.
    server.shutdown().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    ann.send_to(room(), "typed while the hub was down")
        .await
        .unwrap();
    let server = hubbub_hub::ServerBuilder::new()
        .hub("/chathub", hubbub_hub::chat_hub())
        .bind(addr)
        .await
        .unwrap();
    // Both reconnect and join "r" again on their own; the queued message then goes out.
    eventually("the queued room message sent", || async {
        bodies(&ann, room())
            .await
            .iter()
            .all(|(_, _, state)| *state == MessageState::Sent)
    })
    .await;
    // Rooms have a history: bob, back in the room, catches up with what ann typed while the
    // hub was down, whether or not he had rejoined when it went out.
    eventually(
        "bob has the message typed while the hub was down",
        || async {
            bodies(&bob, room())
                .await
                .iter()
                .any(|(_, body, _)| body == "typed while the hub was down")
        },
    )
    .await;
    ann.send_to(room(), "room 2").await.unwrap();
    eventually("a room message after the reconnect", || async {
        bodies(&bob, room())
            .await
            .iter()
            .any(|(_, body, _)| body == "room 2")
    })
    .await;
    // Someone joining later finds the room's backlog (of this hub's life: it kept its history
    // in memory, so what was said before the restart is gone with it).
    let cat = chat(&url, "cat", "restart").await;
    cat.join_room("r").await.unwrap();
    eventually("cat has the backlog", || async {
        bodies(&cat, room()).await
            == vec![
                (
                    "ann".to_owned(),
                    "typed while the hub was down".to_owned(),
                    MessageState::Received,
                ),
                (
                    "ann".to_owned(),
                    "room 2".to_owned(),
                    MessageState::Received,
                ),
            ]
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let once: Vec<_> = bodies(&bob, room())
        .await
        .into_iter()
        .map(|(_, body, _)| body)
        .collect();
    assert_eq!(
        once,
        ["room 1", "typed while the hub was down", "room 2"],
        "each once, in order"
    );
    assert_eq!(ann.pending().await.unwrap(), 0);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_hub_refuses_fails_with_its_reason_and_can_be_retried() {
    let server = hubbub_hub::ServerBuilder::new()
        .hub("/chathub", hubbub_hub::chat_hub())
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = server.url("/chathub");
    let ann = chat(&url, "ann", "refused").await;
    // Not a member of the room: the hub refuses.
    let message = ann
        .send_to(ConversationKind::Room("closed".to_owned()), "knock knock")
        .await
        .unwrap();
    eventually("the failure", || async {
        bodies(&ann, ConversationKind::Room("closed".to_owned())).await[0].2 == MessageState::Failed
    })
    .await;
    let store = ann.store();
    let hub = store.hubs().await.unwrap()[0].id;
    let conv = store
        .conversation(hub, ConversationKind::Room("closed".to_owned()))
        .await
        .unwrap();
    let failed = store.newest(conv, 1).await.unwrap().remove(0);
    assert!(
        failed
            .error
            .as_deref()
            .unwrap()
            .contains("Join the room 'closed'"),
        "{failed:?}"
    );
    // After joining, a retry goes through.
    ann.join_room("closed").await.unwrap();
    ann.retry(&message).await.unwrap();
    eventually("the retried message sent", || async {
        bodies(&ann, ConversationKind::Room("closed".to_owned())).await[0].2 == MessageState::Sent
    })
    .await;
    server.shutdown().await.unwrap();
}

/// A direct message to a user who is not connected is kept by the hub and reaches them when
/// they connect; the sender's other devices get their own copy the same way. Catching up
/// again (a reconnect) stores nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_reach_a_user_who_was_away_and_the_senders_other_devices() {
    let server = hubbub_hub::ServerBuilder::new()
        .hub("/chathub", hubbub_hub::chat_hub())
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = server.url("/chathub");
    let dm = |user: &str| ConversationKind::Direct(user.to_owned());
    let ann = chat(&url, "ann", "away").await;
    // bob has never connected: the hub keeps it, and ann's message is sent, not failed.
    ann.send_to(dm("bob"), "while you were away").await.unwrap();
    eventually("ann's message sent", || async {
        bodies(&ann, dm("bob")).await
            == vec![(
                "ann".to_owned(),
                "while you were away".to_owned(),
                MessageState::Sent,
            )]
    })
    .await;

    let bob = chat(&url, "bob", "away").await;
    eventually("bob has it on connecting", || async {
        bodies(&bob, dm("ann")).await
            == vec![(
                "ann".to_owned(),
                "while you were away".to_owned(),
                MessageState::Received,
            )]
    })
    .await;
    // bob answers live; ann's laptop (a second device with its own store) connects later and
    // finds both sides of the conversation.
    bob.send_to(dm("ann"), "back now").await.unwrap();
    eventually("ann hears bob", || async {
        bodies(&ann, dm("bob")).await.len() == 2
    })
    .await;
    let laptop_store = Store::open(temp_db("away-ann-laptop")).await.unwrap();
    let laptop_conn = HubConnectionBuilder::new(format!("{url}?name=ann"))
        .build()
        .unwrap();
    let laptop = Chat::open(laptop_conn.clone(), laptop_store, &url, "ann")
        .await
        .unwrap();
    laptop_conn.start().await.unwrap();
    eventually("the laptop has both sides", || async {
        let got: Vec<_> = bodies(&laptop, dm("bob"))
            .await
            .into_iter()
            .map(|(from, body, _)| (from, body))
            .collect();
        got == vec![
            ("ann".to_owned(), "while you were away".to_owned()),
            ("bob".to_owned(), "back now".to_owned()),
        ]
    })
    .await;

    // A reconnect catches up again from where each left off: nothing is stored twice.
    bob.connection().stop().await;
    ann.send_to(dm("bob"), "and one more").await.unwrap();
    bob.connection().start().await.unwrap();
    eventually("bob catches up", || async {
        bodies(&bob, dm("ann")).await.len() == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got: Vec<_> = bodies(&bob, dm("ann"))
        .await
        .into_iter()
        .map(|(_, body, _)| body)
        .collect();
    assert_eq!(got, ["while you were away", "back now", "and one more"]);
    server.shutdown().await.unwrap();
}

/// The hub handles one connection's invocations in the order they were sent, as ASP.NET Core
/// does (one at a time per client): thousands of fire-and-forget room messages are numbered in
/// the room's history in the order sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connections_invocations_are_handled_in_the_order_sent() {
    use hubbub_client::Arg;
    const N: u64 = 3_000;
    let server = hubbub_hub::ServerBuilder::new()
        .options(hubbub_hub::HubOptions {
            max_messages_per_second: 100_000,
            // The sender hears its own room messages too: room for all of them at once.
            send_queue_capacity: 100_000,
            ..hubbub_hub::HubOptions::default()
        })
        .hub("/chathub", hubbub_hub::chat_hub())
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = server.url("/chathub");
    let conn = HubConnectionBuilder::new(format!("{url}?name=pat"))
        .build()
        .unwrap();
    conn.start().await.unwrap();
    let _: u64 = conn.invoke("JoinRoom", vec![Arg::from("r")]).await.unwrap();
    for i in 0..N {
        let args = vec![Arg::from("r"), Arg::from("pat"), Arg::from(i.to_string())];
        conn.send("SendToRoom", args).await.unwrap();
    }
    let mut got = Vec::new();
    let mut epoch = String::new();
    while (got.len() as u64) < N {
        let after = got.len() as u64;
        let args = vec![
            Arg::from("r"),
            Arg::from(epoch.as_str()),
            Arg::from_value(after.into()),
        ];
        let page: serde_json::Value = conn.invoke("RoomHistory", args).await.unwrap();
        epoch = page["epoch"].as_str().unwrap().to_owned();
        let messages = page["messages"].as_array().unwrap();
        if messages.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for m in messages {
            assert_eq!(m["seq"].as_u64().unwrap(), got.len() as u64 + 1);
            got.push(m["message"].as_str().unwrap().parse::<u64>().unwrap());
        }
    }
    let expected: Vec<u64> = (0..N).collect();
    assert_eq!(got, expected, "numbered in the order sent");
    server.shutdown().await.unwrap();
}
