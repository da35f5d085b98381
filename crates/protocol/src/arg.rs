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
                let Some((header, len)) = msgpack_str_header(b) else {
                    return false;
                };
                b.get(header..header + len)
                    .is_some_and(|s| crate::scan::utf8(s).is_some())
            }
            Repr::Value(v) => v.as_str().is_some(),
        }
    }

    /// Reads the argument as a Rust type. Only this call parses the argument's bytes.
    ///
    /// A string argument read as text (a `String`, `Option<String>`, `serde_json::Value`…)
    /// takes a direct path: its UTF-8 checked at once (SIMD) and its bytes copied, escapes
    /// resolved from the first backslash on; anything else, errors included, goes through
    /// `serde_json` / `rmp_serde` as before, so results and error wordings are theirs.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        if let Some(value) = self.decode_text() {
            return Ok(value);
        }
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

    /// The direct path of [`Arg::decode`] for a string argument; `None` leaves it to serde.
    fn decode_text<T: DeserializeOwned>(&self) -> Option<T> {
        match &self.repr {
            Repr::Json(b) => {
                // The bytes hold one checked JSON value: a string is `"…"` with valid escapes.
                let contents = b.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
                let text = crate::scan::utf8(contents)?;
                if memchr::memchr(b'\\', contents).is_none() {
                    T::deserialize(Text::json(text)).ok()
                } else {
                    let text = crate::scan::unescape(text)?;
                    T::deserialize(Text::json(&text)).ok()
                }
            }
            Repr::MessagePack(b) => {
                let (header, len) = msgpack_str_header(b)?;
                let contents = b.get(header..)?;
                if contents.len() != len {
                    return None;
                }
                let text = crate::scan::utf8(contents)?;
                T::deserialize(Text::msgpack(text)).ok()
            }
            Repr::Value(_) => None,
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

/// A MessagePack string's header length and declared length, if `b` starts with one.
fn msgpack_str_header(b: &[u8]) -> Option<(usize, usize)> {
    match b.first()? {
        &m @ 0xa0..=0xbf => Some((1, usize::from(m & 0x1f))),
        0xd9 => Some((2, usize::from(*b.get(1)?))),
        0xda => Some((3, usize::from(u16::from_be_bytes([*b.get(1)?, *b.get(2)?])))),
        0xdb => {
            let n = u32::from_be_bytes([*b.get(1)?, *b.get(2)?, *b.get(3)?, *b.get(4)?]);
            Some((5, usize::try_from(n).ok()?))
        }
        _ => None,
    }
}

/// A decoded string argument handed to a type's `Deserialize`, as `serde_json` (or
/// `rmp_serde`) hands a string value: text for `deserialize_any`, `str`, `string`, `char`
/// and identifiers, `Some` for options, unit variants for enums (JSON), the value itself
/// inside a newtype struct (JSON). Every other request is refused with [`NotText`], and the
/// caller decodes through serde_json or rmp_serde instead, for their result or exact error.
struct Text<'a> {
    text: &'a str,
    json: bool,
}

impl<'a> Text<'a> {
    fn json(text: &'a str) -> Self {
        Self { text, json: true }
    }

    fn msgpack(text: &'a str) -> Self {
        Self { text, json: false }
    }
}

/// [`Text`] does not read this type: decode it the usual way.
#[derive(Debug)]
struct NotText;

impl fmt::Display for NotText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not read as text")
    }
}

impl std::error::Error for NotText {}

impl serde::de::Error for NotText {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Self
    }
}

/// Deserializer methods [`Text`] refuses (the caller then decodes the usual way).
macro_rules! refuse {
    ($($method:ident)*) => {
        $(
            fn $method<V: serde::de::Visitor<'de>>(
                self,
                _: V,
            ) -> std::result::Result<V::Value, NotText> {
                Err(NotText)
            }
        )*
    };
}

impl<'de> serde::Deserializer<'de> for Text<'de> {
    type Error = NotText;

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> std::result::Result<V::Value, NotText> {
        visitor.visit_borrowed_str(self.text)
    }

    fn deserialize_option<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> std::result::Result<V::Value, NotText> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: serde::de::Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> std::result::Result<V::Value, NotText> {
        // serde_json's RawValue and rmp_serde's extension types are newtypes it treats apart.
        if !self.json || name.starts_with('$') {
            return Err(NotText);
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> std::result::Result<V::Value, NotText> {
        if !self.json {
            return Err(NotText);
        }
        visitor.visit_enum(serde::de::value::BorrowedStrDeserializer::new(self.text))
    }

    fn deserialize_ignored_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> std::result::Result<V::Value, NotText> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! { str string char identifier }

    refuse! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_bytes
        deserialize_byte_buf deserialize_unit deserialize_seq deserialize_map
    }

    fn deserialize_unit_struct<V: serde::de::Visitor<'de>>(
        self,
        _: &'static str,
        _: V,
    ) -> std::result::Result<V::Value, NotText> {
        Err(NotText)
    }

    fn deserialize_tuple<V: serde::de::Visitor<'de>>(
        self,
        _: usize,
        _: V,
    ) -> std::result::Result<V::Value, NotText> {
        Err(NotText)
    }

    fn deserialize_tuple_struct<V: serde::de::Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        _: V,
    ) -> std::result::Result<V::Value, NotText> {
        Err(NotText)
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> std::result::Result<V::Value, NotText> {
        Err(NotText)
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
