//! How the emulator answers: descriptors per platform and results for `outbound`.
//!
//! Defaults mimic a healthy connector; scripted rules let a test make it fail,
//! stay silent or answer late, to exercise the gateway's error paths.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

/// The ops every built-in descriptor advertises.
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
    json!({
        "contract_version": 1,
        "platform": platform,
        "label": label,
        "max_message_length": max_len,
        "supports_draft_streaming": false,
        "supports_edit": true,
        "supports_threads": threads,
        "markdown_dialect": dialect,
        "len_unit": "chars",
        "platform_hint": hint,
        "supports_context": false,
        "supports_inchannel_continuable": false,
        "supports_block_formatting": false,
        "supported_ops": SUPPORTED_OPS,
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

/// Outbound rules plus the message-id counter of the default answers.
#[derive(Debug, Clone, Default)]
pub struct Outbound {
    rules: Vec<OutboundRule>,
    next_message: u64,
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
    pub fn answer(&mut self, action: &Value) -> Answer {
        let op = action.get("op").and_then(Value::as_str).unwrap_or("");
        let hit = self
            .rules
            .iter()
            .rposition(|r| r.op.as_deref().is_none_or(|o| o == op));
        let Some(idx) = hit else {
            return Answer::Result {
                result: self.success(op, action),
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
            Reply::Success => self.success(op, action),
            Reply::Fail => json!({
                "success": false,
                "error": rule.error.unwrap_or_else(|| "connector: scripted failure".into()),
            }),
            Reply::Result => rule.result.unwrap_or(Value::Null),
        };
        Answer::Result { result, delay }
    }

    /// The healthy answer: a fresh message id (an `edit` keeps its own), and chat
    /// info for `get_chat_info`.
    fn success(&mut self, op: &str, action: &Value) -> Value {
        if op == "get_chat_info" {
            let chat_id = match action.get("chat_id") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            return json!({
                "success": true,
                "chat_info": {"name": format!("chat {chat_id}"), "type": "group"},
            });
        }
        if op == "edit" {
            if let Some(id) = action.get("message_id").filter(|v| v.is_string()) {
                return json!({"success": true, "message_id": id});
            }
        }
        self.next_message += 1;
        json!({"success": true, "message_id": format!("m{}", self.next_message)})
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_answers_and_rules() {
        let mut o = Outbound::default();
        let send = json!({"op": "send", "chat_id": "c"});
        let Answer::Result { result, .. } = o.answer(&send) else {
            panic!("default answers")
        };
        assert_eq!(result, json!({"success": true, "message_id": "m1"}));
        let Answer::Result { result, .. } =
            o.answer(&json!({"op": "get_chat_info", "chat_id": "c9"}))
        else {
            panic!("default answers")
        };
        assert_eq!(result["chat_info"]["type"], "group");
        o.add_rule(OutboundRule {
            op: Some("send".into()),
            reply: Reply::Fail,
            error: Some("boom".into()),
            result: None,
            delay_ms: 0,
            times: Some(1),
        });
        let Answer::Result { result, .. } = o.answer(&send) else {
            panic!("fail answers")
        };
        assert_eq!(result, json!({"success": false, "error": "boom"}));
        assert_eq!(o.rule_count(), 0);
        o.add_rule(OutboundRule {
            op: None,
            reply: Reply::Silent,
            error: None,
            result: None,
            delay_ms: 0,
            times: None,
        });
        assert_eq!(o.answer(&send), Answer::Withhold);
        assert_eq!(o.rule_count(), 1);
    }

    #[test]
    fn discord_descriptor_is_realistic() {
        let d = builtin_descriptor("discord");
        assert_eq!(d["max_message_length"], 2000);
        assert_eq!(d["contract_version"], 1);
        assert!(d["supported_ops"]
            .as_array()
            .unwrap()
            .contains(&json!("get_chat_info")));
        assert_eq!(builtin_descriptor("irc")["label"], "Irc");
    }
}
