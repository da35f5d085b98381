//! Oracles for the classic (ASP.NET SignalR 2.x) decoders, shared by the fuzz targets and by
//! `tests/corpus.rs` (which runs them over the checked-in seeds): whatever decodes must
//! re-encode and decode again to the same value; nothing may panic.

#![allow(dead_code)]

use bytes::Bytes;
use hubbub_protocol::classic::form::{self, PollBody};
use hubbub_protocol::classic::{
    self, ClassicNegotiation, ClientInvocation, HubRequest, HubResult, Incoming,
};

pub(crate) fn negotiate(data: &[u8]) {
    let detected = classic::is_classic(data);
    match classic::parse_negotiate(data) {
        Ok(ClassicNegotiation::Connect(response)) => {
            assert!(detected, "an accepted response is detected as classic");
            let body = response.to_json();
            let again = classic::parse_negotiate(body.as_bytes()).expect("re-parses");
            assert_eq!(again, ClassicNegotiation::Connect(response));
        }
        Ok(ClassicNegotiation::Redirect { url, access_token }) => {
            assert!(detected, "a redirect is detected as classic");
            let body = classic::negotiate::redirect_body(&url, access_token.as_deref());
            let again = classic::parse_negotiate(body.as_bytes()).expect("re-parses");
            assert_eq!(again, ClassicNegotiation::Redirect { url, access_token });
        }
        Err(_) => {}
    }
}

fn result_round_trip(result: &HubResult) {
    if let Ok(bytes) = result.to_vec() {
        let again = HubResult::decode(&Bytes::from(bytes)).expect("a written result decodes");
        assert_eq!(&again, result);
    }
}

/// The one-pass classic decoders must agree with serde_json (same value or same error).
pub(crate) fn one_pass_agrees(data: &[u8]) {
    let payload = Bytes::copy_from_slice(data);
    assert_eq!(
        format!("{:?}", Incoming::decode(&payload)),
        format!("{:?}", Incoming::decode_reference(&payload)),
        "envelopes: the one-pass decoder and serde_json disagree"
    );
    assert_eq!(
        format!("{:?}", ClientInvocation::decode(&payload)),
        format!("{:?}", ClientInvocation::decode_reference(&payload)),
        "server calls: the one-pass decoder and serde_json disagree"
    );
    assert_eq!(
        format!("{:?}", HubRequest::decode(&payload)),
        format!("{:?}", HubRequest::decode_reference(&payload)),
        "hub requests: the one-pass decoder and serde_json disagree"
    );
}

pub(crate) fn frame(data: &[u8]) {
    one_pass_agrees(data);
    let payload = Bytes::copy_from_slice(data);
    match Incoming::decode(&payload) {
        Ok(Incoming::Envelope(envelope)) => {
            let again = Incoming::decode(&Bytes::from(envelope.to_vec())).expect("re-decodes");
            assert_eq!(again, Incoming::Envelope(envelope.clone()));
            for item in &envelope.messages {
                one_pass_agrees(item);
                if let Ok(call) = ClientInvocation::decode(item) {
                    let bytes = call.to_vec().expect("a decoded call re-encodes");
                    let again = ClientInvocation::decode(&Bytes::from(bytes)).expect("and decodes");
                    assert_eq!(again, call);
                    for arg in &call.args {
                        let _ = arg.to_value();
                    }
                }
            }
        }
        Ok(Incoming::Result(result)) => result_round_trip(&result),
        Ok(Incoming::KeepAlive | Incoming::Empty) | Err(_) => {}
    }
    if let Ok(result) = HubResult::decode(&payload) {
        result_round_trip(&result);
    }
}

pub(crate) fn request(data: &[u8]) {
    let payload = Bytes::copy_from_slice(data);
    let check = |payload: &Bytes| {
        if let Ok(request) = HubRequest::decode(payload) {
            let bytes = request.to_vec().expect("a decoded request re-encodes");
            let body = form::encode_send_body(&bytes);
            let json = form::parse_send_body(body.as_bytes()).expect("a written body parses");
            assert_eq!(json.as_bytes(), &bytes[..]);
            let again = HubRequest::decode(&Bytes::from(json)).expect("and decodes");
            assert_eq!(again, request);
        }
    };
    check(&payload);
    // The same bytes as a form body.
    if let Ok(json) = form::parse_send_body(data) {
        check(&Bytes::from(json));
    }
}

pub(crate) fn form(data: &[u8]) {
    if let Ok(poll) = PollBody::parse(data) {
        let again = PollBody::parse(poll.encode().as_bytes()).expect("a written poll parses");
        assert_eq!(again, poll);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(hubs) = form::parse_connection_data(text) {
            let written = form::encode_connection_data(hubs.iter().map(String::as_str));
            assert_eq!(
                form::parse_connection_data(&written).expect("re-parses"),
                hubs
            );
        }
        if let Ok(decoded) = form::percent_decode(text) {
            assert_eq!(
                form::percent_decode(&form::percent_encode(&decoded)).unwrap(),
                decoded
            );
        }
        let version = classic::answered_protocol_version(Some(text));
        assert_eq!(classic::answered_protocol_version(Some(&version)), version);
    }
}
