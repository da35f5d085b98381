//! Shared oracle: whatever decodes must re-encode, and decode again to the same messages; and
//! for JSON, the one-pass decoder must agree with serde_json on every record.

use hubbub_protocol::{HubMessage, MessageReader, Protocol};

pub fn check(protocol: Protocol, data: &[u8]) {
    // The first byte picks a chunk size, so split reads are exercised too.
    let Some((&chunk, data)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    if protocol == Protocol::Json {
        for record in data.split(|&b| b == 0x1e) {
            let record = bytes::Bytes::copy_from_slice(record);
            assert_eq!(
                format!("{:?}", hubbub_protocol::json::decode(&record)),
                format!("{:?}", hubbub_protocol::json::decode_reference(&record)),
                "the one-pass decoder and serde_json disagree"
            );
        }
    }
    let mut reader = MessageReader::new(protocol, 1 << 16);
    let mut decoded: Vec<HubMessage> = Vec::new();
    'outer: for part in data.chunks(chunk) {
        reader.push(part);
        loop {
            match reader.next_message() {
                Ok(Some(message)) => decoded.push(message),
                Ok(None) => break,
                // A message error skips that message; a framing error ends the stream, and
                // must keep being reported (never a loop that makes no progress).
                Err(_) if reader.buffered() == 0 && reader.next_message().is_err() => break 'outer,
                Err(_) => continue,
            }
        }
    }
    for message in decoded {
        let bytes = protocol.encode_to_vec(&message).expect("a decoded message re-encodes");
        let again = hubbub_protocol::decode_all(protocol, &bytes, 1 << 20).expect("and decodes");
        assert_eq!(again, vec![message]);
        // Reading every argument as a dynamic value must not panic either.
        if let HubMessage::Invocation(inv) = &again[0] {
            for arg in &inv.arguments {
                let _ = arg.to_value();
            }
        }
    }
}
