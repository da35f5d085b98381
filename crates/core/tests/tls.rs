//! An account's extra CA (issue 16): Hubbub's own hub on 127.0.0.1 serving HTTPS and WSS with a
//! certificate from a throw-away CA, real SQLite profiles. With the CA set, an account connects
//! (WebSockets over wss://, long polling over https://) and chats; without it the connection
//! fails with a certificate error in its status; setting it reconnects; a PEM that is not one is
//! refused with a sentence and loses nothing; the CA is kept across restarts.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hubbub_core::*;
use support::{expect, new_account};

fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hubbub-core-tls-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
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

/// A throw-away CA (its certificate as PEM) and, written into `dir`, a certificate it signs for
/// 127.0.0.1 with its key: (CA PEM, certificate file, key file).
fn throwaway_ca(dir: &Path) -> (String, PathBuf, PathBuf) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Hubbub core test CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(params, ca_key);
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "hub");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (cert_file, key_file) = (dir.join("hub.pem"), dir.join("hub-key.pem"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    (ca_cert.pem(), cert_file, key_file)
}

fn connected(account: AccountId) -> impl FnMut(&AppEvent) -> Option<Status> {
    move |e| match e {
        AppEvent::Status { account: a, status }
            if *a == account
                && status.state == StateView::Connected
                && status.transport.is_some() =>
        {
            Some(status.clone())
        }
        _ => None,
    }
}

/// The reason of the account's first failed attempt.
fn failed(account: AccountId) -> impl FnMut(&AppEvent) -> Option<String> {
    move |e| match e {
        AppEvent::Status { account: a, status }
            if *a == account && status.state != StateView::Connected =>
        {
            status.reason.clone()
        }
        _ => None,
    }
}

fn sent(account: AccountId, body: &'static str) -> impl FnMut(&AppEvent) -> Option<()> {
    move |e| match e {
        AppEvent::MessageUpdated {
            account: a,
            message,
            ..
        } if *a == account && message.body == body && message.state == MessageStateView::Sent => {
            Some(())
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_with_the_hubs_ca_connects_over_tls_and_one_without_gets_a_certificate_error() {
    let dir = dir("ca");
    let (ca_pem, cert, key) = throwaway_ca(&dir);
    let server = hubbub_hub::ServerBuilder::new()
        .hub("/chathub", hubbub_hub::chat_hub())
        .tls(hubbub_hub::TlsFiles { cert, key })
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = server.url("/chathub");
    assert!(url.starts_with("https://"), "{url}");
    let profile = dir.join("profile");
    let core = Core::start(config(&profile)).await.unwrap();
    let mut rx = core.subscribe();

    // With the CA: WebSockets over wss:// (auto picks it) and chatting.
    let ann = core
        .add_account(NewAccount {
            ca_pem: Some(ca_pem.clone()),
            ..new_account(&url, "ann")
        })
        .await
        .unwrap();
    assert_eq!(ann.ca_pem.as_deref(), Some(ca_pem.trim()));
    let status = expect(&mut rx, "ann connected over wss", connected(ann.id)).await;
    assert_eq!(
        status.transport.as_deref(),
        Some("WebSockets"),
        "{status:?}"
    );
    core.send(ann.id, "broadcast", "over tls").await.unwrap();
    expect(&mut rx, "ann's message sent", sent(ann.id, "over tls")).await;

    // Long polling: every request over https://.
    let lp_url = server.url("/chathub?lp=1");
    let lp = core
        .add_account(NewAccount {
            ca_pem: Some(ca_pem.clone()),
            transport: TransportChoice::LongPolling,
            ..new_account(&lp_url, "lp")
        })
        .await
        .unwrap();
    let status = expect(&mut rx, "long polling connected", connected(lp.id)).await;
    assert_eq!(
        status.transport.as_deref(),
        Some("LongPolling"),
        "{status:?}"
    );

    // Without it: the system's roots do not know the CA, and the status says it is the
    // certificate.
    let bob_url = server.url("/chathub?bob=1");
    let bob = core
        .add_account(new_account(&bob_url, "bob"))
        .await
        .unwrap();
    assert_eq!(bob.ca_pem, None);
    let reason = expect(&mut rx, "bob refused", failed(bob.id)).await;
    assert!(
        reason.contains("certificate") && reason.contains("not trusted"),
        "a certificate error, said: {reason}"
    );

    // Bad PEM: refused with a sentence, and nothing lost (bob's setting, ann's CA, no account).
    for bad in [
        "not a certificate".to_owned(),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".to_owned(),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_owned(),
    ] {
        let err = core.set_ca(ann.id, Some(bad.clone())).await.unwrap_err();
        assert_eq!(err.kind(), "invalid", "{bad:?}: {err}");
        assert!(err.to_string().contains("PEM"), "{bad:?}: {err}");
        let err = core
            .add_account(NewAccount {
                ca_pem: Some(bad.clone()),
                ..new_account(&server.url("/chathub?zed=1"), "zed")
            })
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "invalid", "{bad:?}: {err}");
    }
    let accounts = core.accounts().await.unwrap();
    assert_eq!(accounts.len(), 3, "nothing half-made");
    let find = |id: AccountId| accounts.iter().find(|a| a.id == id).unwrap().clone();
    assert_eq!(find(ann.id).ca_pem.as_deref(), Some(ca_pem.trim()));
    assert_eq!(find(bob.id).ca_pem, None);

    // Setting bob's CA reconnects him; a message typed meanwhile goes out.
    core.send(bob.id, "broadcast", "queued before the CA")
        .await
        .unwrap();
    let changed = core.set_ca(bob.id, Some(ca_pem.clone())).await.unwrap();
    assert_eq!(changed.ca_pem.as_deref(), Some(ca_pem.trim()));
    expect(&mut rx, "bob connected with the CA", connected(bob.id)).await;
    expect(
        &mut rx,
        "bob's queued message sent",
        sent(bob.id, "queued before the CA"),
    )
    .await;

    // Kept across a restart; blank text clears it (and the certificate error is back).
    core.shutdown().await;
    drop(core);
    let core = Core::start(config(&profile)).await.unwrap();
    let mut rx = core.subscribe();
    let accounts = core.accounts().await.unwrap();
    assert!(
        accounts
            .iter()
            .all(|a| a.ca_pem.as_deref() == Some(ca_pem.trim())),
        "{accounts:?}"
    );
    expect(&mut rx, "bob connected after a restart", connected(bob.id)).await;
    let cleared = core.set_ca(bob.id, Some("  \n".to_owned())).await.unwrap();
    assert_eq!(cleared.ca_pem, None);
    let reason = expect(&mut rx, "bob refused again", failed(bob.id)).await;
    assert!(reason.contains("not trusted"), "{reason}");

    core.shutdown().await;
    server.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
