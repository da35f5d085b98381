//! The classic negotiate exchange (`GET {base}/negotiate?clientProtocol=…&connectionData=…`):
//! the response, both ways, and the rules around it.
//!
//! Sources: S2 `PersistentConnection.ProcessNegotiationRequest` (the keys and their order),
//! `ProtocolResolver` (the version clamp), the .NET client's `NegotiationResponse` and
//! `Connection` (redirects, `Error`, the ASP.NET Core check); bytes as in §8a.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{Error, NegotiateError, Result};

/// The lowest protocol version a 2.4 server speaks; a client that sends none gets it.
pub const MIN_PROTOCOL_VERSION: &str = "1.2";

/// The highest protocol version a 2.4 server speaks (`clientProtocol=2.1` is answered `2.0`).
pub const MAX_PROTOCOL_VERSION: &str = "2.0";

/// A classic negotiate response that leads to a connection (server defaults in brackets:
/// S2 `DefaultConfigurationManager`).
///
/// Durations are in seconds, as on the wire, where they are JSON numbers written with a
/// fraction (`20.0`); the accessors turn them into [`Duration`]s.
#[derive(Debug, Clone, PartialEq)]
pub struct NegotiateResponse {
    /// `Url`: the server's own path of the endpoint (`/signalr`).
    pub url: String,
    /// `ConnectionToken`: the secret that goes, percent-encoded, in every later request.
    pub connection_token: String,
    /// `ConnectionId`: the public id (a GUID on ASP.NET).
    pub connection_id: String,
    /// `KeepAliveTimeout`: seconds without any message after which the client reconnects
    /// (20); `None` (JSON `null`) when the server sends no keep-alives.
    pub keep_alive_timeout: Option<f64>,
    /// `DisconnectTimeout`: seconds (30) the server keeps a connection that lost its transport.
    pub disconnect_timeout: f64,
    /// `ConnectionTimeout`: seconds (110) a long poll is held open.
    pub connection_timeout: f64,
    /// `TryWebSockets`: whether the server accepts WebSockets.
    pub try_web_sockets: bool,
    /// `ProtocolVersion`: the version the server answered (`"2.0"`).
    pub protocol_version: String,
    /// `TransportConnectTimeout`: seconds (5) the client adds to its own wait for a transport
    /// to connect.
    pub transport_connect_timeout: f64,
    /// `LongPollDelay`: seconds (0) a long-polling client waits between polls.
    pub long_poll_delay: f64,
}

impl Default for NegotiateResponse {
    /// The 2.4 server's defaults, with empty id and token.
    fn default() -> Self {
        Self {
            url: "/signalr".to_owned(),
            connection_token: String::new(),
            connection_id: String::new(),
            keep_alive_timeout: Some(20.0),
            disconnect_timeout: 30.0,
            connection_timeout: 110.0,
            try_web_sockets: true,
            protocol_version: MAX_PROTOCOL_VERSION.to_owned(),
            transport_connect_timeout: 5.0,
            long_poll_delay: 0.0,
        }
    }
}

/// What a classic negotiate response tells the client to do.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassicNegotiation {
    /// Connect with these details.
    Connect(NegotiateResponse),
    /// Negotiate again at `url` (`RedirectUrl`), sending `access_token` (`AccessToken`) as a
    /// bearer token from now on; clients follow at most
    /// [`MAX_REDIRECTS`](crate::negotiate::MAX_REDIRECTS).
    Redirect {
        /// The next base URL.
        url: String,
        /// The token to use from now on.
        access_token: Option<String>,
    },
}

fn secs(value: f64) -> Duration {
    // Negative and NaN become zero, huge values the longest duration: never a panic.
    Duration::try_from_secs_f64(value.max(0.0)).unwrap_or(Duration::MAX)
}

impl NegotiateResponse {
    /// `KeepAliveTimeout` as a duration; `None` when keep-alive is off.
    pub fn keep_alive_timeout(&self) -> Option<Duration> {
        self.keep_alive_timeout.map(secs)
    }

    /// `DisconnectTimeout` as a duration.
    pub fn disconnect_timeout(&self) -> Duration {
        secs(self.disconnect_timeout)
    }

    /// `ConnectionTimeout` as a duration.
    pub fn connection_timeout(&self) -> Duration {
        secs(self.connection_timeout)
    }

    /// `TransportConnectTimeout` as a duration.
    pub fn transport_connect_timeout(&self) -> Duration {
        secs(self.transport_connect_timeout)
    }

    /// `LongPollDelay` as a duration.
    pub fn long_poll_delay(&self) -> Duration {
        secs(self.long_poll_delay)
    }

    /// Server side: the response body, keys in a 2.4.3 server's order, durations written with
    /// a fraction (§8a):
    /// `{"Url":"/signalr","ConnectionToken":"…","ConnectionId":"…","KeepAliveTimeout":20.0,
    /// "DisconnectTimeout":30.0,"ConnectionTimeout":110.0,"TryWebSockets":true,
    /// "ProtocolVersion":"2.0","TransportConnectTimeout":5.0,"LongPollDelay":0.0}`.
    /// A non-finite duration (which JSON cannot hold) is written as `null`.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Wire<'a> {
            url: &'a str,
            connection_token: &'a str,
            connection_id: &'a str,
            keep_alive_timeout: Option<f64>,
            disconnect_timeout: f64,
            connection_timeout: f64,
            try_web_sockets: bool,
            protocol_version: &'a str,
            transport_connect_timeout: f64,
            long_poll_delay: f64,
        }
        serde_json::to_string(&Wire {
            url: &self.url,
            connection_token: &self.connection_token,
            connection_id: &self.connection_id,
            keep_alive_timeout: self.keep_alive_timeout,
            disconnect_timeout: self.disconnect_timeout,
            connection_timeout: self.connection_timeout,
            try_web_sockets: self.try_web_sockets,
            protocol_version: &self.protocol_version,
            transport_connect_timeout: self.transport_connect_timeout,
            long_poll_delay: self.long_poll_delay,
        })
        // Serializing strings, booleans and numbers into a String cannot fail.
        .unwrap_or_default()
    }
}

/// Server side: a redirect body, `{"RedirectUrl":"…","AccessToken":"…"}` (the token left out
/// when `None`).
pub fn redirect_body(url: &str, access_token: Option<&str>) -> String {
    match access_token {
        Some(token) => serde_json::json!({ "RedirectUrl": url, "AccessToken": token }),
        None => serde_json::json!({ "RedirectUrl": url }),
    }
    .to_string()
}

/// Server side: a refusal body, `{"Error":"…"}`.
pub fn error_body(error: &str) -> String {
    serde_json::json!({ "Error": error }).to_string()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireResponse<'a> {
    url: Option<String>,
    connection_token: Option<String>,
    connection_id: Option<String>,
    #[serde(default)]
    keep_alive_timeout: Option<f64>,
    disconnect_timeout: Option<f64>,
    connection_timeout: Option<f64>,
    try_web_sockets: Option<bool>,
    #[serde(borrow)]
    protocol_version: Option<&'a RawValue>,
    transport_connect_timeout: Option<f64>,
    long_poll_delay: Option<f64>,
    redirect_url: Option<String>,
    access_token: Option<String>,
    error: Option<String>,
    #[serde(rename = "availableTransports", borrow)]
    available_transports: Option<&'a RawValue>,
    #[serde(rename = "negotiateVersion", borrow)]
    negotiate_version: Option<&'a RawValue>,
}

fn invalid(reason: String) -> Error {
    NegotiateError::Invalid(reason).into()
}

/// Reads a classic negotiate response body (status 200).
///
/// In order: `Error` (non-empty) is a refusal ([`NegotiateError::Server`]); a response without
/// `ProtocolVersion` but with ASP.NET Core's `availableTransports` or `negotiateVersion` is
/// [`NegotiateError::CoreServer`]; `RedirectUrl` (non-empty) is a redirect; otherwise
/// `ConnectionToken`, `ConnectionId` and `ProtocolVersion` (a string, or a number taken as its
/// text) are required ([`NegotiateError::Missing`]), a missing duration takes the server
/// default, and a negative one is refused.
pub fn parse_negotiate(body: &[u8]) -> Result<ClassicNegotiation> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(invalid(
            "the body is not a classic negotiate response (not a JSON object)".to_owned(),
        ));
    }
    let wire: WireResponse<'_> = serde_json::from_slice(body).map_err(|e| {
        invalid(format!(
            "the body is not a classic negotiate response ({e})"
        ))
    })?;
    if let Some(error) = wire.error.filter(|e| !e.is_empty()) {
        return Err(NegotiateError::Server(error).into());
    }
    if wire.protocol_version.is_none()
        && (wire.available_transports.is_some() || wire.negotiate_version.is_some())
    {
        return Err(NegotiateError::CoreServer.into());
    }
    if let Some(url) = wire.redirect_url.filter(|u| !u.is_empty()) {
        return Ok(ClassicNegotiation::Redirect {
            url,
            access_token: wire.access_token.filter(|t| !t.is_empty()),
        });
    }
    let protocol_version = wire
        .protocol_version
        .ok_or(NegotiateError::Missing("ProtocolVersion"))?;
    let protocol_version = match serde_json::from_str::<String>(protocol_version.get()) {
        Ok(s) => s,
        Err(_) if serde_json::from_str::<serde_json::Number>(protocol_version.get()).is_ok() => {
            protocol_version.get().to_owned()
        }
        Err(_) => {
            return Err(invalid(
                "`ProtocolVersion` is neither a string nor a number".to_owned(),
            ));
        }
    };
    let defaults = NegotiateResponse::default();
    let duration = |value: Option<f64>, default: f64, name: &str| match value {
        None => Ok(default),
        Some(v) if v >= 0.0 => Ok(v),
        Some(v) => Err(invalid(format!("`{name}` is negative ({v})"))),
    };
    Ok(ClassicNegotiation::Connect(NegotiateResponse {
        url: wire.url.unwrap_or(defaults.url),
        connection_token: wire
            .connection_token
            .ok_or(NegotiateError::Missing("ConnectionToken"))?,
        connection_id: wire
            .connection_id
            .ok_or(NegotiateError::Missing("ConnectionId"))?,
        keep_alive_timeout: match wire.keep_alive_timeout {
            None => None,
            Some(v) => Some(duration(Some(v), 0.0, "KeepAliveTimeout")?),
        },
        disconnect_timeout: duration(
            wire.disconnect_timeout,
            defaults.disconnect_timeout,
            "DisconnectTimeout",
        )?,
        connection_timeout: duration(
            wire.connection_timeout,
            defaults.connection_timeout,
            "ConnectionTimeout",
        )?,
        try_web_sockets: wire.try_web_sockets.unwrap_or(false),
        protocol_version,
        transport_connect_timeout: duration(
            wire.transport_connect_timeout,
            defaults.transport_connect_timeout,
            "TransportConnectTimeout",
        )?,
        long_poll_delay: duration(
            wire.long_poll_delay,
            defaults.long_poll_delay,
            "LongPollDelay",
        )?,
    }))
}

/// Whether a negotiate response body comes from a classic server: a JSON object with
/// `ProtocolVersion` (a connect answer), `RedirectUrl` (a redirect) or `Error` (a refusal),
/// keys an ASP.NET Core server never writes (it writes `negotiateVersion`, `url`, `error`).
/// Anything else, unparsable bodies included, is not classic.
pub fn is_classic(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Keys<'a> {
        #[serde(borrow)]
        protocol_version: Option<&'a RawValue>,
        #[serde(borrow)]
        redirect_url: Option<&'a RawValue>,
        #[serde(borrow)]
        error: Option<&'a RawValue>,
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return false;
    }
    serde_json::from_slice::<Keys<'_>>(body).is_ok_and(|k| {
        k.protocol_version.is_some() || k.redirect_url.is_some() || k.error.is_some()
    })
}

/// A protocol version as .NET's `System.Version` parses it: two to four dot-separated
/// non-negative 32-bit integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Version([i64; 4]);

impl Version {
    fn parse(s: &str) -> Option<Self> {
        let parts: Vec<&str> = s.split('.').collect();
        if !(2..=4).contains(&parts.len()) {
            return None;
        }
        // An undefined component is -1 and sorts first, as in .NET (2.0 < 2.0.0).
        let mut out = [-1i64; 4];
        for (slot, part) in out.iter_mut().zip(&parts) {
            let part = part.trim();
            let digits = part.strip_prefix('+').unwrap_or(part);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let n: i64 = digits.parse().ok()?;
            if n > i64::from(i32::MAX) {
                return None;
            }
            *slot = n;
        }
        Some(Self(out))
    }

    fn render(self) -> String {
        self.0
            .iter()
            .take_while(|&&n| n >= 0)
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// Server side: the `ProtocolVersion` to answer for a `clientProtocol` query value, as a 2.4
/// server's `ProtocolResolver` decides it: a parsable version is clamped to
/// [[`MIN_PROTOCOL_VERSION`], [`MAX_PROTOCOL_VERSION`]] (`2.1` → `2.0`, `1.5` → `1.5`,
/// `1.0` → `1.2`); a missing or unparsable one gets the minimum, `1.2` (§8a).
pub fn answered_protocol_version(client_protocol: Option<&str>) -> String {
    let min = Version([1, 2, -1, -1]);
    let max = Version([2, 0, -1, -1]);
    match client_protocol.and_then(Version::parse) {
        Some(v) if v > max => max.render(),
        Some(v) if v < min => min.render(),
        Some(v) => v.render(),
        None => min.render(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 2.4.3 server's answer from §8a (the token shortened).
    const OBSERVED: &str = r#"{"Url":"/signalr","ConnectionToken":"AQAAANCMnd8BFdERjHoAwE/Cl+sBAAAA==","ConnectionId":"6d6b0b0e-3d4c-4c4e-9d0b-2f0c2b3a4d5e","KeepAliveTimeout":20.0,"DisconnectTimeout":30.0,"ConnectionTimeout":110.0,"TryWebSockets":true,"ProtocolVersion":"1.5","TransportConnectTimeout":5.0,"LongPollDelay":0.0}"#;

    #[test]
    fn the_observed_response_parses_and_is_written_back_byte_for_byte() {
        let ClassicNegotiation::Connect(r) = parse_negotiate(OBSERVED.as_bytes()).unwrap() else {
            panic!("not a connect answer")
        };
        assert_eq!(r.url, "/signalr");
        assert_eq!(r.connection_token, "AQAAANCMnd8BFdERjHoAwE/Cl+sBAAAA==");
        assert_eq!(r.connection_id, "6d6b0b0e-3d4c-4c4e-9d0b-2f0c2b3a4d5e");
        assert_eq!(r.keep_alive_timeout(), Some(Duration::from_secs(20)));
        assert_eq!(r.disconnect_timeout(), Duration::from_secs(30));
        assert_eq!(r.connection_timeout(), Duration::from_secs(110));
        assert!(r.try_web_sockets);
        assert_eq!(r.protocol_version, "1.5");
        assert_eq!(r.transport_connect_timeout(), Duration::from_secs(5));
        assert_eq!(r.long_poll_delay(), Duration::ZERO);
        assert_eq!(r.to_json(), OBSERVED);
        assert!(is_classic(OBSERVED.as_bytes()));
    }

    #[test]
    fn the_default_response_is_what_a_2_4_server_writes() {
        let r = NegotiateResponse {
            connection_token: "t".into(),
            connection_id: "i".into(),
            ..NegotiateResponse::default()
        };
        assert_eq!(
            r.to_json(),
            r#"{"Url":"/signalr","ConnectionToken":"t","ConnectionId":"i","KeepAliveTimeout":20.0,"DisconnectTimeout":30.0,"ConnectionTimeout":110.0,"TryWebSockets":true,"ProtocolVersion":"2.0","TransportConnectTimeout":5.0,"LongPollDelay":0.0}"#
        );
    }

    #[test]
    fn keep_alive_off_is_null_both_ways() {
        let r = NegotiateResponse {
            keep_alive_timeout: None,
            ..NegotiateResponse::default()
        };
        let body = r.to_json();
        assert!(body.contains(r#""KeepAliveTimeout":null,"#), "{body}");
        let ClassicNegotiation::Connect(again) = parse_negotiate(body.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(again.keep_alive_timeout(), None);
        assert_eq!(again, r);
    }

    #[test]
    fn redirects_errors_and_core_servers() {
        let body = redirect_body("http://other/signalr", Some("tok"));
        assert_eq!(
            body,
            r#"{"AccessToken":"tok","RedirectUrl":"http://other/signalr"}"#
        );
        assert_eq!(
            parse_negotiate(body.as_bytes()).unwrap(),
            ClassicNegotiation::Redirect {
                url: "http://other/signalr".into(),
                access_token: Some("tok".into())
            }
        );
        assert!(is_classic(body.as_bytes()));

        let refused = parse_negotiate(error_body("nope").as_bytes()).unwrap_err();
        assert!(
            matches!(&refused, Error::Negotiate(NegotiateError::Server(m)) if m == "nope"),
            "{refused}"
        );
        assert!(is_classic(error_body("nope").as_bytes()));

        let core = br#"{"negotiateVersion":1,"connectionId":"a","connectionToken":"b","availableTransports":[]}"#;
        assert!(!is_classic(core));
        assert!(matches!(
            parse_negotiate(core).unwrap_err(),
            Error::Negotiate(NegotiateError::CoreServer)
        ));
        assert!(!is_classic(b"not json"));
        assert!(!is_classic(b"[1]"));
    }

    #[test]
    fn missing_and_bad_fields_are_named() {
        let cases: [(&[u8], &str); 6] = [
            (br#"{"ConnectionId":"i","ProtocolVersion":"2.0"}"#, "ConnectionToken"),
            (br#"{"ConnectionToken":"t","ProtocolVersion":"2.0"}"#, "ConnectionId"),
            (br#"{"ConnectionToken":"t","ConnectionId":"i"}"#, "ProtocolVersion"),
            (
                br#"{"ConnectionToken":"t","ConnectionId":"i","ProtocolVersion":"2.0","DisconnectTimeout":-1}"#,
                "DisconnectTimeout",
            ),
            (
                br#"{"ConnectionToken":"t","ConnectionId":"i","ProtocolVersion":[]}"#,
                "ProtocolVersion",
            ),
            (br#"[]"#, "not a JSON object"),
        ];
        for (body, what) in cases {
            let err = parse_negotiate(body).unwrap_err().to_string();
            assert!(err.contains(what), "{err} should name {what}");
        }
        // A numeric version is taken as its text.
        let body = br#"{"ConnectionToken":"t","ConnectionId":"i","ProtocolVersion":1.5}"#;
        let ClassicNegotiation::Connect(r) = parse_negotiate(body).unwrap() else {
            panic!()
        };
        assert_eq!(r.protocol_version, "1.5");
    }

    #[test]
    fn the_protocol_version_is_clamped_as_a_2_4_server_clamps_it() {
        for (asked, answered) in [
            (Some("2.1"), "2.0"),
            (Some("2.0"), "2.0"),
            (Some("1.5"), "1.5"),
            (Some("1.4"), "1.4"),
            (Some("1.0"), "1.2"),
            (None, "1.2"),
            (Some("abc"), "1.2"),
            (Some("2"), "1.2"),
            (Some("1.3.1"), "1.3.1"),
            (Some("2.0.0"), "2.0"),
            (Some("01.5"), "1.5"),
            (Some("99999999999.1"), "1.2"),
        ] {
            assert_eq!(answered_protocol_version(asked), answered, "{asked:?}");
        }
    }
}
