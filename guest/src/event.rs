//! Inbound `event` object → canonical MessageEvent (PROTOCOL.md §9, D3, D8).
//!
//! The struct serialises to exactly the canonical JSON shape of the vectors
//! (inbound_event.json), which is also the `message` field of APP-PROTOCOL events.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::DecodeError;
use crate::json::{opt_str, truthy};

/// Where a message came from: the session identity the agent keys its turn on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionSource {
    pub platform: String,
    pub chat_id: String,
    pub chat_type: String,
    pub chat_name: Option<String>,
    pub user_id: Option<String>,
    pub user_name: Option<String>,
    pub thread_id: Option<String>,
    pub chat_topic: Option<String>,
    pub user_id_alt: Option<String>,
    pub chat_id_alt: Option<String>,
    pub scope_id: Option<String>,
    pub parent_chat_id: Option<String>,
    pub message_id: Option<String>,
    pub profile: Option<String>,
    pub auto_thread_created: bool,
    pub auto_thread_initial_name: Option<String>,
    pub prospective_thread_id: Option<String>,
}

/// The canonical message event handed to the application.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageEvent {
    pub text: String,
    pub message_type: String,
    pub message_id: Option<String>,
    pub reply_to_message_id: Option<String>,
    pub reply_to_text: Option<String>,
    pub reply_to_author_name: Option<String>,
    pub reply_to_is_own_message: bool,
    pub media_urls: Vec<String>,
    pub media_types: Vec<String>,
    pub channel_context: Option<String>,
    /// Shallow copy of the wire object (may carry keys beyond prompt_id/option_id).
    pub prompt_response: Option<Map<String, Value>>,
    pub metadata: Map<String, Value>,
    /// The whole provider payload where the conversion keeps it (Discord modals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_message: Option<Value>,
    pub source: SessionSource,
}

impl MessageEvent {
    /// The canonical JSON value.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// `(prompt_id, option_id)` when this event is a prompt press: a
    /// `prompt_response` with non-empty string `prompt_id` and `option_id`.
    pub fn prompt_press(&self) -> Option<(String, String)> {
        let pr = self.prompt_response.as_ref()?;
        let pid = pr
            .get("prompt_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())?;
        let oid = pr
            .get("option_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())?;
        Some((pid.to_string(), oid.to_string()))
    }
}

/// The message types of PROTOCOL §10.2; matched exactly and case-sensitively.
pub const MESSAGE_TYPES: [&str; 9] = [
    "text", "location", "photo", "video", "audio", "voice", "document", "sticker", "command",
];

/// Rebuilds an inbound `event` object. Non-object input, or a truthy non-object
/// `source`/`reply_to`, is a typed error (D2) rather than a dead reader.
///
/// Every string field follows D3: numbers and booleans render as Python `str()`,
/// `null` and structures count as absent. The text is delivered untouched (D8).
pub fn event_from_wire(v: &Value) -> Result<MessageEvent, DecodeError> {
    let o = v
        .as_object()
        .ok_or_else(|| DecodeError::not_object("event"))?;
    let source = sub_object(o, "source")?;
    let reply_to = sub_object(o, "reply_to")?;
    let reply = |k: &str| reply_to.and_then(|r| r.get(k));

    let message_type = o
        .get("message_type")
        .and_then(Value::as_str)
        .and_then(|t| MESSAGE_TYPES.iter().find(|m| **m == t))
        .copied()
        .unwrap_or("text");

    let (media_urls, media_types) = media(o.get("media_urls"), o.get("media"));

    Ok(MessageEvent {
        text: opt_str(o.get("text")).unwrap_or_default(),
        message_type: message_type.to_string(),
        message_id: opt_str(o.get("message_id")),
        reply_to_message_id: opt_str(o.get("reply_to_message_id")),
        reply_to_text: opt_str(reply("text")),
        reply_to_author_name: opt_str(reply("author")),
        reply_to_is_own_message: reply("is_own").is_some_and(truthy),
        media_urls,
        media_types,
        channel_context: channel_context(o.get("context")),
        prompt_response: o.get("prompt_response").and_then(Value::as_object).cloned(),
        metadata: Map::new(),
        raw_message: None,
        source: session_source(source),
    })
}

/// A nested object: falsy (absent, null, `""`, `0`, `[]`, ...) reads as `{}`; a
/// truthy non-object cannot be read and rejects the event (D2).
fn sub_object<'a>(
    o: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>, DecodeError> {
    match o.get(key) {
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(other) if truthy(other) => Err(DecodeError::invalid(key, "not an object")),
        _ => Ok(None),
    }
}

/// The first candidate that is truthy and renders as a string (a structure is
/// skipped as absent, D3).
fn first_truthy_str<'a>(candidates: impl IntoIterator<Item = Option<&'a Value>>) -> Option<String> {
    candidates
        .into_iter()
        .flatten()
        .filter(|v| truthy(v))
        .find_map(|v| opt_str(Some(v)))
}

/// `media_urls` and the parallel `media_types`. Only an array of URLs counts (a
/// lone string is not a list, D3). Scalar entries render as strings, `null` and
/// structures are dropped. Each type is the `mime` of the last `media[]` object whose
/// `url` is a non-empty string equal to the URL — matched by URL, never by position —
/// and `""` for entries that were not strings on the wire or have no match.
fn media(urls: Option<&Value>, media: Option<&Value>) -> (Vec<String>, Vec<String>) {
    let Some(Value::Array(urls)) = urls else {
        return (Vec::new(), Vec::new());
    };
    let described: Vec<&Map<String, Value>> = match media {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_object).collect(),
        _ => Vec::new(),
    };
    let mime_of = |url: &str| -> String {
        described
            .iter()
            .rev()
            .find(|m| {
                m.get("url")
                    .and_then(Value::as_str)
                    .is_some_and(|u| !u.is_empty() && u == url)
            })
            .and_then(|m| opt_str(m.get("mime")))
            .unwrap_or_default()
    };
    let mut out_urls = Vec::with_capacity(urls.len());
    let mut out_types = Vec::with_capacity(urls.len());
    for entry in urls {
        match entry {
            Value::String(url) => {
                out_types.push(mime_of(url));
                out_urls.push(url.clone());
            }
            other => {
                if let Some(url) = opt_str(Some(other)) {
                    out_urls.push(url);
                    out_types.push(String::new());
                }
            }
        }
    }
    (out_urls, out_types)
}

/// Renders the surrounding-messages `context` list: one `author: text` (or bare
/// text) line per object with a truthy `text`, under a fixed header; `None` when no
/// element is usable. The author is the element's `source.user_name`, else
/// `source.user_id`, when that `source` is an object.
fn channel_context(context: Option<&Value>) -> Option<String> {
    let Some(Value::Array(items)) = context else {
        return None;
    };
    let mut lines = vec!["[Recent channel messages]".to_string()];
    for item in items {
        let Value::Object(m) = item else { continue };
        let Some(text) = first_truthy_str([m.get("text")]) else {
            continue;
        };
        let author = m
            .get("source")
            .and_then(Value::as_object)
            .and_then(|s| first_truthy_str([s.get("user_name"), s.get("user_id")]));
        lines.push(match author {
            Some(a) => format!("{a}: {text}"),
            None => text,
        });
    }
    (lines.len() > 1).then(|| lines.join("\n"))
}

/// The `source` object → SessionSource (PROTOCOL §9 with D3 and D7). Wire keys
/// `guild_id`, `is_bot` and `delivered_via_upstream_relay` are not read: the wire
/// cannot forge upstream trust.
fn session_source(src: Option<&Map<String, Value>>) -> SessionSource {
    let get = |k: &str| src.and_then(|s| s.get(k));
    let s = |k: &str| opt_str(get(k));
    SessionSource {
        platform: s("platform")
            .map_or("relay", |p: String| crate::platform::lookup(&p))
            .to_string(),
        chat_id: s("chat_id").unwrap_or_default(),
        chat_type: s("chat_type").unwrap_or_else(|| "dm".to_string()),
        chat_name: s("chat_name"),
        user_id: s("user_id"),
        user_name: first_truthy_str([
            get("user_display_name"),
            get("user_name"),
            get("user_handle"),
        ]),
        thread_id: s("thread_id"),
        chat_topic: s("chat_topic"),
        user_id_alt: s("user_id_alt"),
        chat_id_alt: s("chat_id_alt"),
        scope_id: s("scope_id"),
        parent_chat_id: s("parent_chat_id"),
        message_id: s("message_id"),
        profile: s("profile"),
        auto_thread_created: get("auto_thread_created").is_some_and(truthy),
        auto_thread_initial_name: s("auto_thread_initial_name"),
        prospective_thread_id: s("prospective_thread_id"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::conformance::{compare, load_cases, short, vectors_dir, Bindings};
    use serde_json::json;

    /// Runs every case of a vector file through `run` and fails listing each case
    /// that does not pass. An expected `{"error": kind}` is met by any `Err`.
    pub(crate) fn run_vector_file(
        file: &str,
        run: impl Fn(&Value) -> Result<Value, DecodeError>,
    ) -> usize {
        let cases = load_cases(&vectors_dir().join(file)).unwrap();
        assert!(!cases.is_empty(), "{file}: no cases");
        let mut failures = Vec::new();
        for case in &cases {
            let name = case["name"].as_str().unwrap_or("?");
            let expected = &case["expected"];
            let wants_error = expected
                .as_object()
                .is_some_and(|e| e.len() == 1 && e.contains_key("error"));
            let result = match (wants_error, run(&case["input"])) {
                (true, Err(_)) => Ok(()),
                (true, Ok(actual)) => Err(format!(
                    "expected error {}, got {}",
                    expected["error"],
                    short(&actual)
                )),
                (false, Ok(actual)) => compare(expected, &actual, &mut Bindings::default()),
                (false, Err(e)) => Err(format!("unexpected error {e}")),
            };
            if let Err(diff) = result {
                failures.push(format!("{name}: {diff}"));
            }
        }
        for f in &failures {
            println!("FAIL {file} {f}");
        }
        let passed = cases.len() - failures.len();
        println!("{file}: {passed}/{} passed", cases.len());
        assert!(
            failures.is_empty(),
            "{file}: {} failing cases",
            failures.len()
        );
        passed
    }

    #[test]
    fn conformance_vectors() {
        run_vector_file("inbound_event.json", |input| {
            event_from_wire(input).map(|e| e.to_json())
        });
    }

    #[test]
    fn typed_errors() {
        use crate::error::ErrorKind;
        let kind = |v: Value| event_from_wire(&v).unwrap_err().kind;
        assert_eq!(kind(json!(null)), ErrorKind::NotObject);
        assert_eq!(kind(json!("x")), ErrorKind::NotObject);
        assert_eq!(kind(json!({"source": [1]})), ErrorKind::InvalidField);
        assert_eq!(kind(json!({"reply_to": "x"})), ErrorKind::InvalidField);
        assert_eq!(kind(json!({"reply_to": 1})), ErrorKind::InvalidField);
        // Falsy non-objects read as `{}`.
        for falsy in [json!(""), json!(0), json!([]), json!(false), json!(null)] {
            let ev = event_from_wire(&json!({"source": falsy, "reply_to": falsy})).unwrap();
            assert_eq!(ev.source.platform, "relay");
            assert!(!ev.reply_to_is_own_message);
        }
    }

    #[test]
    fn scalars_render_like_python_str() {
        let v: Value = serde_json::from_str(
            r#"{"text": 1.50, "message_id": 123456789012345678901234567890,
                "message_type": null, "reply_to": {"text": false, "author": [1], "is_own": 0},
                "source": {"platform": 5, "chat_id": null, "chat_type": null, "user_id": 1E16,
                           "user_display_name": ["x"], "user_name": 0, "user_handle": true,
                           "auto_thread_created": "false"}}"#,
        )
        .unwrap();
        let ev = event_from_wire(&v).unwrap();
        assert_eq!(ev.text, "1.5");
        assert_eq!(ev.message_type, "text");
        assert_eq!(
            ev.message_id.as_deref(),
            Some("123456789012345678901234567890")
        );
        assert_eq!(ev.reply_to_text.as_deref(), Some("False"));
        assert_eq!(ev.reply_to_author_name, None);
        assert!(!ev.reply_to_is_own_message);
        assert_eq!(ev.source.platform, "relay");
        assert_eq!(ev.source.chat_id, "");
        assert_eq!(ev.source.chat_type, "dm");
        assert_eq!(ev.source.user_id.as_deref(), Some("1e+16"));
        assert_eq!(ev.source.user_name.as_deref(), Some("True"));
        assert!(ev.source.auto_thread_created);
    }

    #[test]
    fn media_types_stay_parallel() {
        let ev = event_from_wire(&json!({
            "media_urls": ["u", {"x": 1}, "", true, "u"],
            "media": [{"url": "u", "mime": "a/1"}, {"url": "u", "mime": 7}, {"url": "", "mime": "e"}]
        }))
        .unwrap();
        assert_eq!(ev.media_urls, vec!["u", "", "True", "u"]);
        assert_eq!(ev.media_types, vec!["7", "", "", "7"]);
    }

    #[test]
    fn context_lines() {
        let ev = event_from_wire(&json!({"context": [
            {"text": 3, "source": {"user_name": "", "user_id": 9}},
            {"text": ["structure"]},
            {"text": "t", "source": {"user_name": {"a": 1}}}
        ]}))
        .unwrap();
        assert_eq!(
            ev.channel_context.as_deref(),
            Some("[Recent channel messages]\n9: 3\nt")
        );
        assert_eq!(
            event_from_wire(&json!({"context": []}))
                .unwrap()
                .channel_context,
            None
        );
    }
}
