//! The app core on a hub it did not write and whose methods it is not told (issue 15): a chat
//! hub written like the ASP.NET Core tutorial (`SendMessage` → `ReceiveMessage`) on the
//! independent `aiosignalr` server (PyPI), `tests/interop/python/tutorial_hub.py`, on 127.0.0.1.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use hubbub_core::*;
use tokio::io::AsyncBufReadExt;
use tokio::sync::broadcast;

struct TutorialHub {
    _child: tokio::process::Child,
    url: String,
}

async fn tutorial_hub() -> TutorialHub {
    tutorial_hub_with(&[]).await
}

fn config(name: &str) -> Config {
    let dir =
        std::env::temp_dir().join(format!("hubbub-core-anyhub-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = Config::desktop(dir);
    config.keychain = KeychainMode::Off("tests".to_owned());
    config.first_run = None;
    config.local_hub_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.retry_max = Duration::from_millis(500);
    config
}

/// Waits (at most 15 s) for an event that `pick` accepts.
async fn expect<T>(
    rx: &mut broadcast::Receiver<AppEvent>,
    what: &str,
    mut pick: impl FnMut(&AppEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .expect("event stream");
        if let Some(found) = pick(&event) {
            return found;
        }
    }
}

async fn join(core: &Core, url: &str, name: &str) -> (AccountId, broadcast::Receiver<AppEvent>) {
    let mut rx = core.subscribe();
    let account = core
        .add_account(NewAccount {
            url: Some(url.to_owned()),
            display_name: name.to_owned(),
            token: None,
            protocol: ProtocolChoice::Json,
            transport: TransportChoice::Auto,
            family: FamilyChoice::Auto,
            hub_name: None,
            ca_pem: None,
        })
        .await
        .unwrap()
        .id;
    // Once connected, the chat asks for the hub's history: this hub has none, and says so.
    let missing = expect(&mut rx, "the missing history", |e| match e {
        AppEvent::HubMethods { unavailable, .. }
            if unavailable.iter().any(|u| u.feature == "history") =>
        {
            Some(unavailable.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(
        missing[0].reason, "Unknown hub method 'History'",
        "{missing:?}"
    );
    (account, rx)
}

fn received(body: &'static str) -> impl FnMut(&AppEvent) -> Option<MessageView> {
    move |e| match e {
        AppEvent::Message { message, .. } if message.body == body && !message.outgoing => {
            Some(message.clone())
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cores_chat_on_the_tutorial_hub_with_no_setting_and_see_everything_it_sends() {
    let hub = tutorial_hub().await;
    let ann_core = Core::start(config("ann")).await.unwrap();
    let bob_core = Core::start(config("bob")).await.unwrap();
    let (ann, mut ann_rx) = join(&ann_core, &hub.url, "ann").await;
    let (bob, mut bob_rx) = join(&bob_core, &hub.url, "bob").await;
    // The inspector's entries, read on their own (the other waits skip what they do not want).
    let mut ann_inspector = ann_core.subscribe();

    ann_core
        .send(ann, "broadcast", "hi from ann")
        .await
        .unwrap();
    let got = expect(&mut bob_rx, "ann's message", received("hi from ann")).await;
    assert_eq!(got.sender, "ann");
    // Auto found the method and says so (the Advanced settings are prefilled with it).
    let methods = expect(&mut ann_rx, "the method auto found", |e| match e {
        AppEvent::HubMethods { methods, .. } if methods.send.is_some() => Some(methods.clone()),
        _ => None,
    })
    .await;
    assert_eq!(methods.send.as_deref(), Some("SendMessage(name,text)"));
    assert_eq!(methods.preset, hubbub_client::Preset::Auto);
    expect(&mut ann_rx, "ann's message sent", |e| match e {
        AppEvent::MessageUpdated { message, .. }
            if message.body == "hi from ann" && message.state == MessageStateView::Sent =>
        {
            Some(())
        }
        _ => None,
    })
    .await;
    bob_core
        .send(bob, "broadcast", "hi from bob")
        .await
        .unwrap();
    expect(&mut ann_rx, "bob's message", received("hi from bob")).await;
    bob_core.send(bob, "broadcast", "the end").await.unwrap();
    expect(&mut ann_rx, "bob's last message", received("the end")).await;
    expect(&mut bob_rx, "bob's last message", |e| match e {
        AppEvent::MessageUpdated { message, .. }
            if message.body == "the end" && message.state == MessageStateView::Sent =>
        {
            Some(())
        }
        _ => None,
    })
    .await;
    // Each message once in each history (the hub passes no ids: our own echo is recognized).
    for (core, account) in [(&ann_core, ann), (&bob_core, bob)] {
        let history = core.history(account, "broadcast", None, 100).await.unwrap();
        let bodies: Vec<&str> = history.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(
            bodies,
            ["hi from ann", "hi from bob", "the end"],
            "{history:?}"
        );
    }

    // The inspector: every invocation, chat messages included, and one no chat knows.
    expect(
        &mut ann_inspector,
        "ReceiveMessage in the inspector",
        |e| match e {
            AppEvent::Inspector {
                entry:
                    InspectorEntry::Invocation {
                        target, chat: true, ..
                    },
                ..
            } if target == "ReceiveMessage" => Some(()),
            _ => None,
        },
    )
    .await;
    let none = ann_core
        .invoke(ann, "Announce", vec![serde_json::json!("psst")])
        .await
        .unwrap();
    assert_eq!(none, serde_json::Value::Null);
    let args = expect(&mut bob_rx, "the unknown target", |e| match e {
        AppEvent::Inspector {
            entry:
                InspectorEntry::Invocation {
                    target,
                    arguments,
                    chat: false,
                    ..
                },
            ..
        } if target == "Notice" => Some(arguments.clone()),
        _ => None,
    })
    .await;
    assert_eq!(args, vec![serde_json::json!("psst"), serde_json::json!(1)]);

    // The console: a result, and the hub's error.
    let sum = ann_core
        .invoke(ann, "Add", vec![2.into(), 3.into()])
        .await
        .unwrap();
    assert_eq!(sum, serde_json::json!(5));
    let failed = ann_core.invoke(ann, "Fail", vec![]).await.unwrap_err();
    assert!(
        failed.to_string().contains("nope: Fail always fails"),
        "{failed}"
    );

    // What auto found is kept with the account; what the hub lacks is listed.
    let account = ann_core
        .accounts()
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.id == ann)
        .unwrap();
    assert_eq!(
        account.methods.send.as_deref(),
        Some("SendMessage(name,text)")
    );
    let lacks: Vec<&str> = account
        .unavailable
        .iter()
        .map(|u| u.feature.as_str())
        .collect();
    assert!(
        lacks.contains(&"history") && lacks.contains(&"inbox"),
        "{lacks:?}"
    );

    // A custom mapping that does not parse is refused and changes nothing.
    let bad = ann_core
        .set_methods(
            ann,
            MethodsView {
                preset: hubbub_client::Preset::Custom,
                send: Some("Send Message".to_owned()),
                receive: vec![],
            },
        )
        .await;
    assert!(matches!(bad, Err(Error::Invalid(_))), "{bad:?}");
    ann_core.shutdown().await;
    bob_core.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_message_is_shown_under_auto_and_a_custom_mapping_survives_a_restart() {
    let hub = tutorial_hub_with(&["--shape", "object"]).await;
    let ann_core = Core::start(config("obj-ann")).await.unwrap();
    let bob_config = config("obj-bob");
    let bob_core = Core::start(bob_config.clone()).await.unwrap();
    let (ann, _ann_rx) = join(&ann_core, &hub.url, "ann").await;
    let (bob, mut bob_rx) = join(&bob_core, &hub.url, "bob").await;
    ann_core.send(ann, "broadcast", "an object").await.unwrap();
    let got = expect(&mut bob_rx, "the object message", received("an object")).await;
    assert_eq!(got.sender, "ann");

    // Bob names the mapping by hand; it is kept across a restart.
    let account = bob_core
        .set_methods(
            bob,
            MethodsView {
                preset: hubbub_client::Preset::Custom,
                send: Some("SendMessage(name,text)".to_owned()),
                receive: vec!["ReceiveMessage(0.user,0.message)".to_owned()],
            },
        )
        .await
        .unwrap();
    assert_eq!(account.methods.preset, hubbub_client::Preset::Custom);
    bob_core.shutdown().await;
    let bob_core = Core::start(bob_config).await.unwrap();
    let mut bob_rx = bob_core.subscribe();
    let account = bob_core.accounts().await.unwrap().remove(0);
    assert_eq!(
        account.methods.receive,
        vec!["ReceiveMessage(0.user,0.message)".to_owned()]
    );
    expect(&mut bob_rx, "the missing history again", |e| match e {
        AppEvent::HubMethods { unavailable, .. } if !unavailable.is_empty() => Some(()),
        _ => None,
    })
    .await;
    ann_core.send(ann, "broadcast", "mapped").await.unwrap();
    let got = expect(&mut bob_rx, "the mapped message", received("mapped")).await;
    assert_eq!(got.sender, "ann");
    ann_core.shutdown().await;
    bob_core.shutdown().await;
}

/// Starts `tutorial_hub.py` with `args` and waits (at most 20 s) for its URL.
async fn tutorial_hub_with(args: &[&str]) -> TutorialHub {
    let python = std::env::var("HUBBUB_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/hubbub/venv/bin/python",
            std::env::var("HOME").unwrap()
        )
    });
    assert!(
        std::path::Path::new(&python).exists(),
        "no Python with aiosignalr at {python}: run scripts/test.sh (it creates the venv)"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/interop/python/tutorial_hub.py");
    let mut child = tokio::process::Command::new(python)
        .arg(script)
        .args(["--port", &port.to_string()])
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the tutorial hub starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the tutorial hub says it listens within 20 s")
        .unwrap()
        .expect("a line");
    let url = line
        .strip_prefix("listening on ")
        .expect("the listening line")
        .to_owned();
    TutorialHub { _child: child, url }
}
