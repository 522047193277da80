//! JSON helpers that reproduce the reference's Python semantics (PORT-DECISIONS D3):
//! `str()` of scalars, truthiness, and `json.dumps` output with default separators.
//!
//! serde_json is built with `arbitrary_precision`, so a number keeps its original
//! spelling: integers of any size survive and `2.0` is still a float.

use serde_json::{Map, Number, Value};

/// Python truthiness of a JSON value.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => !number_is_zero(n),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn number_is_zero(n: &Number) -> bool {
    let text = n.to_string();
    if is_float_text(&text) {
        text.parse::<f64>().map(|f| f == 0.0).unwrap_or(false)
    } else {
        text.trim_start_matches('-').bytes().all(|b| b == b'0')
    }
}

/// Whether a JSON number literal is a float in Python's `json` (has `.`, `e` or `E`).
pub fn is_float_text(text: &str) -> bool {
    text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'))
}

/// Python `str()` of a JSON number: integers exactly, floats in `repr` form.
pub fn number_str(n: &Number) -> String {
    let text = n.to_string();
    if is_float_text(&text) {
        match text.parse::<f64>() {
            Ok(f) => float_repr(f),
            Err(_) => text,
        }
    } else {
        // A JSON integer literal is already Python's decimal form, except `-0`.
        if text.trim_start_matches('-').bytes().all(|b| b == b'0') {
            "0".to_string()
        } else {
            text
        }
    }
}

/// Python `repr(float)`: shortest round-trip digits, scientific notation when the
/// decimal exponent is below -4 or at least 16, `.0` on integral values.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // `{:e}` gives the shortest round-trip digits: "-1.2345e-7".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` exponent is an integer");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if !(-4..16).contains(&exp) {
        let mut out = String::from(sign);
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", exp.abs()));
        return out;
    }
    let mut out = String::from(sign);
    if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
    out
}

/// Python `str()` of a scalar; `None` for null (D3: null counts as absent).
/// Arrays and objects render as compact JSON (D3 option values).
pub fn scalar_str(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Bool(true) => Some("True".into()),
        Value::Bool(false) => Some("False".into()),
        Value::Number(n) => Some(number_str(n)),
        Value::String(s) => Some(s.clone()),
        Value::Array(_) | Value::Object(_) => Some(compact(v)),
    }
}

/// Like [`scalar_str`], but arrays and objects count as absent (an optional string
/// field that holds a structure, D3).
pub fn opt_str(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Array(_) | Value::Object(_) => None,
        other => scalar_str(other),
    }
}

/// Compact JSON text (`serde_json` default output).
pub fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Appends `s` as a JSON string literal escaped exactly as serde_json's compact
/// output escapes it (`\"`, `\\`, `\b \f \n \r \t`, other controls as
/// `\u00xx`, everything else verbatim), but scanning eight bytes per step:
/// serde_json looks every byte up in a table, which made it the largest cost of
/// writing a message event.
pub fn write_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    loop {
        let i = find_escape(bytes, start);
        // `i` is at an ASCII byte or the end, so both slice ends are char boundaries.
        out.push_str(&s[start..i]);
        let Some(&b) = bytes.get(i) else { break };
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
        start = i + 1;
    }
    out.push('"');
}

/// The index of the first byte at or after `from` that JSON must escape (a
/// control character, `"` or `\\`), or `bytes.len()`. Whole 16-byte blocks are
/// tested at once; only the block holding a hit, and the tail, byte by byte.
fn find_escape(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    while let Some(block) = bytes.get(i..).and_then(|r| r.first_chunk::<16>()) {
        if block_needs_escape(block) {
            break;
        }
        i += 16;
    }
    bytes
        .get(i..)
        .and_then(|rest| rest.iter().position(|&b| needs_escape(b)))
        .map_or(bytes.len(), |p| i + p)
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether a block holds a byte to escape: three vector compares with simd128
/// (LLVM's own vectorisation of the plain loop extracts every lane in wasm).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn block_needs_escape(b: &[u8; 16]) -> bool {
    use core::arch::wasm32::{u8x16, u8x16_eq, u8x16_lt, u8x16_splat, v128_any_true, v128_or};
    let v = u8x16(
        b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
        b[14], b[15],
    );
    let ctrl = u8x16_lt(v, u8x16_splat(0x20));
    let quote = u8x16_eq(v, u8x16_splat(b'"'));
    let backslash = u8x16_eq(v, u8x16_splat(b'\\'));
    v128_any_true(v128_or(ctrl, v128_or(quote, backslash)))
}

/// Whether a block holds a byte to escape: a branch-free reduction that LLVM
/// turns into SSE2 compares natively.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn block_needs_escape(b: &[u8; 16]) -> bool {
    b.iter().fold(false, |acc, &x| {
        acc | (x < 0x20) | (x == b'"') | (x == b'\\')
    })
}

/// Python's whitespace set for `str.strip()`.
pub fn is_py_whitespace(c: char) -> bool {
    matches!(
        c,
        '\u{09}'..='\u{0d}'
            | '\u{1c}'..='\u{20}'
            | '\u{85}'
            | '\u{a0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200a}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202f}'
            | '\u{205f}'
            | '\u{3000}'
    )
}

/// Python `str.strip()`.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_whitespace)
}

/// `json.dumps` with Python's defaults: `", "` and `": "` separators and every
/// non-ASCII character escaped as `\uXXXX` (surrogate pairs above the BMP). This is
/// what the reference writes on the wire, so frames are byte-identical to it.
pub fn python_dumps(v: &Value) -> String {
    let mut out = String::with_capacity(64);
    write_py(&mut out, v);
    out
}

fn write_py(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_py_str(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_py(out, item);
            }
            out.push(']');
        }
        Value::Object(o) => write_py_object(out, o),
    }
}

fn write_py_object(out: &mut String, o: &Map<String, Value>) {
    out.push('{');
    for (i, (k, item)) in o.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_py_str(out, k);
        out.push_str(": ");
        write_py(out, item);
    }
    out.push('}');
}

fn write_py_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(text: &str) -> String {
        let v: Value = serde_json::from_str(text).unwrap();
        scalar_str(&v).unwrap()
    }

    #[test]
    fn floats_render_like_python_repr() {
        assert_eq!(num("1.50"), "1.5");
        assert_eq!(num("1E3"), "1000.0");
        assert_eq!(num("0.00001"), "1e-05");
        assert_eq!(num("1e21"), "1e+21");
        assert_eq!(num("1e16"), "1e+16");
        assert_eq!(num("1e15"), "1000000000000000.0");
        assert_eq!(num("0.0001"), "0.0001");
        assert_eq!(num("-2.5e-7"), "-2.5e-07");
        assert_eq!(num("1e400"), "inf");
        assert_eq!(num("123.456"), "123.456");
    }

    #[test]
    fn integers_render_exactly() {
        assert_eq!(
            num("123456789012345678901234567890"),
            "123456789012345678901234567890"
        );
        assert_eq!(num("-0"), "0");
        assert_eq!(num("true"), "True");
    }

    #[test]
    fn truthiness_follows_python() {
        for (text, want) in [
            ("0", false),
            ("0.0", false),
            ("1", true),
            ("\"\"", false),
            ("[]", false),
            ("{}", false),
            ("\"no\"", true),
            ("null", false),
        ] {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(truthy(&v), want, "{text}");
        }
    }

    #[test]
    fn python_dumps_matches_reference_spacing_and_escapes() {
        let v: Value = serde_json::from_str(r#"{"type":"hello","a":[1,2],"t":"ü😀"}"#).unwrap();
        assert_eq!(
            python_dumps(&v),
            r#"{"type": "hello", "a": [1, 2], "t": "\u00fc\ud83d\ude00"}"#
        );
    }

    #[test]
    fn write_str_matches_serde_json() {
        let mut cases: Vec<String> = vec![
            String::new(),
            "plain".into(),
            "quote\" back\\ slash / del\u{7f}".into(),
            "ü😀 日本語 naïve".into(),
        ];
        // Every ASCII byte at every offset around an eight-byte step.
        for b in 0u8..0x80 {
            for pad in 0..10 {
                let mut s = "x".repeat(pad);
                s.push(char::from(b));
                s.push_str("yz\u{e9}");
                cases.push(s);
            }
        }
        for s in &cases {
            let mut out = String::from("prefix");
            write_str(&mut out, s);
            assert_eq!(
                out,
                format!("prefix{}", serde_json::to_string(s).unwrap()),
                "{s:?}"
            );
        }
    }

    #[test]
    fn strip_uses_python_whitespace() {
        assert_eq!(py_strip("\u{a0}\u{3000} x \u{1f}"), "x");
        assert_eq!(py_strip("\u{200b}x"), "\u{200b}x");
    }
}
