//! Inbound `event` object → canonical MessageEvent (PROTOCOL.md §9, D3, D8).
//!
//! The struct serialises to exactly the canonical JSON shape of the vectors
//! (inbound_event.json), which is also the `message` field of APP-PROTOCOL events.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::DecodeError;
use crate::json;
use crate::wire::{opt_str, truthy, wire_object, Field, Obj};

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

    /// Appends the canonical JSON text: exactly `serde_json::to_string(self)` (a
    /// test holds it to that), written directly because escaping through serde_json
    /// cost more than decoding the frame. Keep it in step with the fields above.
    pub fn write_json(&self, out: &mut String) {
        let mut w = ObjectWriter::new(out);
        w.str("text", &self.text);
        w.str("message_type", &self.message_type);
        w.opt("message_id", &self.message_id);
        w.opt("reply_to_message_id", &self.reply_to_message_id);
        w.opt("reply_to_text", &self.reply_to_text);
        w.opt("reply_to_author_name", &self.reply_to_author_name);
        w.bool("reply_to_is_own_message", self.reply_to_is_own_message);
        w.list("media_urls", &self.media_urls);
        w.list("media_types", &self.media_types);
        w.opt("channel_context", &self.channel_context);
        w.key("prompt_response");
        match &self.prompt_response {
            Some(m) => w.serde(m),
            None => w.raw("null"),
        }
        w.key("metadata");
        w.serde(&self.metadata);
        if let Some(raw) = &self.raw_message {
            w.key("raw_message");
            w.serde(raw);
        }
        w.key("source");
        let src = &self.source;
        let mut s = ObjectWriter::new(w.out);
        s.str("platform", &src.platform);
        s.str("chat_id", &src.chat_id);
        s.str("chat_type", &src.chat_type);
        s.opt("chat_name", &src.chat_name);
        s.opt("user_id", &src.user_id);
        s.opt("user_name", &src.user_name);
        s.opt("thread_id", &src.thread_id);
        s.opt("chat_topic", &src.chat_topic);
        s.opt("user_id_alt", &src.user_id_alt);
        s.opt("chat_id_alt", &src.chat_id_alt);
        s.opt("scope_id", &src.scope_id);
        s.opt("parent_chat_id", &src.parent_chat_id);
        s.opt("message_id", &src.message_id);
        s.opt("profile", &src.profile);
        s.bool("auto_thread_created", src.auto_thread_created);
        s.opt("auto_thread_initial_name", &src.auto_thread_initial_name);
        s.opt("prospective_thread_id", &src.prospective_thread_id);
        s.end();
        w.end();
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

/// Writes one compact JSON object, member by member (serde_json's layout).
pub(crate) struct ObjectWriter<'o> {
    pub(crate) out: &'o mut String,
    first: bool,
}

impl<'o> ObjectWriter<'o> {
    pub(crate) fn new(out: &'o mut String) -> Self {
        out.push('{');
        ObjectWriter { out, first: true }
    }

    /// `"key":` (the value must follow). Keys are our own field names, plain ASCII
    /// that needs no escaping.
    pub(crate) fn key(&mut self, key: &'static str) {
        debug_assert!(!key.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\'));
        if !std::mem::take(&mut self.first) {
            self.out.push(',');
        }
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
    }

    pub(crate) fn raw(&mut self, json_text: &str) {
        self.out.push_str(json_text);
    }

    pub(crate) fn str(&mut self, key: &'static str, value: &str) {
        self.key(key);
        json::write_str(self.out, value);
    }

    pub(crate) fn opt(&mut self, key: &'static str, value: &Option<String>) {
        self.key(key);
        match value {
            Some(v) => json::write_str(self.out, v),
            None => self.out.push_str("null"),
        }
    }

    pub(crate) fn bool(&mut self, key: &'static str, value: bool) {
        self.key(key);
        self.out.push_str(if value { "true" } else { "false" });
    }

    pub(crate) fn list(&mut self, key: &'static str, items: &[String]) {
        self.key(key);
        self.out.push('[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            json::write_str(self.out, item);
        }
        self.out.push(']');
    }

    /// A value through serde_json (maps and values: rare, small).
    pub(crate) fn serde<T: Serialize + ?Sized>(&mut self, value: &T) {
        match serde_json::to_string(value) {
            Ok(text) => self.out.push_str(&text),
            Err(_) => self.out.push_str("null"),
        }
    }

    pub(crate) fn end(self) {
        self.out.push('}');
    }
}

/// The message types of PROTOCOL §10.2; matched exactly and case-sensitively.
pub const MESSAGE_TYPES: [&str; 9] = [
    "text", "location", "photo", "video", "audio", "voice", "document", "sticker", "command",
];

wire_object! {
    /// The keys of an inbound `event` object the conversion reads.
    pub struct EventWire<'a> {
        "text" => text: Field<'a>,
        "message_type" => message_type: Field<'a>,
        "message_id" => message_id: Field<'a>,
        "reply_to_message_id" => reply_to_message_id: Field<'a>,
        "reply_to" => reply_to: Obj<ReplyWire<'a>>,
        "source" => source: Obj<SourceWire<'a>>,
        // Rare and irregular: read as values (boxed, to keep the struct small).
        "media_urls" => media_urls: Box<Value>,
        "media" => media: Box<Value>,
        "context" => context: Box<Value>,
        "prompt_response" => prompt_response: Box<Value>,
    }
}

wire_object! {
    /// The keys of `event.reply_to`.
    pub struct ReplyWire<'a> {
        "text" => text: Field<'a>,
        "author" => author: Field<'a>,
        "is_own" => is_own: Field<'a>,
    }
}

wire_object! {
    /// The keys of `event.source` (PROTOCOL §9).
    pub struct SourceWire<'a> {
        "platform" => platform: Field<'a>,
        "chat_id" => chat_id: Field<'a>,
        "chat_type" => chat_type: Field<'a>,
        "chat_name" => chat_name: Field<'a>,
        "user_id" => user_id: Field<'a>,
        "user_display_name" => user_display_name: Field<'a>,
        "user_name" => user_name: Field<'a>,
        "user_handle" => user_handle: Field<'a>,
        "thread_id" => thread_id: Field<'a>,
        "chat_topic" => chat_topic: Field<'a>,
        "user_id_alt" => user_id_alt: Field<'a>,
        "chat_id_alt" => chat_id_alt: Field<'a>,
        "scope_id" => scope_id: Field<'a>,
        "parent_chat_id" => parent_chat_id: Field<'a>,
        "message_id" => message_id: Field<'a>,
        "profile" => profile: Field<'a>,
        "auto_thread_created" => auto_thread_created: Field<'a>,
        "auto_thread_initial_name" => auto_thread_initial_name: Field<'a>,
        "prospective_thread_id" => prospective_thread_id: Field<'a>,
    }
}

/// Rebuilds an inbound `event` object. Non-object input, or a truthy non-object
/// `source`/`reply_to`, is a typed error (D2) rather than a dead reader.
///
/// Every string field follows D3: numbers and booleans render as Python `str()`,
/// `null` and structures count as absent. The text is delivered untouched (D8).
pub fn event_from_wire(v: &Value) -> Result<MessageEvent, DecodeError> {
    // One implementation of the rules: the typed reader, over the value's text.
    event_from_str(&v.to_string())
}

/// [`event_from_wire`] of an event's JSON text; a text that is not JSON is
/// `malformed_json`.
pub fn event_from_str(text: &str) -> Result<MessageEvent, DecodeError> {
    let mut wire: Obj<EventWire<'_>> = crate::wire::from_str(text)
        .map_err(|e| DecodeError::malformed(format!("event is not JSON ({e})")))?;
    match &mut wire {
        Obj::Object { fields, .. } => event_from_fields(fields),
        Obj::Other(_) => Err(DecodeError::not_object("event")),
    }
}

/// The conversion of an already-read `event` object. Its fields are taken, not
/// copied (the wire structs are large; moving them whole showed in profiles).
pub fn event_from_fields(o: &mut EventWire<'_>) -> Result<MessageEvent, DecodeError> {
    let source = sub_object(&mut o.source, "source")?;
    let reply = sub_object(&mut o.reply_to, "reply_to")?;

    let message_type = o
        .message_type
        .as_ref()
        .and_then(Field::as_str)
        .and_then(|t| MESSAGE_TYPES.iter().find(|m| **m == t))
        .copied()
        .unwrap_or("text");

    let (media_urls, media_types) = media(o.media_urls.as_deref(), o.media.as_deref());
    let (reply_to_text, reply_to_author_name, reply_to_is_own_message) = match reply {
        Some(r) => (
            opt_str(r.text.take()),
            opt_str(r.author.take()),
            truthy(&r.is_own),
        ),
        None => (None, None, false),
    };

    Ok(MessageEvent {
        text: opt_str(o.text.take()).unwrap_or_default(),
        message_type: message_type.to_string(),
        message_id: opt_str(o.message_id.take()),
        reply_to_message_id: opt_str(o.reply_to_message_id.take()),
        reply_to_text,
        reply_to_author_name,
        reply_to_is_own_message,
        media_urls,
        media_types,
        channel_context: channel_context(o.context.as_deref()),
        prompt_response: match o.prompt_response.take().map(|v| *v) {
            Some(Value::Object(m)) => Some(m),
            _ => None,
        },
        metadata: Map::new(),
        raw_message: None,
        source: match source {
            Some(src) => session_source(src),
            None => session_source(&mut SourceWire::default()),
        },
    })
}

/// A nested object: falsy (absent, null, `""`, `0`, `[]`, ...) reads as `{}`; a
/// truthy non-object cannot be read and rejects the event (D2).
fn sub_object<'v, T>(
    v: &'v mut Option<Obj<T>>,
    key: &str,
) -> Result<Option<&'v mut T>, DecodeError> {
    match v {
        Some(Obj::Object { fields, .. }) => Ok(Some(fields)),
        Some(other) if other.truthy() => Err(DecodeError::invalid(key, "not an object")),
        _ => Ok(None),
    }
}

/// The first candidate that is truthy and renders as a string (a structure is
/// skipped as absent, D3).
fn first_truthy_field<'a>(
    candidates: impl IntoIterator<Item = Option<Field<'a>>>,
) -> Option<String> {
    candidates
        .into_iter()
        .flatten()
        .filter(Field::truthy)
        .find_map(Field::into_opt_str)
}

/// The first candidate that is truthy and renders as a string (a structure is
/// skipped as absent, D3).
fn first_truthy_str<'a>(candidates: impl IntoIterator<Item = Option<&'a Value>>) -> Option<String> {
    candidates
        .into_iter()
        .flatten()
        .filter(|v| json::truthy(v))
        .find_map(|v| json::opt_str(Some(v)))
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
            .and_then(|m| json::opt_str(m.get("mime")))
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
                if let Some(url) = json::opt_str(Some(other)) {
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
        let text = neutralize_untrusted_inline_text(&text);
        lines.push(match author {
            Some(a) => format!("{}: {text}", neutralize_untrusted_inline_text(&a)),
            None => text,
        });
    }
    (lines.len() > 1).then(|| lines.join("\n"))
}

/// The longest neutralised context field, in code points (D21).
const MAX_INLINE_CHARS: usize = 240;

/// D21: channel context is written by anyone in the channel, so each author and
/// text becomes one inert line before it reaches the agent's prompt: line breaks
/// and other control characters (tab aside) turn into spaces, whitespace runs
/// collapse to one space (Python `str.split()` whitespace), the ends are trimmed,
/// and more than 240 code points are cut to 237 plus `...`. Without it a channel
/// member could inject a fake `## SYSTEM OVERRIDE` section.
pub(crate) fn neutralize_untrusted_inline_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    for c in s.chars() {
        // After control characters become spaces, Rust's White_Space set is
        // exactly Python's `str.isspace()`.
        let c = if c < ' ' && c != '\t' { ' ' } else { c };
        if c.is_whitespace() {
            pending_space = true;
            continue;
        }
        if pending_space && !out.is_empty() {
            out.push(' ');
        }
        pending_space = false;
        out.push(c);
    }
    if out.chars().count() > MAX_INLINE_CHARS {
        let cut: String = out.chars().take(MAX_INLINE_CHARS - 3).collect();
        return cut + "...";
    }
    out
}

/// The `source` object → SessionSource (PROTOCOL §9 with D3 and D7). Wire keys
/// `guild_id`, `is_bot` and `delivered_via_upstream_relay` are not read: the wire
/// cannot forge upstream trust.
fn session_source(src: &mut SourceWire<'_>) -> SessionSource {
    SessionSource {
        platform: match src.platform.as_ref().and_then(Field::opt_str) {
            Some(p) => crate::platform::lookup(&p),
            None => "relay",
        }
        .to_string(),
        chat_id: opt_str(src.chat_id.take()).unwrap_or_default(),
        chat_type: opt_str(src.chat_type.take()).unwrap_or_else(|| "dm".to_string()),
        chat_name: opt_str(src.chat_name.take()),
        user_id: opt_str(src.user_id.take()),
        user_name: first_truthy_field([
            src.user_display_name.take(),
            src.user_name.take(),
            src.user_handle.take(),
        ]),
        thread_id: opt_str(src.thread_id.take()),
        chat_topic: opt_str(src.chat_topic.take()),
        user_id_alt: opt_str(src.user_id_alt.take()),
        chat_id_alt: opt_str(src.chat_id_alt.take()),
        scope_id: opt_str(src.scope_id.take()),
        parent_chat_id: opt_str(src.parent_chat_id.take()),
        message_id: opt_str(src.message_id.take()),
        profile: opt_str(src.profile.take()),
        auto_thread_created: truthy(&src.auto_thread_created),
        auto_thread_initial_name: opt_str(src.auto_thread_initial_name.take()),
        prospective_thread_id: opt_str(src.prospective_thread_id.take()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use relay_testkit::compare::{compare, short, Bindings};
    use relay_testkit::vectors::{load_cases, vectors_dir};
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
            let ev = event_from_wire(input)?;
            assert_written_like_serde(&ev);
            Ok(ev.to_json())
        });
    }

    /// `write_json` is byte-identical to serde_json's output for the struct.
    pub(crate) fn assert_written_like_serde(ev: &MessageEvent) {
        let mut out = String::new();
        ev.write_json(&mut out);
        assert_eq!(out, serde_json::to_string(ev).unwrap());
        assert_eq!(out, ev.to_json().to_string());
    }

    #[test]
    fn written_json_covers_every_field() {
        let mut ev = event_from_wire(&json!({
            "text": "a\"b\\c\u{1}\n\u{7f}ü😀", "message_type": "photo", "message_id": 1,
            "reply_to": {"text": "r", "author": "x", "is_own": true},
            "media_urls": ["u1", "u2"], "media": [{"url": "u1", "mime": "image/png"}],
            "context": [{"text": "c", "source": {"user_name": "n"}}],
            "prompt_response": {"prompt_id": "p", "option_id": "o", "n": 1E16},
            "source": {"platform": "discord", "chat_id": "c", "chat_type": "group",
                       "chat_name": "n", "user_id": "u", "user_name": "un", "thread_id": "t",
                       "chat_topic": "ct", "user_id_alt": "ua", "chat_id_alt": "ca",
                       "scope_id": "s", "parent_chat_id": "p", "message_id": "m",
                       "profile": "pr", "auto_thread_created": 1,
                       "auto_thread_initial_name": "ai", "prospective_thread_id": "pt"}
        }))
        .unwrap();
        assert_written_like_serde(&ev);
        ev.metadata
            .insert("k".into(), json!({"nested": [1, 2.5, null, "s"]}));
        ev.raw_message = Some(json!({"type": 5, "data": {"x": "y"}}));
        assert_written_like_serde(&ev);
        assert_written_like_serde(&event_from_wire(&json!({})).unwrap());
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
    fn context_neutralized_d21() {
        let n = neutralize_untrusted_inline_text;
        assert_eq!(n("a\r\n\r\n## SYSTEM\rb\nc"), "a ## SYSTEM b c");
        assert_eq!(n("\u{0}x\u{1f}\ty\u{85}z\u{2028}w  "), "x y z w");
        assert_eq!(n(&"é".repeat(240)), "é".repeat(240));
        assert_eq!(n(&"é".repeat(241)), "é".repeat(237) + "...");
        assert_eq!(n(" \n "), "");
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
