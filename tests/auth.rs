//! JWT auth on the hub (HS256 and RS256): negotiate and every transport request need a valid
//! bearer token; the user is its subject; a bad token gets 401 and no connection.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hubbub_client::HubConnectionBuilder;
use jsonwebtoken::{EncodingKey, Header};

const SECRET: &[u8] = b"a test secret of more than 16 bytes";

#[derive(serde::Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
}

fn exp(offset: i64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    now.checked_add_signed(offset).unwrap()
}

fn hs256(sub: &str, secret: &[u8], offset: i64) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        &Claims {
            sub,
            exp: exp(offset),
        },
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn rs256(sub: &str) -> String {
    let pem = std::fs::read(support::root().join("tests/fixtures/jwt-rs256-private.pem")).unwrap();
    let key = EncodingKey::from_rsa_pem(&pem).unwrap();
    jsonwebtoken::encode(
        &Header::new(jsonwebtoken::Algorithm::RS256),
        &Claims {
            sub,
            exp: exp(3600),
        },
        &key,
    )
    .unwrap()
}

async fn hub(auth: hubbub_hub::JwtAuth) -> hubbub_hub::RunningServer {
    hubbub_hub::ServerBuilder::new()
        .hub("/chathub", hubbub_hub::chat_hub())
        .auth(auth)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

async fn connect_with(
    url: &str,
    token: Option<String>,
) -> Result<hubbub_client::HubConnection, hubbub_client::Error> {
    let mut builder = HubConnectionBuilder::new(url);
    if let Some(token) = token {
        builder = builder.access_token(move || {
            let token = token.clone();
            async move { Ok(token) }
        });
    }
    let conn = builder.build()?;
    conn.start().await?;
    Ok(conn)
}

async fn online_users(conn: &hubbub_client::HubConnection) -> Vec<String> {
    let online: serde_json::Value = conn.invoke("GetOnline", vec![]).await.unwrap();
    online["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_tokens() {
    let server = hub(hubbub_hub::JwtAuth::hs256(SECRET).unwrap()).await;
    let url = server.url("/chathub?name=ignored-when-authenticated");
    let conn = connect_with(&url, Some(hs256("alice", SECRET, 3600)))
        .await
        .unwrap();
    assert_eq!(online_users(&conn).await, vec!["alice"]);
    conn.stop().await;

    for (label, token) in [
        ("no token", None),
        (
            "wrong secret",
            Some(hs256("mallory", b"another secret of 16+ bytes", 3600)),
        ),
        ("expired", Some(hs256("alice", SECRET, -3600))),
        ("garbage", Some("not.a.jwt".to_owned())),
    ] {
        let err = connect_with(&url, token).await.unwrap_err().to_string();
        assert!(err.contains("401"), "{label}: {err}");
    }
    let counters = server.counters("/chathub").unwrap().snapshot();
    assert_eq!(
        counters["connectionsTotal"], 1,
        "refused requests made no connection: {counters}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_tokens() {
    let public =
        std::fs::read(support::root().join("tests/fixtures/jwt-rs256-public.pem")).unwrap();
    let server = hub(hubbub_hub::JwtAuth::rs256_pem(&public).unwrap()).await;
    let url = server.url("/chathub");
    let conn = connect_with(&url, Some(rs256("bob"))).await.unwrap();
    assert_eq!(online_users(&conn).await, vec!["bob"]);
    conn.stop().await;
    // An HS256 token (signed with anything) is not accepted by an RS256 hub.
    let err = connect_with(&url, Some(hs256("bob", SECRET, 3600)))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("401"), "{err}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_another_user_cannot_use_a_connection() {
    let server = hub(hubbub_hub::JwtAuth::hs256(SECRET).unwrap()).await;
    let http = reqwest::Client::new();
    let body = http
        .post(server.url("/chathub/negotiate?negotiateVersion=1"))
        .bearer_auth(hs256("alice", SECRET, 3600))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let negotiate: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let token = negotiate["connectionToken"].as_str().unwrap();
    let poll = |bearer: String| {
        http.get(server.url(&format!("/chathub?id={token}")))
            .bearer_auth(bearer)
            .timeout(Duration::from_secs(5))
            .send()
    };
    assert_eq!(
        poll(hs256("mallory", SECRET, 3600)).await.unwrap().status(),
        403
    );
    assert_eq!(poll("bad".to_owned()).await.unwrap().status(), 401);
    assert_eq!(
        poll(hs256("alice", SECRET, 3600)).await.unwrap().status(),
        200,
        "the owner's first poll"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_against_an_authenticated_hub() {
    let server = hub(hubbub_hub::JwtAuth::hs256(SECRET).unwrap()).await;
    let url = server.url("/chathub");
    let good = hs256("carol", SECRET, 3600);
    let bad = hs256("carol", b"the wrong secret, 16+ bytes", 3600);
    let output = support::node(
        "auth.mjs",
        &[&url, &good, &bad, "carol"],
        Duration::from_secs(60),
    )
    .await;
    let stdout = support::show(&output);
    assert_eq!(stdout.lines().count(), 9, "every scenario ran");
    assert!(output.status.success(), "failed scenarios above");
    server.shutdown().await.unwrap();
}
