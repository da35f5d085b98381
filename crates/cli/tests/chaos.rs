//! Ten chat clients, each with its own history file, send numbered series while the hub (a
//! real `hubbub hub` process with a history file) is killed with SIGKILL and restarted several
//! times. Every client must end with every message exactly once, in each sender's order.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use hubbub_client::store::{ConversationKind, Store};
use hubbub_client::{Chat, Delays, HubConnectionBuilder};

mod support;
use support::hubbub;
const CLIENTS: usize = 10;
const PER_CLIENT: usize = 30;

fn start_hub(port: u16, history: &std::path::Path) -> Child {
    let child = hubbub()
        .args([
            "hub",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--max-messages-per-second",
            "100000",
        ])
        .arg("--history")
        .arg(history)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the hub did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn ten_clients_keep_every_message_exactly_once_through_hub_kills() {
    let dir = std::env::temp_dir().join(format!("hubbub-chaos-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let history = dir.join("hub-history.sqlite3");
    let mut hub = start_hub(port, &history);
    let url = format!("http://127.0.0.1:{port}/chathub");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let chats: Vec<Chat> = runtime.block_on(async {
        let mut chats = Vec::new();
        for k in 0..CLIENTS {
            let store = Store::open(dir.join(format!("client-{k}.sqlite3")))
                .await
                .unwrap();
            let conn = HubConnectionBuilder::new(format!("{url}?name=c{k}"))
                .retry_policy(Delays(vec![Duration::from_millis(150); 400]))
                .retry_first_start(true)
                .build()
                .unwrap();
            let chat = Chat::open(conn.clone(), store, &url, &format!("c{k}"))
                .await
                .unwrap();
            conn.start().await.unwrap();
            chats.push(chat);
        }
        chats
    });
    // Every client types its series at its own pace; they are durable the moment they are typed.
    let typing: Vec<_> = chats
        .iter()
        .enumerate()
        .map(|(k, chat)| {
            let chat = chat.clone();
            runtime.spawn(async move {
                for i in 0..PER_CLIENT {
                    chat.send(&format!("c{k}-{i:03}")).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(40 + k as u64 * 3)).await;
                }
            })
        })
        .collect();
    // Meanwhile the hub dies without warning, three times, and comes back on the same port.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(350));
        hub.kill().unwrap();
        hub.wait().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        hub = start_hub(port, &history);
    }
    runtime.block_on(async {
        for t in typing {
            t.await.unwrap();
        }
    });

    // Converge: every outbox empty, every client holding every message.
    let expected = CLIENTS * PER_CLIENT;
    let deadline = Instant::now() + Duration::from_secs(60);
    let histories = loop {
        let histories: Vec<Vec<(String, String)>> = runtime.block_on(async {
            let mut all = Vec::new();
            for chat in &chats {
                let store = chat.store();
                let hub = store.hubs().await.unwrap()[0].id;
                let conv = store
                    .conversation(hub, ConversationKind::Broadcast)
                    .await
                    .unwrap();
                let rows = store.newest(conv, 10_000).await.unwrap();
                all.push(rows.into_iter().map(|m| (m.sender, m.body)).collect());
            }
            all
        });
        let pending: usize = runtime.block_on(async {
            let mut n = 0;
            for chat in &chats {
                n += chat.pending().await.unwrap();
            }
            n
        });
        if pending == 0 && histories.iter().all(|h| h.len() >= expected) {
            break histories;
        }
        assert!(
            Instant::now() < deadline,
            "no convergence: {pending} unsent, histories hold {:?} of {expected}",
            histories.iter().map(Vec::len).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for (k, rows) in histories.iter().enumerate() {
        assert_eq!(
            rows.len(),
            expected,
            "client {k}: exactly once (no repeats)"
        );
        for sender in 0..CLIENTS {
            let series: Vec<&str> = rows
                .iter()
                .filter(|(s, _)| *s == format!("c{sender}"))
                .map(|(_, b)| b.as_str())
                .collect();
            let wanted: Vec<String> = (0..PER_CLIENT)
                .map(|i| format!("c{sender}-{i:03}"))
                .collect();
            assert_eq!(
                series, wanted,
                "client {k} holds c{sender}'s series once, in order"
            );
        }
    }
    hub.kill().unwrap();
    let _ = hub.wait();
    drop(chats);
    drop(runtime);
    let _ = std::fs::remove_dir_all(&dir);
}
