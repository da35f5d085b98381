//! The MessagePack payloads on the backplane's channels, in ASP.NET Core's Redis layout
//! (`RedisProtocol`), so a node of either kind can read the other's messages.
//!
//! - Invocation: `[excludedIds, {protocolName: framedBytes}, invocationId, returnChannel,
//!   origin]`. ASP.NET writes two items (four for a client result); Hubbub writes nil for the
//!   client-result pair and adds a fifth, the name of the node that published it, which skips
//!   its own messages (it delivered them locally already). Readers ignore items they do not
//!   know, so ASP.NET reads these and Hubbub reads ASP.NET's.
//! - Group action: `[id, serverName, action (1 add, 2 remove), group, connectionId]`.
//! - Ack: `[id]`.

use bytes::Bytes;
use rmpv::Value;

/// An invocation as published.
#[derive(Debug, PartialEq)]
pub(crate) struct Invocation {
    pub(crate) excluded: Vec<String>,
    pub(crate) json: Option<Bytes>,
    pub(crate) msgpack: Option<Bytes>,
    pub(crate) origin: Option<String>,
}

/// A request to another node to change a group of one of its connections.
#[derive(Debug, PartialEq)]
pub(crate) struct GroupAction {
    pub(crate) id: u32,
    pub(crate) server: String,
    pub(crate) add: bool,
    pub(crate) group: String,
    pub(crate) connection: String,
}

fn write(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, value);
    out
}

fn read(bytes: &[u8]) -> Option<Vec<Value>> {
    match rmpv::decode::read_value(&mut &bytes[..]).ok()? {
        Value::Array(items) => Some(items),
        _ => None,
    }
}

fn string(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

impl Invocation {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut payloads = Vec::new();
        if let Some(json) = &self.json {
            payloads.push((Value::from("json"), Value::Binary(json.to_vec())));
        }
        if let Some(msgpack) = &self.msgpack {
            payloads.push((Value::from("messagepack"), Value::Binary(msgpack.to_vec())));
        }
        let mut items = vec![
            Value::Array(
                self.excluded
                    .iter()
                    .map(|s| Value::from(s.as_str()))
                    .collect(),
            ),
            Value::Map(payloads),
        ];
        if let Some(origin) = &self.origin {
            items.extend([Value::Nil, Value::Nil, Value::from(origin.as_str())]);
        }
        write(&Value::Array(items))
    }

    /// `None` for a payload that is not an invocation (logged by the caller).
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let items = read(bytes)?;
        let excluded = match items.first()? {
            Value::Array(ids) => ids.iter().filter_map(string).collect(),
            Value::Nil => Vec::new(),
            _ => return None,
        };
        let Value::Map(payloads) = items.get(1)? else {
            return None;
        };
        let (mut json, mut msgpack) = (None, None);
        for (k, v) in payloads {
            let bytes = match v {
                Value::Binary(b) => Bytes::copy_from_slice(b),
                _ => continue,
            };
            match k.as_str() {
                Some("json") => json = Some(bytes),
                Some("messagepack") => msgpack = Some(bytes),
                _ => {}
            }
        }
        Some(Self {
            excluded,
            json,
            msgpack,
            origin: items.get(4).and_then(string),
        })
    }
}

impl GroupAction {
    pub(crate) fn encode(&self) -> Vec<u8> {
        write(&Value::Array(vec![
            Value::from(self.id),
            Value::from(self.server.as_str()),
            Value::from(if self.add { 1u8 } else { 2u8 }),
            Value::from(self.group.as_str()),
            Value::from(self.connection.as_str()),
        ]))
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let items = read(bytes)?;
        Some(Self {
            id: u32::try_from(items.first()?.as_u64()?).ok()?,
            server: string(items.get(1)?)?,
            add: match items.get(2)?.as_u64()? {
                1 => true,
                2 => false,
                _ => return None,
            },
            group: string(items.get(3)?)?,
            connection: string(items.get(4)?)?,
        })
    }
}

pub(crate) fn encode_ack(id: u32) -> Vec<u8> {
    write(&Value::Array(vec![Value::from(id)]))
}

pub(crate) fn decode_ack(bytes: &[u8]) -> Option<u32> {
    u32::try_from(read(bytes)?.first()?.as_u64()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocation_round_trips_and_reads_aspnet_two_item_form() {
        let inv = Invocation {
            excluded: vec!["c1".into()],
            json: Some(Bytes::from_static(b"{\"type\":1}\x1e")),
            msgpack: Some(Bytes::from_static(&[2, 0x91, 6])),
            origin: Some("node_1".into()),
        };
        assert_eq!(Invocation::decode(&inv.encode()), Some(inv));
        // ASP.NET's own form: [excludedIds, payloads], no origin.
        let aspnet = write(&Value::Array(vec![
            Value::Array(vec![]),
            Value::Map(vec![(
                Value::from("json"),
                Value::Binary(b"{}\x1e".to_vec()),
            )]),
        ]));
        let read = Invocation::decode(&aspnet).unwrap();
        assert_eq!(read.json.as_deref(), Some(&b"{}\x1e"[..]));
        assert_eq!(read.msgpack, None);
        assert_eq!(read.origin, None);
        assert_eq!(Invocation::decode(b"\x01"), None);
    }

    #[test]
    fn group_actions_and_acks_round_trip() {
        let action = GroupAction {
            id: 7,
            server: "s".into(),
            add: false,
            group: "room:x".into(),
            connection: "abc".into(),
        };
        assert_eq!(GroupAction::decode(&action.encode()), Some(action));
        // The exact bytes ASP.NET writes for an ack of 7: fixarray(1), 7.
        assert_eq!(encode_ack(7), vec![0x91, 0x07]);
        assert_eq!(decode_ack(&[0x91, 0x07]), Some(7));
    }
}
