//! Discord interaction (a passthrough forward's body) → MessageEvent
//! (PROTOCOL.md §11, variant C as fixed by D1, D3, D6, D13).
//!
//! Every field read here follows the reference's Python semantics: "truthy" means
//! Python truthiness, numbers compare by value (`2.0 == 2`, `true == 1`), scalars
//! render as Python `str()` (json.rs), and `null` or a structure where a plain
//! string field belongs counts as absent (D3). Nothing in the body can panic the
//! conversion: structures are walked with a depth bound and strings are never sliced.

use serde_json::{Map, Value};

use crate::event::{MessageEvent, SessionSource};
use crate::forward::Forward;
use crate::json::{opt_str, py_strip, scalar_str};
use crate::wire::{wire_object, Field, Obj, Seq};

/// Why a forward did not become a message; logged, and acked at once when buffered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub reason: String,
}

impl Dropped {
    /// Reasons name the rule that failed, never body content (the body may carry
    /// secrets the connector forgot to strip).
    fn new(reason: &str) -> Self {
        Dropped {
            reason: reason.to_string(),
        }
    }
}

/// Nesting bound for slash-command options and modal components. Discord itself
/// nests at most three levels; the bound only keeps hostile bodies from recursing deep.
const MAX_DEPTH: usize = 32;

/// Discord channel types that are threads (announcement, public, private thread).
const THREAD_CHANNEL_TYPES: [i64; 3] = [10, 11, 12];

/// The three interaction types that become messages (D13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// 2: application command (slash and context-menu commands).
    Command,
    /// 3: message component (button or select press).
    Component,
    /// 5: modal submit.
    Modal,
}

wire_object! {
    /// The keys of an interaction the conversion reads.
    struct InteractionWire<'a> {
        "type" => kind: Field<'a>,
        "id" => id: Field<'a>,
        "data" => data: Obj<DataWire<'a>>,
        "message" => message: Obj<IdWire<'a>>,
        "guild_id" => guild_id: Field<'a>,
        "channel_id" => channel_id: Field<'a>,
        "channel" => channel: Obj<ChannelWire<'a>>,
        "member" => member: Obj<MemberWire<'a>>,
        "user" => user: Obj<UserWire<'a>>,
    }
}

wire_object! {
    /// `data` of a command or component interaction (modals are read as a `Value`).
    struct DataWire<'a> {
        "name" => name: Field<'a>,
        "options" => options: Seq<Obj<OptionWire<'a>>>,
        "custom_id" => custom_id: Field<'a>,
    }
}

wire_object! {
    /// One slash-command option (or sub-command, or group).
    struct OptionWire<'a> {
        "type" => kind: Field<'a>,
        "name" => name: Field<'a>,
        "value" => value: Field<'a>,
        "options" => options: Seq<Obj<OptionWire<'a>>>,
    }
}

wire_object! {
    struct IdWire<'a> {
        "id" => id: Field<'a>,
    }
}

wire_object! {
    struct ChannelWire<'a> {
        "type" => kind: Field<'a>,
        "id" => id: Field<'a>,
        "parent_id" => parent_id: Field<'a>,
    }
}

wire_object! {
    struct MemberWire<'a> {
        "user" => user: Obj<UserWire<'a>>,
        "nick" => nick: Field<'a>,
    }
}

wire_object! {
    struct UserWire<'a> {
        "id" => id: Field<'a>,
        "global_name" => global_name: Field<'a>,
        "username" => username: Field<'a>,
    }
}

/// Converts a forward; `Err(Dropped)` for non-Discord platforms, bodies that are not
/// UTF-8 JSON objects, and interaction types other than 2, 3 and 5 (D13).
pub fn interaction_to_event(forward: &Forward) -> Result<MessageEvent, Dropped> {
    // Exact and case-sensitive: passthrough never goes through the platform lookup.
    if forward.platform != "discord" {
        return Err(Dropped::new("platform is not discord"));
    }
    // Strict UTF-8 first; serde_json then rejects a leading BOM like Python's json.
    let text =
        crate::wire::utf8(&forward.body).map_err(|_| Dropped::new("body is not valid UTF-8"))?;
    // Read typed: accepts and rejects exactly what a `Value` parse does.
    let mut payload: Obj<InteractionWire<'_>> =
        crate::wire::from_str(text).map_err(|_| Dropped::new("body is not valid JSON"))?;
    // Fields are taken in place (the wire struct is large; see event.rs).
    let obj = match &mut payload {
        Obj::Object { fields, .. } => fields,
        Obj::Other(_) => return Err(Dropped::new("body is not a JSON object")),
    };

    let kind = interaction_kind(obj.kind.as_ref())
        .ok_or_else(|| Dropped::new("interaction type is not 2, 3 or 5"))?;

    // `data` = the value if truthy, else `{}`; a truthy non-object cannot be read.
    let data = match obj.data.take() {
        Some(Obj::Object { fields, .. }) => fields,
        Some(other @ Obj::Other(_)) if other.truthy() => {
            return Err(Dropped::new("interaction data is not an object"))
        }
        _ => DataWire::default(),
    };

    let interaction_id = truthy_str(obj.id.take());
    let attached_message_id = obj
        .message
        .take()
        .and_then(Obj::into_object)
        .and_then(|m| truthy_str(m.id));

    let mut metadata = Map::new();
    metadata.insert(
        "discord_interaction_id".into(),
        interaction_id.clone().map_or(Value::Null, Value::String),
    );

    let mut prompt_response = None;
    let mut raw_message = None;
    let (text, message_type) = match kind {
        Kind::Command => {
            let text = command_text(data);
            let message_type = if text.is_empty() { "text" } else { "command" };
            (text, message_type)
        }
        Kind::Component => {
            let custom_id = truthy_str(data.custom_id).unwrap_or_default();
            match parse_prompt_token(&custom_id) {
                Some((prompt_id, option_id)) => {
                    let text = format!("/{option_id}");
                    let mut pr = Map::new();
                    pr.insert("prompt_id".into(), Value::String(prompt_id));
                    pr.insert("option_id".into(), Value::String(option_id));
                    pr.insert(
                        "prompt_message_id".into(),
                        attached_message_id
                            .clone()
                            .map_or(Value::Null, Value::String),
                    );
                    prompt_response = Some(pr);
                    (text, "command")
                }
                None => (custom_id, "text"),
            }
        }
        Kind::Modal => {
            // Modals keep the whole payload, so this (rare) case reads the body as a
            // `Value`; the typed read above already accepted it.
            let payload: Value =
                serde_json::from_str(text).map_err(|_| Dropped::new("body is not valid JSON"))?;
            let empty = Map::new();
            let data = match payload.get("data") {
                Some(Value::Object(m)) => m,
                _ => &empty,
            };
            let mut fields = Vec::new();
            collect_modal_fields(data, &mut fields, 0);
            let text = fields
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("\n");
            let listed = fields
                .into_iter()
                .map(|(k, v)| {
                    let mut field = Map::new();
                    field.insert("custom_id".into(), Value::String(k));
                    field.insert("value".into(), Value::String(v));
                    Value::Object(field)
                })
                .collect();
            metadata.insert("discord_modal_fields".into(), Value::Array(listed));
            raw_message = Some(payload);
            (text, "text")
        }
    };

    let source = session_source(
        obj.guild_id.take(),
        obj.channel_id.take(),
        obj.channel.take(),
        obj.member.take(),
        obj.user.take(),
        attached_message_id,
        forward.profile.clone(),
    );
    Ok(MessageEvent {
        text,
        message_type: message_type.to_string(),
        message_id: interaction_id,
        reply_to_message_id: None,
        reply_to_text: None,
        reply_to_author_name: None,
        reply_to_is_own_message: false,
        media_urls: Vec::new(),
        media_types: Vec::new(),
        channel_context: None,
        prompt_response,
        metadata,
        raw_message,
        source,
    })
}

/// The interaction type by Python equality: `2.0` is 2, the string `"2"` is not.
fn interaction_kind(v: Option<&Field<'_>>) -> Option<Kind> {
    let v = v?;
    if field_eq_int(v, 2) {
        Some(Kind::Command)
    } else if field_eq_int(v, 3) {
        Some(Kind::Component)
    } else if field_eq_int(v, 5) {
        Some(Kind::Modal)
    } else {
        None
    }
}

/// Python `v == n` (see [`Field::py_eq_int`]).
fn field_eq_int(v: &Field<'_>, n: i64) -> bool {
    v.py_eq_int(n)
}

/// `str(v)` when `v` is truthy, else `None`; a structure counts as absent (D3).
fn truthy_str(v: Option<Field<'_>>) -> Option<String> {
    v.filter(Field::truthy).and_then(Field::into_opt_str)
}

/// Slash-command text: `/name` (trailing `/` removed) plus the rendered options,
/// joined with spaces and stripped. A missing name or one made only of `/` gives "".
fn command_text(data: DataWire<'_>) -> String {
    let mut head = String::from("/");
    if let Some(name) = truthy_str(data.name) {
        head.push_str(&name);
    }
    let head = head.trim_end_matches('/');
    if head.is_empty() {
        return String::new();
    }
    let mut text = head.to_string();
    render_options(data.options.as_ref(), &mut text, 0);
    py_strip(&text).to_string()
}

/// Appends option texts in order, each after a space: sub-command (group) names
/// followed by their own options, scalar option values stripped (names of scalar
/// options never appear). Only arrays are walked; non-object entries and blank
/// values are skipped.
fn render_options(options: Option<&Seq<Obj<OptionWire<'_>>>>, text: &mut String, depth: usize) {
    if depth >= MAX_DEPTH {
        return;
    }
    let Some(Seq::Array(items)) = options else {
        return;
    };
    for item in items {
        let Some(opt) = item.object() else {
            continue;
        };
        let is_group = opt
            .kind
            .as_ref()
            .is_some_and(|t| field_eq_int(t, 1) || field_eq_int(t, 2));
        if is_group {
            if let Some(name) = opt.name.as_ref().and_then(Field::opt_str) {
                push_stripped(text, &name);
            }
            render_options(opt.options.as_ref(), text, depth + 1);
        } else if let Some(value) = opt.value.as_ref() {
            // `scalar_str` skips null and renders arrays/objects as compact JSON (D3).
            if let Some(s) = value.scalar_str() {
                push_stripped(text, &s);
            }
        }
    }
}

fn push_stripped(text: &mut String, part: &str) {
    let stripped = py_strip(part);
    if !stripped.is_empty() {
        text.push(' ');
        text.push_str(stripped);
    }
}

/// Decodes a prompt-answer token `hp1:<prompt_id>:<option_id>` (D6): exactly three
/// `:`-separated parts, and each id must fully match `[A-Za-z0-9_.-]{1,32}` (unlike
/// Python's `re.match` with `$`, a trailing newline is not accepted).
fn parse_prompt_token(custom_id: &str) -> Option<(String, String)> {
    let mut parts = custom_id.split(':');
    let (tag, prompt_id, option_id) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || tag != "hp1" {
        return None;
    }
    (is_token_id(prompt_id) && is_token_id(option_id))
        .then(|| (prompt_id.to_string(), option_id.to_string()))
}

/// `[A-Za-z0-9_.-]{1,32}`; every accepted character is ASCII, so bytes = characters.
fn is_token_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Collects `(custom_id, value)` of submitted modal fields, depth-first through
/// `components` arrays and single `component` children (legacy action rows and the
/// newer label components). A node counts when it has a non-null `custom_id` and a
/// `value` key; a null value renders as "". Selects carry `values`, not `value`, so
/// they are skipped.
fn collect_modal_fields(node: &Map<String, Value>, out: &mut Vec<(String, String)>, depth: usize) {
    if depth >= MAX_DEPTH {
        return;
    }
    if let Some(Value::Object(child)) = node.get("component") {
        visit_modal_node(child, out, depth + 1);
    }
    if let Some(Value::Array(children)) = node.get("components") {
        for child in children {
            if let Value::Object(child) = child {
                visit_modal_node(child, out, depth + 1);
            }
        }
    }
}

fn visit_modal_node(node: &Map<String, Value>, out: &mut Vec<(String, String)>, depth: usize) {
    if node.contains_key("value") {
        if let Some(custom_id) = opt_str(node.get("custom_id")) {
            let value = node.get("value").and_then(scalar_str).unwrap_or_default();
            out.push((custom_id, value));
        }
    }
    collect_modal_fields(node, out, depth);
}

/// The session identity of an interaction (PROTOCOL §11.4 with D1's variant C rules).
fn session_source(
    guild_id: Option<Field<'_>>,
    channel_id: Option<Field<'_>>,
    channel: Option<Obj<ChannelWire<'_>>>,
    member: Option<Obj<MemberWire<'_>>>,
    user: Option<Obj<UserWire<'_>>>,
    attached_message_id: Option<String>,
    profile: Option<String>,
) -> SessionSource {
    let guild_id = truthy_str(guild_id);
    let chat_id = truthy_str(channel_id).unwrap_or_default();
    let channel = channel.and_then(Obj::into_object);

    // Threads only exist in guilds; a thread type on a DM channel is ignored.
    let is_thread = guild_id.is_some()
        && channel
            .as_ref()
            .and_then(|c| c.kind.as_ref())
            .is_some_and(|t| THREAD_CHANNEL_TYPES.iter().any(|n| field_eq_int(t, *n)));
    let (chat_type, thread_id, parent_chat_id) = if is_thread {
        let channel = channel.unwrap_or_default();
        let thread_id = Some(chat_id.clone())
            .filter(|c| !c.is_empty())
            .or_else(|| truthy_str(channel.id));
        let parent = truthy_str(channel.parent_id);
        ("thread", thread_id, parent)
    } else if guild_id.is_some() {
        ("group", None, None)
    } else {
        ("dm", None, None)
    };

    // A guild member's `user` wins over a top-level `user`; anything else is `{}`.
    let member = member.and_then(Obj::into_object).unwrap_or_default();
    let user = match member.user.filter(Obj::truthy) {
        Some(u) => u.into_object(),
        None => user.and_then(Obj::into_object),
    }
    .unwrap_or_default();

    // Display name: guild nickname, then global display name, then username (D1).
    let nick = if guild_id.is_some() {
        truthy_str(member.nick)
    } else {
        None
    };
    let user_name = nick
        .or_else(|| truthy_str(user.global_name))
        .or_else(|| truthy_str(user.username));

    SessionSource {
        platform: "discord".to_string(),
        chat_id,
        chat_type: chat_type.to_string(),
        chat_name: None,
        user_id: truthy_str(user.id),
        user_name,
        thread_id,
        chat_topic: None,
        user_id_alt: None,
        chat_id_alt: None,
        scope_id: guild_id,
        parent_chat_id,
        message_id: attached_message_id,
        profile,
        auto_thread_created: false,
        auto_thread_initial_name: None,
        prospective_thread_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use relay_testkit::compare::{compare, Bindings};
    use relay_testkit::vectors::{load_cases, vectors_dir};
    use serde_json::json;

    /// Builds the forward of a vector case directly (not through `forward_from_wire`).
    fn forward_from_case(input: &Value) -> Forward {
        let f = &input["forward"];
        let s = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let headers = f
            .get("headers")
            .and_then(Value::as_array)
            .map(|hs| {
                hs.iter()
                    .filter_map(|h| {
                        let pair = h.as_array()?;
                        Some((
                            pair.first()?.as_str()?.to_string(),
                            pair.get(1)?.as_str()?.to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let body = if let Some(i) = f.get("interaction") {
            serde_json::to_string(i).unwrap().into_bytes()
        } else if let Some(t) = f.get("body_utf8") {
            t.as_str().unwrap().as_bytes().to_vec()
        } else if let Some(b) = f.get("body_b64") {
            base64::engine::general_purpose::STANDARD
                .decode(b.as_str().unwrap())
                .unwrap()
        } else {
            panic!("case without a body")
        };
        Forward {
            platform: s("platform"),
            bot_id: s("botId"),
            method: s("method"),
            path: s("path"),
            headers,
            body,
            profile: f.get("profile").and_then(Value::as_str).map(str::to_string),
        }
    }

    #[test]
    fn conformance_vectors() {
        let cases = load_cases(&vectors_dir().join("discord_interaction.json")).unwrap();
        assert!(!cases.is_empty());
        let mut failures = Vec::new();
        for case in &cases {
            let name = case["name"].as_str().unwrap_or("?");
            let forward = forward_from_case(&case["input"]);
            let expected = &case["expected"];
            let outcome = interaction_to_event(&forward);
            let result = match (expected["outcome"].as_str(), &outcome) {
                (Some("dropped"), Err(_)) => Ok(()),
                (Some("dropped"), Ok(ev)) => Err(format!(
                    "expected dropped, got {}",
                    relay_testkit::compare::short(&ev.to_json())
                )),
                (Some("message"), Ok(ev)) => {
                    crate::event::tests::assert_written_like_serde(ev);
                    compare(&expected["event"], &ev.to_json(), &mut Bindings::default())
                }
                (Some("message"), Err(d)) => Err(format!("expected message, dropped: {d:?}")),
                (other, _) => Err(format!("bad expected outcome {other:?}")),
            };
            if let Err(diff) = result {
                failures.push(format!("{name}: {diff}"));
            }
        }
        for f in &failures {
            println!("FAIL {f}");
        }
        println!(
            "discord_interaction.json: {}/{} passed",
            cases.len() - failures.len(),
            cases.len()
        );
        assert!(failures.is_empty(), "{} failing cases", failures.len());
    }

    fn forward(body: &str) -> Forward {
        Forward {
            platform: "discord".into(),
            bot_id: "app1".into(),
            method: "POST".into(),
            path: "/i".into(),
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
            profile: None,
        }
    }

    fn convert(payload: &Value) -> Result<MessageEvent, Dropped> {
        interaction_to_event(&forward(&payload.to_string()))
    }

    fn press(custom_id: &str) -> MessageEvent {
        convert(&json!({"id": "9", "type": 3, "channel_id": "c",
            "data": {"custom_id": custom_id}, "message": {"id": "m"}}))
        .unwrap()
    }

    #[test]
    fn prompt_token_edges() {
        let max = "a".repeat(32);
        let ok = press(&format!("hp1:{max}:Z-9_.x"));
        assert_eq!(ok.text, "/Z-9_.x");
        assert_eq!(ok.message_type, "command");
        assert_eq!(ok.prompt_press(), Some((max.clone(), "Z-9_.x".into())));
        assert_eq!(ok.prompt_response.unwrap()["prompt_message_id"], json!("m"));
        for bad in [
            "hp1::once",
            "hp1:p:",
            "hp1:p:o:x",
            "HP1:p:o",
            "hp1:p",
            "hp1:p:o\n",
            "hp1:p\n:o",
            " hp1:p:o",
            "hp1:é:o",
            &format!("hp1:{max}a:o"),
        ] {
            let ev = press(bad);
            assert_eq!(ev.text, bad, "{bad:?}");
            assert_eq!(ev.message_type, "text", "{bad:?}");
            assert!(ev.prompt_response.is_none(), "{bad:?}");
        }
    }

    #[test]
    fn python_equality_for_type_codes() {
        // `true == 1` in Python: a boolean option type counts as a sub-command.
        let ev = convert(&json!({"type": 2, "data": {"name": "a",
            "options": [{"type": true, "name": "sub", "value": "hidden",
                         "options": [{"type": 3, "value": 1.0}]}]}}))
        .unwrap();
        assert_eq!(ev.text, "/a sub 1.0");
        // `true` as the interaction type is 1 (PING) → dropped; 5.0 is a modal.
        assert!(convert(&json!({"type": true})).is_err());
        let modal: Value = serde_json::from_str(r#"{"type": 5.0, "data": null}"#).unwrap();
        let ev = convert(&modal).unwrap();
        assert_eq!(ev.text, "");
        assert_eq!(ev.metadata["discord_modal_fields"], json!([]));
        assert_eq!(ev.raw_message, Some(modal));
        // A thread type written as a float still marks a thread.
        let t: Value = serde_json::from_str(
            r#"{"type":2,"guild_id":"g","channel_id":"t","channel":{"type":12.0,"parent_id":7},"data":{"name":"x"}}"#,
        )
        .unwrap();
        let ev = convert(&t).unwrap();
        assert_eq!(ev.source.chat_type, "thread");
        assert_eq!(ev.source.thread_id.as_deref(), Some("t"));
        assert_eq!(ev.source.parent_chat_id.as_deref(), Some("7"));
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut opt = json!({"type": 3, "value": "leaf"});
        let mut comp = json!({"custom_id": "leaf", "value": "v"});
        // 50 levels (100 JSON nestings) stays under serde_json's parse limit of 128.
        for _ in 0..50 {
            opt = json!({"type": 1, "name": "g", "options": [opt]});
            comp = json!({"type": 1, "components": [comp]});
        }
        let ev = convert(&json!({"type": 2, "data": {"name": "x", "options": [opt]}})).unwrap();
        assert!(ev.text.starts_with("/x g g"));
        assert!(!ev.text.contains("leaf"));
        assert_eq!(ev.text.matches(" g").count(), MAX_DEPTH);
        let ev = convert(&json!({"type": 5, "data": {"components": [comp]}})).unwrap();
        assert_eq!(ev.text, "");
    }

    #[test]
    fn modal_values_render_like_python_str() {
        let ev = convert(&json!({"type": 5, "id": 7, "data": {"components": [
            {"custom_id": 1, "value": null},
            {"custom_id": null, "value": "ignored"},
            {"custom_id": "n", "value": 2.50},
            {"custom_id": "b", "value": false},
            {"custom_id": "sel", "values": ["a"]}
        ]}}))
        .unwrap();
        assert_eq!(ev.text, "1=\nn=2.5\nb=False");
        assert_eq!(ev.message_id.as_deref(), Some("7"));
        assert_eq!(
            ev.metadata["discord_modal_fields"][0],
            json!({"custom_id": "1", "value": ""})
        );
    }

    #[test]
    fn malformed_bodies_are_dropped_not_panics() {
        for body in [
            "",
            "   ",
            "null",
            "\"x\"",
            "{\"type\":2,\"data\":\"new\"}",
            "{\"type\":3,\"data\":[1]}",
            "{\"type\":5,\"data\":7}",
            "{\"type\":NaN}",
            "{\"type\":2",
            "{\"type\":99999999999999999999999}",
            "{\"type\":\"3\"}",
            "{}",
        ] {
            assert!(interaction_to_event(&forward(body)).is_err(), "{body:?}");
        }
        let mut f = forward("{\"type\":2}");
        f.body.insert(0, 0xff);
        assert!(interaction_to_event(&f).is_err());
        // Deeply nested JSON hits serde_json's recursion limit, not the stack.
        let deep = format!(
            "{{\"type\":2,\"data\":{}{}}}",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert!(interaction_to_event(&forward(&deep)).is_err());
    }
}
