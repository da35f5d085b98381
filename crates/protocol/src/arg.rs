//! Arguments, stream items and results: one type for both encodings.
//!
//! A decoded message keeps each argument as the bytes it arrived in (a cheap slice of the
//! received frame, never a copy); the arguments are only parsed when a handler asks for a type.
//! Re-sending an argument in the encoding it arrived in copies its bytes verbatim; sending it in
//! the other encoding transcodes it once through [`Value`].

use std::fmt;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::protocol::Protocol;

/// A dynamically typed value, the data model shared by the JSON and MessagePack protocols
/// (MessagePack's model is a superset of JSON's).
pub use rmpv::Value;

/// How deeply arrays and maps may nest inside one value when it is parsed (serde_json's own
/// limit, applied to MessagePack too), so hostile input cannot exhaust the stack.
pub const MAX_NESTING: usize = 128;

/// One argument, stream item or completion result.
#[derive(Clone)]
pub struct Arg {
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    /// One complete JSON value, as received or as serialized.
    Json(Bytes),
    /// One complete MessagePack value, as received or as serialized.
    MessagePack(Bytes),
    /// A value built in memory.
    Value(Value),
}

impl Arg {
    /// Wraps a value built in memory.
    pub fn from_value(value: Value) -> Self {
        Self {
            repr: Repr::Value(value),
        }
    }

    /// Serializes a Rust value in an encoding-neutral form (MessagePack, with structs as maps),
    /// to be written in whatever encoding each receiving connection speaks.
    pub fn serialize<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        Self::serialize_for(Protocol::MessagePack, value)
    }

    /// Serializes a Rust value directly in the encoding of `protocol`, so that writing it on a
    /// connection of that protocol is a plain copy.
    pub fn serialize_for<T: Serialize + ?Sized>(protocol: Protocol, value: &T) -> Result<Self> {
        let repr = match protocol {
            Protocol::Json => Repr::Json(
                serde_json::to_vec(value)
                    .map_err(|e| Error::Encode {
                        protocol: "json",
                        reason: e.to_string(),
                    })?
                    .into(),
            ),
            Protocol::MessagePack => Repr::MessagePack(
                rmp_serde::to_vec_named(value)
                    .map_err(|e| Error::Encode {
                        protocol: "messagepack",
                        reason: e.to_string(),
                    })?
                    .into(),
            ),
        };
        Ok(Self { repr })
    }

    /// Wraps the bytes of one complete JSON value without checking them; used by the decoder,
    /// whose parser has already checked them.
    pub(crate) fn json_unchecked(bytes: Bytes) -> Self {
        Self {
            repr: Repr::Json(bytes),
        }
    }

    /// Wraps the bytes of one complete MessagePack value without checking them.
    pub(crate) fn msgpack_unchecked(bytes: Bytes) -> Self {
        Self {
            repr: Repr::MessagePack(bytes),
        }
    }

    /// Wraps the bytes of one JSON value after checking that they hold exactly one value.
    pub fn from_json(bytes: impl Into<Bytes>) -> Result<Self> {
        let bytes = bytes.into();
        serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)
            .map_err(crate::error::json_error("an argument"))?;
        Ok(Self::json_unchecked(bytes))
    }

    /// Wraps the bytes of one MessagePack value after checking that they hold exactly one value.
    pub fn from_msgpack(bytes: impl Into<Bytes>) -> Result<Self> {
        let bytes = bytes.into();
        let mut reader = crate::msgpack::Reader::new(&bytes, "an argument");
        reader.skip_value()?;
        if !reader.is_empty() {
            return Err(Error::MessagePack {
                context: "an argument",
                reason: "trailing bytes after the value".to_owned(),
            });
        }
        Ok(Self::msgpack_unchecked(bytes))
    }

    /// The encoding and bytes this argument is held in, if it is held encoded.
    pub fn raw(&self) -> Option<(Protocol, &Bytes)> {
        match &self.repr {
            Repr::Json(b) => Some((Protocol::Json, b)),
            Repr::MessagePack(b) => Some((Protocol::MessagePack, b)),
            Repr::Value(_) => None,
        }
    }

    /// Whether the argument is a string, checked without decoding it (a hub relaying text
    /// needs only this).
    pub fn is_string(&self) -> bool {
        match &self.repr {
            // The decoder has checked the JSON value; a string value starts with a quote.
            Repr::Json(b) => b.first() == Some(&b'"'),
            Repr::MessagePack(b) => {
                let (header, len) = match b.first() {
                    Some(&m @ 0xa0..=0xbf) => (1, usize::from(m & 0x1f)),
                    Some(0xd9) if b.len() >= 2 => (2, usize::from(b[1])),
                    Some(0xda) if b.len() >= 3 => {
                        (3, usize::from(u16::from_be_bytes([b[1], b[2]])))
                    }
                    Some(0xdb) if b.len() >= 5 => {
                        (5, u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize)
                    }
                    _ => return false,
                };
                b.get(header..header + len)
                    .is_some_and(|s| std::str::from_utf8(s).is_ok())
            }
            Repr::Value(v) => v.as_str().is_some(),
        }
    }

    /// Reads the argument as a Rust type. Only this call parses the argument's bytes.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        let type_name = std::any::type_name::<T>();
        let fail = |reason: String| Error::Decode { type_name, reason };
        match &self.repr {
            Repr::Json(b) => serde_json::from_slice(b).map_err(|e| fail(e.to_string())),
            Repr::MessagePack(b) => {
                let mut de = rmp_serde::Deserializer::from_read_ref(&b[..]);
                de.set_max_depth(MAX_NESTING);
                T::deserialize(&mut de).map_err(|e| fail(e.to_string()))
            }
            Repr::Value(v) => rmpv::ext::from_value(v.clone()).map_err(|e| fail(e.to_string())),
        }
    }

    /// The argument as a dynamic [`Value`].
    pub fn to_value(&self) -> Result<Value> {
        match &self.repr {
            Repr::Json(b) => {
                serde_json::from_slice(b).map_err(crate::error::json_error("an argument"))
            }
            Repr::MessagePack(b) => {
                let mut slice: &[u8] = b;
                rmpv::decode::read_value_with_max_depth(&mut slice, MAX_NESTING).map_err(|e| {
                    Error::MessagePack {
                        context: "an argument",
                        reason: e.to_string(),
                    }
                })
            }
            Repr::Value(v) => Ok(v.clone()),
        }
    }

    /// Appends the argument as JSON text.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) -> Result<()> {
        let value = match &self.repr {
            Repr::Json(b) => {
                out.extend_from_slice(b);
                return Ok(());
            }
            Repr::MessagePack(_) => self.to_value()?,
            Repr::Value(v) => return write_value_json(v, out),
        };
        write_value_json(&value, out)
    }

    /// Appends the argument as MessagePack.
    pub(crate) fn write_msgpack(&self, out: &mut Vec<u8>) -> Result<()> {
        let value = match &self.repr {
            Repr::MessagePack(b) => {
                out.extend_from_slice(b);
                return Ok(());
            }
            Repr::Json(_) => self.to_value()?,
            Repr::Value(v) => {
                rmpv::encode::write_value(out, v).map_err(msgpack_write_error)?;
                return Ok(());
            }
        };
        rmpv::encode::write_value(out, &value).map_err(msgpack_write_error)
    }
}

fn write_value_json(value: &Value, out: &mut Vec<u8>) -> Result<()> {
    let start = out.len();
    check_json_compatible(value)?;
    serde_json::to_writer(&mut *out, value)
        .map_err(|e| Error::Encode {
            protocol: "json",
            reason: e.to_string(),
        })
        .inspect_err(|_| out.truncate(start))
}

/// JSON has no binary, extension or non-string-keyed map values, and no NaN or infinity.
fn check_json_compatible(value: &Value) -> Result<()> {
    let fail = |reason: &str| {
        Err(Error::Encode {
            protocol: "json",
            reason: reason.to_owned(),
        })
    };
    match value {
        Value::Binary(_) => fail("binary values have no JSON form"),
        Value::Ext(..) => fail("MessagePack extension values have no JSON form"),
        Value::F32(f) if !f.is_finite() => fail("non-finite numbers have no JSON form"),
        Value::F64(f) if !f.is_finite() => fail("non-finite numbers have no JSON form"),
        Value::String(s) if s.as_str().is_none() => fail("a string is not valid UTF-8"),
        Value::Array(items) => items.iter().try_for_each(check_json_compatible),
        Value::Map(entries) => entries.iter().try_for_each(|(k, v)| {
            if !k.is_str() {
                return fail("map keys must be strings in JSON");
            }
            check_json_compatible(v)
        }),
        _ => Ok(()),
    }
}

fn msgpack_write_error(e: rmpv::encode::Error) -> Error {
    Error::Encode {
        protocol: "messagepack",
        reason: e.to_string(),
    }
}

impl PartialEq for Arg {
    /// Two arguments are equal when they hold the same value, whatever their encoding.
    fn eq(&self, other: &Self) -> bool {
        match (&self.repr, &other.repr) {
            (Repr::Json(a), Repr::Json(b)) | (Repr::MessagePack(a), Repr::MessagePack(b))
                if a == b =>
            {
                true
            }
            _ => matches!((self.to_value(), other.to_value()), (Ok(a), Ok(b)) if a == b),
        }
    }
}

impl fmt::Debug for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Json(b) => write!(f, "Json({})", String::from_utf8_lossy(b)),
            Repr::MessagePack(b) => write!(f, "MessagePack({b:02x?})"),
            Repr::Value(v) => write!(f, "Value({v})"),
        }
    }
}

impl From<Value> for Arg {
    fn from(value: Value) -> Self {
        Self::from_value(value)
    }
}

impl From<&str> for Arg {
    fn from(s: &str) -> Self {
        Self::from_value(Value::from(s))
    }
}

impl From<String> for Arg {
    fn from(s: String) -> Self {
        Self::from_value(Value::from(s))
    }
}
