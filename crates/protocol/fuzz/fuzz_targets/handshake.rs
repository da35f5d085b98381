#![no_main]

use hubbub_protocol::handshake::{HandshakeRequest, HandshakeResponse};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(Some((request, used))) = HandshakeRequest::parse(data, 4096) {
        assert!(used <= data.len());
        let encoded = request.encode();
        let (again, n) = HandshakeRequest::parse(&encoded, 4096).unwrap().unwrap();
        assert_eq!((again, n), (request, encoded.len()));
    }
    if let Ok(Some((response, used))) = HandshakeResponse::parse(data, 4096) {
        assert!(used <= data.len());
        let encoded = response.encode();
        let (again, _) = HandshakeResponse::parse(&encoded, 4096).unwrap().unwrap();
        assert_eq!(again, response);
    }
});
