//! Strict, typed, borrowed reading of JSON text (the hot path of every frame).
//!
//! Parsing a whole line into a `serde_json::Value` costs an allocation per string,
//! array and object plus a hashed insert per key. The readers here walk the same
//! text once and keep only what the conversions look at: strings borrowed from the
//! line (copied only when they hold escapes), everything else skipped.
//!
//! They accept and reject exactly the texts a `Value` parse accepts and rejects,
//! so the decoders behave as before on every input:
//! - everything is read through `deserialize_any`, never serde_json's lenient
//!   `ignore_value` (`IgnoredAny`, `RawValue`), which lets lone surrogate escapes
//!   through and has no nesting limit; so the 128-level limit counts from the
//!   line's root exactly as for a `Value`;
//! - a duplicate key overwrites the earlier value (a `Value` object keeps the last);
//! - values whose shape matters beyond "a string" (numbers, structures where a
//!   scalar belongs, nested documents the output keeps) become the very `Value`
//!   serde_json would have built, so the Python-`str()` rules of `json.rs` apply
//!   to them unchanged;
//! - with `arbitrary_precision`, serde_json hands a number that does not fit
//!   `u64`/`i64` to `visit_map` under a private marker key, and a `Value` parse
//!   treats an object whose first key is that marker as a number; both are
//!   reproduced.
//!
//! serde_json's `raw_value` feature stays off on purpose: besides the leniency
//! above, enabling it makes every `Value` parse read an object whose first key is
//! `$serde_json::private::RawValue` as embedded JSON text, a behaviour change.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Number, Value};

use crate::json;

/// serde_json's marker key for an arbitrary-precision number (see the module doc).
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// The visits every reader shares for values it does not read typed: each keeps
/// what serde_json's own `Value` visitor would build, as a [`Field`] wrapped by
/// `$wrap`.
macro_rules! value_visits {
    ($wrap:expr) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($wrap(Field::Null))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($wrap(Field::Null))
        }
        fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
            Ok($wrap(Field::Bool(b)))
        }
        fn visit_i64<E: de::Error>(self, i: i64) -> Result<Self::Value, E> {
            Ok($wrap(Field::I64(i)))
        }
        fn visit_u64<E: de::Error>(self, u: u64) -> Result<Self::Value, E> {
            Ok($wrap(Field::U64(u)))
        }
        fn visit_f64<E: de::Error>(self, f: f64) -> Result<Self::Value, E> {
            let v = Number::from_f64(f).map_or(Value::Null, Value::Number);
            Ok($wrap(Field::Other(Box::new(v))))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            let v = Value::deserialize(SeqAccessDeserializer::new(seq))?;
            Ok($wrap(Field::Other(Box::new(v))))
        }
    };
}

// ---- Field: a value whose strings are borrowed --------------------------------

/// A JSON value in a position the conversions read as a string: strings stay
/// borrowed from the text (owned only when they held escapes), small scalars stay
/// inline, and anything else is the `Value` a full parse gives, so the Python
/// `str()` rules (PORT-DECISIONS D3) apply unchanged.
#[derive(Debug, Clone, PartialEq)]
pub enum Field<'a> {
    Str(Cow<'a, str>),
    Null,
    Bool(bool),
    /// An integer serde_json reads as `u64` (non-negative, in range).
    U64(u64),
    /// An integer serde_json reads as `i64` (negative, in range; `-0` is `Other`).
    I64(i64),
    /// Any other number, an array or an object.
    Other(Box<Value>),
}

impl<'a> Field<'a> {
    /// Python truthiness.
    pub fn truthy(&self) -> bool {
        match self {
            Field::Str(s) => !s.is_empty(),
            Field::Null => false,
            Field::Bool(b) => *b,
            Field::U64(u) => *u != 0,
            Field::I64(i) => *i != 0,
            Field::Other(v) => json::truthy(v),
        }
    }

    /// The string, when the value is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Field::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Whether the value is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Field::Null)
    }

    /// Python `v == n` for an int `n`: numbers by value (`2.0 == 2`, `-0 == 0`),
    /// booleans as 0/1, strings and structures never.
    pub fn py_eq_int(&self, n: i64) -> bool {
        match self {
            Field::Bool(b) => i64::from(*b) == n,
            Field::U64(u) => i64::try_from(*u) == Ok(n),
            Field::I64(i) => *i == n,
            Field::Other(v) => match &**v {
                Value::Number(num) => {
                    let text = num.as_str();
                    if json::is_float_text(text) {
                        // Python compares a float with an int exactly; every i64
                        // used here is small enough to be exact as f64.
                        text.parse::<f64>().is_ok_and(|f| f == n as f64)
                    } else {
                        // A literal too large for i64 cannot equal a small code.
                        text.parse::<i64>().is_ok_and(|i| i == n)
                    }
                }
                _ => false,
            },
            Field::Str(_) | Field::Null => false,
        }
    }

    /// `json::scalar_str`: Python `str()`, null absent, structures as compact JSON.
    pub fn into_scalar_str(self) -> Option<String> {
        match self {
            Field::Other(v) => json::scalar_str(&v),
            other => other.into_opt_str(),
        }
    }

    /// `json::opt_str`: Python `str()`, null and structures absent.
    pub fn into_opt_str(self) -> Option<String> {
        match self {
            Field::Str(s) => Some(s.into_owned()),
            Field::Null => None,
            Field::Bool(true) => Some("True".into()),
            Field::Bool(false) => Some("False".into()),
            Field::U64(u) => Some(u.to_string()),
            Field::I64(i) => Some(i.to_string()),
            Field::Other(v) => json::opt_str(Some(&v)),
        }
    }

    /// `json::opt_str` without giving up the field.
    pub fn opt_str(&self) -> Option<Cow<'_, str>> {
        match self {
            Field::Str(s) => Some(Cow::Borrowed(s)),
            Field::Other(v) => json::opt_str(Some(v)).map(Cow::Owned),
            Field::Null => None,
            Field::Bool(b) => Some(Cow::Borrowed(if *b { "True" } else { "False" })),
            Field::U64(u) => Some(Cow::Owned(u.to_string())),
            Field::I64(i) => Some(Cow::Owned(i.to_string())),
        }
    }

    /// `json::scalar_str` without giving up the field.
    pub fn scalar_str(&self) -> Option<Cow<'_, str>> {
        match self {
            Field::Other(v) => json::scalar_str(v).map(Cow::Owned),
            other => other.opt_str(),
        }
    }
}

/// `json::opt_str` of an optional field.
pub fn opt_str(f: Option<Field<'_>>) -> Option<String> {
    f.and_then(Field::into_opt_str)
}

/// Python truthiness of an optional field (absent is falsy).
pub fn truthy(f: &Option<Field<'_>>) -> bool {
    f.as_ref().is_some_and(Field::truthy)
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FieldVisitor)
    }
}

struct FieldVisitor;

/// Widens a `Field<'static>` (covariance).
fn same<'a>(f: Field<'static>) -> Field<'a> {
    f
}

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(s)))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        // serde_json's own visitor: a plain object, or a number under its marker key.
        let v = Value::deserialize(MapAccessDeserializer::new(map))?;
        Ok(Field::Other(Box::new(v)))
    }
    value_visits!(same);
}

// ---- Obj: an object read into typed fields -------------------------------------

/// The fields of a JSON object a conversion reads: one `Option` per key, filled
/// from the key's last occurrence; every other key is read strictly and dropped.
/// Implemented by [`wire_object!`].
pub trait WireObject<'de>: Default {
    /// The position of `key` among the known keys.
    fn key_index(key: &str) -> Option<u8>;
    /// Reads the next value into the field at `index`.
    fn read_value<A: MapAccess<'de>>(&mut self, index: u8, map: &mut A) -> Result<(), A::Error>;
}

/// Declares a [`WireObject`] struct: `"wireKey" => field: Type`, each field an `Option`.
macro_rules! wire_object {
    ($(#[$meta:meta])* $vis:vis struct $name:ident<$lt:lifetime> {
        $($key:literal => $field:ident : $ty:ty),* $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        $vis struct $name<$lt> {
            $(pub $field: Option<$ty>,)*
            _text: std::marker::PhantomData<&$lt str>,
        }

        impl<$lt> $crate::wire::WireObject<$lt> for $name<$lt> {
            fn key_index(key: &str) -> Option<u8> {
                let mut _i = 0u8;
                $(
                    if key == $key {
                        return Some(_i);
                    }
                    _i += 1;
                )*
                None
            }

            fn read_value<A: serde::de::MapAccess<$lt>>(
                &mut self,
                index: u8,
                map: &mut A,
            ) -> Result<(), A::Error> {
                let mut _i = 0u8;
                $(
                    if index == _i {
                        // A later duplicate key overwrites, as in a `Value` object.
                        self.$field = Some(map.next_value()?);
                        return Ok(());
                    }
                    _i += 1;
                )*
                map.next_value::<$crate::wire::Skip>().map(|_| ())
            }
        }
    };
}
pub(crate) use wire_object;

/// A value where a conversion wants an object of known keys.
#[derive(Debug)]
pub enum Obj<T> {
    /// An object; `non_empty` keeps its Python truthiness (unknown keys count).
    Object { fields: T, non_empty: bool },
    /// Anything else (strings owned: a string here is rare).
    Other(Field<'static>),
}

impl<T> From<T> for Obj<T> {
    /// The object `{}` (for an absent document field, D2).
    fn from(fields: T) -> Self {
        Obj::Object {
            fields,
            non_empty: false,
        }
    }
}

impl<T> Obj<T> {
    /// Python truthiness.
    pub fn truthy(&self) -> bool {
        match self {
            Obj::Object { non_empty, .. } => *non_empty,
            Obj::Other(v) => v.truthy(),
        }
    }

    /// The fields, when the value is an object.
    pub fn object(&self) -> Option<&T> {
        match self {
            Obj::Object { fields, .. } => Some(fields),
            Obj::Other(_) => None,
        }
    }

    /// The fields, when the value is an object.
    pub fn into_object(self) -> Option<T> {
        match self {
            Obj::Object { fields, .. } => Some(fields),
            Obj::Other(_) => None,
        }
    }
}

impl<'de, T: WireObject<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ObjVisitor(PhantomData))
    }
}

struct ObjVisitor<T>(PhantomData<T>);

impl<'de, T: WireObject<'de>> Visitor<'de> for ObjVisitor<T> {
    type Value = Obj<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Obj::Other(Field::Str(Cow::Owned(s.to_owned()))))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = T::default();
        let mut non_empty = false;
        while let Some(key) = map.next_key_seed(KeySeed::<T>(PhantomData))? {
            match key {
                Key::Number if !non_empty => {
                    let v = number_value(&mut map)?;
                    return Ok(Obj::Other(Field::Other(Box::new(v))));
                }
                Key::Known(i) => fields.read_value(i, &mut map)?,
                Key::Number | Key::Unknown => {
                    map.next_value::<Skip>()?;
                }
            }
            non_empty = true;
        }
        Ok(Obj::Object { fields, non_empty })
    }
    value_visits!(Obj::Other);
}

/// A key of a [`WireObject`], classified without allocating.
enum Key {
    Known(u8),
    Number,
    Unknown,
}

struct KeySeed<T>(PhantomData<T>);

impl<'de, T: WireObject<'de>> DeserializeSeed<'de> for KeySeed<T> {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, T: WireObject<'de>> Visitor<'de> for KeySeed<T> {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(match T::key_index(key) {
            Some(i) => Key::Known(i),
            None if key == NUMBER_TOKEN => Key::Number,
            None => Key::Unknown,
        })
    }
}

/// The value under the number marker key, as serde_json's `Value` reads it.
fn number_value<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Value, A::Error> {
    let text = map.next_value::<Field<'de>>()?;
    match text {
        Field::Str(s) => s
            .parse::<Number>()
            .map(Value::Number)
            .map_err(de::Error::custom),
        _ => Err(de::Error::custom("invalid number")),
    }
}

// ---- Seq: an array read element by element -------------------------------------

/// A value where a conversion wants an array of `T`.
#[derive(Debug)]
pub enum Seq<T> {
    Array(Vec<T>),
    /// Anything else (strings owned: a string here is rare).
    Other(Field<'static>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Seq<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SeqVisitor(PhantomData))
    }
}

struct SeqVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for SeqVisitor<T> {
    type Value = Seq<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Seq::Array(items))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Seq::Other(Field::Str(Cow::Owned(s.to_owned()))))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let v = Value::deserialize(MapAccessDeserializer::new(map))?;
        Ok(Seq::Other(Field::Other(Box::new(v))))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Seq::Other(Field::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Seq::Other(Field::Null))
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Seq::Other(Field::Bool(b)))
    }
    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Self::Value, E> {
        Ok(Seq::Other(Field::I64(i)))
    }
    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Self::Value, E> {
        Ok(Seq::Other(Field::U64(u)))
    }
    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Self::Value, E> {
        let v = Number::from_f64(f).map_or(Value::Null, Value::Number);
        Ok(Seq::Other(Field::Other(Box::new(v))))
    }
}

// ---- Pair: a two-element array ---------------------------------------------------

/// A value where a conversion wants `[a, b]`: exactly two elements, or nothing.
#[derive(Debug)]
pub struct Pair<'a>(pub Option<(Field<'a>, Field<'a>)>);

impl<'de> Deserialize<'de> for Pair<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Seq::<Field<'de>>::deserialize(d)? {
            Seq::Array(items) if items.len() == 2 => {
                let mut items = items.into_iter();
                Ok(Pair(items.next().zip(items.next())))
            }
            _ => Ok(Pair(None)),
        }
    }
}

// ---- Skip: strict skipping ---------------------------------------------------------

/// A value read and dropped, rejecting what a `Value` parse rejects (unlike
/// `IgnoredAny`): lone surrogates, nesting past the limit, a bad marked number.
#[derive(Debug, Clone, Copy)]
pub struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

/// An object key read only to learn whether it is the number marker.
struct SkipKey(bool);

impl<'de> Deserialize<'de> for SkipKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(SkipKeyVisitor)
    }
}

struct SkipKeyVisitor;

impl<'de> Visitor<'de> for SkipKeyVisitor {
    type Value = SkipKey;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<SkipKey, E> {
        Ok(SkipKey(key == NUMBER_TOKEN))
    }
}

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_none<E: de::Error>(self) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        match map.next_key::<SkipKey>()? {
            None => return Ok(Skip),
            Some(SkipKey(true)) => return number_value(&mut map).map(|_| Skip),
            Some(SkipKey(false)) => map.next_value::<Skip>()?,
        };
        while map.next_key::<Skip>()?.is_some() {
            map.next_value::<Skip>()?;
        }
        Ok(Skip)
    }
}

// ---- entry points -------------------------------------------------------------------

/// Reads one JSON text (trailing whitespace allowed) as `T`, with the errors a
/// `Value` parse gives.
pub fn from_str<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, serde_json::Error> {
    serde_json::from_str(text)
}

/// UTF-8 validation, SIMD-accelerated where the target has it (SSE4.2/AVX2
/// natively, `simd128` in wasm); the error is std's, with its position.
pub fn utf8(bytes: &[u8]) -> Result<&str, std::str::Utf8Error> {
    match simdutf8::basic::from_utf8(bytes) {
        Ok(s) => Ok(s),
        Err(_) => std::str::from_utf8(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    wire_object! {
        struct Probe<'a> {
            "s" => s: Field<'a>,
            "o" => o: Box<Obj<Probe<'a>>>,
            "l" => l: Seq<Field<'a>>,
        }
    }

    fn probe(text: &str) -> Result<Obj<Probe<'_>>, serde_json::Error> {
        from_str(text)
    }

    /// Every text is accepted by the typed reader exactly when a `Value` parse
    /// accepts it.
    #[test]
    fn strictness_matches_value() {
        let deep = |n: usize| format!("{{\"x\":{}1{}}}", "[".repeat(n), "]".repeat(n));
        let cases = [
            r#"{"s": "a"}"#.to_string(),
            r#"{"x": "\ud800"}"#.into(),
            r#"{"x": "\ud800\udc00"}"#.into(),
            r#"{"s": "\udc00x"}"#.into(),
            r#"{"x": ["\ud83d"]}"#.into(),
            r#"{"x": {"k\ud800": 1}}"#.into(),
            "{\"x\": \"a\u{1}\"}".into(),
            r#"{"x": 01}"#.into(),
            r#"{"x": 1.}"#.into(),
            r#"{"x": -}"#.into(),
            r#"{"x": 1e400}"#.into(),
            r#"{"x": 123456789012345678901234567890}"#.into(),
            r#"{"x": {"$serde_json::private::Number": "12"}}"#.into(),
            r#"{"x": {"$serde_json::private::Number": "zz"}}"#.into(),
            r#"{"o": {"$serde_json::private::Number": "zz"}}"#.into(),
            r#"{"o": {"$serde_json::private::Number": "1.5"}}"#.into(),
            r#"{"s": {"$serde_json::private::Number": 5}}"#.into(),
            r#"{"x": tru}"#.into(),
            r#"{"x": 1,}"#.into(),
            r#"{"x": 1} x"#.into(),
            r#"{"x": 1}  "#.into(),
            r#"{"s": "a", "s": [1, {"b": 2}]}"#.into(),
            r#"{"l": [1, "a", null, [2]], "o": {"o": {"s": 1}}}"#.into(),
            deep(126),
            deep(127),
            deep(128),
            deep(400),
            r#"[1, 2]"#.into(),
            r#""just text""#.into(),
        ];
        for text in &cases {
            let want = serde_json::from_str::<Value>(text).is_ok();
            assert_eq!(probe(text).is_ok(), want, "{text}");
        }
    }

    #[test]
    fn fields_match_value_semantics() {
        let p = probe(r#"{"s": "first", "o": {"s": "a\nb"}, "s": 1E16, "x": {"y": 1}}"#)
            .unwrap()
            .into_object()
            .unwrap();
        assert_eq!(
            p.s,
            Some(Field::Other(Box::new(
                serde_json::from_str("1e16").unwrap()
            )))
        );
        let o = p.o.unwrap();
        assert!(o.truthy());
        let inner = (*o).into_object().unwrap();
        assert_eq!(inner.s.unwrap().into_opt_str().as_deref(), Some("a\nb"));
        // An empty object is falsy; one with only unknown keys is not.
        assert!(!probe("{}").unwrap().truthy());
        assert!(probe(r#"{"zz": 0}"#).unwrap().truthy());
        // A marked number where an object belongs is a number.
        match probe(r#"{"$serde_json::private::Number": "0.0"}"#).unwrap() {
            Obj::Other(Field::Other(v)) => assert!(v.is_number() && !json::truthy(&v)),
            Obj::Other(f) => panic!("not a number: {f:?}"),
            Obj::Object { .. } => panic!("read as an object"),
        }
    }

    #[test]
    fn utf8_errors_are_std_errors() {
        assert_eq!(utf8("ü".as_bytes()).unwrap(), "ü");
        let bad = &[b'a', b'b', 0xff][..];
        assert_eq!(
            utf8(bad).unwrap_err().to_string(),
            std::str::from_utf8(bad).unwrap_err().to_string()
        );
    }
}
