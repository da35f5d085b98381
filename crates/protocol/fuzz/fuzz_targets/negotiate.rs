#![no_main]

use hubbub_protocol::negotiate::{Negotiation, parse_response};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for asked in [false, true] {
        if let Ok(Negotiation::Connect(response)) = parse_response(data, asked) {
            // A response we accept survives being written back out by the server side.
            let body = response.to_json();
            let again = parse_response(body.as_bytes(), asked).expect("re-parses");
            assert_eq!(again, Negotiation::Connect(response));
        }
    }
});
