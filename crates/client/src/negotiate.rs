//! The negotiate request, with redirects.

use hubbub_protocol::classic::{self, ClassicNegotiation};
use hubbub_protocol::negotiate::{self, MAX_REDIRECTS, NegotiateResponse, Negotiation};

use crate::Error;
use crate::options::Options;

/// The outcome of negotiating: where to connect, with what, and with which token.
#[derive(Debug)]
pub(crate) struct Negotiated {
    pub(crate) url: String,
    pub(crate) response: NegotiateResponse,
    pub(crate) token: Option<String>,
}

/// A failed ASP.NET Core negotiate, and whether the hub may be a classic one (it answered
/// with a classic body, or refused the request with 404 or 405).
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) error: Error,
    pub(crate) maybe_classic: bool,
    /// The body was a classic one (so a classic negotiate's error is the one to report).
    pub(crate) classic_body: bool,
}

impl From<Error> for Refused {
    fn from(error: Error) -> Self {
        Self {
            error,
            maybe_classic: false,
            classic_body: false,
        }
    }
}

impl From<hubbub_protocol::Error> for Refused {
    fn from(error: hubbub_protocol::Error) -> Self {
        Error::from(error).into()
    }
}

pub(crate) async fn negotiate(
    http: &reqwest::Client,
    options: &Options,
    hub_url: &str,
    token: Option<String>,
) -> Result<Negotiated, Error> {
    negotiate_core(http, options, hub_url, token)
        .await
        .map_err(|r| r.error)
}

/// The ASP.NET Core negotiate (`POST …/negotiate?negotiateVersion=1`), following redirects.
pub(crate) async fn negotiate_core(
    http: &reqwest::Client,
    options: &Options,
    hub_url: &str,
    mut token: Option<String>,
) -> Result<Negotiated, Refused> {
    let mut url = negotiate::http_url(hub_url)?;
    for _ in 0..=MAX_REDIRECTS {
        let request = http.post(negotiate::negotiate_url(&url, options.stateful_reconnect));
        let (status, body) = send_negotiate(request, options, token.as_deref(), &url).await?;
        let classic_body = classic::is_classic(&body);
        if status != reqwest::StatusCode::OK {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            let error = if status == reqwest::StatusCode::NOT_FOUND {
                Error::Negotiate(format!(
                    "no SignalR hub at {} (404): check the URL's path (Hubbub serves /chathub, \
                     and classic hubs at /signalr)",
                    url::Url::parse(&url).map_or_else(|_| url.clone(), |u| u.path().to_owned())
                ))
            } else {
                Error::Negotiate(format!("status {status}: {}", text.trim()))
            };
            return Err(Refused {
                error,
                classic_body,
                maybe_classic: classic_body
                    || matches!(
                        status,
                        reqwest::StatusCode::NOT_FOUND | reqwest::StatusCode::METHOD_NOT_ALLOWED
                    ),
            });
        }
        if classic_body {
            return Err(Refused {
                error: Error::Negotiate(
                    hubbub_protocol::NegotiateError::ClassicServer {
                        protocol_version: None,
                    }
                    .to_string(),
                ),
                maybe_classic: true,
                classic_body: true,
            });
        }
        let asked = options.stateful_reconnect || negotiate::url_requests_stateful_reconnect(&url);
        match negotiate::parse_response(&body, asked) {
            Ok(Negotiation::Connect(response)) => {
                return Ok(Negotiated {
                    url,
                    response,
                    token,
                });
            }
            Ok(Negotiation::Redirect {
                url: next,
                access_token,
            }) => {
                url = negotiate::http_url(&next)?;
                if access_token.is_some() {
                    token = access_token;
                }
            }
            Err(e) => return Err(Error::Negotiate(e.to_string()).into()),
        }
    }
    Err(Error::Negotiate(format!("more than {MAX_REDIRECTS} redirects")).into())
}

/// The outcome of a classic negotiate.
#[derive(Debug)]
pub(crate) struct ClassicNegotiated {
    /// The endpoint URL (after redirects), http or https.
    pub(crate) base: String,
    pub(crate) response: classic::NegotiateResponse,
    pub(crate) token: Option<String>,
}

/// Sends a negotiate request (either family's) as every request of the connection goes out:
/// the handshake's time limit (a hub that accepts the connection but never answers must not
/// hang a start or a reconnect), `X-Requested-With`, the extra headers, the bearer token.
/// Returns the status and the body; an unreachable hub is said in plain words.
async fn send_negotiate(
    request: reqwest::RequestBuilder,
    options: &Options,
    token: Option<&str>,
    url: &str,
) -> Result<(reqwest::StatusCode, bytes::Bytes), Error> {
    let mut request = request
        .timeout(options.handshake_timeout)
        .header("X-Requested-With", "XMLHttpRequest");
    for (k, v) in &options.headers {
        request = request.header(k, v);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| Error::Negotiate(unreachable_hint(&e, url)))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| Error::Negotiate(without_url(&e)))?;
    Ok((status, body))
}

/// The classic negotiate (`GET …/negotiate?clientProtocol=2.1&connectionData=…`), following
/// `RedirectUrl` (with its `AccessToken`) at most [`MAX_REDIRECTS`] times. Errors are worded
/// for a user: a hub the endpoint does not know, refused credentials, a server's `Error`, a
/// protocol version this client does not speak.
pub(crate) async fn negotiate_classic(
    http: &reqwest::Client,
    options: &Options,
    base_url: &str,
    mut token: Option<String>,
) -> Result<ClassicNegotiated, Error> {
    let mut base = negotiate::http_url(base_url)?;
    let connection_data = classic::form::encode_connection_data([options.hub_name.as_str()]);
    for _ in 0..=MAX_REDIRECTS {
        let url = classic::request_url(
            &base,
            classic::Action::Negotiate,
            &classic::RequestParams {
                connection_data: Some(&connection_data),
                ..Default::default()
            },
        );
        let (status, body) =
            send_negotiate(http.get(&url), options, token.as_deref(), &url).await?;
        if status != reqwest::StatusCode::OK {
            return Err(classic_refusal(status, &body, &options.hub_name));
        }
        match classic::parse_negotiate(&body) {
            Ok(ClassicNegotiation::Connect(response)) => {
                if !classic::ACCEPTED_PROTOCOL_VERSIONS
                    .contains(&response.protocol_version.as_str())
                {
                    return Err(Error::Negotiate(format!(
                        "the classic SignalR server speaks protocol version {}; this client \
                         speaks {} (a SignalR 2.2 or newer server)",
                        response.protocol_version,
                        classic::ACCEPTED_PROTOCOL_VERSIONS.join(", ")
                    )));
                }
                return Ok(ClassicNegotiated {
                    base,
                    response,
                    token,
                });
            }
            Ok(ClassicNegotiation::Redirect { url, access_token }) => {
                base = negotiate::http_url(&url)?;
                if access_token.is_some() {
                    token = access_token;
                }
            }
            Err(e) => return Err(Error::Negotiate(e.to_string())),
        }
    }
    Err(Error::Negotiate(format!(
        "more than {MAX_REDIRECTS} redirects"
    )))
}

/// Whether a classic negotiate error came from a classic endpoint refusing (an unknown hub,
/// credentials, its `Error`), rather than from no classic endpoint being there (404, 405, no
/// answer).
pub(crate) fn classic_answered(error: &Error) -> bool {
    match error {
        Error::Negotiate(m) => {
            !(m.starts_with("status 404") || m.starts_with("status 405"))
                && (m.contains("no hub named")
                    || m.contains("refused the credentials")
                    || m.contains("refused the negotiation")
                    || m.contains("protocol version"))
        }
        _ => false,
    }
}

/// Whether the hub answered a connect attempt with a refusal that trying again cannot change:
/// no hub at the URL (404, 405), no hub of that name, credentials refused, another protocol
/// family than the one forced. A connection that has never connected gives up on these
/// instead of retrying (`retry_first_start` is for a hub that is not up yet).
pub(crate) fn is_refusal(error: &Error) -> bool {
    match error {
        Error::Negotiate(m) => {
            let status_4xx = m.starts_with("status 4")
                && !m.starts_with("status 408")
                && !m.starts_with("status 429");
            status_4xx
                || m.starts_with("no SignalR hub at")
                || m.contains("no hub named")
                || m.contains("refused the credentials")
                || m.contains("detected a classic")
                || m.contains("ASP.NET Core SignalR server")
        }
        Error::Url(_) => true,
        _ => false,
    }
}

/// A plain-language sentence for a request that reached nothing (connection refused, no such
/// host) or a hub whose TLS certificate is not trusted, or the error's own text.
pub(crate) fn unreachable_hint(error: &reqwest::Error, url: &str) -> String {
    let text = without_url(error);
    if error.is_connect() {
        let place = url::Url::parse(url)
            .ok()
            .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
            .unwrap_or_else(|| "the hub's address".to_owned());
        if text.contains("Connection refused") {
            return format!("nothing is listening on {place}: is the hub running? ({text})");
        }
        // rustls: "invalid peer certificate: UnknownIssuer" (or Expired, NotValidForName…).
        if text.contains("invalid peer certificate") {
            return format!(
                "the TLS certificate of {place} is not trusted ({text}); for a hub with a                  private CA, trust that CA's certificate (the account's CA setting, or --ca-cert)"
            );
        }
        return format!("cannot reach {place}: {text}");
    }
    text
}

/// A classic refusal as a sentence a user can act on.
pub(crate) fn classic_refusal(status: reqwest::StatusCode, body: &[u8], hub: &str) -> Error {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    let text = text.trim();
    if text.contains("could not be resolved") {
        return Error::Negotiate(format!(
            "the classic SignalR endpoint has no hub named '{hub}' (check the hub name; \
             the server said: {text})"
        ));
    }
    if matches!(
        status,
        reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN
    ) {
        return Error::Negotiate(format!(
            "the hub refused the credentials (status {status}); check the access token"
        ));
    }
    if matches!(
        status,
        reqwest::StatusCode::NOT_FOUND | reqwest::StatusCode::METHOD_NOT_ALLOWED
    ) {
        return Error::Negotiate(format!(
            "status {status}: no classic SignalR endpoint answers at this URL (classic hubs are \
             usually at /signalr; for an ASP.NET Core hub let the family be detected)"
        ));
    }
    if text.is_empty() {
        Error::Negotiate(format!("status {status}"))
    } else {
        Error::Negotiate(format!("status {status}: {text}"))
    }
}

/// The error with its causes ("…: tcp connect error: Connection refused"), without the URL:
/// reqwest names it, and it may carry an `access_token` query that must stay out of messages
/// and logs.
pub(crate) fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text
            .replace(&format!(" for url ({url})"), "")
            .replace(url.as_str(), "<hub URL>");
    }
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
