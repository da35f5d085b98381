//! Every test vector of `shared/reference/signalr-protocol.md`, byte for byte.

use bytes::Bytes;
use hubbub_protocol::handshake::{HandshakeRequest, HandshakeResponse};
use hubbub_protocol::*;

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn decode_one(protocol: Protocol, bytes: &[u8]) -> HubMessage {
    let mut messages = decode_all(protocol, bytes, DEFAULT_MAX_MESSAGE_SIZE).unwrap();
    assert_eq!(messages.len(), 1, "exactly one message in {bytes:02x?}");
    messages.remove(0)
}

fn invocation(id: Option<&str>, target: &str, args: Vec<Arg>) -> HubMessage {
    HubMessage::Invocation(Invocation {
        invocation_id: id.map(str::to_owned),
        target: target.to_owned(),
        arguments: args,
        ..Invocation::default()
    })
}

#[test]
fn json_handshake_request() {
    let expected = hex(
        "7B 22 70 72 6F 74 6F 63 6F 6C 22 3A 22 6A 73 6F 6E 22 2C 22 76 65 72 73 69 6F 6E 22 3A 31 7D 1E",
    );
    assert_eq!(HandshakeRequest::new(Protocol::Json, 1).encode(), expected);
    let (parsed, used) = HandshakeRequest::parse(&expected, 1024).unwrap().unwrap();
    assert_eq!(
        parsed,
        HandshakeRequest {
            protocol: "json".into(),
            version: 1
        }
    );
    assert_eq!(used, expected.len());
}

#[test]
fn handshake_ok() {
    assert_eq!(HandshakeResponse::ok().encode(), hex("7B 7D 1E"));
    let (parsed, used) = HandshakeResponse::parse(&hex("7B 7D 1E"), 1024)
        .unwrap()
        .unwrap();
    assert_eq!(parsed.error, None);
    assert_eq!(used, 3);
}

#[test]
fn json_ping() {
    let expected = hex("7B 22 74 79 70 65 22 3A 36 7D 1E");
    assert_eq!(
        Protocol::Json.encode_to_vec(&HubMessage::Ping).unwrap(),
        expected
    );
    assert_eq!(decode_one(Protocol::Json, &expected), HubMessage::Ping);
}

#[test]
fn json_invocation_from_the_js_client() {
    let text =
        "{\"target\":\"Send\",\"arguments\":[\"hi\"],\"invocationId\":\"0\",\"type\":1}\u{1e}";
    assert_eq!(text.len(), 65);
    let message = decode_one(Protocol::Json, text.as_bytes());
    assert_eq!(message, invocation(Some("0"), "Send", vec!["hi".into()]));
    let HubMessage::Invocation(inv) = message else {
        unreachable!()
    };
    // The argument is a slice of the received frame, still in JSON form.
    assert_eq!(
        inv.arguments[0].raw().map(|(p, b)| (p, b.clone())),
        Some((Protocol::Json, Bytes::from_static(b"\"hi\"")))
    );
}

#[test]
fn json_completion_with_result() {
    let text = "{\"type\":3,\"invocationId\":\"0\",\"result\":42}\u{1e}";
    assert_eq!(text.len(), 42);
    let message = HubMessage::Completion(Completion::result("0", Arg::from_value(Value::from(42))));
    assert_eq!(
        Protocol::Json.encode_to_vec(&message).unwrap(),
        text.as_bytes()
    );
    assert_eq!(decode_one(Protocol::Json, text.as_bytes()), message);
}

#[test]
fn msgpack_ping() {
    assert_eq!(
        Protocol::MessagePack
            .encode_to_vec(&HubMessage::Ping)
            .unwrap(),
        hex("02 91 06")
    );
    assert_eq!(
        decode_one(Protocol::MessagePack, &hex("02 91 06")),
        HubMessage::Ping
    );
}

#[test]
fn msgpack_invocation_with_id() {
    let bytes = hex("0E 95 01 80 A1 30 A4 53 65 6E 64 91 A2 68 69");
    let message = invocation(Some("0"), "Send", vec!["hi".into()]);
    assert_eq!(
        Protocol::MessagePack.encode_to_vec(&message).unwrap(),
        bytes
    );
    assert_eq!(decode_one(Protocol::MessagePack, &bytes), message);
}

#[test]
fn msgpack_non_blocking_invocation() {
    let bytes = hex("0D 95 01 80 C0 A4 53 65 6E 64 91 A2 68 69");
    let message = invocation(None, "Send", vec!["hi".into()]);
    assert_eq!(
        Protocol::MessagePack.encode_to_vec(&message).unwrap(),
        bytes
    );
    assert_eq!(decode_one(Protocol::MessagePack, &bytes), message);
}

#[test]
fn msgpack_spec_example_six_element_invocation() {
    let bytes = hex("11 96 01 80 A3 78 79 7A A6 6D 65 74 68 6F 64 91 2A 90");
    let message = decode_one(Protocol::MessagePack, &bytes);
    assert_eq!(
        message,
        invocation(Some("xyz"), "method", vec![Value::from(42).into()])
    );
    let HubMessage::Invocation(inv) = &message else {
        unreachable!()
    };
    assert_eq!(inv.arguments[0].decode::<i32>().unwrap(), 42);
    // Without stream ids the encoder writes the shorter five-element form, as the JS client does.
    assert_eq!(
        Protocol::MessagePack.encode_to_vec(&message).unwrap(),
        hex("10 95 01 80 A3 78 79 7A A6 6D 65 74 68 6F 64 91 2A")
    );
}

#[test]
fn msgpack_completions() {
    let cases = [
        (
            "07 95 03 80 A1 30 03 2A",
            Completion::result("0", Value::from(42).into()),
        ),
        ("06 94 03 80 A1 30 02", Completion::void("0")),
        (
            "0B 95 03 80 A1 30 01 A4 62 6F 6F 6D",
            Completion::error("0", "boom"),
        ),
    ];
    for (bytes, completion) in cases {
        let message = HubMessage::Completion(completion);
        assert_eq!(
            Protocol::MessagePack.encode_to_vec(&message).unwrap(),
            hex(bytes)
        );
        assert_eq!(decode_one(Protocol::MessagePack, &hex(bytes)), message);
    }
}

#[test]
fn msgpack_close_ack_sequence() {
    let cases = [
        ("03 92 07 C0", HubMessage::Close(Close::default())),
        ("03 92 08 24", HubMessage::Ack(Ack { sequence_id: 36 })),
        (
            "03 92 09 01",
            HubMessage::Sequence(Sequence { sequence_id: 1 }),
        ),
    ];
    for (bytes, message) in cases {
        assert_eq!(
            Protocol::MessagePack.encode_to_vec(&message).unwrap(),
            hex(bytes)
        );
        assert_eq!(decode_one(Protocol::MessagePack, &hex(bytes)), message);
    }
}

#[test]
fn varints() {
    for (value, bytes) in [
        (53, "35"),
        (5248, "80 29"),
        ((1usize << 31) - 1, "FF FF FF FF 07"),
    ] {
        let mut out = [0; MAX_VARINT_LEN];
        let n = write_varint(value, &mut out).unwrap();
        assert_eq!(&out[..n], hex(bytes).as_slice());
        assert_eq!(read_varint(&hex(bytes)).unwrap(), Some((value, n)));
    }
    assert_eq!(write_varint(1 << 31, &mut [0; MAX_VARINT_LEN]), None);
    assert!(read_varint(&hex("FF FF FF FF 08")).is_err());
    assert_eq!(read_varint(&hex("FF FF")).unwrap(), None);
}
