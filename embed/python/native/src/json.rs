//! JSON text straight to Python objects, for the event of every `emit`.
//!
//! With the default `loads` (`json.loads`), a frame's event line used to become
//! a Python `str` first (a copy) and then `json.loads`'s objects; here the bytes
//! the component rendered are read once into the same objects `json.loads`
//! gives: `dict` (keys in order, a repeated key keeping its first place and its
//! last value), `list`, `str`, `int` (any size), `float` (correctly rounded, as
//! `float()`), `True`/`False`/`None`. Object keys that repeat from event to
//! event (every message event has the same thirty) come from a small cache of
//! `str` objects whose hashes Python has already computed.
//!
//! Anything this reader does not take — text that is not JSON, `NaN` and
//! `Infinity` (which `json.loads` accepts), a lone surrogate escape, nesting
//! deeper than [`MAX_DEPTH`] — returns `None`, and the caller gives the text to
//! `json.loads` itself, so the result (or the error) is always `json.loads`'s.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard};

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyList, PyString};

/// Deeper than this, the text goes to `json.loads` (whose own limit is the
/// interpreter's recursion limit).
const MAX_DEPTH: usize = 256;
/// Keys longer than this are not cached.
const MAX_CACHED_KEY: usize = 64;
/// The cache is emptied when it holds this many keys (a bounded memory cost
/// whatever keys a connector sends).
const MAX_CACHED_KEYS: usize = 4096;

/// FNV-1a: the keys are short and this process's own (a connector cannot make
/// the cache slow: it is emptied at [`MAX_CACHED_KEYS`]), so a cheap hash is
/// enough; SipHash cost more than the lookup saved.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type Keys = HashMap<Box<str>, Py<PyString>, BuildHasherDefault<Fnv>>;

/// The `str` objects of recently seen object keys (see the module docs).
#[derive(Default)]
pub(crate) struct KeyCache(Mutex<Keys>);

impl KeyCache {
    /// Locked once per document, not once per key.
    fn lock(&self) -> MutexGuard<'_, Keys> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn key_str(py: Python<'_>, map: &mut Keys, key: &str) -> Py<PyString> {
    if key.len() > MAX_CACHED_KEY {
        return PyString::new(py, key).unbind();
    }
    if let Some(s) = map.get(key) {
        return s.clone_ref(py);
    }
    if map.len() >= MAX_CACHED_KEYS {
        map.clear();
    }
    let s = PyString::intern(py, key).unbind();
    map.insert(key.into(), s.clone_ref(py));
    s
}

/// The end of the run of plain string bytes at `from` (the next `"` or `\\`, or
/// the end), and whether the run holds a control character (which JSON forbids
/// raw). Two passes the compiler vectorises, instead of one byte at a time.
fn plain_run(b: &[u8], from: usize) -> (usize, bool) {
    let end = memchr::memchr2(b'"', b'\\', &b[from..]).map_or(b.len(), |n| from + n);
    let control = b[from..end].iter().fold(false, |any, &c| any | (c < 0x20));
    (end, control)
}

/// `json.loads(text)` for the texts it can read itself; `Ok(None)` for any other
/// (the caller then uses `json.loads`). `Err` only for a Python error (memory).
pub(crate) fn loads(py: Python<'_>, text: &str, keys: &KeyCache) -> PyResult<Option<Py<PyAny>>> {
    let mut r = Reader {
        b: text.as_bytes(),
        text,
        pos: 0,
        keys: &mut keys.lock(),
    };
    let Some(v) = r.value(py, 0)? else {
        return Ok(None);
    };
    r.ws();
    Ok((r.pos == r.b.len()).then_some(v))
}

struct Reader<'a, 'k> {
    b: &'a [u8],
    text: &'a str,
    pos: usize,
    keys: &'k mut Keys,
}

/// `Ok(None)`: not for this reader (see the module docs).
type Step<T> = PyResult<Option<T>>;

fn boolean(py: Python<'_>, b: bool) -> Py<PyAny> {
    PyBool::new(py, b).to_owned().into_any().unbind()
}

impl<'a> Reader<'a, '_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.pos) {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        let ok = self.b[self.pos..].starts_with(word);
        if ok {
            self.pos += word.len();
        }
        ok
    }

    fn value(&mut self, py: Python<'_>, depth: usize) -> Step<Py<PyAny>> {
        if depth > MAX_DEPTH {
            return Ok(None);
        }
        self.ws();
        let Some(&c) = self.b.get(self.pos) else {
            return Ok(None);
        };
        Ok(match c {
            b'{' => self.object(py, depth)?,
            b'[' => self.array(py, depth)?,
            b'"' => self
                .string()?
                .map(|s| PyString::new(py, &s).into_any().unbind()),
            b't' => self.literal(b"true").then(|| boolean(py, true)),
            b'f' => self.literal(b"false").then(|| boolean(py, false)),
            b'n' => self.literal(b"null").then(|| py.None()),
            b'-' | b'0'..=b'9' => self.number(py)?,
            _ => None,
        })
    }

    fn object(&mut self, py: Python<'_>, depth: usize) -> Step<Py<PyAny>> {
        self.pos += 1; // '{'
        let dict = PyDict::new(py);
        self.ws();
        if self.b.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Ok(Some(dict.into_any().unbind()));
        }
        loop {
            self.ws();
            if self.b.get(self.pos) != Some(&b'"') {
                return Ok(None);
            }
            let Some(key) = self.string()? else {
                return Ok(None);
            };
            let key = key_str(py, self.keys, &key);
            self.ws();
            if self.b.get(self.pos) != Some(&b':') {
                return Ok(None);
            }
            self.pos += 1;
            let Some(value) = self.value(py, depth + 1)? else {
                return Ok(None);
            };
            dict.set_item(key, value)?;
            self.ws();
            match self.b.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Some(dict.into_any().unbind()));
                }
                _ => return Ok(None),
            }
        }
    }

    fn array(&mut self, py: Python<'_>, depth: usize) -> Step<Py<PyAny>> {
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.ws();
        if self.b.get(self.pos) == Some(&b']') {
            self.pos += 1;
            return Ok(Some(PyList::empty(py).into_any().unbind()));
        }
        loop {
            let Some(v) = self.value(py, depth + 1)? else {
                return Ok(None);
            };
            items.push(v);
            self.ws();
            match self.b.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Some(PyList::new(py, items)?.into_any().unbind()));
                }
                _ => return Ok(None),
            }
        }
    }

    /// A string token at `pos` (its opening quote), unescaped. Borrowed from the
    /// text when it has no escape.
    fn string(&mut self) -> Step<std::borrow::Cow<'a, str>> {
        let text: &'a str = self.text;
        let start = self.pos + 1;
        // The common case: no escape.
        let (mut i, control) = plain_run(self.b, start);
        if control {
            return Ok(None);
        }
        if self.b.get(i) == Some(&b'"') {
            self.pos = i + 1;
            return Ok(Some(text[start..i].into()));
        }
        let mut out = String::with_capacity(i - start + 16);
        out.push_str(&text[start..i]);
        loop {
            let Some(&c) = self.b.get(i) else {
                return Ok(None);
            };
            match c {
                b'"' => {
                    self.pos = i + 1;
                    return Ok(Some(out.into()));
                }
                b'\\' => {
                    let Some(&e) = self.b.get(i + 1) else {
                        return Ok(None);
                    };
                    i += 2;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let Some(hi) = self.hex4(i) else {
                                return Ok(None);
                            };
                            i += 4;
                            let ch = if (0xd800..0xdc00).contains(&hi) {
                                // A high surrogate: only a following low one makes a character.
                                if self.b.get(i) != Some(&b'\\') || self.b.get(i + 1) != Some(&b'u')
                                {
                                    return Ok(None);
                                }
                                let Some(lo) = self.hex4(i + 2) else {
                                    return Ok(None);
                                };
                                if !(0xdc00..0xe000).contains(&lo) {
                                    return Ok(None);
                                }
                                i += 6;
                                char::from_u32(0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00))
                            } else {
                                char::from_u32(hi) // None for a lone low surrogate
                            };
                            let Some(ch) = ch else {
                                return Ok(None);
                            };
                            out.push(ch);
                        }
                        _ => return Ok(None),
                    }
                }
                _ => {
                    // Copy up to the next quote or backslash in one piece (the
                    // text is UTF-8, and both are ASCII: never inside a character).
                    let (run, control) = plain_run(self.b, i);
                    if control {
                        return Ok(None);
                    }
                    out.push_str(&text[i..run]);
                    i = run;
                }
            }
        }
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let digits = self.b.get(at..at + 4)?;
        let mut v = 0;
        for &d in digits {
            v = v * 16 + (d as char).to_digit(16)?;
        }
        Some(v)
    }

    /// A number as `json.loads` reads it: an integer literal is an `int`, one
    /// with a fraction or an exponent a `float`.
    fn number(&mut self, py: Python<'_>) -> Step<Py<PyAny>> {
        let start = self.pos;
        let mut i = start;
        if self.b.get(i) == Some(&b'-') {
            i += 1;
        }
        let digits = |i: usize| {
            self.b[i..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count()
        };
        let int_len = digits(i);
        // JSON: no empty integer part, no leading zero before more digits.
        if int_len == 0 || (int_len > 1 && self.b[i] == b'0') {
            return Ok(None);
        }
        i += int_len;
        let mut float = false;
        if self.b.get(i) == Some(&b'.') {
            let n = digits(i + 1);
            if n == 0 {
                return Ok(None);
            }
            i += 1 + n;
            float = true;
        }
        if let Some(b'e' | b'E') = self.b.get(i) {
            let mut j = i + 1;
            if let Some(b'+' | b'-') = self.b.get(j) {
                j += 1;
            }
            let n = digits(j);
            if n == 0 {
                return Ok(None);
            }
            i = j + n;
            float = true;
        }
        self.pos = i;
        let lexeme = &self.text[start..i];
        if float {
            // Rust's parse and Python's float() both round correctly: the same value.
            let Ok(f) = lexeme.parse::<f64>() else {
                return Ok(None);
            };
            return Ok(Some(PyFloat::new(py, f).into_any().unbind()));
        }
        if let Ok(n) = lexeme.parse::<i64>() {
            return Ok(Some(n.into_pyobject(py)?.into_any().unbind()));
        }
        // Past 64 bits: Python's own int() of the digits, exact as json.loads.
        let int = py.get_type::<pyo3::types::PyInt>();
        Ok(Some(int.call1((lexeme,))?.unbind()))
    }
}

/// `_native.loads(text)`: what an emit's event goes through, callable alone (the
/// package's tests compare it with `json.loads` on many texts). Falls back to
/// `json.loads` exactly as an emit does, so its result or error is always that.
#[pyfunction(name = "loads")]
pub(crate) fn loads_py(py: Python<'_>, text: &Bound<'_, PyString>) -> PyResult<Py<PyAny>> {
    if let Ok(s) = text.to_str() {
        if let Some(v) = loads(py, s, &KeyCache::default())? {
            return Ok(v);
        }
    }
    Ok(py
        .import("json")?
        .getattr("loads")?
        .call1((text,))?
        .unbind())
}
