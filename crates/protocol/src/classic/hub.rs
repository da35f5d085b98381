//! Classic hub frames: calls from client to server ([`HubRequest`]), calls from server to client
//! ([`ClientInvocation`], an item of an envelope's `M`), and results ([`HubResult`]), progress
//! updates included.
//!
//! Sources: S2 `Hubs/HubRequestParser.cs` and the .NET client's `HubInvocation` (requests),
//! `Hubs/ClientHubInvocation.cs` (server calls), `Hubs/HubResponse.cs` and
//! `HubDispatcher.SendProgressUpdate` (results and progress, properties in declaration order:
//! `S`, `R`, `I`, `P`, `H`, `E`, `T`, `D`, nulls left out); bytes as in §8a.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::envelope::write_str;
use crate::arg::Arg;
use crate::error::{Error, Result};
use crate::scan::{Fallback, Scanner, once};

/// A hub method call from client to server: `{"H":hub,"M":method,"A":[…],"I":id,"S":state}`
/// (the body of a `send`, form-encoded on HTTP transports, a text message on WebSockets).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HubRequest {
    /// `H`: the hub name, matched without regard to case.
    pub hub: String,
    /// `M`: the method name, matched without regard to case.
    pub method: String,
    /// `A`: the arguments, kept as the JSON they arrived in.
    pub args: Vec<Arg>,
    /// `I`: the call id, a counter from 0 per connection. Sent as a string by the .NET client
    /// and as a number by the jQuery client; read as text either way.
    pub id: String,
    /// `S`: the caller state (a JSON object), when the client has any.
    pub state: Option<Arg>,
}

/// A call from the server to a client's hub method, an item of an envelope's `M`:
/// `{"H":hub,"M":method,"A":[…],"S":state}`. `H` keeps the hub class's own casing
/// (`ChatHub`); clients match hub and method names without regard to case (§8a).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClientInvocation {
    /// `H`: the hub name.
    pub hub: String,
    /// `M`: the client method name.
    pub method: String,
    /// `A`: the arguments.
    pub args: Vec<Arg>,
    /// `S`: caller state changed by the server, when any (a JSON object).
    pub state: Option<Arg>,
    /// `Headers`: the message's headers (string values), a Hubbub extension that 2.x clients
    /// ignore; written only when not empty. Hubbub's chat layer finds its message ids and
    /// history positions here, as in ASP.NET Core messages' `headers`.
    pub headers: crate::Headers,
}

/// A progress update of a running call: on the wire a result with `I` = `"P|<id>"` and
/// `P` = `{"I":"<id>","D":data}`.
#[derive(Debug, Clone, PartialEq)]
pub struct HubProgress {
    /// `P.I`: the id of the call that reports progress.
    pub id: String,
    /// `P.D`: the reported value (JSON `null` when the hub reported null).
    pub data: Arg,
}

/// The answer to a [`HubRequest`], or a progress update of it:
/// `{"S":state,"R":result,"I":id,"P":progress,"H":true,"E":error,"T":stack,"D":data}`, each
/// left out when null. Examples from a 2.4.3 server (§8a): `{"R":"ping!","I":"1"}`,
/// `{"I":"0"}` (a void method), `{"I":"3","H":true,"E":"nope","D":{"code":42}}` (a
/// `HubException` with data).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HubResult {
    /// `I`: the call id (for progress, `P|<id>`).
    pub id: String,
    /// `R`: the return value; `None` for a void method (or a null return, which the server
    /// leaves out the same way).
    pub result: Option<Arg>,
    /// `E`: the error message, when the call failed.
    pub error: Option<String>,
    /// `H`: whether the error is a `HubException` (its message is meant for the caller).
    pub hub_exception: bool,
    /// `D`: a `HubException`'s extra data.
    pub error_data: Option<Arg>,
    /// `T`: the server's stack trace (detailed errors only).
    pub stack_trace: Option<String>,
    /// `S`: the caller state after the call, when the hub changed it (a JSON object).
    pub state: Option<Arg>,
    /// `P`: set on progress updates.
    pub progress: Option<HubProgress>,
}

fn invalid(context: &'static str, reason: impl Into<String>) -> Error {
    Error::Classic {
        context,
        reason: reason.into(),
    }
}

fn check_object(payload: &[u8], context: &'static str) -> Result<()> {
    if payload.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(invalid(context, "not a JSON object"));
    }
    Ok(())
}

/// An id as text: a string as is, a number as its JSON text (as Json.NET reads a number into
/// a string property).
fn id_text(raw: &RawValue, context: &'static str, name: &str) -> Result<String> {
    let text = raw.get();
    if text.starts_with('"') {
        return serde_json::from_str(text)
            .map_err(|_| invalid(context, format!("`{name}` is not a valid string")));
    }
    if serde_json::from_str::<serde_json::Number>(text).is_ok() {
        return Ok(text.to_owned());
    }
    Err(invalid(
        context,
        format!("`{name}` must be a string or a number, not {text}"),
    ))
}

/// A state object: `null` is no state; anything but an object is an error.
fn state(frame: &Bytes, raw: Option<&RawValue>, context: &'static str) -> Result<Option<Arg>> {
    match raw {
        None => Ok(None),
        Some(raw) if raw.get() == "null" => Ok(None),
        Some(raw) if raw.get().starts_with('{') => Ok(Some(arg(frame, raw))),
        Some(raw) => Err(invalid(
            context,
            format!("`S` (the state) must be an object, not {}", raw.get()),
        )),
    }
}

fn arg(frame: &Bytes, raw: &RawValue) -> Arg {
    Arg::json_unchecked(frame.slice_ref(raw.get().as_bytes()))
}

fn required<T>(value: Option<T>, context: &'static str, name: &str) -> Result<T> {
    value.ok_or_else(|| invalid(context, format!("missing `{name}`")))
}

fn write_args(out: &mut Vec<u8>, args: &[Arg]) -> Result<()> {
    out.push(b'[');
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        a.write_json(out)?;
    }
    out.push(b']');
    Ok(())
}

/// Runs `write` and leaves `out` as it was when it fails.
fn atomic(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>) -> Result<()>) -> Result<()> {
    let start = out.len();
    write(out).inspect_err(|_| out.truncate(start))
}

/// The one-pass reading of a server call (see `crate::scan`): header values other than plain
/// strings, `null`s and everything unusual are left to serde_json.
fn scan_call(item: &Bytes) -> std::result::Result<ClientInvocation, Fallback> {
    let mut s = Scanner::new(item)?;
    if s.peek() != Some(b'{') {
        return Err(Fallback);
    }
    let (mut hub, mut method, mut args, mut id) = (None, None, None, None);
    let (mut state, mut headers) = (None, None);
    s.object(|key, s| match key {
        "H" => once(&mut hub, s.plain_str()?.to_owned()),
        "M" => once(&mut method, s.plain_str()?.to_owned()),
        "A" => once(&mut args, scan_args(s, item)?),
        "I" => once(&mut id, s.raw()?),
        "S" => once(&mut state, s.raw()?),
        "Headers" => {
            let mut map = crate::Headers::new();
            s.object(|k, s| {
                map.insert(k.to_owned(), s.plain_str()?.to_owned());
                Ok(())
            })?;
            once(&mut headers, map)
        }
        _ => s.skip(),
    })?;
    s.end()?;
    let state = scan_state(&s, item, state)?;
    Ok(ClientInvocation {
        hub: hub.ok_or(Fallback)?,
        method: method.ok_or(Fallback)?,
        args: args.ok_or(Fallback)?,
        state,
        headers: headers.unwrap_or_default(),
    })
}

/// `A` read in one pass: each argument a slice of `payload`.
fn scan_args(s: &mut Scanner<'_>, payload: &Bytes) -> std::result::Result<Vec<Arg>, Fallback> {
    let mut list = Vec::new();
    s.array(|s| {
        list.push(Arg::json_unchecked(payload.slice(s.raw()?)));
        Ok(())
    })?;
    Ok(list)
}

/// `S` read in one pass (`raw`: where its value is): absent or null is no state, an object
/// its slice of `payload`; anything else is left to serde_json, which says why it is wrong.
fn scan_state(
    s: &Scanner<'_>,
    payload: &Bytes,
    raw: Option<std::ops::Range<usize>>,
) -> std::result::Result<Option<Arg>, Fallback> {
    match raw.map(|r| (s.text(r.clone()), r)) {
        None | Some(("null", _)) => Ok(None),
        Some((text, r)) if text.starts_with('{') => Ok(Some(Arg::json_unchecked(payload.slice(r)))),
        Some(_) => Err(Fallback),
    }
}

#[derive(Deserialize)]
struct WireCall<'a> {
    #[serde(rename = "H")]
    hub: Option<String>,
    #[serde(rename = "M")]
    method: Option<String>,
    #[serde(rename = "A", borrow, default)]
    args: Option<Vec<&'a RawValue>>,
    #[serde(rename = "I", borrow)]
    id: Option<&'a RawValue>,
    #[serde(rename = "S", borrow)]
    state: Option<&'a RawValue>,
    #[serde(rename = "Headers")]
    headers: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

/// The one-pass reading of a hub request (see `crate::scan`), for the common shape: `H` and
/// `M` plain strings, `A` an array, `I` a plain string or an integer, `S` absent, null or an
/// object, no `Headers`. Anything else (escapes, a null `A`, another kind of id, a missing
/// key, a duplicate) falls back to [`HubRequest::decode_reference`], which says what is wrong.
fn scan_request(payload: &Bytes) -> std::result::Result<HubRequest, Fallback> {
    let mut s = Scanner::new(payload)?;
    if s.peek() != Some(b'{') {
        return Err(Fallback);
    }
    let (mut hub, mut method, mut args, mut id, mut state) = (None, None, None, None, None);
    s.object(|key, s| match key {
        "H" => once(&mut hub, s.plain_str()?.to_owned()),
        "M" => once(&mut method, s.plain_str()?.to_owned()),
        "A" => once(&mut args, scan_args(s, payload)?),
        "I" => {
            let text = if s.peek() == Some(b'"') {
                s.plain_str()?
            } else {
                let raw = s.raw()?;
                let text = s.text(raw);
                let digits = text.strip_prefix('-').unwrap_or(text);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Fallback);
                }
                text
            };
            once(&mut id, text.to_owned())
        }
        "S" => once(&mut state, s.raw()?),
        "Headers" => Err(Fallback),
        _ => s.skip(),
    })?;
    s.end()?;
    let state = scan_state(&s, payload, state)?;
    Ok(HubRequest {
        hub: hub.ok_or(Fallback)?,
        method: method.ok_or(Fallback)?,
        args: args.ok_or(Fallback)?,
        id: id.ok_or(Fallback)?,
        state,
    })
}

impl HubRequest {
    /// Decodes a hub request (the JSON text, already out of its form body). `H`, `M` and `I`
    /// are required; a missing or null `A` is no arguments, as on a 2.4 server; unknown keys
    /// are ignored. Arguments and state are slices of `payload`. The common shape is read in
    /// one pass (issue 19: serde_json's reading was most of a classic hub's own cost per
    /// message at 10 receivers); anything else as [`decode_reference`](Self::decode_reference)
    /// reads it, with the same result.
    pub fn decode(payload: &Bytes) -> Result<Self> {
        match scan_request(payload) {
            Ok(request) => Ok(request),
            Err(Fallback) => Self::decode_reference(payload),
        }
    }

    /// [`decode`](Self::decode) through serde_json: the reference the one-pass reading
    /// agrees with (and its fallback).
    pub fn decode_reference(payload: &Bytes) -> Result<Self> {
        const CX: &str = "hub request";
        check_object(payload, CX)?;
        let wire: WireCall<'_> = serde_json::from_slice(payload)
            .map_err(crate::error::json_error("a classic hub request"))?;
        let id = required(wire.id, CX, "I")?;
        Ok(Self {
            hub: required(wire.hub, CX, "H")?,
            method: required(wire.method, CX, "M")?,
            args: wire
                .args
                .unwrap_or_default()
                .into_iter()
                .map(|a| arg(payload, a))
                .collect(),
            id: id_text(id, CX, "I")?,
            state: state(payload, wire.state, CX)?,
        })
    }

    /// Appends the request as JSON, `{"H":…,"M":…,"A":[…],"I":"…"}` plus `"S"` when there is
    /// state (the id as a string, as the .NET client sends it). On error (an argument with no
    /// JSON form) `out` is unchanged.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        atomic(out, |out| {
            out.extend_from_slice(b"{\"H\":");
            write_str(out, &self.hub);
            out.extend_from_slice(b",\"M\":");
            write_str(out, &self.method);
            out.extend_from_slice(b",\"A\":");
            write_args(out, &self.args)?;
            out.extend_from_slice(b",\"I\":");
            write_str(out, &self.id);
            if let Some(state) = &self.state {
                out.extend_from_slice(b",\"S\":");
                state.write_json(out)?;
            }
            out.push(b'}');
            Ok(())
        })
    }

    /// The request as JSON bytes.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(out)
    }
}

impl ClientInvocation {
    /// Decodes one `M` item as a server call. `H`, `M` and `A` are required (an item without
    /// them is not a hub call: a persistent connection's raw message).
    pub fn decode(item: &Bytes) -> Result<Self> {
        match scan_call(item) {
            Ok(call) => Ok(call),
            Err(Fallback) => Self::decode_reference(item),
        }
    }

    /// [`ClientInvocation::decode`] through `serde_json` alone: what the one-pass scanner
    /// must agree with (property tests and the `classic_frame` fuzz oracle compare the two).
    #[doc(hidden)]
    pub fn decode_reference(item: &Bytes) -> Result<Self> {
        const CX: &str = "server call";
        check_object(item, CX)?;
        let wire: WireCall<'_> = serde_json::from_slice(item)
            .map_err(crate::error::json_error("a classic server call"))?;
        Ok(Self {
            hub: required(wire.hub, CX, "H")?,
            method: required(wire.method, CX, "M")?,
            args: required(wire.args, CX, "A")?
                .into_iter()
                .map(|a| arg(item, a))
                .collect(),
            state: state(item, wire.state, CX)?,
            // Values that are not strings are not headers: left out.
            headers: wire
                .headers
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(k, v)| match v {
                    serde_json::Value::String(v) => Some((k, v)),
                    _ => None,
                })
                .collect(),
        })
    }

    /// Appends the call as a 2.4.3 server writes it: `{"H":…,"M":…,"A":[…]}` plus `"S"` when
    /// there is state, and `"Headers"` when there are headers. On error `out` is unchanged.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        atomic(out, |out| {
            out.extend_from_slice(b"{\"H\":");
            write_str(out, &self.hub);
            out.extend_from_slice(b",\"M\":");
            write_str(out, &self.method);
            out.extend_from_slice(b",\"A\":");
            write_args(out, &self.args)?;
            if let Some(state) = &self.state {
                out.extend_from_slice(b",\"S\":");
                state.write_json(out)?;
            }
            if !self.headers.is_empty() {
                out.extend_from_slice(b",\"Headers\":");
                serde_json::to_writer(&mut *out, &self.headers).map_err(|e| Error::Encode {
                    protocol: "json",
                    reason: e.to_string(),
                })?;
            }
            out.push(b'}');
            Ok(())
        })
    }

    /// The call as JSON bytes.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(out)
    }

    /// Whether this call is for `hub`'s `method`, compared without regard to case as the
    /// classic clients compare them.
    pub fn is(&self, hub: &str, method: &str) -> bool {
        self.hub.eq_ignore_ascii_case(hub) && self.method.eq_ignore_ascii_case(method)
    }
}

#[derive(Deserialize)]
struct WireResult<'a> {
    #[serde(rename = "I", borrow)]
    id: Option<&'a RawValue>,
    #[serde(rename = "R", borrow)]
    result: Option<&'a RawValue>,
    #[serde(rename = "E", borrow)]
    error: Option<&'a RawValue>,
    #[serde(rename = "H", borrow)]
    hub_exception: Option<&'a RawValue>,
    #[serde(rename = "D", borrow)]
    error_data: Option<&'a RawValue>,
    #[serde(rename = "T", borrow)]
    stack_trace: Option<&'a RawValue>,
    #[serde(rename = "S", borrow)]
    state: Option<&'a RawValue>,
    #[serde(rename = "P", borrow)]
    progress: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireProgress<'a> {
    #[serde(rename = "I", borrow)]
    id: Option<&'a RawValue>,
    #[serde(rename = "D", borrow)]
    data: Option<&'a RawValue>,
}

/// A raw value that is not JSON `null`.
fn non_null(raw: Option<&RawValue>) -> Option<&RawValue> {
    raw.filter(|r| r.get() != "null")
}

fn opt_string(raw: Option<&RawValue>, name: &str) -> Result<Option<String>> {
    non_null(raw)
        .map(|r| {
            serde_json::from_str::<String>(r.get())
                .map_err(|_| invalid("hub result", format!("`{name}` must be a string")))
        })
        .transpose()
}

impl HubResult {
    /// A successful result (`R` left out when `None`).
    pub fn ok(id: impl Into<String>, result: Option<Arg>) -> Self {
        Self {
            id: id.into(),
            result,
            ..Self::default()
        }
    }

    /// A failed call: `error` with `H` set when it is a `HubException`, and its data.
    pub fn failed(
        id: impl Into<String>,
        error: impl Into<String>,
        hub_exception: bool,
        error_data: Option<Arg>,
    ) -> Self {
        Self {
            id: id.into(),
            error: Some(error.into()),
            hub_exception,
            error_data,
            ..Self::default()
        }
    }

    /// A progress update of call `id`, as a 2.x server sends it: `I` = `P|<id>`.
    pub fn progress(id: impl Into<String>, data: Arg) -> Self {
        let id = id.into();
        Self {
            id: format!("P|{id}"),
            progress: Some(HubProgress { id, data }),
            ..Self::default()
        }
    }

    /// Decodes a hub result (a top-level object with `I`). `I` is required (string or number);
    /// `H` must be a boolean, `E` and `T` strings, `S` an object, `P` an object with `I`;
    /// null values count as absent, as the server leaves them out.
    pub fn decode(payload: &Bytes) -> Result<Self> {
        const CX: &str = "hub result";
        check_object(payload, CX)?;
        let wire: WireResult<'_> = serde_json::from_slice(payload)
            .map_err(crate::error::json_error("a classic hub result"))?;
        let id = id_text(required(wire.id, CX, "I")?, CX, "I")?;
        let hub_exception = match non_null(wire.hub_exception).map(RawValue::get) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => return Err(invalid(CX, format!("`H` must be a boolean, not {other}"))),
        };
        let progress = match non_null(wire.progress) {
            None => None,
            Some(raw) => {
                if !raw.get().starts_with('{') {
                    return Err(invalid(CX, "`P` (progress) must be an object"));
                }
                let p: WireProgress<'_> = serde_json::from_str(raw.get())
                    .map_err(|e| invalid(CX, format!("`P` (progress): {e}")))?;
                Some(HubProgress {
                    id: id_text(required(p.id, CX, "P.I")?, CX, "P.I")?,
                    data: match p.data {
                        Some(d) => arg(payload, d),
                        None => Arg::json_unchecked(Bytes::from_static(b"null")),
                    },
                })
            }
        };
        Ok(Self {
            id,
            result: non_null(wire.result).map(|r| arg(payload, r)),
            error: opt_string(wire.error, "E")?,
            hub_exception,
            error_data: non_null(wire.error_data).map(|d| arg(payload, d)),
            stack_trace: opt_string(wire.stack_trace, "T")?,
            state: state(payload, wire.state, CX)?,
            progress,
        })
    }

    /// Appends the result as a 2.4.3 server writes it: `S`, `R`, `I`, `P`, `H`, `E`, `T`, `D`
    /// in that order, each left out when absent (`H` written only when true). On error `out`
    /// is unchanged.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<()> {
        atomic(out, |out| {
            out.push(b'{');
            if let Some(state) = &self.state {
                out.extend_from_slice(b"\"S\":");
                state.write_json(out)?;
                out.push(b',');
            }
            if let Some(result) = &self.result {
                out.extend_from_slice(b"\"R\":");
                result.write_json(out)?;
                out.push(b',');
            }
            out.extend_from_slice(b"\"I\":");
            write_str(out, &self.id);
            if let Some(p) = &self.progress {
                out.extend_from_slice(b",\"P\":{\"I\":");
                write_str(out, &p.id);
                out.extend_from_slice(b",\"D\":");
                p.data.write_json(out)?;
                out.push(b'}');
            }
            if self.hub_exception {
                out.extend_from_slice(b",\"H\":true");
            }
            if let Some(error) = &self.error {
                out.extend_from_slice(b",\"E\":");
                write_str(out, error);
            }
            if let Some(trace) = &self.stack_trace {
                out.extend_from_slice(b",\"T\":");
                write_str(out, trace);
            }
            if let Some(data) = &self.error_data {
                out.extend_from_slice(b",\"D\":");
                data.write_json(out)?;
            }
            out.push(b'}');
            Ok(())
        })
    }

    /// The result as JSON bytes.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_clients_send_takes_the_one_pass_path() {
        for text in [
            // jQuery 2.4.3 (a numeric id), the .NET client (a string id), with state.
            r#"{"H":"chathub","M":"Send","A":["bob","hi \"x\""],"I":0}"#,
            r#"{"H":"ChatHub","M":"send","A":["bob",{"a":[1,2.5,null]}],"I":"12"}"#,
            r#"{"H":"chathub","M":"Send","A":[],"I":3,"S":{"room":"a"}}"#,
            r#" {"I":-4,"A":[true],"M":"m","H":"h","S":null,"x":[{}]} "#,
        ] {
            let payload = Bytes::copy_from_slice(text.as_bytes());
            let fast = scan_request(&payload).unwrap_or_else(|_| panic!("{text} falls back"));
            assert_eq!(
                fast,
                HubRequest::decode_reference(&payload).unwrap(),
                "{text}"
            );
        }
        // What the one pass leaves to serde_json, with the same outcome.
        for text in [
            r#"{"H":"h","M":"m","A":null,"I":0}"#,
            r#"{"H":"h","M":"m","A":[],"I":1.5}"#,
            r#"{"H":"h","M":"m","A":[],"I":01}"#,
            r#"{"H":"h\u0041","M":"m","A":[],"I":0}"#,
            r#"{"H":"h","M":"m","A":[],"I":0,"Headers":{"a":"b"}}"#,
            r#"{"H":"h","M":"m","A":[],"I":0,"S":[1]}"#,
            r#"{"H":"h","M":"m","A":[],"I":0,"H":"g"}"#,
            r#"{"H":"h","M":"m","A":[]}"#,
        ] {
            let payload = Bytes::copy_from_slice(text.as_bytes());
            assert!(scan_request(&payload).is_err(), "{text} takes the one pass");
            assert_eq!(
                format!("{:?}", HubRequest::decode(&payload)),
                format!("{:?}", HubRequest::decode_reference(&payload)),
                "{text}"
            );
        }
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn server_calls_take_the_one_pass_path() {
        let text = r#"{"H":"ChatHub","M":"broadcastMessage","A":["bob",{"x":[1,2]}],"S":{"n":1},"Headers":{"hubbub-id":"m-1"}}"#;
        let item = b(text);
        let fast = scan_call(&item).expect("read in one pass");
        assert_eq!(fast, ClientInvocation::decode_reference(&item).unwrap());
    }

    #[test]
    fn results_observed_on_a_2_4_3_server_round_trip_byte_for_byte() {
        for text in [
            r#"{"R":"ping!","I":"1"}"#,
            r#"{"I":"0"}"#,
            r#"{"I":"3","H":true,"E":"nope","D":{"code":42}}"#,
            r#"{"I":"4","E":"boom"}"#,
        ] {
            let r = HubResult::decode(&b(text)).unwrap();
            assert_eq!(r.to_vec().unwrap(), text.as_bytes(), "{text}");
        }
        let r = HubResult::decode(&b(r#"{"I":"3","H":true,"E":"nope","D":{"code":42}}"#)).unwrap();
        assert!(r.hub_exception);
        assert_eq!(r.error.as_deref(), Some("nope"));
        assert_eq!(
            r.error_data.unwrap().decode::<serde_json::Value>().unwrap(),
            serde_json::json!({"code": 42})
        );
        let ping = HubResult::decode(&b(r#"{"R":"ping!","I":"1"}"#)).unwrap();
        assert_eq!(ping, HubResult::ok("1", Some("ping!".into())));
        assert_eq!(
            HubResult::failed(
                "3",
                "nope",
                true,
                Some(Arg::from_json(&b"{\"code\":42}"[..]).unwrap())
            )
            .to_vec()
            .unwrap(),
            br#"{"I":"3","H":true,"E":"nope","D":{"code":42}}"#
        );
    }

    #[test]
    fn progress_is_sent_as_a_2_x_server_sends_it() {
        let p = HubResult::progress("7", Arg::from_json(&b"50"[..]).unwrap());
        assert_eq!(p.to_vec().unwrap(), br#"{"I":"P|7","P":{"I":"7","D":50}}"#);
        let again = HubResult::decode(&b(r#"{"I":"P|7","P":{"I":"7","D":50}}"#)).unwrap();
        assert_eq!(again, p);
        assert_eq!(again.progress.unwrap().id, "7");
    }

    #[test]
    fn state_and_stack_trace_in_the_server_order() {
        let text = r#"{"S":{"name":"ann"},"R":[1,2],"I":"9","E":"x","T":"at Foo()"}"#;
        let r = HubResult::decode(&b(text)).unwrap();
        assert_eq!(r.stack_trace.as_deref(), Some("at Foo()"));
        assert_eq!(r.to_vec().unwrap(), text.as_bytes());
    }

    #[test]
    fn requests_from_the_dotnet_and_jquery_clients() {
        let dotnet = r#"{"H":"chathub","M":"Send","A":["ann","hi"],"I":"0"}"#;
        let r = HubRequest::decode(&b(dotnet)).unwrap();
        assert_eq!(
            (r.hub.as_str(), r.method.as_str(), r.id.as_str()),
            ("chathub", "Send", "0")
        );
        assert_eq!(r.args[1].decode::<String>().unwrap(), "hi");
        assert_eq!(r.to_vec().unwrap(), dotnet.as_bytes());

        // jQuery sends the id as a number, and caller state.
        let jquery = r#"{"H":"chathub","M":"send","A":[{"a":1}],"I":12,"S":{"user":"ann"}}"#;
        let r = HubRequest::decode(&b(jquery)).unwrap();
        assert_eq!(r.id, "12");
        assert_eq!(
            r.state
                .as_ref()
                .unwrap()
                .decode::<serde_json::Value>()
                .unwrap(),
            serde_json::json!({"user": "ann"})
        );
        assert_eq!(
            r.to_vec().unwrap(),
            br#"{"H":"chathub","M":"send","A":[{"a":1}],"I":"12","S":{"user":"ann"}}"#
        );
        // No `A` is no arguments.
        assert!(
            HubRequest::decode(&b(r#"{"H":"h","M":"m","I":"1"}"#))
                .unwrap()
                .args
                .is_empty()
        );
    }

    #[test]
    fn server_calls_keep_the_hub_casing_and_match_without_case() {
        let text = r#"{"H":"ChatHub","M":"broadcastMessage","A":["bob","hello"]}"#;
        let call = ClientInvocation::decode(&b(text)).unwrap();
        assert!(call.is("chathub", "BroadcastMessage"));
        assert!(!call.is("chathub", "other"));
        assert_eq!(call.to_vec().unwrap(), text.as_bytes());
        let with_state = ClientInvocation {
            state: Some(Arg::from_json(&b"{\"n\":1}"[..]).unwrap()),
            ..call
        };
        assert_eq!(
            with_state.to_vec().unwrap(),
            br#"{"H":"ChatHub","M":"broadcastMessage","A":["bob","hello"],"S":{"n":1}}"#
        );
        // Args given as values (e.g. from a Core hub call) are written as JSON.
        let built = ClientInvocation {
            hub: "ChatHub".into(),
            method: "m".into(),
            args: vec![Arg::serialize(&(1, "x")).unwrap()],
            state: None,
            headers: Default::default(),
        };
        assert_eq!(
            built.to_vec().unwrap(),
            br#"{"H":"ChatHub","M":"m","A":[[1,"x"]]}"#
        );
        // Hubbub's extension: headers, for Hubbub's own clients.
        let with_headers = ClientInvocation {
            headers: [("hubbub-seq".to_owned(), "7".to_owned())].into(),
            ..built
        };
        let bytes = with_headers.to_vec().unwrap();
        assert_eq!(
            bytes,
            br#"{"H":"ChatHub","M":"m","A":[[1,"x"]],"Headers":{"hubbub-seq":"7"}}"#
        );
        assert_eq!(
            ClientInvocation::decode(&Bytes::from(bytes)).unwrap(),
            with_headers
        );
    }

    #[test]
    fn malformed_frames_are_named_errors() {
        type Decoder = fn(&Bytes) -> Result<()>;
        let cases: [(Decoder, &str, &str); 12] = [
            (
                |p| HubRequest::decode(p).map(drop),
                r#"{"M":"m","I":"1"}"#,
                "`H`",
            ),
            (
                |p| HubRequest::decode(p).map(drop),
                r#"{"H":"h","I":"1"}"#,
                "`M`",
            ),
            (
                |p| HubRequest::decode(p).map(drop),
                r#"{"H":"h","M":"m"}"#,
                "`I`",
            ),
            (
                |p| HubRequest::decode(p).map(drop),
                r#"{"H":"h","M":"m","I":[]}"#,
                "`I`",
            ),
            (
                |p| HubRequest::decode(p).map(drop),
                r#"{"H":"h","M":"m","I":"1","S":[1]}"#,
                "`S`",
            ),
            (
                |p| HubRequest::decode(p).map(drop),
                r#"["H"]"#,
                "not a JSON object",
            ),
            (
                |p| ClientInvocation::decode(p).map(drop),
                r#"{"H":"h","M":"m"}"#,
                "`A`",
            ),
            (|p| HubResult::decode(p).map(drop), r#"{"R":1}"#, "`I`"),
            (
                |p| HubResult::decode(p).map(drop),
                r#"{"I":"1","H":1}"#,
                "`H`",
            ),
            (
                |p| HubResult::decode(p).map(drop),
                r#"{"I":"1","E":{}}"#,
                "`E`",
            ),
            (
                |p| HubResult::decode(p).map(drop),
                r#"{"I":"1","P":{"D":1}}"#,
                "`P.I`",
            ),
            (
                |p| HubResult::decode(p).map(drop),
                r#"{"I":"1","P":3}"#,
                "`P`",
            ),
        ];
        for (decode, text, what) in cases {
            let err = decode(&b(text)).unwrap_err().to_string();
            assert!(err.contains(what), "{text}: {err} should mention {what}");
        }
    }
}
