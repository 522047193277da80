//! How the emulator answers: descriptors per platform, results for `outbound`,
//! the `going_idle` answer and the "descriptor then drop" mode.
//!
//! Defaults mimic a healthy connector of today's contract (what the newest
//! reference connector advertises and answers); scripted rules let a test make it
//! fail, stay silent or answer late, to exercise the gateway's error paths.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

/// The ops every built-in descriptor advertises, whatever the platform.
pub const SUPPORTED_OPS: [&str; 8] = [
    "send",
    "edit",
    "typing",
    "follow_up",
    "get_chat_info",
    "prompt",
    "send_media",
    "react",
];

/// `code` of the structured failure that declines an op the platform's
/// descriptor does not advertise (distinct from the connector's
/// `egress_declined`, which refuses a destination).
pub const UNSUPPORTED_OP: &str = "unsupported_op";

/// The ops a platform advertises beyond [`SUPPORTED_OPS`] (reference contract:
/// Discord threads are channel threads it can PATCH; Telegram threads are forum
/// topics and it streams native drafts; Slack streams drafts and task cards,
/// creates message-anchored threads and does not advertise `thread_rename`;
/// WhatsApp and SMS have no threads).
pub fn platform_ops(platform: &str) -> &'static [&'static str] {
    match platform {
        "discord" => &["delete", "thread_create", "thread_rename"],
        "telegram" => &["delete", "draft", "thread_create", "thread_rename"],
        "slack" => &[
            "delete",
            "draft",
            "task_card",
            "task_card_stop",
            "thread_create",
        ],
        _ => &[],
    }
}

/// Everything a built-in descriptor for `platform` advertises, in order.
pub fn supported_ops(platform: &str) -> Vec<&'static str> {
    SUPPORTED_OPS
        .iter()
        .chain(platform_ops(platform))
        .copied()
        .collect()
}

/// A realistic capability descriptor for `platform` (PROTOCOL.md §8).
pub fn builtin_descriptor(platform: &str) -> Value {
    let (label, max_len, dialect, threads, hint) = match platform {
        "discord" => ("Discord", 2000, "discord", true, "You are on Discord."),
        "telegram" => (
            "Telegram",
            4096,
            "markdown_v2",
            true,
            "You are on Telegram.",
        ),
        "slack" => ("Slack", 40000, "mrkdwn", true, "You are on Slack."),
        "whatsapp" | "whatsapp_cloud" => ("WhatsApp", 4096, "plain", false, ""),
        "sms" => ("SMS", 1600, "plain", false, "Plain text only."),
        _ => ("Relay", 2000, "markdown", false, ""),
    };
    let label = if label == "Relay" && !platform.is_empty() && platform != "relay" {
        capitalise(platform)
    } else {
        label.to_owned()
    };
    let ops = supported_ops(platform);
    json!({
        "contract_version": 1,
        "platform": platform,
        "label": label,
        "max_message_length": max_len,
        // The reference gateway streams natively only with both the flag and the op.
        "supports_draft_streaming": ops.contains(&"draft"),
        "supports_edit": true,
        "supports_threads": threads,
        "markdown_dialect": dialect,
        "len_unit": "chars",
        "platform_hint": hint,
        "supports_context": false,
        "supports_inchannel_continuable": false,
        "supports_block_formatting": false,
        "supported_ops": ops,
    })
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// What to answer a `hello` for one platform with.
#[derive(Debug, Clone, PartialEq)]
pub enum DescriptorMode {
    /// [`builtin_descriptor`].
    Builtin,
    /// This `descriptor` object (or any JSON value, to test the gateway's parser).
    Custom(Value),
    /// No answer at all (the gateway's handshake should time out).
    Silent,
}

/// Per-platform descriptor overrides; platforms not listed get the built-in one.
#[derive(Debug, Clone, Default)]
pub struct Descriptors {
    overrides: HashMap<String, DescriptorMode>,
}

impl Descriptors {
    /// Sets the answer for `platform`.
    pub fn set(&mut self, platform: &str, mode: DescriptorMode) {
        if mode == DescriptorMode::Builtin {
            self.overrides.remove(platform);
        } else {
            self.overrides.insert(platform.to_owned(), mode);
        }
    }

    /// The descriptor to send for `platform`, or `None` to stay silent.
    pub fn answer(&self, platform: &str) -> Option<Value> {
        match self.overrides.get(platform) {
            None | Some(DescriptorMode::Builtin) => Some(builtin_descriptor(platform)),
            Some(DescriptorMode::Custom(v)) => Some(v.clone()),
            Some(DescriptorMode::Silent) => None,
        }
    }

    /// The ops the descriptor for `platform` advertises, which the emulator then
    /// holds the gateway to: the built-in list, or a custom descriptor's
    /// `supported_ops` when that is an array with at least one non-empty string.
    /// `None` (a silenced platform, a custom descriptor without such a list):
    /// every op is answered.
    pub fn advertised_ops(&self, platform: &str) -> Option<Vec<String>> {
        match self.overrides.get(platform) {
            None | Some(DescriptorMode::Builtin) => Some(
                supported_ops(platform)
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
            ),
            Some(DescriptorMode::Custom(v)) => {
                let ops: Vec<String> = v
                    .get("supported_ops")?
                    .as_array()?
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|op| !op.is_empty())
                    .map(str::to_owned)
                    .collect();
                (!ops.is_empty()).then_some(ops)
            }
            Some(DescriptorMode::Silent) => None,
        }
    }
}

/// How a matching `outbound` is answered.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// `{"success": true, ...}` as a healthy connector would answer.
    Success,
    /// `{"success": false, "error": <error>}`.
    Fail,
    /// No `outbound_result` at all (the gateway should time out).
    Silent,
    /// The rule's `result` value, verbatim (any JSON, even a non-object).
    Result,
}

/// A scripted answer for outbound actions; newest rules are consulted first.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OutboundRule {
    /// Only actions with this `op` (all when absent).
    #[serde(default)]
    pub op: Option<String>,
    /// The kind of answer.
    pub reply: Reply,
    /// Error text for [`Reply::Fail`].
    #[serde(default)]
    pub error: Option<String>,
    /// The result for [`Reply::Result`].
    #[serde(default)]
    pub result: Option<Value>,
    /// Answer this many milliseconds late.
    #[serde(default)]
    pub delay_ms: u64,
    /// Apply to this many actions, then retire (forever when absent).
    #[serde(default)]
    pub times: Option<u32>,
}

/// The decided answer to one `outbound`.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Send this `result` after `delay`.
    Result { result: Value, delay: Duration },
    /// Send nothing.
    Withhold,
}

/// How many draft streams keep their message id (oldest forgotten first), like
/// the connector's bounded store of sealed streams.
const DRAFT_STREAMS: usize = 512;

/// Where an `outbound` is answered: the platform it is for and what that
/// platform's descriptor advertises.
#[derive(Debug, Clone, Copy)]
pub struct OpScope<'a> {
    /// The frame's `platform`, else the connection's first hello's (the
    /// connector's session default), else `relay`.
    pub platform: &'a str,
    /// [`Descriptors::advertised_ops`] for it; `None` answers every op.
    pub supported: Option<&'a [String]>,
}

/// Outbound rules plus the state behind the default answers (message and thread
/// ids, the message id of each draft stream).
#[derive(Debug, Clone, Default)]
pub struct Outbound {
    rules: Vec<OutboundRule>,
    next_message: u64,
    next_thread: u64,
    drafts: HashMap<(String, String), String>,
    draft_order: VecDeque<(String, String)>,
}

impl Outbound {
    /// Adds a rule (consulted before older ones).
    pub fn add_rule(&mut self, rule: OutboundRule) {
        self.rules.push(rule);
    }

    /// Removes every rule.
    pub fn clear_rules(&mut self) {
        self.rules.clear();
    }

    /// Number of active rules.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Decides the answer for `action`, consuming one use of the matching rule.
    /// Rules come first (a scripted answer wins even for an op the platform does
    /// not advertise); without one, an op missing from `scope.supported` is
    /// declined ([`unsupported`]) and any other gets the healthy answer.
    pub fn answer(&mut self, action: &Value, scope: OpScope<'_>) -> Answer {
        let op = action.get("op").and_then(Value::as_str).unwrap_or("");
        let hit = self
            .rules
            .iter()
            .rposition(|r| r.op.as_deref().is_none_or(|o| o == op));
        let Some(idx) = hit else {
            let advertised = scope
                .supported
                .is_none_or(|ops| ops.iter().any(|o| o == op));
            let result = if advertised {
                self.success(op, action, scope.platform)
            } else {
                unsupported(op, scope.platform)
            };
            return Answer::Result {
                result,
                delay: Duration::ZERO,
            };
        };
        let rule = self.rules[idx].clone();
        if let Some(times) = rule.times {
            if times <= 1 {
                self.rules.remove(idx);
            } else {
                self.rules[idx].times = Some(times - 1);
            }
        }
        let delay = Duration::from_millis(rule.delay_ms);
        let result = match rule.reply {
            Reply::Silent => return Answer::Withhold,
            Reply::Success => self.success(op, action, scope.platform),
            Reply::Fail => json!({
                "success": false,
                "error": rule.error.unwrap_or_else(|| "connector: scripted failure".into()),
            }),
            Reply::Result => rule.result.unwrap_or(Value::Null),
        };
        Answer::Result { result, delay }
    }

    /// The healthy answer, in the shape the reference gateway reads for each op:
    /// a fresh `message_id` for `send`, `typing`, `follow_up`, `send_media`,
    /// `prompt` and `react` (and any op the emulator does not know); `edit` keeps
    /// its own; `get_chat_info` gets `chat_info`; a `draft` stream keeps one
    /// `message_id` for all its frames, the sealing one included; `thread_create`
    /// gets a `thread_id` (on Slack an explicit `message_id` anchor is the
    /// thread); `delete`, `task_card`, `task_card_stop` and `thread_rename` get
    /// `success` alone.
    fn success(&mut self, op: &str, action: &Value, platform: &str) -> Value {
        match op {
            "get_chat_info" => {
                let chat_id = text(action.get("chat_id"));
                json!({
                    "success": true,
                    "chat_info": {"name": format!("chat {chat_id}"), "type": "group"},
                })
            }
            "edit" if action.get("message_id").is_some_and(Value::is_string) => {
                json!({"success": true, "message_id": action["message_id"]})
            }
            "delete" | "task_card" | "task_card_stop" | "thread_rename" => {
                json!({"success": true})
            }
            "draft" => {
                let key = (text(action.get("chat_id")), text(action.get("draft_id")));
                let id = match self.drafts.get(&key) {
                    Some(id) => id.clone(),
                    None => {
                        let id = self.fresh_message();
                        self.remember_draft(key, id.clone());
                        id
                    }
                };
                json!({"success": true, "message_id": id})
            }
            "thread_create" => {
                let anchor = action.get("message_id").and_then(Value::as_str);
                let thread_id = match anchor {
                    Some(ts) if platform == "slack" && !ts.is_empty() => ts.to_owned(),
                    _ => {
                        self.next_thread += 1;
                        format!("th{}", self.next_thread)
                    }
                };
                json!({"success": true, "thread_id": thread_id})
            }
            _ => json!({"success": true, "message_id": self.fresh_message()}),
        }
    }

    fn fresh_message(&mut self) -> String {
        self.next_message += 1;
        format!("m{}", self.next_message)
    }

    fn remember_draft(&mut self, key: (String, String), id: String) {
        if self.draft_order.len() >= DRAFT_STREAMS {
            if let Some(old) = self.draft_order.pop_front() {
                self.drafts.remove(&old);
            }
        }
        self.draft_order.push_back(key.clone());
        self.drafts.insert(key, id);
    }
}

/// The structured failure for an op the platform does not advertise: definite
/// (no `ambiguous`), with `code` [`UNSUPPORTED_OP`] and an error text that never
/// reads as an egress decline.
pub fn unsupported(op: &str, platform: &str) -> Value {
    let op = if op.is_empty() { "(none)" } else { op };
    json!({
        "success": false,
        "error": format!("unsupported op: {op} is not in the {platform} descriptor's supported_ops"),
        "code": UNSUPPORTED_OP,
    })
}

/// A JSON scalar as text: strings as they are, null or absent as "".
fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Whether and when `going_idle` is acknowledged.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct IdleMode {
    /// Send `going_idle_ack` at all.
    #[serde(default = "yes")]
    pub ack: bool,
    /// Delay before the ack, in milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
}

fn yes() -> bool {
    true
}

impl Default for IdleMode {
    fn default() -> Self {
        IdleMode {
            ack: true,
            delay_ms: 0,
        }
    }
}

/// "Descriptor then drop": the connector answers a connection's hellos with
/// descriptors and then drops the TCP stream (no close frame), to exercise a
/// gateway's backoff ladder against a connector that never stays up.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HandshakeDrop {
    /// `false` turns the mode off.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How long after the connection's last descriptor the stream is dropped, in
    /// milliseconds (0: as soon as the frames already received are answered).
    #[serde(default)]
    pub delay_ms: u64,
    /// Drop this many connections, then stop (every connection when absent).
    #[serde(default)]
    pub times: Option<u32>,
}

impl HandshakeDrop {
    /// Every connection, `delay` after its handshake.
    pub fn every(delay: Duration) -> Self {
        HandshakeDrop {
            enabled: true,
            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            times: None,
        }
    }

    /// The mode to keep, or `None` when this one does nothing.
    pub fn active(self) -> Option<Self> {
        (self.enabled && self.times != Some(0)).then_some(self)
    }

    /// Claims the mode for one connection that just got its first descriptor:
    /// the delay, and whether uses remain afterwards.
    pub fn claim(&mut self) -> (Duration, bool) {
        let delay = Duration::from_millis(self.delay_ms);
        match self.times.as_mut() {
            Some(left) => {
                *left = left.saturating_sub(1);
                (delay, *left > 0)
            }
            None => (delay, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANY: OpScope<'static> = OpScope {
        platform: "discord",
        supported: None,
    };

    fn result(a: Answer) -> Value {
        match a {
            Answer::Result { result, .. } => result,
            Answer::Withhold => panic!("expected a result"),
        }
    }

    #[test]
    fn default_answers_and_rules() {
        let mut o = Outbound::default();
        let send = json!({"op": "send", "chat_id": "c"});
        assert_eq!(
            result(o.answer(&send, ANY)),
            json!({"success": true, "message_id": "m1"})
        );
        let info = result(o.answer(&json!({"op": "get_chat_info", "chat_id": "c9"}), ANY));
        assert_eq!(info["chat_info"]["type"], "group");
        o.add_rule(OutboundRule {
            op: Some("send".into()),
            reply: Reply::Fail,
            error: Some("boom".into()),
            result: None,
            delay_ms: 0,
            times: Some(1),
        });
        assert_eq!(
            result(o.answer(&send, ANY)),
            json!({"success": false, "error": "boom"})
        );
        assert_eq!(o.rule_count(), 0);
        o.add_rule(OutboundRule {
            op: None,
            reply: Reply::Silent,
            error: None,
            result: None,
            delay_ms: 0,
            times: None,
        });
        assert_eq!(o.answer(&send, ANY), Answer::Withhold);
        assert_eq!(o.rule_count(), 1);
    }

    #[test]
    fn new_ops_get_the_shapes_the_gateway_reads() {
        let mut o = Outbound::default();
        let slack = OpScope {
            platform: "slack",
            supported: None,
        };
        for op in ["delete", "task_card", "task_card_stop", "thread_rename"] {
            let r = result(o.answer(&json!({"op": op, "chat_id": "c"}), ANY));
            assert_eq!(r, json!({"success": true}), "{op}");
        }
        let frame =
            |final_: bool| json!({"op": "draft", "chat_id": "C1", "draft_id": 7, "final": final_});
        let first = result(o.answer(&frame(false), slack));
        assert!(first["message_id"].is_string(), "{first}");
        assert_eq!(result(o.answer(&frame(true), slack)), first);
        let other = json!({"op": "draft", "chat_id": "C1", "draft_id": 8});
        assert_ne!(result(o.answer(&other, slack)), first);
        let t = result(o.answer(&json!({"op": "thread_create", "chat_id": "c"}), ANY));
        assert_eq!(t, json!({"success": true, "thread_id": "th1"}));
        let anchored = json!({"op": "thread_create", "chat_id": "C", "message_id": "1700.1"});
        assert_eq!(result(o.answer(&anchored, slack))["thread_id"], "1700.1");
        assert_eq!(result(o.answer(&anchored, ANY))["thread_id"], "th2");
    }

    #[test]
    fn unadvertised_ops_are_declined_unless_a_rule_answers() {
        let mut o = Outbound::default();
        let ops: Vec<String> = supported_ops("discord")
            .iter()
            .map(|s| s.to_string())
            .collect();
        let discord = OpScope {
            platform: "discord",
            supported: Some(&ops),
        };
        let card = json!({"op": "task_card", "chat_id": "c"});
        let r = result(o.answer(&card, discord));
        assert_eq!(r["success"], false);
        assert_eq!(r["code"], UNSUPPORTED_OP);
        assert!(!r["error"].as_str().unwrap().contains("egress declined:"));
        assert_eq!(
            result(o.answer(&json!({"op": "thread_create"}), discord))["success"],
            true
        );
        o.add_rule(OutboundRule {
            op: Some("task_card".into()),
            reply: Reply::Success,
            error: None,
            result: None,
            delay_ms: 0,
            times: Some(1),
        });
        assert_eq!(result(o.answer(&card, discord)), json!({"success": true}));
    }

    #[test]
    fn descriptors_per_platform() {
        let d = builtin_descriptor("discord");
        assert_eq!(d["max_message_length"], 2000);
        assert_eq!(d["contract_version"], 1);
        assert_eq!(d["supports_draft_streaming"], false);
        let ops = |p: &str| builtin_descriptor(p)["supported_ops"].clone();
        assert!(ops("discord")
            .as_array()
            .unwrap()
            .contains(&json!("thread_rename")));
        assert!(!ops("discord")
            .as_array()
            .unwrap()
            .contains(&json!("task_card")));
        assert!(ops("slack")
            .as_array()
            .unwrap()
            .contains(&json!("task_card")));
        assert!(!ops("slack")
            .as_array()
            .unwrap()
            .contains(&json!("thread_rename")));
        assert_eq!(
            builtin_descriptor("telegram")["supports_draft_streaming"],
            true
        );
        assert_eq!(ops("irc"), json!(SUPPORTED_OPS));
        assert_eq!(builtin_descriptor("irc")["label"], "Irc");

        let mut ds = Descriptors::default();
        assert_eq!(ds.advertised_ops("sms").unwrap().len(), SUPPORTED_OPS.len());
        ds.set(
            "sms",
            DescriptorMode::Custom(json!({"supported_ops": ["send", ""]})),
        );
        assert_eq!(ds.advertised_ops("sms"), Some(vec!["send".to_owned()]));
        ds.set("sms", DescriptorMode::Custom(json!({"platform": "sms"})));
        assert_eq!(ds.advertised_ops("sms"), None);
        ds.set("sms", DescriptorMode::Silent);
        assert_eq!(ds.advertised_ops("sms"), None);
    }

    #[test]
    fn handshake_drop_uses() {
        assert_eq!(
            HandshakeDrop::every(Duration::ZERO)
                .active()
                .map(|d| d.times),
            Some(None)
        );
        let mut twice = HandshakeDrop {
            enabled: true,
            delay_ms: 5,
            times: Some(2),
        };
        assert_eq!(twice.claim(), (Duration::from_millis(5), true));
        assert_eq!(twice.claim(), (Duration::from_millis(5), false));
        let off = HandshakeDrop {
            enabled: false,
            ..HandshakeDrop::every(Duration::ZERO)
        };
        assert_eq!(off.active(), None);
    }
}
