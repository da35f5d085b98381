//! Classic ASP.NET SignalR 2.x (`Microsoft.AspNet.SignalR`), the other protocol family: pure
//! functions and types, no I/O. The wire is described in `shared/reference/signalr-protocol.md`
//! §8 and, byte for byte as a real 2.4.3 server writes it, §8a.
//!
//! - [`negotiate`]: the classic negotiate response (both directions, with the server's key
//!   order and number formats), redirects and errors, family detection ([`is_classic`]), and the
//!   server's `clientProtocol` clamp ([`answered_protocol_version`]);
//! - [`envelope`]: what arrives on a receive channel: the persistent response
//!   `{"C","S","T","G","L","E","M"}` ([`Envelope`]), a hub result outside it, the keep-alive
//!   `{}` ([`Incoming`]);
//! - [`hub`]: hub calls, client → server ([`HubRequest`]) and server → client
//!   ([`ClientInvocation`]), results and progress ([`HubResult`]);
//! - [`form`]: the form bodies of `send` and `poll`, `connectionData`, percent-encoding, and the
//!   request URLs ([`request_url`]);
//! - this module: the transport names, Server-Sent Events framing and the long-polling
//!   keep-alive byte.
//!
//! The Core family's types are not used here, except [`Arg`](crate::Arg) for arguments and
//! results, so a hub can hand the same argument to a client of either family.

pub mod envelope;
pub mod form;
pub mod hub;
pub mod negotiate;

pub use envelope::{Envelope, Incoming, write_envelope};
pub use form::{Action, PollBody, RequestParams, request_url};
pub use hub::{ClientInvocation, HubProgress, HubRequest, HubResult};
pub use negotiate::{
    ClassicNegotiation, NegotiateResponse, answered_protocol_version, is_classic, parse_negotiate,
};

/// The `clientProtocol` Hubbub's client sends: the version the jQuery and .NET 2.4 clients
/// send (§8a). A 2.4 server answers `2.0`.
pub const CLIENT_PROTOCOL: &str = "2.1";

/// The `ProtocolVersion` answers a client accepts (the jQuery 2.4.3 client's list, §8a).
pub const ACCEPTED_PROTOCOL_VERSIONS: [&str; 3] = ["1.5", "2.0", "2.1"];

/// The body of a successful `start` request, exactly as a 2.4.3 server writes it (§8a).
pub const START_RESPONSE: &str = r#"{ "Response": "started" }"#;

/// The body of a `ping` answer, exactly as a 2.4.3 server writes it (§8a).
pub const PING_RESPONSE: &str = r#"{ "Response": "pong" }"#;

/// A classic transport, by the name it has in the `transport` query parameter.
///
/// `foreverFrame` (an iframe transport for old Internet Explorer) exists on the wire but is
/// not spoken here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// `webSockets`.
    WebSockets,
    /// `serverSentEvents`.
    ServerSentEvents,
    /// `longPolling`.
    LongPolling,
}

impl Transport {
    /// All three, in the order a client tries them (WebSockets, then SSE, then long polling).
    pub const ALL: [Transport; 3] = [
        Transport::WebSockets,
        Transport::ServerSentEvents,
        Transport::LongPolling,
    ];

    /// The name in the `transport` query parameter.
    pub fn name(self) -> &'static str {
        match self {
            Self::WebSockets => "webSockets",
            Self::ServerSentEvents => "serverSentEvents",
            Self::LongPolling => "longPolling",
        }
    }

    /// The transport for a `transport` query value (exact, case-sensitive, as the server
    /// compares it); `None` for `foreverFrame` and anything unknown.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Whether the server sends keep-alives on this transport and a client watches for them
    /// (not on long polling, where each poll is its own liveness check; .NET
    /// `SupportsKeepAlive`).
    pub fn supports_keep_alive(self) -> bool {
        !matches!(self, Self::LongPolling)
    }
}

/// The first event of a classic SSE stream (`data: initialized`, then a blank line).
pub const SSE_INITIALIZED: &[u8] = b"data: initialized\n\n";

/// The data of the first SSE event, as an SSE reader returns it.
pub const SSE_INITIALIZED_DATA: &[u8] = b"initialized";

/// A keep-alive on SSE: an empty object as one event.
pub const SSE_KEEP_ALIVE: &[u8] = b"data: {}\n\n";

/// A keep-alive on WebSockets: an empty object as one text message.
pub const KEEP_ALIVE: &[u8] = b"{}";

/// What a long-polling server writes into a held poll to keep it alive: one space, before the
/// JSON body (a JSON parser skips it).
pub const LONG_POLL_KEEP_ALIVE: u8 = b' ';

/// Appends one classic SSE event: `data: <payload>\n\n`. Classic payloads are JSON written
/// without line breaks; a payload holding line breaks gets one `data:` line per line, which
/// every SSE reader joins back.
pub fn encode_sse_event(payload: &[u8], out: &mut Vec<u8>) {
    for line in payload.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_names_round_trip_and_forever_frame_is_not_spoken() {
        for t in Transport::ALL {
            assert_eq!(Transport::from_name(t.name()), Some(t));
        }
        assert_eq!(Transport::from_name("foreverFrame"), None);
        assert_eq!(Transport::from_name("WebSockets"), None);
        assert!(!Transport::LongPolling.supports_keep_alive());
        assert!(Transport::WebSockets.supports_keep_alive());
    }

    #[test]
    fn sse_events_are_framed_as_a_classic_server_frames_them() {
        let mut out = Vec::new();
        encode_sse_event(br#"{"C":"d-1-B,0|C,0|D,1","S":1,"M":[]}"#, &mut out);
        assert_eq!(
            out,
            b"data: {\"C\":\"d-1-B,0|C,0|D,1\",\"S\":1,\"M\":[]}\n\n"
        );
        let mut out = Vec::new();
        encode_sse_event(b"{}", &mut out);
        assert_eq!(out, SSE_KEEP_ALIVE);

        // The shared SSE reader reads the classic stream.
        let mut reader = crate::sse::SseReader::new(1 << 16);
        reader.push(SSE_INITIALIZED);
        reader.push(SSE_KEEP_ALIVE);
        assert_eq!(reader.next_event().unwrap().unwrap(), SSE_INITIALIZED_DATA);
        assert_eq!(reader.next_event().unwrap().unwrap(), KEEP_ALIVE);
    }
}
