//! The app core on classic ASP.NET SignalR 2.x hubs (issue 14): Hubbub's own hub on 127.0.0.1
//! serving the classic family at `/signalr` (hub `chatHub`) beside ASP.NET Core at `/chathub`,
//! real SQLite profiles. An account on a classic URL with no setting finds the family itself
//! and chats with an ASP.NET Core account; a forced family and a classic hub name are kept
//! across restarts and used, each mistake told in a sentence.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hubbub_core::*;
use support::{LIMIT, expect, new_account};

fn profile(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("hubbub-core-classic-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A configuration for the profile in `dir` (kept as it is: a restart reopens it).
fn config(dir: &Path) -> Config {
    let mut config = Config::desktop(dir);
    config.keychain = KeychainMode::Off("tests".to_owned());
    config.first_run = None;
    config.local_hub_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.retry_max = Duration::from_millis(500);
    config
}

async fn hub() -> hubbub_hub::RunningServer {
    hubbub_hub::ServerBuilder::new()
        .hub("/chathub", hubbub_hub::chat_hub())
        .classic(hubbub_hub::ClassicOptions::default())
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap()
}

/// The account's status once connected (with the transport and family: the state changes
/// first, then the connection tells what it speaks).
fn connected(account: AccountId) -> impl FnMut(&AppEvent) -> Option<Status> {
    move |e| match e {
        AppEvent::Status { account: a, status }
            if *a == account && status.state == StateView::Connected && status.family.is_some() =>
        {
            Some(status.clone())
        }
        _ => None,
    }
}

/// The reason of the account's first failed attempt that contains `text`.
fn refused(account: AccountId, text: &'static str) -> impl FnMut(&AppEvent) -> Option<String> {
    move |e| match e {
        AppEvent::Status { account: a, status }
            if *a == account
                && status.state != StateView::Connected
                && status.reason.as_deref().is_some_and(|r| r.contains(text)) =>
        {
            status.reason.clone()
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

fn sent(body: &'static str) -> impl FnMut(&AppEvent) -> Option<()> {
    move |e| match e {
        AppEvent::MessageUpdated { message, .. }
            if message.body == body && message.state == MessageStateView::Sent =>
        {
            Some(())
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_on_a_classic_url_with_no_setting_finds_classic_and_chats_with_a_core_account() {
    let server = hub().await;
    let ann_core = Core::start(config(&profile("ann"))).await.unwrap();
    let bob_core = Core::start(config(&profile("bob"))).await.unwrap();
    let mut ann_rx = ann_core.subscribe();
    let mut bob_rx = bob_core.subscribe();
    let mut inspector = ann_core.subscribe();

    // Only the URL: the endpoint `/signalr`, no family, no hub name.
    let ann = ann_core
        .add_account(new_account(&server.url("/signalr"), "ann"))
        .await
        .unwrap();
    assert_eq!(
        (ann.family, ann.hub_name.clone()),
        (FamilyChoice::Auto, None)
    );
    let status = expect(&mut ann_rx, "ann connected", connected(ann.id)).await;
    assert_eq!(status.family, Some(FamilyChoice::Classic), "{status:?}");
    let bob = bob_core
        .add_account(new_account(&server.url("/chathub"), "bob"))
        .await
        .unwrap();
    let status = expect(&mut bob_rx, "bob connected", connected(bob.id)).await;
    assert_eq!(status.family, Some(FamilyChoice::Core), "{status:?}");

    // What auto found shows in the account (the setting stays auto) and in the inspector.
    let listed = &ann_core.accounts().await.unwrap()[0];
    assert_eq!(listed.family, FamilyChoice::Auto);
    assert_eq!(listed.status.family, Some(FamilyChoice::Classic));
    let event = expect(&mut inspector, "the connected event", |e| match e {
        AppEvent::Inspector {
            entry: InspectorEntry::Connection { event, .. },
            ..
        } if event["event"] == "connected" => Some(event.clone()),
        _ => None,
    })
    .await;
    assert_eq!(event["family"], "classic", "{event}");

    // Presence across the families: each sees both.
    for (core, account) in [(&ann_core, ann.id), (&bob_core, bob.id)] {
        let deadline = tokio::time::Instant::now() + LIMIT;
        while core.online(account).unwrap() != ["ann", "bob"] {
            assert!(
                tokio::time::Instant::now() < deadline,
                "online: {:?}",
                core.online(account)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // One chat across the two families, both ways.
    ann_core
        .send(ann.id, "broadcast", "hi from classic")
        .await
        .unwrap();
    let got = expect(&mut bob_rx, "ann's message", received("hi from classic")).await;
    assert_eq!(got.sender, "ann");
    expect(&mut ann_rx, "ann's message sent", sent("hi from classic")).await;
    bob_core
        .send(bob.id, "broadcast", "hi from core")
        .await
        .unwrap();
    let got = expect(&mut ann_rx, "bob's message", received("hi from core")).await;
    assert_eq!(got.sender, "bob");
    expect(&mut bob_rx, "bob's message sent", sent("hi from core")).await;
    // Each message once on both sides (a classic item carries the message id: no echo or
    // catch-up stores one twice).
    for (core, account) in [(&ann_core, ann.id), (&bob_core, bob.id)] {
        let shown = core.history(account, "broadcast", None, 100).await.unwrap();
        let bodies: Vec<&str> = shown.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["hi from classic", "hi from core"], "{shown:#?}");
    }

    ann_core.shutdown().await;
    bob_core.shutdown().await;
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_family_and_a_classic_hub_name_are_kept_across_restarts_and_used() {
    let server = hub().await;
    let url = server.url("/signalr");
    let dir = profile("settings");
    let core = Core::start(config(&dir)).await.unwrap();
    let mut rx = core.subscribe();
    let account = core.add_account(new_account(&url, "ann")).await.unwrap().id;
    expect(&mut rx, "connected on auto", connected(account)).await;
    core.send(account, "broadcast", "queued before the changes")
        .await
        .unwrap();
    expect(
        &mut rx,
        "the first message sent",
        sent("queued before the changes"),
    )
    .await;

    // Forced ASP.NET Core on a classic endpoint: the account reconnects with it and says why
    // it cannot connect.
    let changed = core
        .set_family(account, FamilyChoice::Core, None)
        .await
        .unwrap();
    assert_eq!(changed.family, FamilyChoice::Core);
    let reason = expect(
        &mut rx,
        "the ASP.NET Core refusal",
        refused(account, "classic ASP.NET SignalR server"),
    )
    .await;
    assert!(reason.contains("ASP.NET Core SignalR protocol"), "{reason}");

    // Classic with a hub name the endpoint does not have.
    let changed = core
        .set_family(account, FamilyChoice::Classic, Some("roomHub".to_owned()))
        .await
        .unwrap();
    assert_eq!(
        (changed.family, changed.hub_name.as_deref()),
        (FamilyChoice::Classic, Some("roomHub"))
    );
    let reason = expect(
        &mut rx,
        "the unknown hub",
        refused(account, "no hub named 'roomHub'"),
    )
    .await;
    assert!(reason.contains("check the hub name"), "{reason}");

    // Names that are not names are refused, and change nothing.
    for bad in ["", "chat hub", "2chat", "chat-hub"] {
        let err = core
            .set_family(account, FamilyChoice::Classic, Some(bad.to_owned()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "invalid", "{bad:?}: {err}");
        assert!(err.to_string().contains("hub name"), "{bad:?}: {err}");
    }
    let err = core
        .add_account(NewAccount {
            hub_name: Some("no such".to_owned()),
            ..new_account(&server.url("/signalr?other=1"), "ann")
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "invalid", "{err}");
    assert_eq!(core.accounts().await.unwrap().len(), 1, "nothing half-made");

    // A message typed meanwhile waits in the outbox.
    core.send(account, "broadcast", "typed while refused")
        .await
        .unwrap();

    // Both settings survive a restart and are used by the reopened account.
    core.shutdown().await;
    drop(core);
    let core = Core::start(config(&dir)).await.unwrap();
    let mut rx = core.subscribe();
    let listed = core.accounts().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].family, FamilyChoice::Classic);
    assert_eq!(listed[0].hub_name.as_deref(), Some("roomHub"));
    expect(
        &mut rx,
        "the unknown hub after a restart",
        refused(account, "no hub named 'roomHub'"),
    )
    .await;

    // The right name (any case, as classic hub names match): connected on classic, and the
    // outbox goes out to an ASP.NET Core peer.
    let peer = hubbub_client::HubConnectionBuilder::new(server.url("/chathub?name=carol"))
        .build()
        .unwrap();
    let (got_tx, mut got_rx) = tokio::sync::mpsc::unbounded_channel();
    peer.on("broadcastMessage", move |args| {
        let _ = got_tx.send(args[1].decode::<String>().unwrap_or_default());
        None
    });
    peer.start().await.unwrap();
    let changed = core
        .set_family(account, FamilyChoice::Classic, Some("ChatHub".to_owned()))
        .await
        .unwrap();
    assert_eq!(changed.hub_name.as_deref(), Some("ChatHub"));
    let status = expect(&mut rx, "connected on classic", connected(account)).await;
    assert_eq!(status.family, Some(FamilyChoice::Classic));
    let got = tokio::time::timeout(LIMIT, got_rx.recv())
        .await
        .expect("the queued message within the limit")
        .unwrap();
    assert_eq!(got, "typed while refused");

    // Back to auto with the default name: kept as none.
    let changed = core
        .set_family(account, FamilyChoice::Auto, None)
        .await
        .unwrap();
    assert_eq!(
        (changed.family, changed.hub_name),
        (FamilyChoice::Auto, None)
    );
    let hubs = core.store().hubs().await.unwrap();
    assert_eq!(
        (hubs[0].family.clone(), hubs[0].hub_name.clone()),
        (None, None)
    );
    expect(&mut rx, "connected on auto again", connected(account)).await;

    peer.stop().await;
    core.shutdown().await;
    server.shutdown().await.unwrap();
}
