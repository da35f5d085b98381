//! Incremental framing: arbitrary chunk boundaries, size limits, recovery after a bad message.

use hubbub_protocol::*;

fn sample(n: usize) -> Vec<HubMessage> {
    (0..n)
        .map(|i| {
            HubMessage::Invocation(Invocation {
                invocation_id: Some(i.to_string()),
                target: "Send".into(),
                arguments: vec!["ann".into(), "x".repeat(i * 7).into()],
                ..Invocation::default()
            })
        })
        .collect()
}

#[test]
fn byte_by_byte_and_all_at_once_agree() {
    for protocol in Protocol::ALL {
        let messages = sample(20);
        let stream: Vec<u8> = messages
            .iter()
            .flat_map(|m| protocol.encode_to_vec(m).unwrap())
            .collect();
        let mut reader = MessageReader::new(protocol, DEFAULT_MAX_MESSAGE_SIZE);
        let mut got = Vec::new();
        for byte in &stream {
            reader.push(std::slice::from_ref(byte));
            while let Some(m) = reader.next_message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got, messages, "{protocol} byte by byte");
        assert_eq!(reader.buffered(), 0);
        assert_eq!(
            decode_all(protocol, &stream, DEFAULT_MAX_MESSAGE_SIZE).unwrap(),
            messages
        );
    }
}

#[test]
fn oversized_json_is_refused_before_its_end_arrives() {
    let mut reader = MessageReader::new(Protocol::Json, 100);
    reader.push(&[b' '; 60]);
    assert_eq!(reader.next_message().unwrap(), None);
    reader.push(&[b' '; 60]);
    let err = reader.next_message().unwrap_err();
    assert!(
        matches!(
            err,
            Error::MessageTooLarge {
                size: 120,
                max: 100
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("maximum message size of 100B was exceeded")
    );
    // The stream cannot be resynchronised: the error stays.
    reader.push(b"{\"type\":6}\x1e");
    assert!(matches!(
        reader.next_message(),
        Err(Error::MessageTooLarge { .. })
    ));
}

#[test]
fn json_message_exactly_at_the_limit_passes() {
    let ping = b"{\"type\":6}";
    let mut reader = MessageReader::new(Protocol::Json, ping.len());
    reader.push(ping);
    reader.push(b"\x1e");
    assert_eq!(reader.next_message().unwrap(), Some(HubMessage::Ping));
    let mut reader = MessageReader::new(Protocol::Json, ping.len() - 1);
    reader.push(b"{\"type\":6}\x1e");
    assert!(reader.next_message().is_err());
}

#[test]
fn oversized_msgpack_is_refused_from_its_length_prefix() {
    let mut reader = MessageReader::new(Protocol::MessagePack, 1000);
    reader.push(&[0xe9, 0x07]); // 1001
    let err = reader.next_message().unwrap_err();
    assert!(
        matches!(
            err,
            Error::MessageTooLarge {
                size: 1001,
                max: 1000
            }
        ),
        "{err}"
    );
    let mut reader = MessageReader::new(Protocol::MessagePack, 1000);
    reader.push(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(
        reader
            .next_message()
            .unwrap_err()
            .to_string()
            .contains("longer than 5 bytes")
    );
}

#[test]
fn default_limit_is_32_kib() {
    assert_eq!(DEFAULT_MAX_MESSAGE_SIZE, 32768);
    let big = HubMessage::Invocation(Invocation {
        target: "Send".into(),
        arguments: vec!["x".repeat(40_000).into()],
        ..Invocation::default()
    });
    for protocol in Protocol::ALL {
        let bytes = protocol.encode_to_vec(&big).unwrap();
        let err = decode_all(protocol, &bytes, DEFAULT_MAX_MESSAGE_SIZE).unwrap_err();
        assert!(
            err.to_string()
                .contains("The maximum message size of 32768B was exceeded")
                || err
                    .to_string()
                    .contains("maximum message size of 32768B was exceeded"),
            "{err}"
        );
    }
}

#[test]
fn a_malformed_message_is_reported_and_the_next_one_still_decodes() {
    let mut reader = MessageReader::new(Protocol::Json, 1024);
    reader.push(b"{\"type\":1}\x1enot json\x1e{\"type\":6}\x1e");
    assert!(
        reader
            .next_message()
            .unwrap_err()
            .to_string()
            .contains("'target'")
    );
    assert!(
        reader
            .next_message()
            .unwrap_err()
            .to_string()
            .contains("must be a JSON object")
    );
    assert_eq!(reader.next_message().unwrap(), Some(HubMessage::Ping));
}

#[test]
fn complete_payloads_must_end_on_a_boundary() {
    let err = decode_all(Protocol::Json, b"{\"type\":6}\x1e{\"type\":6}", 1024).unwrap_err();
    assert!(
        err.to_string()
            .contains("does not end with the record separator"),
        "{err}"
    );
    let err = decode_all(Protocol::MessagePack, &[0x02, 0x91, 0x06, 0x02, 0x91], 1024).unwrap_err();
    assert!(err.to_string().contains("ends inside"), "{err}");
    assert!(decode_all(Protocol::Json, b"", 1024).unwrap().is_empty());
}

#[test]
fn handshake_then_messages_in_one_read() {
    use hubbub_protocol::handshake::HandshakeResponse;
    let read = b"{\"minorVersion\":1}\x1e{\"type\":6}\x1e{\"type\":6";
    let (response, used) = HandshakeResponse::parse(read, 1024).unwrap().unwrap();
    assert_eq!(response.error, None);
    let mut reader = MessageReader::new(Protocol::Json, 1024);
    reader.push(&read[used..]);
    assert_eq!(reader.next_message().unwrap(), Some(HubMessage::Ping));
    assert_eq!(reader.next_message().unwrap(), None);
    reader.push(b"}\x1e");
    assert_eq!(reader.next_message().unwrap(), Some(HubMessage::Ping));
}

#[test]
fn sse_events_round_trip_in_any_chunking() {
    use hubbub_protocol::sse::{STREAM_PREAMBLE, SseReader, encode_event};
    let payloads: [&[u8]; 3] = [
        b"{\"type\":6}\x1e",
        b"line1\nline2\r\nline3",
        b"{}\x1e{}\x1e",
    ];
    let mut stream = STREAM_PREAMBLE.to_vec();
    for p in payloads {
        encode_event(p, &mut stream);
    }
    assert!(stream.starts_with(b":\r\ndata: {\"type\":6}\x1e\r\n\r\n"));
    for chunk in [1, 2, 3, 7, stream.len()] {
        let mut reader = SseReader::new(1024);
        let mut got = Vec::new();
        for part in stream.chunks(chunk) {
            reader.push(part);
            while let Some(event) = reader.next_event().unwrap() {
                got.push(event);
            }
        }
        assert_eq!(
            got,
            vec![
                payloads[0].to_vec(),
                b"line1\nline2\nline3".to_vec(),
                payloads[2].to_vec()
            ]
        );
    }
    let mut reader = SseReader::new(8);
    reader.push(b"data: 0123456789\n\n");
    assert!(matches!(
        reader.next_event(),
        Err(Error::MessageTooLarge { .. })
    ));
}

#[test]
fn a_bad_length_prefix_ends_the_stream_for_good() {
    let mut reader = MessageReader::new(Protocol::MessagePack, 1 << 20);
    reader.push(&[0x80, 0x80, 0x80, 0x80, 0x10, 0x02, 0x91, 0x06]);
    for _ in 0..3 {
        assert!(
            reader
                .next_message()
                .unwrap_err()
                .to_string()
                .contains("length prefix")
        );
    }
    assert_eq!(reader.buffered(), 0);
}
