//! The hub's side of the classic wire, on `hubbub_protocol::classic` (pure encoders and
//! decoders, fuzzed there): what the endpoint writes, shaped as its callers need it.

use bytes::Bytes;
use hubbub_protocol::Arg;
use hubbub_protocol::classic::{ClientInvocation, Envelope, HubResult, write_envelope};

use super::replay::Cursor;

pub(crate) use hubbub_protocol::classic::HubRequest;

/// A server-to-client call: `{"H":hub,"M":method,"A":[…]}` (an envelope's `M` item), with
/// `"Headers"` (a Hubbub extension 2.x clients ignore) when the message has headers, so a
/// client sees a chat message's id (`hubbub-msg-id`) on classic as on Core.
pub(crate) fn client_invocation(
    hub: &str,
    method: &str,
    args: &[Arg],
    headers: &hubbub_protocol::Headers,
) -> Result<Vec<u8>, String> {
    ClientInvocation {
        hub: hub.to_owned(),
        method: method.to_owned(),
        args: args.to_vec(),
        state: None,
        headers: headers.clone(),
    }
    .to_vec()
    .map_err(|e| e.to_string())
}

/// A persistent response `{"C":cursor,"S":1?,"G":token?,"M":[items]}`, the items copied as
/// they were encoded (once per message for every connection).
pub(crate) fn envelope(
    cursor: Cursor,
    init: bool,
    groups: Option<&str>,
    items: &[Bytes],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + items.iter().map(Bytes::len).sum::<usize>());
    write_envelope_into(cursor, init, groups, items, &mut out);
    out
}

/// The length of what [`write_envelope_into`] writes without `init` and groups: `count` items
/// of `size` bytes in all.
pub(crate) fn plain_envelope_len(cursor: Cursor, size: usize, count: usize) -> usize {
    r#"{"C":"","M":[]}"#.len() + cursor.text_len() + size + count.saturating_sub(1)
}

/// Appends the persistent response [`envelope`] makes. The common one, messages and a cursor
/// only (`{"C":"d-…","M":[…]}`), is written directly: the same bytes `write_envelope` writes
/// (the cursor's text needs no escaping), without the header's strings and formatting.
pub(crate) fn write_envelope_into<I>(
    cursor: Cursor,
    init: bool,
    groups: Option<&str>,
    items: I,
    out: &mut Vec<u8>,
) where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    if init || groups.is_some() {
        let header = Envelope {
            cursor: Some(cursor.to_string()),
            initialized: init,
            groups_token: groups.map(str::to_owned),
            ..Envelope::default()
        };
        write_envelope(&header, items, out);
        return;
    }
    out.extend_from_slice(br#"{"C":""#);
    cursor.write_to(out);
    out.extend_from_slice(br#"","M":["#);
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item.as_ref());
    }
    out.extend_from_slice(b"]}");
}

/// An envelope asking the client to reconnect (`T`): the server is shutting down.
pub(crate) fn reconnect_envelope(cursor: Cursor) -> Vec<u8> {
    Envelope {
        cursor: Some(cursor.to_string()),
        reconnect: true,
        ..Envelope::default()
    }
    .to_vec()
}

/// How a call ended, for its result.
#[derive(Debug)]
pub(crate) enum Outcome<'a> {
    Void,
    Value(&'a Arg),
    /// Not a hub error: binding failures, unknown hubs or methods.
    Error(&'a str),
    /// A hub error (`HubException`, `"H":true`), with its data (`D`).
    HubError(&'a str, Option<&'a serde_json::Value>),
}

/// A hub result `{"R"?,"I":id,"H"?,"E"?,"D"?}`. No `S`: a 2.x hub sends back only the caller
/// state its method changed (`StateChangeTracker.GetChanges()`, `null` when nothing changed),
/// and Hubbub's hub methods do not change it; the client keeps its own.
pub(crate) fn hub_result(id: &str, outcome: Outcome<'_>) -> Vec<u8> {
    let result = match outcome {
        Outcome::Void => HubResult::ok(id, None),
        Outcome::Value(value) => HubResult::ok(id, Some(value.clone())),
        Outcome::Error(e) => HubResult::failed(id, e, false, None),
        Outcome::HubError(e, data) => {
            let data =
                data.and_then(|d| Arg::serialize_for(hubbub_protocol::Protocol::Json, d).ok());
            HubResult::failed(id, e, true, data)
        }
    };
    match result.to_vec() {
        Ok(bytes) => bytes,
        // A result with no JSON form (binary data): the call still gets an answer.
        Err(e) => HubResult::failed(
            id,
            format!("The result cannot be written as JSON: {e}"),
            false,
            None,
        )
        .to_vec()
        .unwrap_or_default(),
    }
}

/// A progress report for call `id`: `{"I":"P|id","P":{"I":"id","D":data}}`.
pub(crate) fn progress(id: &str, data: &Arg) -> Result<Vec<u8>, String> {
    HubResult::progress(id, data.clone())
        .to_vec()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_what_a_2_4_server_writes() {
        let inv = client_invocation(
            "ChatHub",
            "broadcastMessage",
            &["bob".into(), "hello".into()],
            &hubbub_protocol::Headers::new(),
        )
        .unwrap();
        assert_eq!(
            inv,
            br#"{"H":"ChatHub","M":"broadcastMessage","A":["bob","hello"]}"#
        );
        let at = |seq| Cursor { stream: 0xAB, seq };
        assert_eq!(
            envelope(at(7), true, None, &[]),
            br#"{"C":"d-000000AB-B,7","S":1,"M":[]}"#
        );
        assert_eq!(
            envelope(
                at(9),
                false,
                Some("g"),
                &[Bytes::from_static(b"{}"), Bytes::from_static(b"[]")]
            ),
            br#"{"C":"d-000000AB-B,9","G":"g","M":[{},[]]}"#
        );
        // The direct path writes what the envelope encoder writes.
        for items in [
            &[][..],
            &[Bytes::from_static(br#"{"H":"h"}"#)][..],
            &[Bytes::from_static(b"{}"), Bytes::from_static(b"[1]")][..],
        ] {
            for cursor in [
                at(0),
                at(12_345),
                Cursor {
                    stream: u32::MAX,
                    seq: u64::MAX,
                },
            ] {
                let header = Envelope {
                    cursor: Some(cursor.to_string()),
                    ..Envelope::default()
                };
                let mut expected = Vec::new();
                write_envelope(&header, items, &mut expected);
                assert_eq!(envelope(cursor, false, None, items), expected);
                let size = items.iter().map(Bytes::len).sum();
                assert_eq!(
                    plain_envelope_len(cursor, size, items.len()),
                    expected.len()
                );
            }
        }
        assert_eq!(
            envelope(at(3), false, None, &[Bytes::from_static(b"{}")]),
            br#"{"C":"d-000000AB-B,3","M":[{}]}"#
        );
        let r: Arg = "ping!".into();
        assert_eq!(
            hub_result("1", Outcome::Value(&r)),
            br#"{"R":"ping!","I":"1"}"#
        );
        assert_eq!(hub_result("0", Outcome::Void), br#"{"I":"0"}"#);
        let data = serde_json::json!({"code": 42});
        assert_eq!(
            hub_result("3", Outcome::HubError("nope", Some(&data))),
            br#"{"I":"3","H":true,"E":"nope","D":{"code":42}}"#
        );
        assert_eq!(
            progress("2", &Arg::from("half")).unwrap(),
            br#"{"I":"P|2","P":{"I":"2","D":"half"}}"#
        );
    }
}
