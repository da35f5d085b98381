//! Handshake and negotiate exchanges.

use hubbub_protocol::handshake::{HandshakeRequest, HandshakeResponse, errors};
use hubbub_protocol::negotiate::*;
use hubbub_protocol::{Error, NegotiateError, Protocol};

#[test]
fn handshake_request_parse_keeps_following_bytes() {
    let buf = b"{\"protocol\":\"messagepack\",\"version\":1}\x1e\x02\x91\x06";
    let (req, used) = HandshakeRequest::parse(buf, 1024).unwrap().unwrap();
    assert_eq!(req, HandshakeRequest::new(Protocol::MessagePack, 1));
    assert_eq!(&buf[used..], &[0x02, 0x91, 0x06]);
    assert_eq!(HandshakeRequest::parse(&buf[..10], 1024).unwrap(), None);
}

#[test]
fn handshake_request_errors() {
    let cases = [
        (
            &b"{\"version\":1}\x1e"[..],
            "Missing required property 'protocol'.",
        ),
        (
            b"{\"protocol\":\"json\"}\x1e",
            "Missing required property 'version'.",
        ),
        (
            b"{\"protocol\":\"json\",\"version\":\"1\"}\x1e",
            "Expected 'version' to be of type Integer.",
        ),
        (
            b"{\"protocol\":1,\"version\":1}\x1e",
            "Expected 'protocol' to be of type String.",
        ),
        (b"nope\x1e", "invalid JSON in the handshake"),
    ];
    for (buf, expected) in cases {
        let err = HandshakeRequest::parse(buf, 1024).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    }
    assert!(matches!(
        HandshakeRequest::parse(&[b' '; 2000], 1024),
        Err(Error::MessageTooLarge { .. })
    ));
}

#[test]
fn handshake_response_forms() {
    let err = HandshakeResponse::error(errors::unsupported_protocol("xml"));
    assert_eq!(
        err.encode(),
        b"{\"error\":\"The protocol 'xml' is not supported.\"}\x1e"
    );
    let (parsed, _) = HandshakeResponse::parse(&err.encode(), 1024)
        .unwrap()
        .unwrap();
    assert_eq!(parsed, err);
    let bad = HandshakeResponse::parse(b"{\"type\":6}\x1e", 1024).unwrap_err();
    assert!(
        bad.to_string()
            .contains("Expected a handshake response from the server.")
    );
    assert_eq!(
        errors::unsupported_version("json", 3),
        "The server does not support version 3 of the 'json' protocol."
    );
    assert!(
        errors::transport_mismatch("messagepack", TransferFormat::Binary)
            .starts_with("Cannot use the 'messagepack' protocol on the current transport.")
    );
}

#[test]
fn negotiate_urls() {
    let cases = [
        (
            "http://h/hub",
            false,
            "http://h/hub/negotiate?negotiateVersion=1",
        ),
        (
            "http://h/hub/",
            false,
            "http://h/hub/negotiate?negotiateVersion=1",
        ),
        (
            "http://h/hub?room=a&x=1",
            false,
            "http://h/hub/negotiate?room=a&x=1&negotiateVersion=1",
        ),
        (
            "http://h/hub?negotiateVersion=0",
            false,
            "http://h/hub/negotiate?negotiateVersion=0",
        ),
        (
            "https://h/hub",
            true,
            "https://h/hub/negotiate?negotiateVersion=1&useStatefulReconnect=true",
        ),
        (
            "http://h/hub?useStatefulReconnect=true",
            true,
            "http://h/hub/negotiate?useStatefulReconnect=true&negotiateVersion=1",
        ),
    ];
    for (hub, stateful, expected) in cases {
        assert_eq!(negotiate_url(hub, stateful), expected, "{hub}");
    }
    assert!(url_requests_stateful_reconnect(
        "http://h/hub?useStatefulReconnect=true"
    ));
}

/// Query parameters are parsed, never found by text search (issue 12, item 3): a parameter
/// whose *value* names `negotiateVersion` is not a `negotiateVersion` parameter.
#[test]
fn query_parameters_are_parsed_not_searched_for() {
    for (hub, stateful, expected) in [
        (
            "http://h/hub?x=negotiateVersion",
            false,
            "http://h/hub/negotiate?x=negotiateVersion&negotiateVersion=1",
        ),
        (
            "http://h/hub?mynegotiateVersion=1",
            false,
            "http://h/hub/negotiate?mynegotiateVersion=1&negotiateVersion=1",
        ),
        (
            "http://h/hub?x=useStatefulReconnect",
            true,
            "http://h/hub/negotiate?x=useStatefulReconnect&negotiateVersion=1&useStatefulReconnect=true",
        ),
        (
            "http://h/hub?negotiate%56ersion=1#frag?negotiateVersion=2",
            false,
            "http://h/hub/negotiate?negotiate%56ersion=1",
        ),
    ] {
        assert_eq!(negotiate_url(hub, stateful), expected, "{hub}");
    }
    assert!(!url_requests_stateful_reconnect(
        "http://h/hub?x=useStatefulReconnect=true"
    ));
    assert!(!url_requests_stateful_reconnect(
        "http://h/hub?useStatefulReconnect=false&x=useStatefulReconnect%3Dtrue"
    ));
    assert_eq!(
        query_param("http://h/hub?a=1&name=Zo%C3%AB+K&name=2", "name").as_deref(),
        Some("Zoë K")
    );
    assert_eq!(query_param("http://h/hub?xid=1", "id"), None);
    // `id` is the transport's: a user's own `id` is replaced, not repeated.
    assert_eq!(
        connect_url("http://h/hub?id=mine&room=a&identity=x", Some("tok")),
        "http://h/hub?room=a&identity=x&id=tok"
    );
    assert_eq!(
        connect_url("http://h/hub?x=id%3D1", Some("a+b/c=")),
        "http://h/hub?x=id%3D1&id=a%2Bb%2Fc%3D"
    );
    assert_eq!(
        set_query_param("http://h/chathub?name=old&scope=s", "name", "Zoë K"),
        "http://h/chathub?scope=s&name=Zo%C3%AB%20K"
    );
    assert_eq!(
        set_query_param("http://h/chathub?x=name%3Dold", "name", "n"),
        "http://h/chathub?x=name%3Dold&name=n"
    );
}

#[test]
fn connect_and_scheme_urls() {
    assert_eq!(
        connect_url("http://h/hub", Some("t-1")),
        "http://h/hub?id=t-1"
    );
    assert_eq!(
        connect_url("http://h/hub?a=1", Some("t")),
        "http://h/hub?a=1&id=t"
    );
    assert_eq!(connect_url("ws://h/hub", None), "ws://h/hub");
    assert_eq!(
        websocket_url("http://h:1/hub?id=x").unwrap(),
        "ws://h:1/hub?id=x"
    );
    assert_eq!(websocket_url("HTTPS://h/hub").unwrap(), "wss://h/hub");
    assert_eq!(websocket_url("wss://h/hub").unwrap(), "wss://h/hub");
    assert!(websocket_url("ftp://h").is_err());
    assert_eq!(http_url("wss://h/hub").unwrap(), "https://h/hub");
    assert_eq!(http_url("ws://h/hub").unwrap(), "http://h/hub");
}

fn connect(body: &str, asked: bool) -> NegotiateResponse {
    match parse_response(body.as_bytes(), asked).unwrap() {
        Negotiation::Connect(r) => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn negotiate_v1_response() {
    let body = r#"{"connectionId":"abc","connectionToken":"tok","negotiateVersion":1,
        "availableTransports":[
          {"transport":"WebSockets","transferFormats":["Text","Binary"]},
          {"transport":"WebTransport","transferFormats":["Binary"]},
          {"transport":"ServerSentEvents","transferFormats":["Text","Morse"]},
          {"transport":"LongPolling","transferFormats":["Text","Binary"]}]}"#;
    let r = connect(body, false);
    assert_eq!(r.connection_id, "abc");
    assert_eq!(r.connection_token, "tok");
    assert_eq!(
        r.available_transports,
        vec![
            AvailableTransport {
                transport: TransportKind::WebSockets,
                transfer_formats: vec![TransferFormat::Text, TransferFormat::Binary]
            },
            AvailableTransport {
                transport: TransportKind::ServerSentEvents,
                transfer_formats: vec![TransferFormat::Text]
            },
            AvailableTransport {
                transport: TransportKind::LongPolling,
                transfer_formats: vec![TransferFormat::Text, TransferFormat::Binary]
            },
        ]
    );
    assert!(!r.use_stateful_reconnect);
}

#[test]
fn negotiate_v0_uses_the_id_as_token() {
    let r = connect(r#"{"connectionId":"abc","availableTransports":[]}"#, false);
    assert_eq!(
        (r.negotiate_version, r.connection_token.as_str()),
        (0, "abc")
    );
}

#[test]
fn negotiate_redirect_error_classic_and_stateful() {
    assert_eq!(
        parse_response(
            br#"{"url":"https://x/client/?hub=chat","accessToken":"jwt"}"#,
            false
        )
        .unwrap(),
        Negotiation::Redirect {
            url: "https://x/client/?hub=chat".into(),
            access_token: Some("jwt".into())
        }
    );
    let err = parse_response(br#"{"error":"Negotiate refused."}"#, false).unwrap_err();
    assert!(
        matches!(&err, Error::Negotiate(NegotiateError::Server(m)) if m == "Negotiate refused.")
    );
    let classic = br#"{"Url":"/signalr","ConnectionToken":"x","ConnectionId":"g","KeepAliveTimeout":20.0,"DisconnectTimeout":30.0,"ConnectionTimeout":110.0,"TryWebSockets":true,"ProtocolVersion":"2.0"}"#;
    let err = parse_response(classic, false).unwrap_err();
    assert!(
        matches!(&err, Error::Negotiate(NegotiateError::ClassicServer { protocol_version: Some(v) }) if v == "2.0")
    );
    assert!(err.to_string().contains("classic ASP.NET SignalR server"));
    let stateful = r#"{"connectionId":"a","connectionToken":"t","negotiateVersion":1,"useStatefulReconnect":true,"availableTransports":[]}"#;
    let err = parse_response(stateful.as_bytes(), false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Client didn't negotiate Stateful Reconnect but the server did."
    );
    assert!(connect(stateful, true).use_stateful_reconnect);
    let err = parse_response(br#"{"connectionId":"a","negotiateVersion":1}"#, false).unwrap_err();
    assert!(err.to_string().contains("missing `connectionToken`"));
    let err = parse_response(b"<html>nope</html>", false).unwrap_err();
    assert!(err.to_string().contains("not a negotiate response"));
}

#[test]
fn server_negotiate_body_round_trips() {
    let response = NegotiateResponse {
        negotiate_version: 1,
        connection_id: "id".into(),
        connection_token: "tok".into(),
        available_transports: TransportKind::ALL
            .iter()
            .map(|&t| AvailableTransport {
                transport: t,
                transfer_formats: t.transfer_formats().to_vec(),
            })
            .collect(),
        use_stateful_reconnect: false,
    };
    assert_eq!(
        response.to_json(),
        r#"{"negotiateVersion":1,"connectionId":"id","connectionToken":"tok","availableTransports":[{"transport":"WebSockets","transferFormats":["Text","Binary"]},{"transport":"ServerSentEvents","transferFormats":["Text"]},{"transport":"LongPolling","transferFormats":["Text","Binary"]}]}"#
    );
    assert_eq!(connect(&response.to_json(), false), response);
    let v0 = NegotiateResponse {
        negotiate_version: 0,
        connection_token: "id".into(),
        ..response.clone()
    };
    assert!(!v0.to_json().contains("connectionToken"));
    assert_eq!(connect(&v0.to_json(), false), v0);
    assert_eq!(error_body("no"), r#"{"error":"no"}"#);
}

#[test]
fn server_side_version_selection() {
    assert_eq!(requested_version(None, 0).unwrap(), 0);
    assert_eq!(requested_version(Some("1"), 0).unwrap(), 1);
    assert_eq!(requested_version(Some("7"), 0).unwrap(), 1);
    assert_eq!(
        requested_version(Some("x"), 0).unwrap_err().to_string(),
        "The client requested an invalid protocol version 'x'"
    );
    assert!(
        requested_version(Some("0"), 1)
            .unwrap_err()
            .to_string()
            .contains("does not support this version")
    );
}

#[test]
fn transport_bits() {
    let bits: Vec<u8> = TransportKind::ALL.iter().map(|t| t.bit()).collect();
    assert_eq!(bits, [1, 2, 4]);
    assert_eq!(
        TransportKind::ServerSentEvents.transfer_formats(),
        &[TransferFormat::Text]
    );
}
