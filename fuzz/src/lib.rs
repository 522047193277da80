//! Shared input builders of the fuzz targets: JSON documents grown from the
//! fuzzer's bytes with a bias towards the keys and values the conversions read.
//!
//! Documents are written as text by hand (not through `serde_json::Value`) so they
//! can hold duplicate keys and number spellings that a `Value` would normalise
//! (`2.0`, `-0`, `1e400`, integers past `u64`).

use arbitrary::{Result, Unstructured};

/// A JSON document as written: objects keep duplicate keys and their order.
#[derive(Debug, Clone)]
pub enum Doc {
    /// A literal or number, written as is.
    Raw(String),
    Str(String),
    Arr(Vec<Doc>),
    Obj(Vec<(String, Doc)>),
}

impl Doc {
    pub fn obj(members: Vec<(&str, Doc)>) -> Doc {
        Doc::Obj(
            members
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    pub fn str(s: impl Into<String>) -> Doc {
        Doc::Str(s.into())
    }

    pub fn raw(s: impl Into<String>) -> Doc {
        Doc::Raw(s.into())
    }

    /// Compact JSON text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Doc::Raw(s) => out.push_str(s),
            Doc::Str(s) => out.push_str(&serde_json::to_string(s).unwrap()),
            Doc::Arr(items) => {
                out.push('[');
                for (i, d) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    d.write(out);
                }
                out.push(']');
            }
            Doc::Obj(members) => {
                out.push('{');
                for (i, (k, d)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(k).unwrap());
                    out.push(':');
                    d.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// Numbers and literals whose Python meaning differs from their spelling.
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "9",
    "10",
    "11",
    "12",
    "2.0",
    "3.0e0",
    "5E0",
    "-0",
    "-0.0",
    "0.5",
    "-1",
    "1e400",
    "-1e400",
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "123456789012345678901234567890",
    "true",
    "false",
    "null",
];

/// Strings the conversions treat specially (prompt tokens, blanks, slashes).
const STRINGS: &[&str] = &[
    "",
    "x",
    "new",
    "discord",
    "hp1:n0.1:ok",
    "hp1:n0.2:no",
    "hp1:zz.1:ok",
    "hp1:legacy:x",
    "hp1:a:b:c",
    "hp1::x",
    "hp1:n0.1:ok\n",
    "hp1:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:b",
    "  x ",
    " ",
    "\u{3000}",
    "\u{85}",
    "/",
    "//",
    "ü",
    "a\nb",
    "\u{0}",
    "\u{1f50c}",
    "\"",
    "\\",
];

/// Keys of interactions, events, forwards and frames.
const KEYS: &[&str] = &[
    "type",
    "id",
    "name",
    "value",
    "values",
    "options",
    "custom_id",
    "components",
    "component",
    "user",
    "member",
    "nick",
    "global_name",
    "username",
    "parent_id",
    "guild_id",
    "channel_id",
    "channel",
    "data",
    "message",
    "text",
    "source",
    "chat_id",
    "platform",
    "prompt_response",
    "prompt_id",
    "option_id",
    "metadata",
    "$serde_json::private::Number",
];

/// A string: mostly from the list, sometimes arbitrary.
pub fn string(u: &mut Unstructured<'_>) -> Result<String> {
    if u.ratio(3u8, 4)? {
        Ok(u.choose(STRINGS)?.to_string())
    } else {
        let s: String = u.arbitrary()?;
        Ok(s.chars().take(40).collect())
    }
}

/// A number or literal, as text.
pub fn number(u: &mut Unstructured<'_>) -> Result<Doc> {
    Ok(match u.int_in_range(0u8..=3)? {
        0 => Doc::raw(u.arbitrary::<i64>()?.to_string()),
        1 => {
            let f: f64 = u.arbitrary()?;
            if f.is_finite() {
                Doc::raw(format!("{f:?}"))
            } else {
                Doc::raw("1.5")
            }
        }
        _ => Doc::raw(*u.choose(NUMBERS)?),
    })
}

/// A scalar: string, number or literal.
pub fn scalar(u: &mut Unstructured<'_>) -> Result<Doc> {
    if u.arbitrary()? {
        Ok(Doc::Str(string(u)?))
    } else {
        number(u)
    }
}

/// An id-like value: mostly a string of digits, sometimes any scalar.
pub fn id(u: &mut Unstructured<'_>) -> Result<Doc> {
    if u.ratio(3u8, 4)? {
        Ok(Doc::Str(format!("{}", u.int_in_range(0u32..=999)?)))
    } else {
        scalar(u)
    }
}

/// Any JSON value, nested at most `depth` more levels.
pub fn any(u: &mut Unstructured<'_>, depth: u32) -> Result<Doc> {
    let kind = if depth == 0 {
        0
    } else {
        u.int_in_range(0u8..=5)?
    };
    Ok(match kind {
        0..=3 => scalar(u)?,
        4 => {
            let n = u.int_in_range(0..=3)?;
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(any(u, depth - 1)?);
            }
            Doc::Arr(items)
        }
        _ => {
            let n = u.int_in_range(0..=4)?;
            let mut members = Vec::new();
            for _ in 0..n {
                members.push((u.choose(KEYS)?.to_string(), any(u, depth - 1)?));
            }
            Doc::Obj(members)
        }
    })
}

/// `value` with probability 3/4, else any other value (wrong shapes).
pub fn mostly(u: &mut Unstructured<'_>, value: Doc) -> Result<Doc> {
    if u.ratio(3u8, 4)? {
        Ok(value)
    } else {
        any(u, 2)
    }
}

/// An object from `(key, value)` candidates: each kept with probability 3/4, a few
/// random extra members, sometimes a duplicate key, and sometimes shuffled.
pub fn object(u: &mut Unstructured<'_>, members: Vec<(&str, Doc)>) -> Result<Doc> {
    let mut out = Vec::new();
    for (k, v) in members {
        if u.ratio(3u8, 4)? {
            out.push((k.to_string(), v));
        }
    }
    for _ in 0..u.int_in_range(0..=1)? {
        out.push((u.choose(KEYS)?.to_string(), any(u, 2)?));
    }
    if !out.is_empty() && u.ratio(1u8, 8)? {
        let i = u.choose_index(out.len())?;
        let dup = (out[i].0.clone(), any(u, 1)?);
        out.push(dup);
    }
    if out.len() > 1 && u.ratio(1u8, 4)? {
        let i = u.choose_index(out.len())?;
        let j = u.choose_index(out.len())?;
        out.swap(i, j);
    }
    Ok(Doc::Obj(out))
}

/// The interaction type: mostly 2, 3 or 5, in any spelling.
fn interaction_type(u: &mut Unstructured<'_>) -> Result<Doc> {
    Ok(match u.int_in_range(0u8..=7)? {
        0 | 1 => Doc::raw("2"),
        2 | 3 => Doc::raw("3"),
        4 => Doc::raw("5"),
        5 => Doc::raw(*u.choose(&["2.0", "3.0", "5e0", "1", "4", "9", "true"])?),
        6 => Doc::str(*u.choose(&["2", "3", "5"])?),
        _ => any(u, 1)?,
    })
}

/// Slash-command options, nested (sub-commands and groups are types 1 and 2).
fn options(u: &mut Unstructured<'_>, depth: u32) -> Result<Doc> {
    let n = u.int_in_range(0..=3)?;
    let mut items = Vec::new();
    for _ in 0..n {
        let kind = if depth > 0 && u.ratio(1u8, 3)? {
            Doc::raw(*u.choose(&["1", "2", "2.0"])?)
        } else {
            number(u)?
        };
        let sub = if depth > 0 {
            options(u, depth - 1)?
        } else {
            Doc::Arr(Vec::new())
        };
        let value = scalar(u)?;
        let value = mostly(u, value)?;
        let members = vec![
            ("type", kind),
            ("name", Doc::Str(string(u)?)),
            ("value", value),
            ("options", sub),
        ];
        items.push(object(u, members)?);
    }
    mostly(u, Doc::Arr(items))
}

/// Modal components: action rows, labels with one `component`, text inputs.
fn components(u: &mut Unstructured<'_>, depth: u32) -> Result<Doc> {
    let n = u.int_in_range(0..=3)?;
    let mut items = Vec::new();
    for _ in 0..n {
        let custom_id = Doc::Str(string(u)?);
        let mut members = vec![
            ("type", number(u)?),
            ("custom_id", mostly(u, custom_id)?),
            ("value", scalar(u)?),
        ];
        if depth > 0 {
            members.push(("components", components(u, depth - 1)?));
            if u.arbitrary()? {
                let child = vec![
                    ("custom_id", Doc::Str(string(u)?)),
                    ("value", scalar(u)?),
                    ("component", Doc::Obj(Vec::new())),
                ];
                let child = object(u, child)?;
                members.push(("component", child));
            }
        }
        items.push(object(u, members)?);
    }
    mostly(u, Doc::Arr(items))
}

fn user(u: &mut Unstructured<'_>) -> Result<Doc> {
    let global_name = Doc::Str(string(u)?);
    let members = vec![
        ("id", id(u)?),
        ("username", Doc::Str(string(u)?)),
        ("global_name", mostly(u, global_name)?),
    ];
    object(u, members)
}

/// A Discord interaction body built from the fuzzer's choices.
pub fn interaction(u: &mut Unstructured<'_>, chat: Option<String>) -> Result<Doc> {
    let name = Doc::Str(string(u)?);
    let custom_id = Doc::Str(string(u)?);
    let data = vec![
        ("name", mostly(u, name)?),
        ("options", options(u, 3)?),
        ("custom_id", mostly(u, custom_id)?),
        ("components", components(u, 3)?),
    ];
    let data = object(u, data)?;
    let channel = vec![
        (
            "type",
            Doc::raw(*u.choose(&["0", "1", "10", "11", "12", "11.0"])?),
        ),
        ("id", id(u)?),
        ("parent_id", id(u)?),
    ];
    let channel = object(u, channel)?;
    let nick = Doc::Str(string(u)?);
    let member = vec![("user", user(u)?), ("nick", mostly(u, nick)?)];
    let member = object(u, member)?;
    let top_user = user(u)?;
    let channel_id = match chat {
        Some(c) => Doc::Str(c),
        None => id(u)?,
    };
    let message = vec![("id", id(u)?)];
    let message = object(u, message)?;
    let members = vec![
        ("type", interaction_type(u)?),
        ("id", id(u)?),
        ("data", mostly(u, data)?),
        ("message", mostly(u, message)?),
        ("guild_id", id(u)?),
        ("channel_id", channel_id),
        ("channel", mostly(u, channel)?),
        ("member", mostly(u, member)?),
        ("user", mostly(u, top_user)?),
    ];
    object(u, members)
}

/// An inbound `event` object (PROTOCOL §9) built from the fuzzer's choices.
pub fn inbound_event(
    u: &mut Unstructured<'_>,
    chat: String,
    prompt_id: Option<String>,
) -> Result<Doc> {
    let thread_id = Doc::raw("null");
    let source = vec![
        (
            "platform",
            Doc::str(*u.choose(&["discord", "telegram", "slack", ""])?),
        ),
        ("chat_id", Doc::Str(chat)),
        (
            "chat_type",
            Doc::str(*u.choose(&["dm", "group", "thread"])?),
        ),
        ("user_id", id(u)?),
        ("thread_id", mostly(u, thread_id)?),
    ];
    let source = object(u, source)?;
    let text = Doc::Str(string(u)?);
    let mut members = vec![
        ("text", mostly(u, text)?),
        ("message_type", Doc::str(*u.choose(&["text", "command"])?)),
        ("source", source),
        ("metadata", any(u, 2)?),
        ("media_urls", any(u, 1)?),
    ];
    if let Some(p) = prompt_id {
        let pr = vec![
            ("prompt_id", Doc::Str(p)),
            ("option_id", Doc::Str(string(u)?)),
        ];
        members.push(("prompt_response", object(u, pr)?));
    }
    object(u, members)
}
