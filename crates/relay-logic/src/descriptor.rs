//! The connector's capability descriptor (PROTOCOL.md §8, D4).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::DecodeError;
use crate::json::{is_float_text, py_strip, scalar_str, truthy};

/// The ops a normalised descriptor reports `supports_op` for (the outbound ops the
/// application protocol names), so every host shows the same answers.
pub const PROBED_OPS: [&str; 7] = [
    "send",
    "edit",
    "typing",
    "follow_up",
    "get_chat_info",
    "send_media",
    "prompt",
];

/// The ops assumed when a descriptor lists none.
pub const LEGACY_OPS: [&str; 4] = ["send", "edit", "typing", "follow_up"];

/// The emoji of a descriptor that names none (U+1F50C, electric plug).
pub const DEFAULT_EMOJI: &str = "\u{1F50C}";

/// `max_message_length` when the wire value is not a positive integer (D4).
pub const DEFAULT_MAX_MESSAGE_LENGTH: u64 = 4096;

/// A normalised descriptor: every field present and of its declared type, so the
/// canonical JSON never carries a string where a number belongs (or vice versa).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Descriptor {
    /// An integer: Python `int()` of the wire value (`1`, `"1"`, `1.0` → 1).
    pub contract_version: i64,
    pub platform: String,
    pub label: String,
    pub max_message_length: u64,
    pub supports_draft_streaming: bool,
    pub supports_edit: bool,
    pub supports_threads: bool,
    pub markdown_dialect: String,
    pub len_unit: String,
    pub emoji: String,
    pub platform_hint: String,
    pub pii_safe: bool,
    pub supports_context: bool,
    pub supports_inchannel_continuable: bool,
    pub supports_block_formatting: bool,
    pub supported_ops: Vec<String>,
}

impl Descriptor {
    /// Whether the connector implements `op` (legacy set when the list is empty).
    pub fn supports_op(&self, op: &str) -> bool {
        if self.supported_ops.is_empty() {
            LEGACY_OPS.contains(&op)
        } else {
            self.supported_ops.iter().any(|o| o == op)
        }
    }

    /// The canonical JSON value (16 fields).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Parses and normalises a descriptor object (PROTOCOL §8 with D3/D4).
///
/// A required key that is absent rejects the descriptor (`missing_field`); so does a
/// required string or `contract_version` that is `null` (null is absent, D3). Where
/// D4 gives a rule it wins: booleans use truthiness (null is false) and
/// `max_message_length` falls back to 4096. A required string holding an array or
/// object, or a `contract_version` Python `int()` would reject, is `invalid_field`.
pub fn parse(v: &Value) -> Result<Descriptor, DecodeError> {
    let o = v
        .as_object()
        .ok_or_else(|| DecodeError::not_object("descriptor"))?;
    let required = |k: &str| o.get(k).ok_or_else(|| DecodeError::missing(k));
    let req_str = |k: &str| -> Result<String, DecodeError> {
        match required(k)? {
            Value::Null => Err(DecodeError::missing(k)),
            Value::Array(_) | Value::Object(_) => Err(DecodeError::invalid(k, "not a string")),
            other => Ok(scalar_str(other).unwrap_or_default()),
        }
    };
    let req_bool = |k: &str| required(k).map(truthy);
    let opt_bool = |k: &str| o.get(k).is_some_and(truthy);
    let opt_str = |k: &str, default: &str| {
        crate::json::opt_str(o.get(k)).unwrap_or_else(|| default.to_string())
    };

    let contract_version = match required("contract_version")? {
        Value::Null => return Err(DecodeError::missing("contract_version")),
        cv => py_int(cv)
            .and_then(|i| i.to_i64())
            .ok_or_else(|| DecodeError::invalid("contract_version", "not an integer"))?,
    };
    let max_message_length = py_int(required("max_message_length")?)
        .and_then(|i| i.positive_saturating())
        .unwrap_or(DEFAULT_MAX_MESSAGE_LENGTH);

    Ok(Descriptor {
        contract_version,
        platform: req_str("platform")?,
        label: req_str("label")?,
        max_message_length,
        supports_draft_streaming: req_bool("supports_draft_streaming")?,
        supports_edit: req_bool("supports_edit")?,
        supports_threads: req_bool("supports_threads")?,
        markdown_dialect: req_str("markdown_dialect")?,
        len_unit: req_str("len_unit")?,
        emoji: opt_str("emoji", DEFAULT_EMOJI),
        platform_hint: opt_str("platform_hint", ""),
        pii_safe: opt_bool("pii_safe"),
        supports_context: opt_bool("supports_context"),
        supports_inchannel_continuable: opt_bool("supports_inchannel_continuable"),
        supports_block_formatting: opt_bool("supports_block_formatting"),
        supported_ops: supported_ops(o),
    })
}

/// Only an array counts; it keeps its non-empty strings in order.
fn supported_ops(o: &Map<String, Value>) -> Vec<String> {
    match o.get("supported_ops") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// The result of Python `int()` on a JSON value: a sign and a magnitude, the
/// magnitude `None` when it does not fit in 64 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PyInt {
    negative: bool,
    magnitude: Option<u64>,
}

impl PyInt {
    /// A positive value, saturated at `u64::MAX`; `None` for zero and negatives.
    fn positive_saturating(self) -> Option<u64> {
        match (self.negative, self.magnitude) {
            (false, None) => Some(u64::MAX),
            (false, Some(m)) if m > 0 => Some(m),
            _ => None,
        }
    }

    fn to_i64(self) -> Option<i64> {
        let m = i128::from(self.magnitude?);
        i64::try_from(if self.negative { -m } else { m }).ok()
    }
}

/// Python `int(v)` for a JSON value: booleans are 0/1, integers exact, floats
/// truncated toward zero (infinities fail), strings parsed as base-10 literals.
/// `None` where Python raises (null, arrays, objects, other strings).
fn py_int(v: &Value) -> Option<PyInt> {
    match v {
        Value::Bool(b) => Some(PyInt {
            negative: false,
            magnitude: Some(u64::from(*b)),
        }),
        Value::Number(n) => {
            let text = n.to_string();
            if is_float_text(&text) {
                float_int(text.parse::<f64>().ok()?)
            } else {
                int_literal(&text)
            }
        }
        Value::String(s) => int_literal(s),
        _ => None,
    }
}

fn float_int(f: f64) -> Option<PyInt> {
    if !f.is_finite() {
        return None;
    }
    let t = f.trunc();
    let abs = t.abs();
    Some(PyInt {
        negative: t < 0.0,
        // 2^64 is exact in f64; anything below converts exactly after `trunc`.
        magnitude: (abs < 18_446_744_073_709_551_616.0).then_some(abs as u64),
    })
}

/// Python `int(str)` in base 10: surrounding whitespace, an optional sign, decimal
/// digits (any Unicode decimal digit, as Python accepts: `"١٢"` is 12) with single
/// `_` separators between digits (`"1_000"`). Leading zeros are fine.
fn int_literal(s: &str) -> Option<PyInt> {
    let s = py_strip(s);
    let (negative, digits) = if let Some(rest) = s.strip_prefix('-') {
        (true, rest)
    } else {
        (false, s.strip_prefix('+').unwrap_or(s))
    };
    let mut magnitude = Some(0u64);
    let mut prev_digit = false;
    for c in digits.chars() {
        if let Some(d) = decimal_value(c) {
            magnitude = magnitude
                .and_then(|m| m.checked_mul(10))
                .and_then(|m| m.checked_add(u64::from(d)));
            prev_digit = true;
        } else if c == '_' && prev_digit {
            prev_digit = false;
        } else {
            return None;
        }
    }
    // No digits, or a trailing `_`, is not a literal.
    prev_digit.then_some(PyInt {
        negative,
        magnitude,
    })
}

/// The zeros of the Unicode decimal-digit runs (general category Nd, Unicode 15.1 as
/// in Python 3.12/3.13) beyond ASCII; each run holds the digits 0–9 in order.
const DECIMAL_ZEROS: [u32; 67] = [
    0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66, 0xDE6,
    0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90, 0x1B50,
    0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650,
    0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x11F50, 0x16A60, 0x16AC0,
    0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E4F0, 0x1E950,
    0x1FBF0,
];

/// The value of a decimal digit character, as Python's `int()` reads it.
fn decimal_value(c: char) -> Option<u8> {
    if let Some(d) = c.to_digit(10) {
        return u8::try_from(d).ok();
    }
    let cp = u32::from(c);
    let zero = match DECIMAL_ZEROS.binary_search(&cp) {
        Ok(i) => DECIMAL_ZEROS[i],
        Err(0) => return None,
        Err(i) => DECIMAL_ZEROS[i - 1],
    };
    u8::try_from(cp - zero).ok().filter(|d| *d < 10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use serde_json::json;

    use super::PROBED_OPS;

    #[test]
    fn conformance_vectors() {
        crate::event::tests::run_vector_file("descriptor.json", |input| {
            let d = parse(input)?;
            let mut out = d.to_json();
            let ops: Map<String, Value> = PROBED_OPS
                .iter()
                .map(|op| (op.to_string(), Value::Bool(d.supports_op(op))))
                .collect();
            if let Value::Object(m) = &mut out {
                m.insert("supports_op".into(), Value::Object(ops));
            }
            Ok(out)
        });
    }

    fn base() -> Value {
        json!({
            "contract_version": 1, "platform": "discord", "label": "Discord",
            "max_message_length": 2000, "supports_draft_streaming": false,
            "supports_edit": true, "supports_threads": true,
            "markdown_dialect": "discord", "len_unit": "chars"
        })
    }

    fn with(key: &str, text: &str) -> Result<Descriptor, DecodeError> {
        let mut v = base();
        v[key] = serde_json::from_str(text).unwrap();
        parse(&v)
    }

    #[test]
    fn max_message_length_follows_python_int() {
        let len = |text: &str| with("max_message_length", text).unwrap().max_message_length;
        assert_eq!(len("\"1_000\""), 1000);
        assert_eq!(len("\"+07\""), 7);
        assert_eq!(len("\"\\u0661\\u0662\""), 12);
        assert_eq!(len("\"\\uff19_\\ud835\\udfcf\""), 91);
        assert_eq!(len("\"\\u3000 12\\n\""), 12);
        assert_eq!(len("\"99999999999999999999999\""), u64::MAX);
        assert_eq!(len("1e300"), u64::MAX);
        assert_eq!(len("18446744073709551615"), u64::MAX);
        assert_eq!(len("18446744073709551614"), u64::MAX - 1);
        for bad in [
            "\"1__0\"",
            "\"_1\"",
            "\"1_\"",
            "\"-5\"",
            "\"\"",
            "\" \"",
            "\"+\"",
            "\"0x10\"",
            "\"1e3\"",
            "\"\u{b2}\"",
            "\"\u{2160}\"",
            "\"+-5\"",
            "\"- 5\"",
            "-3",
            "0.99",
            "-0.5",
            "1e400",
            "false",
            "[5]",
            "{}",
            "\"99999999999999999999999x\"",
        ] {
            assert_eq!(len(bad), DEFAULT_MAX_MESSAGE_LENGTH, "{bad}");
        }
    }

    #[test]
    fn contract_version_is_an_integer() {
        let cv = |text: &str| with("contract_version", text).map(|d| d.contract_version);
        assert_eq!(cv("2"), Ok(2));
        assert_eq!(cv("\" 3 \""), Ok(3));
        assert_eq!(cv("1.9"), Ok(1));
        assert_eq!(cv("true"), Ok(1));
        let kind = |text: &str| cv(text).unwrap_err().kind;
        assert_eq!(kind("null"), ErrorKind::MissingField);
        assert_eq!(kind("\"v1\""), ErrorKind::InvalidField);
        assert_eq!(kind("99999999999999999999"), ErrorKind::InvalidField);
        assert_eq!(kind("[1]"), ErrorKind::InvalidField);
    }

    #[test]
    fn string_fields_follow_d3() {
        assert_eq!(with("label", "5").unwrap().label, "5");
        assert_eq!(with("label", "true").unwrap().label, "True");
        assert_eq!(with("len_unit", "1.50").unwrap().len_unit, "1.5");
        assert_eq!(
            with("label", "null").unwrap_err().kind,
            ErrorKind::MissingField
        );
        assert_eq!(
            with("platform", "{}").unwrap_err().kind,
            ErrorKind::InvalidField
        );
        assert_eq!(with("emoji", "null").unwrap().emoji, DEFAULT_EMOJI);
        assert_eq!(with("emoji", "[]").unwrap().emoji, DEFAULT_EMOJI);
        assert_eq!(with("platform_hint", "7").unwrap().platform_hint, "7");
        assert!(!with("supports_edit", "null").unwrap().supports_edit);
        for key in ["supports_edit", "len_unit", "max_message_length"] {
            let mut v = base();
            v.as_object_mut().unwrap().remove(key);
            assert_eq!(
                parse(&v).unwrap_err().kind,
                ErrorKind::MissingField,
                "{key}"
            );
        }
    }
}
