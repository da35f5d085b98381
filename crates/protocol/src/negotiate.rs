//! Negotiate: the HTTP exchange that opens an ASP.NET Core SignalR connection, and the URLs
//! around it. Pure functions over strings and bytes; the HTTP request itself is the caller's.

use serde::{Deserialize, Serialize};

use crate::error::{Error, NegotiateError, Result};

/// The negotiate protocol version this implementation speaks.
pub const NEGOTIATE_VERSION: u32 = 1;

/// How many negotiate redirects (`url` + `accessToken`) a client follows before giving up.
pub const MAX_REDIRECTS: usize = 100;

/// A transport, with the bit the official clients use to mask them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TransportKind {
    /// WebSockets (bit 1).
    WebSockets,
    /// Server-Sent Events (bit 2); text only.
    ServerSentEvents,
    /// Long polling (bit 4).
    LongPolling,
}

impl TransportKind {
    /// All three, in the order the ASP.NET Core server lists them.
    pub const ALL: [TransportKind; 3] = [
        TransportKind::WebSockets,
        TransportKind::ServerSentEvents,
        TransportKind::LongPolling,
    ];

    /// The bit of this transport in a transport mask.
    pub fn bit(self) -> u8 {
        match self {
            Self::WebSockets => 1,
            Self::ServerSentEvents => 2,
            Self::LongPolling => 4,
        }
    }

    /// The name used in negotiate responses.
    pub fn name(self) -> &'static str {
        match self {
            Self::WebSockets => "WebSockets",
            Self::ServerSentEvents => "ServerSentEvents",
            Self::LongPolling => "LongPolling",
        }
    }

    /// The transfer formats the transport can carry.
    pub fn transfer_formats(self) -> &'static [TransferFormat] {
        match self {
            Self::ServerSentEvents => &[TransferFormat::Text],
            Self::WebSockets | Self::LongPolling => &[TransferFormat::Text, TransferFormat::Binary],
        }
    }
}

/// What a transport can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TransferFormat {
    /// UTF-8 text.
    Text,
    /// Arbitrary bytes.
    Binary,
}

impl TransferFormat {
    /// The name used in negotiate responses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Text => "Text",
            Self::Binary => "Binary",
        }
    }
}

/// One entry of `availableTransports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailableTransport {
    /// The transport.
    pub transport: TransportKind,
    /// The formats the server accepts on it.
    pub transfer_formats: Vec<TransferFormat>,
}

/// A negotiate response that leads to a connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NegotiateResponse {
    /// The negotiate version the server answered with.
    pub negotiate_version: u32,
    /// The public connection id.
    pub connection_id: String,
    /// The secret token that goes in the `id` query parameter (equal to the id under version 0).
    pub connection_token: String,
    /// The transports the server offers, in its order of preference. Entries this
    /// implementation does not know are left out.
    pub available_transports: Vec<AvailableTransport>,
    /// Whether the server granted stateful reconnect.
    pub use_stateful_reconnect: bool,
}

/// What a negotiate response tells the client to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Negotiation {
    /// Connect with these details.
    Connect(NegotiateResponse),
    /// Negotiate again at `url`, using `access_token` (when given) for the rest of this start.
    Redirect {
        /// The next negotiate URL.
        url: String,
        /// The token to use from now on.
        access_token: Option<String>,
    },
}

#[derive(Deserialize)]
struct WireTransport {
    transport: Option<String>,
    #[serde(rename = "transferFormats", default)]
    transfer_formats: Vec<String>,
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(rename = "negotiateVersion", default)]
    negotiate_version: u32,
    #[serde(rename = "connectionId")]
    connection_id: Option<String>,
    #[serde(rename = "connectionToken")]
    connection_token: Option<String>,
    #[serde(rename = "availableTransports", default)]
    available_transports: Option<Vec<WireTransport>>,
    #[serde(rename = "useStatefulReconnect", default)]
    use_stateful_reconnect: bool,
    url: Option<String>,
    #[serde(rename = "accessToken")]
    access_token: Option<String>,
    error: Option<String>,
    #[serde(rename = "ProtocolVersion")]
    protocol_version: Option<serde_json::Value>,
}

/// Reads a negotiate response body (status 200). `asked_stateful_reconnect` is whether the
/// request asked for stateful reconnect; a server that grants it unasked is refused, as the
/// official clients refuse it.
pub fn parse_response(body: &[u8], asked_stateful_reconnect: bool) -> Result<Negotiation> {
    let wire: WireResponse = serde_json::from_slice(body).map_err(|e| {
        Error::Negotiate(NegotiateError::Invalid(format!(
            "the body is not a negotiate response ({e})"
        )))
    })?;
    if let Some(error) = wire.error {
        return Err(NegotiateError::Server(error).into());
    }
    if let Some(version) = wire.protocol_version {
        return Err(NegotiateError::ClassicServer {
            protocol_version: version.as_str().map(str::to_owned),
        }
        .into());
    }
    if let Some(url) = wire.url {
        return Ok(Negotiation::Redirect {
            url,
            access_token: wire.access_token,
        });
    }
    let connection_id = wire
        .connection_id
        .ok_or(NegotiateError::Missing("connectionId"))?;
    let connection_token = if wire.negotiate_version >= 1 {
        wire.connection_token
            .ok_or(NegotiateError::Missing("connectionToken"))?
    } else {
        connection_id.clone()
    };
    if wire.use_stateful_reconnect && !asked_stateful_reconnect {
        return Err(NegotiateError::UnrequestedStatefulReconnect.into());
    }
    let available_transports = wire
        .available_transports
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| {
            let transport = TransportKind::ALL
                .into_iter()
                .find(|k| t.transport.as_deref() == Some(k.name()))?;
            let transfer_formats = t
                .transfer_formats
                .iter()
                .filter_map(|f| match f.as_str() {
                    "Text" => Some(TransferFormat::Text),
                    "Binary" => Some(TransferFormat::Binary),
                    _ => None,
                })
                .collect();
            Some(AvailableTransport {
                transport,
                transfer_formats,
            })
        })
        .collect();
    Ok(Negotiation::Connect(NegotiateResponse {
        negotiate_version: wire.negotiate_version,
        connection_id,
        connection_token,
        available_transports,
        use_stateful_reconnect: wire.use_stateful_reconnect,
    }))
}

impl NegotiateResponse {
    /// Server side: the response body. The token is written only for version 1 and above.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Transport {
            transport: &'static str,
            #[serde(rename = "transferFormats")]
            transfer_formats: Vec<&'static str>,
        }
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(rename = "negotiateVersion")]
            negotiate_version: u32,
            #[serde(rename = "connectionId")]
            connection_id: &'a str,
            #[serde(rename = "connectionToken", skip_serializing_if = "Option::is_none")]
            connection_token: Option<&'a str>,
            #[serde(rename = "availableTransports")]
            available_transports: Vec<Transport>,
            #[serde(
                rename = "useStatefulReconnect",
                skip_serializing_if = "std::ops::Not::not"
            )]
            use_stateful_reconnect: bool,
        }
        let wire = Wire {
            negotiate_version: self.negotiate_version,
            connection_id: &self.connection_id,
            connection_token: (self.negotiate_version >= 1).then_some(&*self.connection_token),
            available_transports: self
                .available_transports
                .iter()
                .map(|t| Transport {
                    transport: t.transport.name(),
                    transfer_formats: t.transfer_formats.iter().map(|f| f.name()).collect(),
                })
                .collect(),
            use_stateful_reconnect: self.use_stateful_reconnect,
        };
        serde_json::to_string(&wire).unwrap_or_default()
    }
}

/// Server side: a negotiate error body, `{"error":"…"}`.
pub fn error_body(error: &str) -> String {
    serde_json::json!({ "error": error }).to_string()
}

/// Server side: the negotiate version to answer with, from the `negotiateVersion` query value
/// (absent means 0; above 1 is clamped to 1), or the error text for an unusable value.
pub fn requested_version(query_value: Option<&str>, minimum: u32) -> Result<u32, NegotiateError> {
    let Some(raw) = query_value else {
        return if minimum == 0 {
            Ok(0)
        } else {
            Err(NegotiateError::Version(
                "The client requested version '0', but the server does not support this version."
                    .to_owned(),
            ))
        };
    };
    let version: i64 = raw.parse().map_err(|_| {
        NegotiateError::Version(format!(
            "The client requested an invalid protocol version '{raw}'"
        ))
    })?;
    if version < i64::from(minimum) {
        return Err(NegotiateError::Version(format!(
            "The client requested version '{version}', but the server does not support this \
             version."
        )));
    }
    Ok(version.min(i64::from(NEGOTIATE_VERSION)) as u32)
}

/// The negotiate URL for a hub URL, as the official JavaScript client builds it
/// (`HttpConnection._resolveNegotiateUrl`): `/negotiate` goes after the path, the user's query
/// is kept as written; `negotiateVersion=1` is added unless the query has a `negotiateVersion`
/// parameter; `useStatefulReconnect=true` is added when asked for, unless the query has a
/// `useStatefulReconnect` parameter. Parameters are parsed ([`query_param`]), never searched
/// for as text: `?x=negotiateVersion` has no `negotiateVersion` parameter.
pub fn negotiate_url(hub_url: &str, stateful_reconnect: bool) -> String {
    let (path, query, _fragment) = split_query(hub_url);
    let mut url = String::with_capacity(hub_url.len() + 48);
    url.push_str(path);
    if !url.ends_with('/') {
        url.push('/');
    }
    url.push_str("negotiate");
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(query);
    }
    if query_param(hub_url, "negotiateVersion").is_none() {
        url = append_query_param(&url, "negotiateVersion", &NEGOTIATE_VERSION.to_string());
    }
    if stateful_reconnect && query_param(hub_url, "useStatefulReconnect").is_none() {
        url = append_query_param(&url, "useStatefulReconnect", "true");
    }
    url
}

/// Whether the user's hub URL itself opts into stateful reconnect: its query's
/// `useStatefulReconnect` parameter is `true` (as the official JavaScript client reads it).
pub fn url_requests_stateful_reconnect(hub_url: &str) -> bool {
    query_param(hub_url, "useStatefulReconnect").as_deref() == Some("true")
}

/// The URL a transport connects to: the hub URL with its `id` query parameter set to the
/// connection token. The server reads exactly one `id`, so an `id` already in the user's URL is
/// replaced rather than repeated; the token is percent-encoded (ASP.NET Core's base64url tokens
/// come out unchanged, as the official client sends them). Without a token (skip-negotiation)
/// the URL is unchanged.
pub fn connect_url(hub_url: &str, connection_token: Option<&str>) -> String {
    match connection_token {
        None => hub_url.to_owned(),
        Some(token) => set_query_param(hub_url, "id", token),
    }
}

/// A URL split around its query: what comes before `?`, the query (without `?`; `None` when
/// there is no `?`), and the fragment (from `#`, or empty). A `?` after `#` belongs to the
/// fragment.
fn split_query(url: &str) -> (&str, Option<&str>, &str) {
    let (main, fragment) = url.find('#').map_or((url, ""), |i| url.split_at(i));
    match main.find('?') {
        Some(i) => (&main[..i], Some(&main[i + 1..]), fragment),
        None => (main, None, fragment),
    }
}

/// The first value of the query parameter `key` in `url`, decoded: the query parsed as
/// `application/x-www-form-urlencoded` (the `url` crate's `query_pairs`, the official clients'
/// `URLSearchParams`), the key compared exactly. `None` when there is no such parameter.
pub fn query_param(url: &str, key: &str) -> Option<String> {
    let (_, query, _) = split_query(url);
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// Percent-encodes a query key or value: everything but RFC 3986's unreserved characters.
fn encode_component(text: &str, out: &mut String) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// `url` with `key=value` appended to its query (both percent-encoded), whatever is there
/// already; the rest of the URL is kept as written.
pub fn append_query_param(url: &str, key: &str, value: &str) -> String {
    let (base, query, fragment) = split_query(url);
    let mut out = String::with_capacity(url.len() + key.len() + value.len() + 2);
    out.push_str(base);
    match query.filter(|q| !q.is_empty()) {
        Some(query) => {
            out.push('?');
            out.push_str(query);
            if !query.ends_with('&') {
                out.push('&');
            }
        }
        None => out.push('?'),
    }
    encode_component(key, &mut out);
    out.push('=');
    encode_component(value, &mut out);
    out.push_str(fragment);
    out
}

/// `url` with its query parameter `key` set to `value` (percent-encoded): every `key` already
/// in the query is removed (matched after decoding, as [`query_param`] matches), the other
/// parameters are kept as written, and `key=value` goes last.
pub fn set_query_param(url: &str, key: &str, value: &str) -> String {
    let (base, query, fragment) = split_query(url);
    let kept: Vec<&str> = query
        .unwrap_or("")
        .split('&')
        .filter(|part| !part.is_empty())
        .filter(|part| {
            url::form_urlencoded::parse(part.as_bytes())
                .next()
                .is_none_or(|(k, _)| k != key)
        })
        .collect();
    let mut rebuilt = base.to_owned();
    if !kept.is_empty() {
        rebuilt.push('?');
        rebuilt.push_str(&kept.join("&"));
    }
    rebuilt.push_str(fragment);
    append_query_param(&rebuilt, key, value)
}

/// The WebSocket form of an HTTP URL (`http` → `ws`, `https` → `wss`; `ws`/`wss` kept).
pub fn websocket_url(url: &str) -> Result<String> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let rest = |n: usize| &url[n..];
    if lower.starts_with("https://") {
        Ok(format!("wss://{}", rest(8)))
    } else if lower.starts_with("http://") {
        Ok(format!("ws://{}", rest(7)))
    } else if lower.starts_with("wss://") || lower.starts_with("ws://") {
        Ok(url.to_owned())
    } else {
        Err(Error::Negotiate(NegotiateError::Invalid(format!(
            "the URL '{url}' is not an http, https, ws or wss URL"
        ))))
    }
}

/// The HTTP form of a WebSocket URL (`ws` → `http`, `wss` → `https`; `http`/`https` kept).
pub fn http_url(url: &str) -> Result<String> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("wss://") {
        Ok(format!("https://{}", &url[6..]))
    } else if lower.starts_with("ws://") {
        Ok(format!("http://{}", &url[5..]))
    } else if lower.starts_with("https://") || lower.starts_with("http://") {
        Ok(url.to_owned())
    } else {
        Err(Error::Negotiate(NegotiateError::Invalid(format!(
            "the URL '{url}' is not an http, https, ws or wss URL"
        ))))
    }
}
