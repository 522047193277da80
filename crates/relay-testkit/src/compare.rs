//! The comparison rule of spec/vectors/README.md, shared by every Rust runner
//! (the logic's native tests, `relay-host conform` and the end-to-end tests, which
//! feed the component).
//!
//! Expected objects list only the keys that matter (an expected `null` also
//! matches an absent key); arrays match element by element; numbers by value;
//! `$NAME` placeholders bind on first use and must agree afterwards.

use std::collections::HashMap;

use serde_json::Value;

/// Placeholder bindings of one session case.
#[derive(Debug, Default, Clone)]
pub struct Bindings {
    by_name: HashMap<String, String>,
}

impl Bindings {
    /// Replaces every `$NAME` in `text` by its bound value (longest names first).
    pub fn substitute(&self, text: &str) -> String {
        let mut names: Vec<&String> = self.by_name.keys().collect();
        names.sort_by_key(|n| std::cmp::Reverse(n.len()));
        let mut out = text.to_string();
        for n in names {
            out = out.replace(&format!("${n}"), &self.by_name[n]);
        }
        out
    }

    /// The value bound to `name`, if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.by_name.get(name).map(String::as_str)
    }
}

/// `$NAME` (a capital letter, then capitals, digits or `_`) → `NAME`.
pub fn placeholder(s: &str) -> Option<&str> {
    let name = s.strip_prefix('$')?;
    let mut chars = name.chars();
    let first = chars.next()?;
    if first.is_ascii_uppercase()
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    {
        Some(name)
    } else {
        None
    }
}

/// Checks `actual` against `expected`; the error names the first difference.
pub fn compare(expected: &Value, actual: &Value, bindings: &mut Bindings) -> Result<(), String> {
    compare_at(expected, actual, bindings, "$")
}

fn compare_at(
    expected: &Value,
    actual: &Value,
    b: &mut Bindings,
    path: &str,
) -> Result<(), String> {
    match (expected, actual) {
        (Value::String(e), Value::String(a)) => {
            if let Some(name) = placeholder(e) {
                return bind(b, name, a, path);
            }
            if e == a {
                Ok(())
            } else {
                Err(format!("{path}: expected {e:?}, got {a:?}"))
            }
        }
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let sub = format!("{path}.{k}");
                match a.get(k) {
                    Some(av) => compare_at(ev, av, b, &sub)?,
                    None if ev.is_null() => {}
                    None => return Err(format!("{sub}: missing (expected {})", short(ev))),
                }
            }
            Ok(())
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Err(format!(
                    "{path}: expected {} elements, got {}: {}",
                    e.len(),
                    a.len(),
                    short(actual)
                ));
            }
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                compare_at(ev, av, b, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (Value::Number(e), Value::Number(a)) => {
            let (et, at) = (e.to_string(), a.to_string());
            let same = et == at
                || match (et.parse::<f64>(), at.parse::<f64>()) {
                    (Ok(x), Ok(y)) => {
                        x == y && (x.abs() < 9.0e15 || !looks_int(&et) || !looks_int(&at))
                    }
                    _ => false,
                };
            if same {
                Ok(())
            } else {
                Err(format!("{path}: expected {et}, got {at}"))
            }
        }
        (e, a) if e == a => Ok(()),
        (e, a) => Err(format!("{path}: expected {}, got {}", short(e), short(a))),
    }
}

/// An integer literal in Python's `json` sense: no `.`, `e` or `E`.
fn looks_int(t: &str) -> bool {
    !t.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'))
}

fn bind(b: &mut Bindings, name: &str, actual: &str, path: &str) -> Result<(), String> {
    match b.by_name.get(name) {
        Some(v) if v == actual => Ok(()),
        Some(v) => Err(format!(
            "{path}: ${name} was bound to {v:?}, got {actual:?}"
        )),
        None => {
            if let Some((other, _)) = b.by_name.iter().find(|(_, v)| v.as_str() == actual) {
                return Err(format!(
                    "{path}: ${name} would bind {actual:?}, already bound to ${other}"
                ));
            }
            b.by_name.insert(name.to_string(), actual.to_string());
            Ok(())
        }
    }
}

/// A value cut to a readable length for diffs.
pub fn short(v: &Value) -> String {
    let s = serde_json::to_string(v).unwrap_or_default();
    if s.chars().count() > 160 {
        let head: String = s.chars().take(160).collect();
        format!("{head}…")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn comparison_rule() {
        let mut b = Bindings::default();
        assert!(compare(&json!({"a": null}), &json!({}), &mut b).is_ok());
        assert!(compare(&json!({"a": 1}), &json!({"a": 1.0, "x": 2}), &mut b).is_ok());
        assert!(compare(&json!({"a": 1}), &json!({}), &mut b).is_err());
        assert!(compare(&json!([1]), &json!([1, 2]), &mut b).is_err());
        assert!(compare(&json!({"id": "$R1"}), &json!({"id": "abc"}), &mut b).is_ok());
        assert!(compare(&json!("$R1"), &json!("abd"), &mut b).is_err());
        assert!(compare(&json!("$R2"), &json!("abc"), &mut b).is_err());
        assert_eq!(b.substitute("x $R1 y"), "x abc y");
    }
}
