//! `passthrough_forward` → PassthroughForward (PROTOCOL.md §7, D3, D5, D14).

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde_json::{Map, Value};

use crate::error::DecodeError;
use crate::wire::{opt_str, wire_object, Field, Obj, Pair, Seq};

/// A forwarded provider request, normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct Forward {
    pub platform: String,
    pub bot_id: String,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The decoded body bytes (empty when `bodyB64` was absent or invalid).
    pub body: Vec<u8>,
    pub profile: Option<String>,
}

impl Forward {
    /// Canonical JSON: `{platform, bot_id, method, path, headers, body_b64, profile}`
    /// with the body re-encoded as standard padded base64.
    pub fn to_json(&self) -> Value {
        let headers = self
            .headers
            .iter()
            .map(|(n, v)| Value::Array(vec![n.clone().into(), v.clone().into()]))
            .collect();
        let mut m = Map::new();
        m.insert("platform".into(), self.platform.clone().into());
        m.insert("bot_id".into(), self.bot_id.clone().into());
        m.insert("method".into(), self.method.clone().into());
        m.insert("path".into(), self.path.clone().into());
        m.insert("headers".into(), Value::Array(headers));
        m.insert("body_b64".into(), STANDARD.encode(&self.body).into());
        m.insert(
            "profile".into(),
            self.profile.clone().map_or(Value::Null, Value::String),
        );
        Value::Object(m)
    }

    /// Parses the canonical JSON form back (what `to_json` produced). Strict, since
    /// the input is our own output: every field must be there with its canonical
    /// type (`profile` may be absent or null) and `body_b64` must be standard padded
    /// base64, otherwise a typed error names the field.
    pub fn from_json(v: &Value) -> Result<Forward, DecodeError> {
        let o = v
            .as_object()
            .ok_or_else(|| DecodeError::not_object("forward"))?;
        let s = |k: &str| -> Result<String, DecodeError> {
            match o.get(k) {
                None | Some(Value::Null) => Err(DecodeError::missing(k)),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(DecodeError::invalid(k, "not a string")),
            }
        };
        let headers = match o.get("headers") {
            None | Some(Value::Null) => return Err(DecodeError::missing("headers")),
            Some(Value::Array(items)) => items
                .iter()
                .map(|h| match h.as_array().map(Vec::as_slice) {
                    Some([Value::String(n), Value::String(v)]) => Ok((n.clone(), v.clone())),
                    _ => Err(DecodeError::invalid(
                        "headers",
                        "entry is not a [name, value] string pair",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(DecodeError::invalid("headers", "not an array")),
        };
        let body = STANDARD
            .decode(s("body_b64")?)
            .map_err(|_| DecodeError::invalid("body_b64", "not standard padded base64"))?;
        let profile = match o.get("profile") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) => Some(p.clone()),
            Some(_) => return Err(DecodeError::invalid("profile", "not a string")),
        };
        Ok(Forward {
            platform: s("platform")?,
            bot_id: s("bot_id")?,
            method: s("method")?,
            path: s("path")?,
            headers,
            body,
            profile,
        })
    }
}

wire_object! {
    /// The keys of a `forward` object the conversion reads.
    pub struct ForwardWire<'a> {
        "platform" => platform: Field<'a>,
        "botId" => bot_id: Field<'a>,
        "method" => method: Field<'a>,
        "path" => path: Field<'a>,
        "headers" => headers: Seq<Pair<'a>>,
        "bodyB64" => body_b64: Field<'a>,
        "profile" => profile: Field<'a>,
    }
}

/// Rebuilds a `forward` object. `null` or a non-object is a typed error (D2).
///
/// Nothing else rejects a forward: string fields render scalars as Python `str()`
/// with `null` and structures as `""` (D3), `profile` likewise but absent when null,
/// `headers` that are not an array give `[]` (D14), and a `bodyB64` that is not
/// valid base64 gives an empty body (D5).
pub fn forward_from_wire(v: &Value) -> Result<Forward, DecodeError> {
    // One implementation of the rules: the typed reader, over the value's text.
    forward_from_str(&v.to_string())
}

/// [`forward_from_wire`] of a forward's JSON text; a text that is not JSON is
/// `malformed_json`.
pub fn forward_from_str(text: &str) -> Result<Forward, DecodeError> {
    let mut wire: Obj<ForwardWire<'_>> = crate::wire::from_str(text)
        .map_err(|e| DecodeError::malformed(format!("forward is not JSON ({e})")))?;
    match &mut wire {
        Obj::Object { fields, .. } => Ok(forward_from_fields(fields)),
        Obj::Other(_) => Err(DecodeError::not_object("forward")),
    }
}

/// The conversion of an already-read `forward` object (fields taken in place).
pub fn forward_from_fields(o: &mut ForwardWire<'_>) -> Forward {
    let s = |f: Option<Field<'_>>| opt_str(f).unwrap_or_default();
    Forward {
        body: o
            .body_b64
            .as_ref()
            .and_then(Field::as_str)
            .and_then(decode_body_b64)
            .unwrap_or_default(),
        platform: s(o.platform.take()),
        bot_id: s(o.bot_id.take()),
        method: s(o.method.take()),
        path: s(o.path.take()),
        headers: headers_from_wire(o.headers.take()),
        profile: opt_str(o.profile.take()),
    }
}

/// `[name, value]` pairs in arrival order, duplicates kept. Entries that are not
/// arrays of exactly two elements are skipped; an element renders as Python `str()`,
/// `null` or a structure as `""` (D3). Anything but an array is no headers (D14).
fn headers_from_wire(v: Option<Seq<Pair<'_>>>) -> Vec<(String, String)> {
    let Some(Seq::Array(items)) = v else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|Pair(pair)| pair)
        .map(|(n, v)| {
            (
                n.into_opt_str().unwrap_or_default(),
                v.into_opt_str().unwrap_or_default(),
            )
        })
        .collect()
}

/// Decodes the standard alphabet without padding; trailing bits that are not zero are
/// tolerated, as CPython's decoder does.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// D5: the standard or URL-safe alphabet (`-`/`_` read as `+`/`/`), ASCII whitespace
/// ignored anywhere, padding optional but complete when present (`YQ==` or `YQ`,
/// never `YQ=`). `None` for anything else: other characters, `=` before the end,
/// or a lone trailing data character.
pub fn decode_body_b64(text: &str) -> Option<Vec<u8>> {
    // Fast path: the connector sends plain standard base64; decode it in place. The
    // decoder itself rejects any byte outside the standard alphabet (and a `=`
    // inside the data), so only what it rejects needs the slow path below.
    let bytes = text.as_bytes();
    let data = text.trim_end_matches('=').as_bytes();
    let pads = bytes.len() - data.len();
    if pads == 0 || (pads <= 2 && bytes.len().is_multiple_of(4)) {
        // Canonical input first, with SIMD (several times faster than `base64`,
        // which showed in profiles); it accepts a subset of what LENIENT accepts,
        // with the same bytes, so anything it rejects just takes the next step.
        if let Ok(body) = base64_simd::STANDARD_NO_PAD.decode_to_vec(data) {
            return Some(body);
        }
        if let Ok(body) = LENIENT.decode(data) {
            return Some(body);
        }
    }
    decode_body_b64_general(text)
}

/// The general D5 decoder: every accepted spelling, one byte at a time. The fast
/// paths above must agree with it (a differential test checks).
fn decode_body_b64_general(text: &str) -> Option<Vec<u8>> {
    let mut data: Vec<u8> = Vec::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            // Python's ASCII whitespace: space, \t, \n, \v, \f, \r.
            b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' => {}
            b'-' => data.push(b'+'),
            b'_' => data.push(b'/'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' | b'=' => data.push(b),
            // Non-ASCII bytes and every other character invalidate the body.
            _ => return None,
        }
    }
    let pads = data.iter().rev().take_while(|b| **b == b'=').count();
    if pads > 2 || (pads > 0 && !data.len().is_multiple_of(4)) {
        return None;
    }
    data.truncate(data.len() - pads);
    // A `=` left inside the data is rejected by the decoder.
    LENIENT.decode(&data).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use serde_json::json;

    #[test]
    fn conformance_vectors() {
        crate::event::tests::run_vector_file("passthrough_forward.json", |input| {
            let f = forward_from_wire(input)?;
            let out = f.to_json();
            // The canonical form must read back to the same forward.
            assert_eq!(Forward::from_json(&out).as_ref(), Ok(&f));
            Ok(out)
        });
    }

    fn body(text: &str) -> Option<Vec<u8>> {
        decode_body_b64(text)
    }

    #[test]
    fn base64_per_d5() {
        assert_eq!(body("").unwrap(), b"");
        assert_eq!(body(" \t\r\n\x0b\x0c").unwrap(), b"");
        assert_eq!(body("YQ").unwrap(), b"a");
        assert_eq!(body("YQ==").unwrap(), b"a");
        assert_eq!(body("YWI=").unwrap(), b"ab");
        assert_eq!(body("Y W\nI =").unwrap(), b"ab");
        assert_eq!(body("YR==").unwrap(), b"a", "non-zero trailing bits");
        assert_eq!(body("-_-_").unwrap(), vec![0xfb, 0xff, 0xbf]);
        assert_eq!(body("+/-_").unwrap(), vec![0xfb, 0xff, 0xbf]);
        for bad in [
            "Y",
            "YQ=",
            "YQ===",
            "=",
            "====",
            "YWJj=",
            "YWJjZ",
            "YW=I",
            "YQ==YQ==",
            "YQ==\u{e9}",
            "YQ==.",
            "YQ\u{0}=",
            "\u{a0}YQ==",
        ] {
            assert_eq!(body(bad), None, "{bad:?}");
        }
    }

    /// The reference D5 decoder: the general path, without the fast paths.
    fn reference_b64(text: &str) -> Option<Vec<u8>> {
        decode_body_b64_general(text)
    }

    #[test]
    fn fast_paths_match_the_reference_decoder() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut accepted = 0;
        for round in 0..20_000 {
            let len = (next() % 90) as usize;
            let mut text: Vec<u8> = (0..len).map(|_| ALPHABET[(next() % 64) as usize]).collect();
            // Sometimes canonical padding, sometimes a stray or odd character.
            match round % 7 {
                0 => {
                    while !text.len().is_multiple_of(4) {
                        text.push(b'=');
                    }
                }
                1 if !text.is_empty() => {
                    let at = (next() as usize) % text.len();
                    text[at] = b"= -_\n.\xc3"[(next() % 7) as usize];
                }
                2 => text.extend_from_slice(&b"==="[..(next() % 4) as usize]),
                _ => {}
            }
            let Ok(text) = String::from_utf8(text) else {
                continue;
            };
            let want = reference_b64(&text);
            accepted += usize::from(want.is_some());
            assert_eq!(decode_body_b64(&text), want, "{text:?}");
        }
        // Both outcomes are well represented.
        assert!((5_000..15_000).contains(&accepted), "{accepted} accepted");
    }

    #[test]
    fn wire_fields_never_reject() {
        let f = forward_from_wire(&json!({
            "platform": ["discord"], "botId": {"a": 1}, "method": false,
            "headers": "x", "bodyB64": 5, "profile": true
        }))
        .unwrap();
        assert_eq!(
            (f.platform.as_str(), f.bot_id.as_str(), f.method.as_str()),
            ("", "", "False")
        );
        assert!(f.headers.is_empty() && f.body.is_empty());
        assert_eq!(f.profile.as_deref(), Some("True"));
        assert!(forward_from_wire(&json!({"profile": []}))
            .unwrap()
            .profile
            .is_none());
        for bad in [json!(null), json!([]), json!(1), json!("discord")] {
            assert_eq!(
                forward_from_wire(&bad).unwrap_err().kind,
                ErrorKind::NotObject
            );
        }
    }

    #[test]
    fn canonical_json_round_trip_is_strict() {
        let f = Forward {
            platform: "discord".into(),
            bot_id: "b".into(),
            method: "POST".into(),
            path: "/i".into(),
            headers: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
            body: vec![0, 255, 1],
            profile: Some("p".into()),
        };
        let v = f.to_json();
        assert_eq!(
            v,
            json!({"platform": "discord", "bot_id": "b", "method": "POST", "path": "/i",
                   "headers": [["a", "1"], ["a", "2"]], "body_b64": "AP8B", "profile": "p"})
        );
        assert_eq!(Forward::from_json(&v), Ok(f));
        let kind = |patch: Value| {
            let mut v = v.clone();
            for (k, x) in patch.as_object().unwrap() {
                v[k] = x.clone();
            }
            Forward::from_json(&v).unwrap_err().kind
        };
        assert_eq!(kind(json!({"bot_id": null})), ErrorKind::MissingField);
        assert_eq!(kind(json!({"method": 1})), ErrorKind::InvalidField);
        assert_eq!(kind(json!({"headers": [["a"]]})), ErrorKind::InvalidField);
        assert_eq!(kind(json!({"headers": {}})), ErrorKind::InvalidField);
        assert_eq!(kind(json!({"body_b64": "AP8"})), ErrorKind::InvalidField);
        assert_eq!(kind(json!({"profile": 7})), ErrorKind::InvalidField);
        assert_eq!(
            Forward::from_json(&json!("x")).unwrap_err().kind,
            ErrorKind::NotObject
        );
    }
}
