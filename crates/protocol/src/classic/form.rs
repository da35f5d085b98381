//! Classic HTTP details: the form bodies of `send` (`data=<json>`) and `poll`
//! (`messageId=…&groupsToken=…`), `connectionData` (`[{"name":"chathub"}]`), percent-encoding,
//! and the request URLs with their query parameters.
//!
//! Sources: S2 `Microsoft.AspNet.SignalR.Client/Infrastructure/UrlBuilder.cs` (query order),
//! `Transports/HttpBasedTransport.cs` (`data=`), `jquery.signalR.transports.longPolling.js`
//! (`messageId`/`groupsToken` in the poll body), `Hubs/HubDispatcher.cs` (`connectionData`).

use serde::{Deserialize, Serialize};

use super::{CLIENT_PROTOCOL, Transport};
use crate::error::{Error, Result};

fn invalid(context: &'static str, reason: impl Into<String>) -> Error {
    Error::Classic {
        context,
        reason: reason.into(),
    }
}

/// Percent-encodes `s` for a query string or form body: everything but the unreserved
/// characters `A–Z a–z 0–9 - _ . ~` becomes `%XX` (so a connection token's `/`, `+` and `=`
/// survive, §8a).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 2);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
    out
}

/// Decodes one form or query component: `+` is a space, `%XX` a byte; the result must be
/// UTF-8. A `%` not followed by two hex digits is an error naming it.
pub fn percent_decode(s: &str) -> Result<String> {
    const CX: &str = "form body";
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |b: u8| char::from(b).to_digit(16);
                let (Some(hi), Some(lo)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(invalid(
                        CX,
                        format!("a `%` at byte {i} is not followed by two hex digits"),
                    ));
                };
                // Two hex digits make at most 255.
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| invalid(CX, "a value is not UTF-8 once decoded"))
}

/// The decoded `(name, value)` pairs of an `application/x-www-form-urlencoded` body or a
/// query string, in order (empty segments skipped; a name without `=` has an empty value).
pub fn parse_form(body: &str) -> Result<Vec<(String, String)>> {
    body.split('&')
        .filter(|seg| !seg.is_empty())
        .map(|seg| {
            let (name, value) = seg.split_once('=').unwrap_or((seg, ""));
            Ok((percent_decode(name)?, percent_decode(value)?))
        })
        .collect()
}

fn form_text(body: &[u8]) -> Result<&str> {
    std::str::from_utf8(body).map_err(|_| invalid("form body", "the body is not UTF-8"))
}

/// The body of a `send` request: `data=<percent-encoded JSON>`.
pub fn encode_send_body(json: &[u8]) -> String {
    // Hub requests are JSON text, so UTF-8; anything else is written lossily.
    format!("data={}", percent_encode(&String::from_utf8_lossy(json)))
}

/// Reads a `send` body: the decoded value of its `data` field (the first, when repeated).
/// A body without `data` is an error naming it.
pub fn parse_send_body(body: &[u8]) -> Result<String> {
    parse_form(form_text(body)?)?
        .into_iter()
        .find(|(name, _)| name == "data")
        .map(|(_, value)| value)
        .ok_or_else(|| invalid("form body", "the send body has no `data` field"))
}

/// The cursor and groups token a long-polling client sends with each poll (jQuery: in the
/// form body; the .NET client: in the query string).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PollBody {
    /// `messageId`: the last cursor (`C`) received; `None` before the first.
    pub message_id: Option<String>,
    /// `groupsToken`: the last groups token (`G`) received; `None` before the first.
    pub groups_token: Option<String>,
}

impl PollBody {
    /// `messageId=…&groupsToken=…`, each left out when `None`.
    pub fn encode(&self) -> String {
        let mut parts = Vec::with_capacity(2);
        if let Some(id) = &self.message_id {
            parts.push(format!("messageId={}", percent_encode(id)));
        }
        if let Some(groups) = &self.groups_token {
            parts.push(format!("groupsToken={}", percent_encode(groups)));
        }
        parts.join("&")
    }

    /// Reads a poll body (or query string). An empty value is absent (jQuery writes a null
    /// `groupsToken` as `groupsToken=`); other fields are ignored.
    pub fn parse(body: &[u8]) -> Result<Self> {
        let mut out = Self::default();
        for (name, value) in parse_form(form_text(body)?)? {
            let value = (!value.is_empty()).then_some(value);
            match name.as_str() {
                "messageId" if out.message_id.is_none() => out.message_id = value,
                "groupsToken" if out.groups_token.is_none() => out.groups_token = value,
                _ => {}
            }
        }
        Ok(out)
    }
}

#[derive(Serialize, Deserialize)]
struct HubName<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
}

/// `connectionData` for the given hub names: `[{"name":"chathub"}]` (not yet
/// percent-encoded; [`request_url`] encodes it).
pub fn encode_connection_data<'a>(hubs: impl IntoIterator<Item = &'a str>) -> String {
    let list: Vec<HubName<'_>> = hubs
        .into_iter()
        .map(|h| HubName { name: h.into() })
        .collect();
    // A list of strings always serializes.
    serde_json::to_string(&list).unwrap_or_default()
}

/// The hub names of a `connectionData` value (already percent-decoded), in order: a JSON array
/// of objects with a string `name` (other keys ignored). Names are returned as sent; servers
/// compare them without regard to case.
pub fn parse_connection_data(data: &str) -> Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Entry {
        name: Option<String>,
    }
    let entries: Vec<Entry> = serde_json::from_str(data).map_err(|e| {
        invalid(
            "connectionData",
            format!("expected [{{\"name\":\"hub\"}}, …] ({e})"),
        )
    })?;
    entries
        .into_iter()
        .map(|e| {
            e.name
                .ok_or_else(|| invalid("connectionData", "an entry has no `name`"))
        })
        .collect()
}

/// A classic endpoint request, by its path under the base URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `GET negotiate`.
    Negotiate,
    /// `GET connect` (a WebSocket upgrade, an SSE stream, or the first long poll).
    Connect,
    /// `GET reconnect`, with the last cursor and groups token.
    Reconnect,
    /// `GET start`, after the transport is connected; answers [`START_RESPONSE`](super::START_RESPONSE).
    Start,
    /// `POST poll`: the next long poll.
    Poll,
    /// `POST send`, the body `data=…` (HTTP transports).
    Send,
    /// `POST abort`: stop the connection.
    Abort,
    /// `GET ping`: keeps a session alive; answers [`PING_RESPONSE`](super::PING_RESPONSE).
    Ping,
}

impl Action {
    /// The path segment.
    pub fn path(self) -> &'static str {
        match self {
            Self::Negotiate => "negotiate",
            Self::Connect => "connect",
            Self::Reconnect => "reconnect",
            Self::Start => "start",
            Self::Poll => "poll",
            Self::Send => "send",
            Self::Abort => "abort",
            Self::Ping => "ping",
        }
    }
}

/// The query parameters of a classic request (all values unencoded).
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestParams<'a> {
    /// `transport` (every request after negotiate).
    pub transport: Option<Transport>,
    /// `connectionToken` (every request after negotiate).
    pub connection_token: Option<&'a str>,
    /// `connectionData`, e.g. `[{"name":"chathub"}]`.
    pub connection_data: Option<&'a str>,
    /// `messageId` (reconnect; long polls from the .NET client).
    pub message_id: Option<&'a str>,
    /// `groupsToken` (reconnect; long polls from the .NET client).
    pub groups_token: Option<&'a str>,
}

/// The URL of a classic request, as the .NET client's `UrlBuilder` writes it:
/// `{base}/{action}?clientProtocol=2.1&transport=…&connectionData=…&connectionToken=…`
/// `&messageId=…&groupsToken=…`, then the query of `base` itself (a user's custom query), each
/// value percent-encoded. `base` is the endpoint URL (`http://host/signalr`, with or without a
/// trailing slash; a WebSocket caller swaps the scheme itself).
pub fn request_url(base: &str, action: Action, params: &RequestParams<'_>) -> String {
    let (path, custom) = match base.split_once('?') {
        Some((path, query)) => (path, Some(query).filter(|q| !q.is_empty())),
        None => (base, None),
    };
    let mut url = String::with_capacity(path.len() + 128);
    url.push_str(path);
    if !url.ends_with('/') {
        url.push('/');
    }
    url.push_str(action.path());
    url.push_str("?clientProtocol=");
    url.push_str(CLIENT_PROTOCOL);
    let mut add = |name: &str, value: Option<&str>| {
        if let Some(value) = value {
            url.push('&');
            url.push_str(name);
            url.push('=');
            url.push_str(&percent_encode(value));
        }
    };
    add("transport", params.transport.map(Transport::name));
    add("connectionData", params.connection_data);
    add("connectionToken", params.connection_token);
    add("messageId", params.message_id);
    add("groupsToken", params.groups_token);
    if let Some(custom) = custom {
        url.push('&');
        url.push_str(custom);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_bodies_round_trip_through_the_form_encoding() {
        let json = r#"{"H":"chathub","M":"Send","A":["ann","a+b=c & 100% ünïcode"],"I":"0"}"#;
        let body = encode_send_body(json.as_bytes());
        assert!(
            body.starts_with("data=%7B%22H%22%3A%22chathub%22"),
            "{body}"
        );
        assert!(!body[5..].contains(['+', '&', '=', ' ']), "{body}");
        assert_eq!(parse_send_body(body.as_bytes()).unwrap(), json);
        // What a browser's form encoding writes: spaces as `+`.
        assert_eq!(parse_send_body(b"data=%7B%7D+&x=1").unwrap(), "{} ");
    }

    #[test]
    fn form_errors_are_named() {
        for (body, what) in [
            (&b"x=1"[..], "no `data` field"),
            (b"data=%7", "not followed by two hex digits"),
            (b"data=%zz", "not followed by two hex digits"),
            (b"data=%FF", "not UTF-8"),
            (b"data=\xff", "not UTF-8"),
        ] {
            let err = parse_send_body(body).unwrap_err().to_string();
            assert!(err.contains(what), "{err} should mention {what}");
        }
    }

    #[test]
    fn poll_bodies_carry_the_cursor_and_groups_token() {
        let poll = PollBody {
            message_id: Some("d-1-B,0|C,2|D,1".into()),
            groups_token: Some("AQ/x+=".into()),
        };
        let body = poll.encode();
        assert_eq!(
            body,
            "messageId=d-1-B%2C0%7CC%2C2%7CD%2C1&groupsToken=AQ%2Fx%2B%3D"
        );
        assert_eq!(PollBody::parse(body.as_bytes()).unwrap(), poll);
        // jQuery writes a missing groups token as an empty value.
        assert_eq!(
            PollBody::parse(b"messageId=abc&groupsToken=").unwrap(),
            PollBody {
                message_id: Some("abc".into()),
                groups_token: None
            }
        );
        assert_eq!(PollBody::parse(b"").unwrap(), PollBody::default());
        assert_eq!(PollBody::default().encode(), "");
    }

    #[test]
    fn connection_data_lists_hub_names() {
        let data = encode_connection_data(["chathub"]);
        assert_eq!(data, r#"[{"name":"chathub"}]"#);
        assert_eq!(parse_connection_data(&data).unwrap(), ["chathub"]);
        assert_eq!(
            parse_connection_data(r#"[{"name":"ChatHub","x":1},{"name":"other"}]"#).unwrap(),
            ["ChatHub", "other"]
        );
        assert!(parse_connection_data("[]").unwrap().is_empty());
        for bad in ["{}", "[1]", r#"[{"x":1}]"#, "nope"] {
            let err = parse_connection_data(bad).unwrap_err().to_string();
            assert!(err.contains("connectionData"), "{err}");
        }
    }

    #[test]
    fn request_urls_encode_every_value_and_keep_the_custom_query() {
        let data = encode_connection_data(["chathub"]);
        assert_eq!(
            request_url(
                "http://h/signalr",
                Action::Negotiate,
                &RequestParams {
                    connection_data: Some(&data),
                    ..Default::default()
                }
            ),
            "http://h/signalr/negotiate?clientProtocol=2.1&connectionData=%5B%7B%22name%22%3A%22chathub%22%7D%5D"
        );
        assert_eq!(
            request_url(
                "http://h/signalr/?tenant=a%20b",
                Action::Reconnect,
                &RequestParams {
                    transport: Some(Transport::WebSockets),
                    connection_token: Some("a/b+c=="),
                    connection_data: None,
                    message_id: Some("d-1|C,0"),
                    groups_token: Some("g="),
                }
            ),
            "http://h/signalr/reconnect?clientProtocol=2.1&transport=webSockets\
             &connectionToken=a%2Fb%2Bc%3D%3D&messageId=d-1%7CC%2C0&groupsToken=g%3D&tenant=a%20b"
        );
        assert_eq!(
            request_url("http://h/signalr", Action::Abort, &RequestParams::default()),
            "http://h/signalr/abort?clientProtocol=2.1"
        );
    }

    #[test]
    fn percent_encoding_round_trips_any_text() {
        for s in ["", "plain", "a b+c/d?e&f=g%h", "ünï\u{1F600}", "\u{0}\n"] {
            assert_eq!(percent_decode(&percent_encode(s)).unwrap(), s);
        }
    }
}
