//! Every checked-in fuzz seed through every parser: a regression suite that runs without
//! cargo-fuzz.

use std::path::Path;

use hubbub_protocol::handshake::{HandshakeRequest, HandshakeResponse};
use hubbub_protocol::{MessageReader, Protocol, negotiate};

#[path = "../fuzz/fuzz_targets/classic_common.rs"]
mod classic_common;

#[test]
fn every_seed_parses_or_fails_cleanly() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut seen = 0;
    for target in std::fs::read_dir(&corpus).expect("fuzz/corpus exists") {
        for file in std::fs::read_dir(target.unwrap().path()).unwrap() {
            let data = std::fs::read(file.unwrap().path()).unwrap();
            seen += 1;
            for protocol in Protocol::ALL {
                let mut reader = MessageReader::new(protocol, 1 << 16);
                reader.push(&data);
                for _ in 0..1000 {
                    if let Ok(None) = reader.next_message() {
                        break;
                    }
                }
            }
            let _ = negotiate::parse_response(&data, false);
            let _ = HandshakeRequest::parse(&data, 1 << 16);
            let _ = HandshakeResponse::parse(&data, 1 << 16);
            // The classic decoders, with their fuzz oracles (re-encode, decode, compare).
            classic_common::negotiate(&data);
            classic_common::frame(&data);
            classic_common::request(&data);
            classic_common::form(&data);
        }
    }
    assert!(seen >= 55, "the seed corpus is checked in ({seen} files)");
}
