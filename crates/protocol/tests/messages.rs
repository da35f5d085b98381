//! The nine message types in both encodings, edge cases and errors.

use bytes::Bytes;
use hubbub_protocol::*;

fn json(text: &str) -> Result<Option<HubMessage>> {
    Protocol::Json.decode_frame(&Bytes::copy_from_slice(text.as_bytes()))
}

fn headers(pairs: &[(&str, &str)]) -> Headers {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn every_message_type() -> Vec<HubMessage> {
    let h = headers(&[("hubbub-id", "m-1"), ("x", "ü")]);
    vec![
        HubMessage::Invocation(Invocation {
            headers: h.clone(),
            invocation_id: Some("1".into()),
            target: "Send".into(),
            arguments: vec!["ann".into(), "hello ✓".into()],
            stream_ids: vec!["s1".into(), "s2".into()],
        }),
        HubMessage::StreamItem(StreamItem {
            headers: h.clone(),
            invocation_id: "2".into(),
            item: Arg::serialize(&serde_json::json!({"n": 1, "list": [true, null, 1.5]})).unwrap(),
        }),
        HubMessage::Completion(Completion {
            headers: h.clone(),
            ..Completion::void("3")
        }),
        HubMessage::Completion(Completion::result("4", Arg::from_value(Value::Nil))),
        HubMessage::Completion(Completion::error("5", "It broke")),
        HubMessage::StreamInvocation(StreamInvocation {
            headers: h.clone(),
            invocation_id: "6".into(),
            target: "Counter".into(),
            arguments: vec![Value::from(10).into(), Value::from(-3).into()],
            stream_ids: vec![],
        }),
        HubMessage::CancelInvocation(CancelInvocation {
            headers: h,
            invocation_id: "6".into(),
        }),
        HubMessage::Ping,
        HubMessage::Close(Close {
            error: Some("Server is shutting down.".into()),
            allow_reconnect: true,
        }),
        HubMessage::Close(Close::default()),
        HubMessage::Ack(Ack {
            sequence_id: u64::from(u32::MAX) + 7,
        }),
        HubMessage::Sequence(Sequence { sequence_id: 1 }),
    ]
}

#[test]
fn every_type_round_trips_in_both_protocols() {
    for protocol in Protocol::ALL {
        let mut stream = Vec::new();
        for message in every_message_type() {
            protocol.encode(&message, &mut stream).unwrap();
        }
        let decoded = decode_all(protocol, &stream, DEFAULT_MAX_MESSAGE_SIZE).unwrap();
        assert_eq!(decoded, every_message_type(), "{protocol}");
    }
}

#[test]
fn messages_relay_between_protocols() {
    // A message read in one protocol and written in the other keeps its meaning.
    for (from, to) in [
        (Protocol::Json, Protocol::MessagePack),
        (Protocol::MessagePack, Protocol::Json),
    ] {
        let encoded: Vec<u8> = every_message_type()
            .iter()
            .flat_map(|m| from.encode_to_vec(m).unwrap())
            .collect();
        let decoded = decode_all(from, &encoded, DEFAULT_MAX_MESSAGE_SIZE).unwrap();
        let relayed: Vec<u8> = decoded
            .iter()
            .flat_map(|m| to.encode_to_vec(m).unwrap())
            .collect();
        assert_eq!(
            decode_all(to, &relayed, DEFAULT_MAX_MESSAGE_SIZE).unwrap(),
            every_message_type()
        );
    }
}

#[test]
fn json_wire_form_of_each_type() {
    let h = headers(&[("a", "b")]);
    let cases: Vec<(HubMessage, &str)> = vec![
        (
            HubMessage::Invocation(Invocation {
                headers: h.clone(),
                invocation_id: None,
                target: "Send".into(),
                arguments: vec!["x".into()],
                stream_ids: vec!["0".into()],
            }),
            r#"{"type":1,"headers":{"a":"b"},"target":"Send","arguments":["x"],"streamIds":["0"]}"#,
        ),
        (
            HubMessage::StreamItem(StreamItem {
                headers: Headers::new(),
                invocation_id: "1".into(),
                item: "i".into(),
            }),
            r#"{"type":2,"invocationId":"1","item":"i"}"#,
        ),
        (
            HubMessage::Completion(Completion::void("1")),
            r#"{"type":3,"invocationId":"1"}"#,
        ),
        (
            HubMessage::Completion(Completion::error("1", "e")),
            r#"{"type":3,"invocationId":"1","error":"e"}"#,
        ),
        (
            HubMessage::CancelInvocation(CancelInvocation {
                headers: Headers::new(),
                invocation_id: "1".into(),
            }),
            r#"{"type":5,"invocationId":"1"}"#,
        ),
        (HubMessage::Close(Close::default()), r#"{"type":7}"#),
        (
            HubMessage::Close(Close {
                error: Some("x".into()),
                allow_reconnect: true,
            }),
            r#"{"type":7,"error":"x","allowReconnect":true}"#,
        ),
        (
            HubMessage::Ack(Ack { sequence_id: 3 }),
            r#"{"type":8,"sequenceId":3}"#,
        ),
        (
            HubMessage::Sequence(Sequence { sequence_id: 4 }),
            r#"{"type":9,"sequenceId":4}"#,
        ),
    ];
    for (message, text) in cases {
        let mut expected = text.as_bytes().to_vec();
        expected.push(0x1e);
        assert_eq!(
            String::from_utf8(Protocol::Json.encode_to_vec(&message).unwrap()).unwrap(),
            String::from_utf8(expected).unwrap()
        );
    }
}

#[test]
fn json_null_result_is_a_result_not_void() {
    let m = json(r#"{"type":3,"invocationId":"1","result":null}"#)
        .unwrap()
        .unwrap();
    assert_eq!(
        m,
        HubMessage::Completion(Completion::result("1", Value::Nil.into()))
    );
}

#[test]
fn json_unknown_fields_and_types_are_ignored() {
    let m = json(r#"{"extra":{"deep":[1,2,{"x":null}]},"type":6,"minorVersion":1}"#).unwrap();
    assert_eq!(m, Some(HubMessage::Ping));
    assert_eq!(json(r#"{"type":99,"whatever":true}"#).unwrap(), None);
    let mut reader = MessageReader::new(Protocol::Json, 1024);
    reader.push(b"{\"type\":42}\x1e{\"type\":6}\x1e");
    assert_eq!(reader.next_message().unwrap(), Some(HubMessage::Ping));
    assert_eq!(reader.next_message().unwrap(), None);
}

#[test]
fn msgpack_unknown_types_and_extra_items_are_ignored() {
    let mut reader = MessageReader::new(Protocol::MessagePack, 1024);
    // [99, {}], then a Ping with an extra trailing item, then an Ack with two extra items.
    reader.push(&[
        0x03, 0x92, 0x63, 0x80, 0x03, 0x92, 0x06, 0xc0, 0x05, 0x94, 0x08, 0x05, 0xc3, 0xc0,
    ]);
    assert_eq!(reader.next_message().unwrap(), Some(HubMessage::Ping));
    assert_eq!(
        reader.next_message().unwrap(),
        Some(HubMessage::Ack(Ack { sequence_id: 5 }))
    );
    assert_eq!(reader.next_message().unwrap(), None);
}

#[test]
fn msgpack_unknown_type_skipped_then_next_message() {
    let mut reader = MessageReader::new(Protocol::MessagePack, 1024);
    reader.push(&[
        0x03, 0x92, 0x63, 0x80, 0x03, 0x92, 0x06, 0xc0, 0x05, 0x94, 0x08, 0x05, 0xc3,
    ]);
    assert_eq!(reader.next_message().unwrap(), Some(HubMessage::Ping));
    assert_eq!(
        reader.next_message().unwrap(),
        None,
        "the Ack frame is incomplete"
    );
    reader.push(&[0xc0]);
    assert_eq!(
        reader.next_message().unwrap(),
        Some(HubMessage::Ack(Ack { sequence_id: 5 }))
    );
}

#[test]
fn msgpack_uint8_headers_from_aiosignalr_are_read_as_empty() {
    // Echo("hi")'s completion as aiosignalr 0.1.1 writes it: headers as the uint8 128.
    let bytes = [
        0x0a, 0x95, 0x03, 0xcc, 0x80, 0xa1, 0x31, 0x03, 0xa2, 0x68, 0x69,
    ];
    let m = decode_all(Protocol::MessagePack, &bytes, 1024)
        .unwrap()
        .remove(0);
    assert_eq!(
        m,
        HubMessage::Completion(Completion::result("1", "hi".into()))
    );
}

#[test]
fn msgpack_integer_headers_from_aiosignalr_are_read_as_empty() {
    // aiosignalr writes `0` where the headers map belongs.
    let frame = Bytes::from_static(&[0x95, 0x01, 0x00, 0xc0, 0xa1, 0x66, 0x90]);
    let m = Protocol::MessagePack.decode_frame(&frame).unwrap().unwrap();
    let HubMessage::Invocation(inv) = m else {
        panic!("{m:?}")
    };
    assert!(inv.headers.is_empty());
    assert_eq!(inv.target, "f");
}

#[test]
fn json_errors_name_what_is_wrong() {
    let cases = [
        (
            r#"{"invocationId":"1"}"#,
            "Missing required property 'type'.",
        ),
        (
            r#"{"type":1,"arguments":[]}"#,
            "Missing required property 'target'.",
        ),
        (
            r#"{"type":1,"target":"x"}"#,
            "Missing required property 'arguments'.",
        ),
        (
            r#"{"type":2,"invocationId":"1"}"#,
            "Missing required property 'item'.",
        ),
        (r#"{"type":3}"#, "Missing required property 'invocationId'."),
        (
            r#"{"type":3,"invocationId":"1","result":1,"error":"x"}"#,
            "The 'error' and 'result' properties are mutually exclusive.",
        ),
        (r#"{"type":8}"#, "Missing required property 'sequenceId'."),
        (
            r#"{"type":1,"target":5,"arguments":[]}"#,
            "invalid type: integer `5`, expected a string",
        ),
        (r#"{"type":1,"#, "EOF while parsing"),
        (r#" [1,2]"#, "a hub message must be a JSON object"),
    ];
    for (text, expected) in cases {
        let err = json(text).unwrap_err().to_string();
        assert!(err.contains(expected), "{text}: {err}");
    }
}

#[test]
fn msgpack_errors_name_what_is_wrong() {
    let cases: [(&[u8], &str); 7] = [
        (&[0x90], "the message array is empty"),
        (
            &[0x91, 0xa1, 0x61],
            "expected an integer at byte 1 but found a string",
        ),
        (
            &[0x92, 0x01, 0x80],
            "Invalid payload for Invocation message.",
        ),
        (
            &[0x95, 0x01, 0x80, 0xc0, 0xa4, 0x53],
            "unexpected end of data",
        ),
        (
            &[0x95, 0x01, 0x80, 0xc0, 0xc0, 0x90],
            "expected the target at byte 4, found nil",
        ),
        (
            &[0x95, 0x03, 0x80, 0xa1, 0x30, 0x07, 0xc0],
            "Invalid invocation result kind 7.",
        ),
        (
            &[0x95, 0x01, 0x80, 0xc0, 0xa1, 0xff, 0x90],
            "is not valid UTF-8",
        ),
    ];
    for (bytes, expected) in cases {
        let err = Protocol::MessagePack
            .decode_frame(&Bytes::copy_from_slice(bytes))
            .unwrap_err();
        assert!(err.to_string().contains(expected), "{bytes:02x?}: {err}");
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let mut text = r#"{"type":1,"target":"x","arguments":["#.to_owned();
    text.push_str(&"[".repeat(100_000));
    assert!(json(&text).is_err());
    // MessagePack skipping is iterative: a million nested arrays decode without recursion.
    let mut frame = vec![0x95, 0x01, 0x80, 0xc0, 0xa1, 0x78, 0x91];
    frame.extend(std::iter::repeat_n(0x91, 1_000_000));
    frame.push(0xc0);
    let m = Protocol::MessagePack
        .decode_frame(&Bytes::from(frame))
        .unwrap()
        .unwrap();
    let HubMessage::Invocation(inv) = m else {
        panic!()
    };
    assert_eq!(inv.arguments.len(), 1);
    assert!(
        inv.arguments[0].to_value().is_err(),
        "a full parse refuses the depth"
    );
}

#[test]
fn huge_declared_lengths_fail_fast() {
    // An array claiming 2^32-1 elements in a 10-byte frame.
    let frame = Bytes::from_static(&[
        0x95, 0x01, 0x80, 0xc0, 0xa1, 0x78, 0xdd, 0xff, 0xff, 0xff, 0xff,
    ]);
    assert!(Protocol::MessagePack.decode_frame(&frame).is_err());
    let frame = Bytes::from_static(&[0x94, 0x02, 0x80, 0xa1, 0x78, 0xdb, 0xff, 0xff, 0xff, 0xff]);
    assert!(Protocol::MessagePack.decode_frame(&frame).is_err());
}

#[test]
fn typed_access_to_arguments() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Chat {
        name: String,
        text: String,
        tags: Vec<String>,
    }
    let chat = Chat {
        name: "ann".into(),
        text: "hi".into(),
        tags: vec!["a".into()],
    };
    for protocol in Protocol::ALL {
        for arg in [
            Arg::serialize(&chat).unwrap(),
            Arg::serialize_for(protocol, &chat).unwrap(),
        ] {
            let message = HubMessage::Invocation(Invocation {
                target: "Post".into(),
                arguments: vec![arg],
                ..Invocation::default()
            });
            let decoded = decode_all(
                protocol,
                &protocol.encode_to_vec(&message).unwrap(),
                1 << 20,
            )
            .unwrap();
            let HubMessage::Invocation(inv) = &decoded[0] else {
                panic!()
            };
            assert_eq!(inv.arguments[0].decode::<Chat>().unwrap(), chat);
            // Structs travel as maps (objects), so other clients see named fields.
            let Value::Map(entries) = inv.arguments[0].to_value().unwrap() else {
                panic!()
            };
            assert_eq!(entries[0].0.as_str(), Some("name"));
        }
    }
    let err = Arg::from("text").decode::<u32>().unwrap_err().to_string();
    assert!(err.contains("cannot read value as u32"), "{err}");
}

#[test]
fn values_json_cannot_hold_are_refused_when_encoding_json() {
    let binary = HubMessage::Completion(Completion::result("1", Value::Binary(vec![1, 2]).into()));
    let err = Protocol::Json
        .encode_to_vec(&binary)
        .unwrap_err()
        .to_string();
    assert!(err.contains("binary values have no JSON form"), "{err}");
    let mut out = b"keep".to_vec();
    assert!(Protocol::Json.encode(&binary, &mut out).is_err());
    assert_eq!(out, b"keep", "a failed encode leaves the buffer as it was");
    let int_keys = Value::Map(vec![(Value::from(1), Value::from(2))]);
    let message = HubMessage::Completion(Completion::result("1", int_keys.into()));
    assert!(Protocol::Json.encode_to_vec(&message).is_err());
    assert!(Protocol::MessagePack.encode_to_vec(&message).is_ok());
}

#[test]
fn raw_constructors_validate() {
    assert!(Arg::from_json(&b"{\"a\":1}"[..]).is_ok());
    assert!(Arg::from_json(&b"{\"a\":"[..]).is_err());
    assert!(Arg::from_msgpack(&[0x92, 0x01, 0x02][..]).is_ok());
    assert!(Arg::from_msgpack(&[0x92, 0x01][..]).is_err());
    assert!(Arg::from_msgpack(&[0x01, 0x02][..]).is_err());
}

#[test]
fn protocol_names() {
    assert_eq!(
        Protocol::from_name("MessagePack"),
        Some(Protocol::MessagePack)
    );
    assert_eq!(Protocol::from_name("json"), Some(Protocol::Json));
    assert_eq!(Protocol::from_name("xml"), None);
    assert_eq!("msgpack".parse::<Protocol>(), Ok(Protocol::MessagePack));
    assert!("xml".parse::<Protocol>().is_err());
}

#[test]
fn is_string_without_decoding() {
    for protocol in Protocol::ALL {
        for (value, expected) in [
            (Value::from("text ✓"), true),
            (Value::from(""), true),
            (Value::from("x".repeat(300)), true),
            (Value::from("x".repeat(70_000)), true),
            (Value::from(5), false),
            (Value::Nil, false),
            (Value::Array(vec![Value::from("a")]), false),
        ] {
            let message = HubMessage::Completion(Completion::result("1", value.clone().into()));
            let decoded = decode_all(
                protocol,
                &protocol.encode_to_vec(&message).unwrap(),
                1 << 20,
            )
            .unwrap();
            let HubMessage::Completion(Completion {
                outcome: Outcome::Result(arg),
                ..
            }) = &decoded[0]
            else {
                panic!()
            };
            assert_eq!(arg.is_string(), expected, "{protocol} {value}");
            assert_eq!(Arg::from_value(value).is_string(), expected);
        }
    }
    // A MessagePack string whose bytes are not UTF-8 is not a string.
    assert!(
        !Arg::from_msgpack(&[0xa2, 0xff, 0xfe][..])
            .unwrap()
            .is_string()
    );
}
