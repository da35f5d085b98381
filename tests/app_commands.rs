//! The shell's commands on Tauri's mock runtime: the same IPC requests the UI sends
//! (`ui/IPC.md`), through the real command glue and the real core, against a real hub on
//! loopback. No window or display is needed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{
    INVOKE_KEY, MockRuntime, get_ipc_response, mock_builder, mock_context, noop_assets,
};
use tauri::webview::InvokeRequest;
use tauri::{WebviewWindow, WebviewWindowBuilder};

/// A hub on its own runtime and thread, for the test's lifetime.
fn hub() -> (String, std::sync::mpsc::Sender<()>) {
    let (url_tx, url_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let server = hubbub_hub::ServerBuilder::new()
                .hub("/chathub", hubbub_hub::chat_hub())
                .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                .await
                .unwrap();
            url_tx.send(server.url("/chathub")).unwrap();
            let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
            server.shutdown().await.unwrap();
        });
    });
    (url_rx.recv().unwrap(), stop_tx)
}

fn app(name: &str) -> (tauri::App<MockRuntime>, WebviewWindow<MockRuntime>) {
    let dir = std::env::temp_dir().join(format!("hubbub-app-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = hubbub_core::Config::desktop(dir);
    config.keychain = hubbub_core::KeychainMode::Off("tests".to_owned());
    config.first_run = None;
    config.local_hub_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let app = hubbub_app::app(mock_builder(), Some(config))
        .build(mock_context(noop_assets()))
        .unwrap();
    let window = WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .unwrap();
    (app, window)
}

fn invoke(window: &WebviewWindow<MockRuntime>, cmd: &str, args: Value) -> Result<Value, Value> {
    get_ipc_response(
        window,
        InvokeRequest {
            cmd: cmd.into(),
            callback: CallbackFn(0),
            error: CallbackFn(1),
            // The app's own origin on Linux and macOS.
            url: "tauri://localhost".parse().unwrap(),
            body: InvokeBody::Json(args),
            headers: Default::default(),
            invoke_key: INVOKE_KEY.to_owned(),
        },
    )
    .map(|body| body.deserialize::<Value>().unwrap())
}

fn ok(window: &WebviewWindow<MockRuntime>, cmd: &str, args: Value) -> Value {
    invoke(window, cmd, args.clone()).unwrap_or_else(|e| panic!("{cmd}({args}) failed: {e}"))
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_ui_commands_drive_the_core() {
    let (url, _stop) = hub();
    let (_app, w) = app("commands");

    let info = ok(&w, "app_info", json!({}));
    assert_eq!(info["platform"], "desktop");
    assert_eq!(info["keychain"]["available"], false);
    assert_eq!(info["keychain"]["detail"], "tests");
    assert_eq!(ok(&w, "list_accounts", json!({})), json!([]));

    // A channel id in the shape the JS `Channel` sends.
    ok(&w, "subscribe", json!({"onEvent": "__CHANNEL__:7"}));

    let account = ok(
        &w,
        "add_account",
        json!({"input": {"url": url, "displayName": "ann", "token": null,
                          "protocol": "json", "transport": "auto"}}),
    );
    let id = account["id"].as_i64().unwrap();
    assert_eq!(account["displayName"], "ann");
    assert_eq!(account["local"], false);
    assert_eq!(account["token"], "none");
    eventually("connected", || {
        ok(&w, "list_accounts", json!({}))[0]["status"]["state"] == "connected"
    });

    let typed = ok(
        &w,
        "send",
        json!({"account": id, "conversation": "broadcast", "text": "<script>alert(1)</script>"}),
    );
    assert_eq!(typed["state"], "sending");
    assert_eq!(typed["body"], "<script>alert(1)</script>");
    eventually("sent", || {
        let page = ok(
            &w,
            "history",
            json!({"account": id, "conversation": "broadcast", "before": null, "limit": 50}),
        );
        page.as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == typed["id"] && m["state"] == "sent")
    });

    let room = ok(&w, "join_room", json!({"account": id, "room": "ops"}));
    assert_eq!(
        room,
        json!({"key": "room:ops", "kind": "room", "name": "ops", "unread": 0})
    );
    ok(
        &w,
        "send",
        json!({"account": id, "conversation": "room:ops", "text": "deploy"}),
    );
    let dm = ok(&w, "open_direct", json!({"account": id, "user": "bob"}));
    assert_eq!(dm["key"], "dm:bob");
    let keys: Vec<Value> = ok(&w, "conversations", json!({"account": id}))
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].clone())
        .collect();
    assert_eq!(
        keys,
        vec![json!("broadcast"), json!("room:ops"), json!("dm:bob")]
    );
    let found = ok(
        &w,
        "search",
        json!({"account": id, "query": "deploy", "limit": 10}),
    );
    assert_eq!(found[0]["conversation"], "room:ops");
    ok(&w, "leave_room", json!({"account": id, "room": "ops"}));
    assert_eq!(
        ok(&w, "conversations", json!({"account": id}))
            .as_array()
            .unwrap()
            .len(),
        2,
        "a room left is not listed"
    );
    eventually("online list", || {
        ok(&w, "online", json!({"account": id})) == json!(["ann"])
    });
    ok(
        &w,
        "mark_read",
        json!({"account": id, "conversation": "broadcast", "seq": 1_000_000}),
    );
    ok(&w, "lifecycle", json!({"foreground": false}));

    // Disconnect / Connect.
    ok(&w, "disconnect", json!({"account": id}));
    assert_eq!(
        ok(&w, "list_accounts", json!({}))[0]["status"]["state"],
        "disconnected"
    );
    ok(&w, "connect", json!({"account": id}));
    eventually("connected again", || {
        ok(&w, "list_accounts", json!({}))[0]["status"]["state"] == "connected"
    });

    // Hubbub's hub: auto found `Send`; the console invokes any method; methods are set by
    // preset or by hand, and a method that does not parse is refused.
    assert_eq!(
        ok(&w, "list_accounts", json!({}))[0]["methods"]["send"],
        "Send(name,text)"
    );
    let online = ok(
        &w,
        "invoke_hub",
        json!({"account": id, "method": "GetOnline", "arguments": []}),
    );
    assert_eq!(online["users"][0]["name"], "ann", "{online}");
    let unknown = invoke(
        &w,
        "invoke_hub",
        json!({"account": id, "method": "NoSuchMethod", "arguments": [1, {"a": null}]}),
    )
    .unwrap_err();
    assert!(
        unknown["message"]
            .as_str()
            .unwrap()
            .contains("Unknown hub method 'NoSuchMethod'"),
        "{unknown}"
    );
    let core_tutorial = ok(
        &w,
        "set_methods",
        json!({"account": id, "methods": {"preset": "coreTutorial", "send": null, "receive": []}}),
    );
    assert_eq!(
        core_tutorial["methods"],
        json!({"preset": "coreTutorial", "send": "SendMessage(name,text)", "receive": ["ReceiveMessage(0,1)"]})
    );
    let bad = invoke(
        &w,
        "set_methods",
        json!({"account": id, "methods": {"preset": "custom", "send": "Post(when)", "receive": []}}),
    )
    .unwrap_err();
    assert_eq!(bad["kind"], "invalid", "{bad}");
    let auto = ok(
        &w,
        "set_methods",
        json!({"account": id, "methods": {"preset": "auto", "send": null, "receive": []}}),
    );
    assert_eq!(
        auto["methods"],
        json!({"preset": "auto", "send": null, "receive": []})
    );

    // The protocol family and the classic hub name (camelCase, as the UI sends them).
    assert_eq!(
        (&auto["family"], &auto["hubName"]),
        (&json!("auto"), &json!(null))
    );
    let classic = ok(
        &w,
        "set_family",
        json!({"account": id, "family": "classic", "hubName": "roomHub"}),
    );
    assert_eq!(
        (&classic["family"], &classic["hubName"]),
        (&json!("classic"), &json!("roomHub"))
    );
    let bad = invoke(
        &w,
        "set_family",
        json!({"account": id, "family": "classic", "hubName": "room hub"}),
    )
    .unwrap_err();
    assert_eq!(bad["kind"], "invalid", "{bad}");
    assert!(
        bad["message"].as_str().unwrap().contains("hub name"),
        "{bad}"
    );
    let bad = invoke(
        &w,
        "set_family",
        json!({"account": id, "family": "signalr3"}),
    )
    .unwrap_err();
    assert!(bad.to_string().contains("signalr3"), "{bad}");
    let auto = ok(
        &w,
        "set_family",
        json!({"account": id, "family": "auto", "hubName": null}),
    );
    assert_eq!(
        (&auto["family"], &auto["hubName"]),
        (&json!("auto"), &json!(null))
    );

    // The extra CA (PEM): checked when saved, a bad one refused with why and nothing changed.
    assert_eq!(auto["caPem"], json!(null));
    let ca = include_str!("fixtures/test-ca.pem");
    let bad = invoke(
        &w,
        "set_ca",
        json!({"account": id, "caPem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"}),
    )
    .unwrap_err();
    assert_eq!(bad["kind"], "invalid", "{bad}");
    assert!(bad["message"].as_str().unwrap().contains("PEM"), "{bad}");
    let listed = ok(&w, "list_accounts", json!({}));
    assert_eq!(listed[0]["caPem"], json!(null), "nothing changed");
    let with_ca = ok(&w, "set_ca", json!({"account": id, "caPem": ca}));
    assert_eq!(with_ca["caPem"], json!(ca.trim()));
    let without = ok(&w, "set_ca", json!({"account": id, "caPem": null}));
    assert_eq!(without["caPem"], json!(null));

    // A token with no keychain: kept for the session.
    let with_token = ok(&w, "set_token", json!({"account": id, "token": "t0k"}));
    assert_eq!(with_token["token"], "session");

    ok(&w, "remove_account", json!({"account": id}));
    assert_eq!(ok(&w, "list_accounts", json!({})), json!([]));
}

#[test]
fn failures_reject_with_a_kind_and_a_sentence() {
    let (_app, w) = app("errors");
    let bad = invoke(
        &w,
        "add_account",
        json!({"input": {"url": "ftp://example.com/hub", "displayName": "ann", "token": null,
                          "protocol": "json", "transport": "auto"}}),
    )
    .unwrap_err();
    assert_eq!(bad["kind"], "invalid");
    assert!(
        bad["message"].as_str().unwrap().contains("http://"),
        "{bad}"
    );

    let missing = invoke(
        &w,
        "send",
        json!({"account": 42, "conversation": "broadcast", "text": "x"}),
    )
    .unwrap_err();
    assert_eq!(missing["kind"], "noAccount");

    // Malformed arguments are refused by the glue, with a message.
    let malformed = invoke(&w, "history", json!({"account": "one"})).unwrap_err();
    assert!(
        malformed.as_str().is_some_and(|m| !m.is_empty()),
        "{malformed}"
    );
}
