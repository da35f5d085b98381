//! The negotiate request, with redirects.

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

pub(crate) async fn negotiate(
    http: &reqwest::Client,
    options: &Options,
    hub_url: &str,
    mut token: Option<String>,
) -> Result<Negotiated, Error> {
    let mut url = negotiate::http_url(hub_url)?;
    for _ in 0..=MAX_REDIRECTS {
        // A hub that accepts the connection but never answers must not hang a start or a
        // reconnect: negotiate gets the handshake's time limit.
        let mut request = http
            .post(negotiate::negotiate_url(&url, options.stateful_reconnect))
            .timeout(options.handshake_timeout)
            .header("X-Requested-With", "XMLHttpRequest");
        for (k, v) in &options.headers {
            request = request.header(k, v);
        }
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Error::Negotiate(without_url(&e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| Error::Negotiate(without_url(&e)))?;
        if status != reqwest::StatusCode::OK {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(Error::Negotiate(format!(
                "status {status}: {}",
                text.trim()
            )));
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
            Err(e) => return Err(Error::Negotiate(e.to_string())),
        }
    }
    Err(Error::Negotiate(format!(
        "more than {MAX_REDIRECTS} redirects"
    )))
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
