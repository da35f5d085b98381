//! The classic wire as the hub writes and reads it. (Temporary home: these move onto
//! `hubbub_protocol::classic` once that module lands.)

use bytes::Bytes;
use hubbub_protocol::Arg;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Appends one argument as JSON text.
pub(crate) fn write_arg(arg: &Arg, out: &mut Vec<u8>) -> Result<(), String> {
    if let Some((hubbub_protocol::Protocol::Json, bytes)) = arg.raw() {
        out.extend_from_slice(bytes);
        return Ok(());
    }
    let value = arg.to_value().map_err(|e| e.to_string())?;
    serde_json::to_writer(&mut *out, &value).map_err(|e| e.to_string())
}

fn write_str(text: &str, out: &mut Vec<u8>) {
    // Writing a string to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// A server-to-client call: `{"H":hub,"M":method,"A":[…]}` (ClientHubInvocation).
pub(crate) fn client_invocation(hub: &str, method: &str, args: &[Arg]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(br#"{"H":"#);
    write_str(hub, &mut out);
    out.extend_from_slice(br#","M":"#);
    write_str(method, &mut out);
    out.extend_from_slice(br#","A":["#);
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_arg(arg, &mut out)?;
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

/// A persistent response: `{"C":cursor,"S":1?,"G":token?,"M":[items]}`.
pub(crate) fn envelope(cursor: u64, init: bool, groups: Option<&str>, items: &[Bytes]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + items.iter().map(Bytes::len).sum::<usize>());
    out.extend_from_slice(br#"{"C":""#);
    out.extend_from_slice(cursor.to_string().as_bytes());
    out.push(b'"');
    if init {
        out.extend_from_slice(br#","S":1"#);
    }
    if let Some(groups) = groups {
        out.extend_from_slice(br#","G":"#);
        write_str(groups, &mut out);
    }
    out.extend_from_slice(br#","M":["#);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.extend_from_slice(b"]}");
    out
}

/// A hub request `{"H","M","A","I","S"}` as sent by a client.
#[derive(Debug)]
pub(crate) struct HubRequest {
    pub(crate) hub: String,
    pub(crate) method: String,
    pub(crate) args: Vec<Arg>,
    /// The call's id as text (clients send a number or a string).
    pub(crate) id: Option<String>,
    /// Caller state, kept as JSON.
    pub(crate) state: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct RawRequest<'a> {
    #[serde(rename = "H")]
    hub: Option<String>,
    #[serde(rename = "M")]
    method: Option<String>,
    #[serde(rename = "A", borrow, default)]
    args: Option<Vec<&'a RawValue>>,
    #[serde(rename = "I", borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(rename = "S", default)]
    state: Option<Box<RawValue>>,
}

impl HubRequest {
    pub(crate) fn parse(data: &[u8]) -> Result<Self, String> {
        let raw: RawRequest<'_> = serde_json::from_slice(data).map_err(|e| {
            format!(
                "the hub request is not valid JSON of the shape {{\"H\",\"M\",\"A\",\"I\"}}: {e}"
            )
        })?;
        let hub = raw.hub.ok_or("the hub request has no hub name (H)")?;
        let method = raw.method.ok_or("the hub request has no method name (M)")?;
        let id = match raw.id {
            None => None,
            Some(id) => match serde_json::from_str::<serde_json::Value>(id.get()) {
                Ok(serde_json::Value::String(s)) => Some(s),
                Ok(serde_json::Value::Number(n)) => Some(n.to_string()),
                Ok(serde_json::Value::Null) => None,
                _ => {
                    return Err(
                        "the hub request's id (I) is neither a number nor a string".to_owned()
                    );
                }
            },
        };
        let args = raw
            .args
            .unwrap_or_default()
            .into_iter()
            .map(|a| {
                Arg::from_json(Bytes::copy_from_slice(a.get().as_bytes()))
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            hub,
            method,
            args,
            id,
            state: raw.state.filter(|s| s.get() != "null"),
        })
    }
}

/// How a call ended, for its result.
#[derive(Debug)]
pub(crate) enum Outcome<'a> {
    Void,
    Value(&'a Arg),
    /// Not a hub error: binding failures, unknown hubs or methods.
    Error(&'a str),
    /// A hub error (`HubException`), with optional data.
    HubError(&'a str, Option<&'a serde_json::Value>),
}

/// A hub result `{"I":id,"R"?,"E"?,"H"?,"D"?,"S"?}`.
pub(crate) fn hub_result(id: &str, outcome: Outcome<'_>, state: Option<&RawValue>) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(br#"{"I":"#);
    write_str(id, &mut out);
    match outcome {
        Outcome::Void => {}
        Outcome::Value(arg) => {
            let mark = out.len();
            out.extend_from_slice(br#","R":"#);
            if let Err(e) = write_arg(arg, &mut out) {
                out.truncate(mark);
                out.extend_from_slice(br#","E":"#);
                write_str(
                    &format!("The result cannot be written as JSON: {e}"),
                    &mut out,
                );
            }
        }
        Outcome::Error(e) => {
            out.extend_from_slice(br#","E":"#);
            write_str(e, &mut out);
        }
        Outcome::HubError(e, data) => {
            out.extend_from_slice(br#","H":true,"E":"#);
            write_str(e, &mut out);
            if let Some(data) = data {
                out.extend_from_slice(br#","D":"#);
                let _ = serde_json::to_writer(&mut out, data);
            }
        }
    }
    if let Some(state) = state {
        out.extend_from_slice(br#","S":"#);
        out.extend_from_slice(state.get().as_bytes());
    }
    out.push(b'}');
    out
}

/// A progress report for call `id`: `{"I":"P|id","P":{"I":"id","D":data}}` (2.x `HubResponse`
/// with `Progress`).
pub(crate) fn progress(id: &str, data: &Arg) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(br#"{"I":"#);
    write_str(&format!("P|{id}"), &mut out);
    out.extend_from_slice(br#","P":{"I":"#);
    write_str(id, &mut out);
    out.extend_from_slice(br#","D":"#);
    write_arg(data, &mut out)?;
    out.extend_from_slice(b"}}");
    Ok(out)
}

/// Decodes `application/x-www-form-urlencoded` text.
pub(crate) fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the form body is not UTF-8".to_owned())?;
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| "the form body has a malformed percent escape".to_owned())?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "the form body is not UTF-8 once decoded".to_owned())
}

/// The hub names of a `connectionData` value `[{"name":"chathub"},…]`.
pub(crate) fn connection_data(text: &str) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    struct Entry {
        name: String,
    }
    let entries: Vec<Entry> = serde_json::from_str(text)
        .map_err(|e| format!("connectionData is not a list of {{\"name\":hub}}: {e}"))?;
    Ok(entries.into_iter().map(|e| e.name).collect())
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
        )
        .unwrap();
        assert_eq!(
            inv,
            br#"{"H":"ChatHub","M":"broadcastMessage","A":["bob","hello"]}"#
        );
        assert_eq!(envelope(7, true, None, &[]), br#"{"C":"7","S":1,"M":[]}"#);
        assert_eq!(
            envelope(
                9,
                false,
                Some("g"),
                &[Bytes::from_static(b"{}"), Bytes::from_static(b"[]")]
            ),
            br#"{"C":"9","G":"g","M":[{},[]]}"#
        );
        let r: Arg = "ping!".into();
        assert_eq!(
            hub_result("1", Outcome::Value(&r), None),
            br#"{"I":"1","R":"ping!"}"#
        );
        assert_eq!(hub_result("0", Outcome::Void, None), br#"{"I":"0"}"#);
        let data = serde_json::json!({"code": 42});
        assert_eq!(
            hub_result("3", Outcome::HubError("nope", Some(&data)), None),
            br#"{"I":"3","H":true,"E":"nope","D":{"code":42}}"#
        );
        assert_eq!(
            progress("2", &Arg::from("half")).unwrap(),
            br#"{"I":"P|2","P":{"I":"2","D":"half"}}"#
        );
    }

    #[test]
    fn reads_hub_requests() {
        let r = HubRequest::parse(
            br#"{"H":"chatHub","M":"Send","A":["a",{"x":1}],"I":0,"S":{"k":"v"}}"#,
        )
        .unwrap();
        assert_eq!(
            (r.hub.as_str(), r.method.as_str(), r.id.as_deref()),
            ("chatHub", "Send", Some("0"))
        );
        assert_eq!(r.args.len(), 2);
        assert_eq!(r.state.unwrap().get(), r#"{"k":"v"}"#);
        assert!(HubRequest::parse(b"{").is_err());
        assert!(HubRequest::parse(br#"{"M":"x"}"#).is_err());
        assert!(HubRequest::parse(br#"{"H":"h","M":"x","I":[]}"#).is_err());
    }

    #[test]
    fn reads_forms_and_connection_data() {
        let form =
            parse_form(b"data=%7B%22H%22%3A%22x%22%7D&messageId=12&groupsToken=a%2Bb%3D").unwrap();
        assert_eq!(form[0], ("data".to_owned(), r#"{"H":"x"}"#.to_owned()));
        assert_eq!(form[2].1, "a+b=");
        assert!(parse_form(b"data=%zz").is_err());
        assert_eq!(
            connection_data(r#"[{"name":"chathub"}]"#).unwrap(),
            vec!["chathub"]
        );
        assert!(connection_data("nope").is_err());
    }
}
