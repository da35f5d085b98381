//! Tokens in the real OS keychain (GNOME Keyring's Secret Service over D-Bus).
//!
//! The keychain a test sees depends on the session around it, so `scripts/test.sh` runs this
//! file three times with `HUBBUB_TEST_KEYCHAIN` saying which one it set up:
//! - `unlocked`: `dbus-run-session` + `gnome-keyring-daemon --unlock` — the token goes to the
//!   keychain, survives a restart of the core, and is removed with its account;
//! - `locked`: `dbus-run-session` with a keyring that was never unlocked — the user is told,
//!   and the token is kept for the session: connecting still works;
//! - `absent`: no session bus at all — the same, with the reason.
//!
//! Run by hand without the variable, it checks nothing and says so.

use std::net::SocketAddr;
use std::time::Duration;

use hubbub_core::*;

fn config(name: &str) -> Config {
    let dir = std::env::temp_dir().join(format!(
        "hubbub-keychain-test-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = Config::desktop(dir);
    // A service of its own, so the test never touches a real user's tokens.
    config.keychain_service = format!("app.hubbub.chat.test-{}", std::process::id());
    config.first_run = None;
    config.local_hub_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config
}

fn account(url: &str, token: &str) -> NewAccount {
    NewAccount {
        url: Some(url.to_owned()),
        display_name: "ann".to_owned(),
        token: Some(token.to_owned()),
        protocol: ProtocolChoice::Json,
        transport: TransportChoice::Auto,
        family: FamilyChoice::Auto,
        hub_name: None,
        ca_pem: None,
    }
}

/// A hub that requires an HS256 token: connecting proves the token was used.
async fn jwt_hub() -> (hubbub_hub::RunningServer, String) {
    let secret = b"keychain-test-secret-of-32-bytes!!";
    #[derive(serde::Serialize)]
    struct Claims {
        sub: &'static str,
        exp: u64,
    }
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &Claims { sub: "ann", exp },
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap();
    let server = hubbub_hub::ServerBuilder::new()
        .hub("/chathub", hubbub_hub::chat_hub())
        .auth(hubbub_hub::JwtAuth::hs256(secret).unwrap())
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    (server, token)
}

async fn wait_connected(core: &Core, id: AccountId) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let accounts = core.accounts().await.unwrap();
        let status = &accounts.iter().find(|a| a.id == id).unwrap().status;
        if status.state == StateView::Connected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not connected: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn tokens_in_the_os_keychain_or_for_the_session_when_it_cannot_be_used() {
    let Ok(mode) = std::env::var("HUBBUB_TEST_KEYCHAIN") else {
        eprintln!(
            "HUBBUB_TEST_KEYCHAIN is not set: scripts/test.sh runs this test in each keychain setup"
        );
        return;
    };
    let (server, token) = jwt_hub().await;
    let url = server.url("/chathub");
    let cfg = config(&mode);
    let core = Core::start(cfg.clone()).await.unwrap();
    let mut events = core.subscribe();
    let added = core.add_account(account(&url, &token)).await.unwrap();
    wait_connected(&core, added.id).await;

    match mode.as_str() {
        "unlocked" => {
            assert!(core.info().keychain.available, "{:?}", core.info().keychain);
            assert_eq!(added.token, TokenPlace::Keychain);
            // Restarted: the token comes back from the keychain, not from memory.
            core.shutdown().await;
            drop(core);
            let core = Core::start(cfg).await.unwrap();
            let again = core.accounts().await.unwrap().remove(0);
            assert_eq!(again.token, TokenPlace::Keychain);
            wait_connected(&core, again.id).await;
            // Removing the account removes the token from the keychain.
            core.remove_account(again.id).await.unwrap();
            let service = format!("app.hubbub.chat.test-{}", std::process::id());
            let entry = keyring_entry(&service, again.id);
            assert!(entry.is_none(), "the token outlived its account");
            core.shutdown().await;
        }
        "locked" | "absent" => {
            assert_eq!(added.token, TokenPlace::Session);
            let notice = loop {
                match events.try_recv() {
                    Ok(AppEvent::Notice { text, .. }) => break text,
                    Ok(_) => continue,
                    Err(e) => panic!("no notice told the user: {e:?}"),
                }
            };
            assert!(notice.contains("this session only"), "{notice}");
            if mode == "absent" {
                let info = core.info().keychain;
                assert!(!info.available);
                assert!(info.detail.is_some_and(|d| !d.is_empty()));
            }
            core.shutdown().await;
        }
        other => panic!("unknown HUBBUB_TEST_KEYCHAIN={other}"),
    }
}

/// Reads the keychain directly (not through the core), to see what it really holds.
fn keyring_entry(service: &str, account: AccountId) -> Option<String> {
    let output = std::process::Command::new("secret-tool")
        .args([
            "lookup",
            "service",
            service,
            "username",
            &format!("account-{account}"),
        ])
        .output()
        .expect("secret-tool (libsecret-tools) is installed");
    let found = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (!found.is_empty()).then_some(found)
}
