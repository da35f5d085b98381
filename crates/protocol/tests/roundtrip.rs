//! Property tests: encode → decode → equal for arbitrary messages in both protocols, under
//! arbitrary chunking of the byte stream, and relayed between protocols.

use hubbub_protocol::classic::{ClientInvocation, Envelope, HubRequest, HubResult, Incoming};
use hubbub_protocol::*;
use proptest::prelude::*;

#[path = "../fuzz/fuzz_targets/classic_common.rs"]
mod classic_common;

/// JSON objects whose keys are mostly the classic family's (so the decoders get past the
/// first check), as JSON text.
fn classic_shaped() -> impl Strategy<Value = Vec<u8>> {
    let key = prop_oneof![
        8 => prop::sample::select(vec![
            "C", "S", "T", "G", "L", "E", "M", "I", "R", "H", "D", "P", "A", "ProtocolVersion",
            "ConnectionToken", "ConnectionId", "KeepAliveTimeout", "RedirectUrl", "Error", "name",
        ])
        .prop_map(str::to_owned),
        1 => ".{0,3}",
    ];
    prop::collection::vec((key, json_value()), 0..6).prop_map(|entries| {
        let map: Vec<(Value, Value)> = entries
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect();
        serde_json::to_vec(&Value::Map(dedupe_keys(map))).expect("JSON-compatible")
    })
}

/// Values every protocol can carry (JSON's data model): no binary, string keys, finite floats.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((".{0,8}".prop_map(Value::from), inner), 0..6)
                .prop_map(|entries| Value::Map(dedupe_keys(entries))),
        ]
    })
}

/// JSON objects keep one value per key; keep the first of each.
fn dedupe_keys(entries: Vec<(Value, Value)>) -> Vec<(Value, Value)> {
    let mut seen = std::collections::HashSet::new();
    entries
        .into_iter()
        .filter(|(k, _)| seen.insert(k.as_str().map(str::to_owned)))
        .collect()
}

/// Values only MessagePack can carry, mixed into the JSON-compatible ones.
fn msgpack_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => json_value(),
        1 => prop::collection::vec(any::<u8>(), 0..16).prop_map(Value::Binary),
        1 => (any::<i64>(), any::<i64>()).prop_map(|(k, v)| Value::Map(vec![(Value::from(k), Value::from(v))])),
    ]
}

fn text() -> impl Strategy<Value = String> + Clone {
    ".{0,10}"
}

fn headers() -> impl Strategy<Value = Headers> {
    prop::collection::btree_map(text(), text(), 0..3)
}

fn message(value: BoxedStrategy<Value>) -> impl Strategy<Value = HubMessage> {
    let args = prop::collection::vec(value.clone().prop_map(Arg::from_value), 0..4);
    let ids = prop::collection::vec(text(), 0..3);
    prop_oneof![
        (
            headers(),
            prop::option::of(text()),
            text(),
            args.clone(),
            ids.clone()
        )
            .prop_map(|(headers, invocation_id, target, arguments, stream_ids)| {
                HubMessage::Invocation(Invocation {
                    headers,
                    invocation_id,
                    target,
                    arguments,
                    stream_ids,
                })
            }),
        (headers(), text(), value.clone()).prop_map(|(headers, invocation_id, item)| {
            HubMessage::StreamItem(StreamItem {
                headers,
                invocation_id,
                item: item.into(),
            })
        }),
        (
            headers(),
            text(),
            prop_oneof![
                Just(Outcome::Void),
                value.prop_map(|v| Outcome::Result(v.into())),
                text().prop_map(Outcome::Error),
            ]
        )
            .prop_map(|(headers, invocation_id, outcome)| {
                HubMessage::Completion(Completion {
                    headers,
                    invocation_id,
                    outcome,
                })
            }),
        (headers(), text(), text(), args, ids).prop_map(
            |(headers, invocation_id, target, arguments, stream_ids)| {
                HubMessage::StreamInvocation(StreamInvocation {
                    headers,
                    invocation_id,
                    target,
                    arguments,
                    stream_ids,
                })
            }
        ),
        (headers(), text()).prop_map(|(headers, invocation_id)| {
            HubMessage::CancelInvocation(CancelInvocation {
                headers,
                invocation_id,
            })
        }),
        Just(HubMessage::Ping),
        (prop::option::of(text()), any::<bool>()).prop_map(|(error, allow_reconnect)| {
            HubMessage::Close(Close {
                error,
                allow_reconnect,
            })
        }),
        any::<u64>().prop_map(|sequence_id| HubMessage::Ack(Ack { sequence_id })),
        any::<u64>().prop_map(|sequence_id| HubMessage::Sequence(Sequence { sequence_id })),
    ]
}

fn messages_for(protocol: Protocol) -> impl Strategy<Value = Vec<HubMessage>> {
    let value = match protocol {
        Protocol::Json => json_value().boxed(),
        Protocol::MessagePack => msgpack_value().boxed(),
    };
    prop::collection::vec(message(value), 1..12)
}

/// Splits `bytes` at the given cut points (taken modulo the length).
fn chunks(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points
        .windows(2)
        .map(|w| bytes[w[0]..w[1]].to_vec())
        .collect()
}

fn read_chunked(protocol: Protocol, parts: &[Vec<u8>]) -> Vec<HubMessage> {
    let mut reader = MessageReader::new(protocol, usize::MAX >> 1);
    let mut out = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        // Alternate copying pushes and zero-copy pushes of received buffers.
        if i % 2 == 0 {
            reader.push(part);
        } else {
            reader.push_bytes(bytes::Bytes::copy_from_slice(part));
        }
        while let Some(m) = reader.next_message().expect("decodes") {
            out.push(m);
        }
    }
    assert_eq!(reader.buffered(), 0, "nothing left over");
    out
}

fn round_trip(protocol: Protocol, messages: &[HubMessage], cuts: &[usize]) {
    let mut stream = Vec::new();
    for m in messages {
        protocol.encode(m, &mut stream).expect("encodes");
    }
    assert_eq!(read_chunked(protocol, &chunks(&stream, cuts)), messages);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn json_round_trips_in_any_chunking(
        messages in messages_for(Protocol::Json),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        round_trip(Protocol::Json, &messages, &cuts);
    }

    #[test]
    fn msgpack_round_trips_in_any_chunking(
        messages in messages_for(Protocol::MessagePack),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        round_trip(Protocol::MessagePack, &messages, &cuts);
    }

    #[test]
    fn json_messages_relay_through_msgpack_and_back(messages in messages_for(Protocol::Json)) {
        for m in &messages {
            let json = Protocol::Json.encode_to_vec(m).unwrap();
            let from_json = decode_all(Protocol::Json, &json, usize::MAX >> 1).unwrap();
            let msgpack = Protocol::MessagePack.encode_to_vec(&from_json[0]).unwrap();
            let from_msgpack = decode_all(Protocol::MessagePack, &msgpack, usize::MAX >> 1).unwrap();
            let back = Protocol::Json.encode_to_vec(&from_msgpack[0]).unwrap();
            prop_assert_eq!(&decode_all(Protocol::Json, &back, usize::MAX >> 1).unwrap()[0], m);
        }
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        for protocol in Protocol::ALL {
            let _ = decode_all(protocol, &bytes, 1 << 16);
        }
        let _ = hubbub_protocol::negotiate::parse_response(&bytes, false);
        let _ = hubbub_protocol::handshake::HandshakeRequest::parse(&bytes, 1 << 16);
        let _ = hubbub_protocol::handshake::HandshakeResponse::parse(&bytes, 1 << 16);
    }

    #[test]
    fn varints_round_trip(value in 0usize..=MAX_VARINT_VALUE) {
        let mut out = [0; MAX_VARINT_LEN];
        let n = write_varint(value, &mut out).unwrap();
        prop_assert_eq!(read_varint(&out[..n]).unwrap(), Some((value, n)));
        prop_assert_eq!(read_varint(&out[..n - 1]).unwrap(), None);
    }

    #[test]
    fn classic_oracles_hold_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        classic_common::negotiate(&bytes);
        classic_common::frame(&bytes);
        classic_common::request(&bytes);
        classic_common::form(&bytes);
    }

    #[test]
    fn classic_oracles_hold_on_classic_shaped_json(json in classic_shaped()) {
        classic_common::negotiate(&json);
        classic_common::frame(&json);
        classic_common::request(&json);
        classic_common::form(&json);
    }

    #[test]
    fn classic_frames_round_trip(
        hub in ".{0,8}",
        method in ".{0,8}",
        id in ".{0,4}",
        args in prop::collection::vec(json_value(), 0..4),
        cursor in proptest::option::of(".{0,12}"),
        groups in proptest::option::of(".{0,12}"),
    ) {
        let args: Vec<Arg> = args.into_iter().map(Arg::from_value).collect();
        let request = HubRequest { hub: hub.clone(), method: method.clone(), args: args.clone(), id: id.clone(), state: None };
        let bytes = bytes::Bytes::from(request.to_vec().unwrap());
        prop_assert_eq!(HubRequest::decode(&bytes).unwrap(), request);

        let call = ClientInvocation { hub, method, args: args.clone(), state: None, headers: Default::default() };
        let item = bytes::Bytes::from(call.to_vec().unwrap());
        let envelope = Envelope { cursor, groups_token: groups, messages: vec![item], ..Envelope::default() };
        let Incoming::Envelope(again) = Incoming::decode(&bytes::Bytes::from(envelope.to_vec())).unwrap() else {
            panic!("an envelope decodes as one")
        };
        prop_assert_eq!(ClientInvocation::decode(&again.messages[0]).unwrap(), call);
        prop_assert_eq!(again, envelope);

        // A null result is left out on the wire, so it reads back as none.
        let result = HubResult::ok(id, args.into_iter().next().filter(|a| !a.to_value().unwrap().is_nil()));
        let Incoming::Result(back) = Incoming::decode(&bytes::Bytes::from(result.to_vec().unwrap())).unwrap() else {
            panic!("a result decodes as one")
        };
        prop_assert_eq!(back, result);
    }
}

/// `bytes` with a few edits: bytes replaced by, or inserted from, characters that matter to
/// JSON (and a control character and stray UTF-8), or removed.
fn mutated(bytes: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    const ALPHABET: &[u8] = b"\"\\{}[],:0-.eE nu1t\x01\xff\xc3 9/a";
    let mut out = bytes;
    for &(at, what, pick) in edits {
        let at = at % (out.len() + 1);
        let byte = ALPHABET[usize::from(pick) % ALPHABET.len()];
        match what % 4 {
            0 if at < out.len() => out[at] = byte,
            1 => out.insert(at, byte),
            // A token cut short: one to four bytes gone.
            2 => drop(out.drain(at..(at + 1 + usize::from(pick % 4)).min(out.len()))),
            _ if at < out.len() => {
                out.remove(at);
            }
            _ => {}
        }
    }
    out
}

/// The one-pass JSON decoder must give exactly what serde_json gives (the same messages with
/// the same argument bytes, or the same error).
fn agrees_with_serde_json(frame: &[u8]) {
    let frame = bytes::Bytes::copy_from_slice(frame);
    let fast = format!("{:?}", json::decode(&frame));
    let reference = format!("{:?}", json::decode_reference(&frame));
    assert_eq!(fast, reference, "for {:?}", String::from_utf8_lossy(&frame));
}

/// A JSON string value with escapes of every kind, as text.
fn escaped_json_string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[a-z \u{e9}\u{2713}\u{1F600}]{0,6}",
        1 => prop::sample::select(vec![r#"\""#, r"\\", r"\/", r"\b", r"\f", r"\n", r"\r", r"\t"]).prop_map(str::to_owned),
        1 => "\\\\u[0-9a-fA-F]{4}",
        1 => prop::sample::select(vec![r"\ud83d\ude00", r"\ud83d", r"\ude00", r"\u00e9", r"\x"]).prop_map(str::to_owned),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|pieces| format!("\"{}\"", pieces.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn the_one_pass_json_decoder_agrees_with_serde_json(
        messages in messages_for(Protocol::Json),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..4),
        noise in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        for m in &messages {
            let mut frame = Protocol::Json.encode_to_vec(m).unwrap();
            frame.pop(); // the record separator
            agrees_with_serde_json(&frame);
            agrees_with_serde_json(&mutated(frame, &edits));
        }
        agrees_with_serde_json(&noise);
    }

    #[test]
    fn the_one_pass_classic_decoders_agree_with_serde_json(
        hub in "[A-Za-z]{0,6}",
        method in ".{0,8}",
        args in prop::collection::vec(json_value(), 0..4),
        headers in prop::collection::btree_map(".{0,6}", ".{0,6}", 0..3),
        cursor in proptest::option::of(".{0,12}"),
        flags in (any::<bool>(), any::<bool>(), proptest::option::of(any::<u64>()), proptest::option::of(".{0,8}")),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..4),
    ) {
        let call = ClientInvocation {
            hub, method, args: args.into_iter().map(Arg::from_value).collect(),
            state: None, headers,
        };
        let item = call.to_vec().unwrap();
        let (initialized, reconnect, long_poll_delay, error) = flags;
        let envelope = Envelope {
            cursor, initialized, reconnect, long_poll_delay, error,
            messages: vec![bytes::Bytes::from(item.clone()), bytes::Bytes::from_static(b"{\"H\":\"h\",\"M\":\"m\",\"A\":[],\"S\":{\"x\":1}}")],
            ..Envelope::default()
        };
        let bytes = envelope.to_vec();
        classic_common::one_pass_agrees(&item);
        classic_common::one_pass_agrees(&bytes);
        classic_common::one_pass_agrees(&mutated(item, &edits));
        classic_common::one_pass_agrees(&mutated(bytes, &edits));
        // A hub request as the .NET client writes it (the id a string) and as the jQuery
        // client does (a number), with state, and cut or changed.
        let request = HubRequest {
            hub: call.hub.clone(),
            method: call.method.clone(),
            args: call.args.clone(),
            id: "7".to_owned(),
            state: Some(Arg::from_json(&b"{\"x\":1}"[..]).unwrap()),
        };
        let text = String::from_utf8(request.to_vec().unwrap()).unwrap();
        let numeric = text.replace("\"I\":\"7\"", "\"I\":7");
        for text in [&text, &numeric] {
            classic_common::one_pass_agrees(text.as_bytes());
            classic_common::one_pass_agrees(&mutated(text.clone().into_bytes(), &edits));
        }
    }

    #[test]
    fn string_arguments_read_as_serde_reads_them(text in ".{0,40}", escaped in escaped_json_string()) {
        use serde_json::Value as Json;
        for json in [serde_json::to_vec(&text).unwrap(), escaped.into_bytes()] {
            let Ok(arg) = Arg::from_json(json.clone()) else { continue };
            if let Err(e) = serde_json::from_slice::<String>(&json) {
                let ours = arg.decode::<String>().unwrap_err().to_string();
                prop_assert!(ours.contains(&e.to_string()), "{} should carry {}", ours, e);
            }
            prop_assert_eq!(arg.decode::<String>().ok(), serde_json::from_slice::<String>(&json).ok());
            prop_assert_eq!(arg.decode::<Option<String>>().ok(), serde_json::from_slice::<Option<String>>(&json).ok());
            prop_assert_eq!(arg.decode::<Json>().ok(), serde_json::from_slice::<Json>(&json).ok());
            prop_assert_eq!(arg.decode::<u32>().is_err(), true);
            let msgpack = rmp_serde::to_vec(&text).unwrap();
            let arg = Arg::from_msgpack(msgpack.clone()).unwrap();
            prop_assert_eq!(arg.decode::<String>().unwrap(), text.clone());
            prop_assert_eq!(arg.decode::<Option<String>>().unwrap(), Some(text.clone()));
        }
    }
}
