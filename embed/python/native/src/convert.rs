//! Python values <-> component-model values, directed by the WIT type.
//!
//! | WIT | from Python (arguments) | to Python (results) |
//! | --- | --- | --- |
//! | `bool` | `bool` | `bool` |
//! | integers | `int` (range-checked: `OverflowError`) | `int` |
//! | `f32`, `f64` | `float` (or `int`) | `float` |
//! | `char` | a one-character `str` | `str` |
//! | `string` | `str`, or `bytes`/`bytearray` holding valid UTF-8 (else `UnicodeDecodeError`) | `str` |
//! | `list<u8>` | `bytes`, `bytearray` | `bytes` |
//! | `list<T>` | a `list` or `tuple` | `list` |
//! | `record` | a `dict` keyed by the field names in snake_case; a missing `option` field is `none`, a missing other field or an unknown key is a `TypeError` | `dict` with snake_case keys |
//! | `tuple<..>` | a `tuple`/`list` of that length | `tuple` |
//! | `variant` | `(case, payload)`; a case without payload may also be the bare `str` | `(case, payload or None)` |
//! | `enum` | `str` | `str` |
//! | `flags` | an iterable of `str` | `list` of `str` |
//! | `option<T>` | `None` or the value | `None` or the value |
//! | `result<T, E>` | `("ok", value)` / `("err", value)` | the function's own result: the `ok` value, or `ResultError` raised with the `err` value; nested: `("ok"/"err", value)` |
//! | `own<T>`, `borrow<T>` | a `Resource` of the same instance | `Resource` |
//!
//! Names (fields, cases, enum and flag names) are the WIT names with `-` written
//! `_` (`bot_id`, `handshake_failed`); arguments may use either spelling, since
//! WIT names never contain `_`. `option<option<T>>` cannot tell `none` from
//! `some(none)` this way; the relay contract has none. Maps, fixed-length lists,
//! futures and streams are not supported (`TypeError`).

use std::borrow::Cow;

use pyo3::exceptions::{PyTypeError, PyUnicodeDecodeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyList, PyString, PyTuple};
use wasmtime::component::{Type, Val};

use crate::{new_resource, Instance, Resource, ResultError};

/// The WIT name `handshake-failed` as Python spells it: `handshake_failed`.
pub(crate) fn snake(name: &str) -> Cow<'_, str> {
    if name.contains('-') {
        Cow::Owned(name.replace('-', "_"))
    } else {
        Cow::Borrowed(name)
    }
}

/// A name given from Python, in WIT spelling.
fn kebab(name: &str) -> Cow<'_, str> {
    if name.contains('_') {
        Cow::Owned(name.replace('_', "-"))
    } else {
        Cow::Borrowed(name)
    }
}

/// The same exception with `where: ` before its message, when its type can be
/// built from one string (`UnicodeDecodeError` cannot: it is returned as it is).
pub(crate) fn with_context(py: Python<'_>, err: PyErr, place: &str) -> PyErr {
    let ty = err.get_type(py);
    let text = format!("{place}: {}", err.value(py));
    match ty.call1((text,)) {
        Ok(new) => {
            let new = PyErr::from_value(new);
            new.set_cause(py, Some(err));
            new
        }
        Err(_) => err,
    }
}

/// The text of a `string` argument: a `str`, or UTF-8 `bytes`/`bytearray` (a
/// WebSocket text message as received), validated.
pub(crate) fn text<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<Cow<'a, str>> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Cow::Borrowed(s.to_str()?));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return utf8(obj.py(), b.as_bytes()).map(Cow::Borrowed);
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        let bytes = b.to_vec();
        return match simdutf8::basic::from_utf8(&bytes) {
            Ok(_) => Ok(Cow::Owned(String::from_utf8(bytes).map_err(|e| {
                PyUnicodeDecodeError::new_err(format!("invalid UTF-8: {e}"))
            })?)),
            Err(_) => Err(utf8(obj.py(), &bytes).unwrap_err()),
        };
    }
    Err(PyTypeError::new_err(format!(
        "expected str or UTF-8 bytes, got {}",
        type_name(obj)
    )))
}

/// `bytes` as `&str` if they are UTF-8, else `UnicodeDecodeError` (with the
/// position, as `bytes.decode` reports it).
pub(crate) fn utf8<'a>(py: Python<'_>, bytes: &'a [u8]) -> PyResult<&'a str> {
    // SIMD validation first: messages are kilobytes and mostly valid.
    if let Ok(s) = simdutf8::basic::from_utf8(bytes) {
        return Ok(s);
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s),
        Err(e) => Err(match PyUnicodeDecodeError::new_utf8(py, bytes, e) {
            Ok(exc) => PyErr::from_value(exc.into_any()),
            Err(err) => err,
        }),
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

fn byte_list(obj: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(b.to_vec());
    }
    Err(PyTypeError::new_err(format!(
        "expected bytes for list<u8>, got {}",
        type_name(obj)
    )))
}

fn sequence<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Vec<Bound<'py, PyAny>>> {
    if let Ok(l) = obj.cast::<PyList>() {
        return Ok(l.iter().collect());
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        return Ok(t.iter().collect());
    }
    Err(PyTypeError::new_err(format!(
        "expected a list or tuple for {what}, got {}",
        type_name(obj)
    )))
}

/// A Python argument as a value of type `ty`. `owner_id` is the instance the call
/// goes to (resources must be its own); resources passed as `own` are collected
/// in `consumed`, to be marked given away once the call succeeded.
pub(crate) fn to_val(
    obj: &Bound<'_, PyAny>,
    ty: &Type,
    owner_id: u64,
    consumed: &mut Vec<Py<Resource>>,
) -> PyResult<Val> {
    let py = obj.py();
    Ok(match ty {
        Type::Bool => Val::Bool(
            obj.cast::<PyBool>()
                .map_err(|_| {
                    PyTypeError::new_err(format!("expected bool, got {}", type_name(obj)))
                })?
                .is_true(),
        ),
        Type::S8 => Val::S8(obj.extract()?),
        Type::U8 => Val::U8(obj.extract()?),
        Type::S16 => Val::S16(obj.extract()?),
        Type::U16 => Val::U16(obj.extract()?),
        Type::S32 => Val::S32(obj.extract()?),
        Type::U32 => Val::U32(obj.extract()?),
        Type::S64 => Val::S64(obj.extract()?),
        Type::U64 => Val::U64(obj.extract()?),
        Type::Float32 => Val::Float32(obj.extract::<f64>()? as f32),
        Type::Float64 => Val::Float64(obj.extract()?),
        Type::Char => {
            let s = obj.cast::<PyString>()?.to_str()?.to_owned();
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Val::Char(c),
                _ => {
                    return Err(PyValueError::new_err(
                        "expected a one-character str for char",
                    ))
                }
            }
        }
        Type::String => Val::String(text(obj)?.into_owned()),
        Type::List(list) => {
            let elem = list.ty();
            if matches!(elem, Type::U8) {
                Val::List(byte_list(obj)?.into_iter().map(Val::U8).collect())
            } else {
                let items = sequence(obj, "a list")?;
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    out.push(
                        to_val(item, &elem, owner_id, consumed)
                            .map_err(|e| with_context(py, e, &format!("[{i}]")))?,
                    );
                }
                Val::List(out)
            }
        }
        Type::Record(record) => {
            let dict = obj.cast::<PyDict>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "expected a dict for a record, got {}",
                    type_name(obj)
                ))
            })?;
            let mut fields = Vec::new();
            let mut found = 0;
            for field in record.fields() {
                let key = snake(field.name);
                let value = match dict.get_item(key.as_ref())? {
                    Some(v) => {
                        found += 1;
                        to_val(&v, &field.ty, owner_id, consumed)
                            .map_err(|e| with_context(py, e, &format!("field {key}")))?
                    }
                    None if matches!(field.ty, Type::Option(_)) => Val::Option(None),
                    None => {
                        return Err(PyTypeError::new_err(format!("missing field {key}")));
                    }
                };
                fields.push((field.name.to_string(), value));
            }
            if found < dict.len() {
                let known: Vec<String> = record.fields().map(|f| snake(f.name).into()).collect();
                let mut unknown = Vec::new();
                for key in dict.keys() {
                    let name = key.str()?.to_string();
                    if !known.contains(&name) {
                        unknown.push(name);
                    }
                }
                return Err(PyTypeError::new_err(format!(
                    "unknown field(s): {}",
                    unknown.join(", ")
                )));
            }
            Val::Record(fields)
        }
        Type::Tuple(tuple) => {
            let items = sequence(obj, "a tuple")?;
            let types: Vec<Type> = tuple.types().collect();
            if items.len() != types.len() {
                return Err(PyTypeError::new_err(format!(
                    "expected a tuple of {} values, got {}",
                    types.len(),
                    items.len()
                )));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, (item, t)) in items.iter().zip(&types).enumerate() {
                out.push(
                    to_val(item, t, owner_id, consumed)
                        .map_err(|e| with_context(py, e, &format!("[{i}]")))?,
                );
            }
            Val::Tuple(out)
        }
        Type::Variant(variant) => {
            let (tag, payload) = tagged(obj, "a variant")?;
            let name = kebab(&tag);
            let Some(case) = variant.cases().find(|c| c.name == name) else {
                let names: Vec<String> = variant.cases().map(|c| snake(c.name).into()).collect();
                return Err(PyValueError::new_err(format!(
                    "no case {tag:?} (cases: {})",
                    names.join(", ")
                )));
            };
            let payload = match (&case.ty, payload) {
                (None, None) => None,
                (None, Some(p)) if p.is_none() => None,
                (None, Some(_)) => {
                    return Err(PyTypeError::new_err(format!("case {tag} takes no payload")))
                }
                (Some(t), Some(p)) => Some(Box::new(
                    to_val(&p, t, owner_id, consumed)
                        .map_err(|e| with_context(py, e, &format!("case {tag}")))?,
                )),
                (Some(_), None) => {
                    return Err(PyTypeError::new_err(format!("case {tag} needs a payload")))
                }
            };
            Val::Variant(case.name.to_string(), payload)
        }
        Type::Enum(e) => {
            let given = obj.cast::<PyString>().map_err(|_| {
                PyTypeError::new_err(format!("expected str for an enum, got {}", type_name(obj)))
            })?;
            let given = given.to_str()?;
            let name = kebab(given);
            match e.names().find(|n| *n == name) {
                Some(n) => Val::Enum(n.to_string()),
                None => {
                    let names: Vec<String> = e.names().map(|n| snake(n).into()).collect();
                    return Err(PyValueError::new_err(format!(
                        "{given:?} is not one of {}",
                        names.join(", ")
                    )));
                }
            }
        }
        Type::Option(o) => {
            if obj.is_none() {
                Val::Option(None)
            } else {
                Val::Option(Some(Box::new(to_val(obj, &o.ty(), owner_id, consumed)?)))
            }
        }
        Type::Result(r) => {
            let (tag, payload) = tagged(obj, "a result")?;
            let t = match tag.as_str() {
                "ok" => r.ok(),
                "err" => r.err(),
                _ => {
                    return Err(PyValueError::new_err(
                        "a result is (\"ok\", v) or (\"err\", v)",
                    ))
                }
            };
            let payload = match (t, payload) {
                (Some(t), Some(p)) => Some(Box::new(to_val(&p, &t, owner_id, consumed)?)),
                (None, None) => None,
                (None, Some(p)) if p.is_none() => None,
                _ => return Err(PyTypeError::new_err(format!("wrong payload for {tag}"))),
            };
            Val::Result(if tag == "ok" {
                Ok(payload)
            } else {
                Err(payload)
            })
        }
        Type::Flags(f) => {
            let mut out = Vec::new();
            for item in obj.try_iter()? {
                let item = item?;
                let given = item.cast::<PyString>()?.to_str()?.to_owned();
                let name = kebab(&given);
                match f.names().find(|n| *n == name) {
                    Some(n) => out.push(n.to_string()),
                    None => return Err(PyValueError::new_err(format!("no flag {given:?}"))),
                }
            }
            Val::Flags(out)
        }
        Type::Own(_) | Type::Borrow(_) => {
            let res = obj.cast::<Resource>().map_err(|_| {
                PyTypeError::new_err(format!("expected a Resource, got {}", type_name(obj)))
            })?;
            let any = res.get().usable(owner_id)?;
            if matches!(ty, Type::Own(_)) {
                consumed.push(res.clone().unbind());
            }
            Val::Resource(any)
        }
        other => {
            return Err(PyTypeError::new_err(format!(
                "values of type {other:?} are not supported"
            )))
        }
    })
}

/// `(tag, payload)` or a bare `tag`.
fn tagged<'py>(
    obj: &Bound<'py, PyAny>,
    what: &str,
) -> PyResult<(String, Option<Bound<'py, PyAny>>)> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok((s.to_str()?.to_owned(), None));
    }
    let items = sequence(obj, what)?;
    match items.as_slice() {
        [tag] => Ok((tag.cast::<PyString>()?.to_str()?.to_owned(), None)),
        [tag, payload] => Ok((
            tag.cast::<PyString>()?.to_str()?.to_owned(),
            Some(payload.clone()),
        )),
        _ => Err(PyTypeError::new_err(format!(
            "expected (case, payload) for {what}"
        ))),
    }
}

/// A function's result: `result<T, E>` at the top raises `ResultError` for `err`.
pub(crate) fn result_to_py(
    py: Python<'_>,
    val: Val,
    ty: &Type,
    owner: &Py<Instance>,
    owner_id: u64,
) -> PyResult<Py<PyAny>> {
    if let (Type::Result(r), Val::Result(res)) = (ty, &val) {
        return match res {
            Ok(payload) => match (payload, r.ok()) {
                (Some(p), Some(t)) => to_py(py, p, &t, owner, owner_id),
                _ => Ok(py.None()),
            },
            Err(payload) => {
                let value = match (payload, r.err()) {
                    (Some(p), Some(t)) => to_py(py, p, &t, owner, owner_id)?,
                    _ => py.None(),
                };
                let err = ResultError::new_err((value.clone_ref(py),));
                err.value(py).setattr("value", value)?;
                Err(err)
            }
        };
    }
    to_py(py, &val, ty, owner, owner_id)
}

/// A value of type `ty` as a Python object.
pub(crate) fn to_py(
    py: Python<'_>,
    val: &Val,
    ty: &Type,
    owner: &Py<Instance>,
    owner_id: u64,
) -> PyResult<Py<PyAny>> {
    let mismatch = || PyTypeError::new_err(format!("value {val:?} does not match its type"));
    Ok(match val {
        Val::Bool(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
        Val::S8(v) => v.into_pyobject(py)?.into_any().unbind(),
        Val::U8(v) => v.into_pyobject(py)?.into_any().unbind(),
        Val::S16(v) => v.into_pyobject(py)?.into_any().unbind(),
        Val::U16(v) => v.into_pyobject(py)?.into_any().unbind(),
        Val::S32(v) => v.into_pyobject(py)?.into_any().unbind(),
        Val::U32(v) => v.into_pyobject(py)?.into_any().unbind(),
        Val::S64(v) => v.into_pyobject(py)?.into_any().unbind(),
        Val::U64(v) => v.into_pyobject(py)?.into_any().unbind(),
        Val::Float32(v) => (*v as f64).into_pyobject(py)?.into_any().unbind(),
        Val::Float64(v) => v.into_pyobject(py)?.into_any().unbind(),
        Val::Char(c) => c.into_pyobject(py)?.into_any().unbind(),
        Val::String(s) => PyString::new(py, s).into_any().unbind(),
        Val::List(items) => {
            let Type::List(list) = ty else {
                return Err(mismatch());
            };
            let elem = list.ty();
            if matches!(elem, Type::U8) {
                let bytes: Vec<u8> = items
                    .iter()
                    .map(|v| match v {
                        Val::U8(b) => Ok(*b),
                        _ => Err(mismatch()),
                    })
                    .collect::<PyResult<_>>()?;
                PyBytes::new(py, &bytes).into_any().unbind()
            } else {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(to_py(py, item, &elem, owner, owner_id)?);
                }
                PyList::new(py, out)?.into_any().unbind()
            }
        }
        Val::Record(fields) => {
            let Type::Record(record) = ty else {
                return Err(mismatch());
            };
            let dict = PyDict::new(py);
            for ((name, v), field) in fields.iter().zip(record.fields()) {
                dict.set_item(
                    snake(name).as_ref(),
                    to_py(py, v, &field.ty, owner, owner_id)?,
                )?;
            }
            dict.into_any().unbind()
        }
        Val::Tuple(items) => {
            let Type::Tuple(tuple) = ty else {
                return Err(mismatch());
            };
            let mut out = Vec::with_capacity(items.len());
            for (item, t) in items.iter().zip(tuple.types()) {
                out.push(to_py(py, item, &t, owner, owner_id)?);
            }
            PyTuple::new(py, out)?.into_any().unbind()
        }
        Val::Variant(name, payload) => {
            let Type::Variant(variant) = ty else {
                return Err(mismatch());
            };
            let case_ty = variant.cases().find(|c| c.name == name).and_then(|c| c.ty);
            let payload = match (payload, case_ty) {
                (Some(p), Some(t)) => to_py(py, p, &t, owner, owner_id)?,
                _ => py.None(),
            };
            PyTuple::new(
                py,
                [PyString::new(py, &snake(name)).into_any().unbind(), payload],
            )?
            .into_any()
            .unbind()
        }
        Val::Enum(name) => PyString::new(py, &snake(name)).into_any().unbind(),
        Val::Option(v) => match (v, ty) {
            (None, _) => py.None(),
            (Some(v), Type::Option(o)) => to_py(py, v, &o.ty(), owner, owner_id)?,
            _ => return Err(mismatch()),
        },
        Val::Result(res) => {
            let Type::Result(r) = ty else {
                return Err(mismatch());
            };
            let (tag, payload, t) = match res {
                Ok(p) => ("ok", p, r.ok()),
                Err(p) => ("err", p, r.err()),
            };
            let payload = match (payload, t) {
                (Some(p), Some(t)) => to_py(py, p, &t, owner, owner_id)?,
                _ => py.None(),
            };
            PyTuple::new(py, [PyString::new(py, tag).into_any().unbind(), payload])?
                .into_any()
                .unbind()
        }
        Val::Flags(names) => {
            let out: Vec<String> = names.iter().map(|n| snake(n).into_owned()).collect();
            PyList::new(py, out)?.into_any().unbind()
        }
        Val::Resource(any) => new_resource(py, owner, owner_id, *any)?,
        other => {
            return Err(PyTypeError::new_err(format!(
                "values like {other:?} are not supported"
            )))
        }
    })
}
