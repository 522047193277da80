//! Our own session transcripts, in the sessions.json step format, written with a
//! small DSL. They are data, not test functions, so the same cases run natively
//! (relay-logic's `session::tests`) and through the compiled component (the
//! end-to-end `conformance` test), exactly like the shared vectors.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::compare::short;
use crate::script::Failure;

type Steps = Vec<Value>;

/// One scripted session: a sessions.json case plus, for the cap tests, caps
/// smaller than the defaults as a JSON object of `session::Caps` field names
/// (read with [`CapCounts::parse`]; the WIT config's `options.caps` takes them too).
#[derive(Debug, Clone)]
pub struct Transcript {
    pub name: &'static str,
    pub config: Value,
    pub caps: Option<Value>,
    pub steps: Vec<Value>,
}

/// A `caps` object: each memory cap it sets (field names of `session::Caps` and
/// of the WIT record `caps`); `None` leaves that cap at its default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapCounts {
    pub pending_requests: Option<u32>,
    pub buffer_ids: Option<u32>,
    pub prompts: Option<u32>,
    pub answered_prompts: Option<u32>,
    pub egress_chats: Option<u32>,
    pub message_ids: Option<u32>,
}

impl CapCounts {
    /// Reads a `caps` object; unknown names and non-counts are errors.
    pub fn parse(value: &Value) -> Result<Self, String> {
        let mut caps = CapCounts::default();
        for (k, v) in value.as_object().ok_or("caps: not an object")? {
            let n = v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or(format!("caps.{k}: not a count"))?;
            let slot = match k.as_str() {
                "pending_requests" => &mut caps.pending_requests,
                "buffer_ids" => &mut caps.buffer_ids,
                "prompts" => &mut caps.prompts,
                "answered_prompts" => &mut caps.answered_prompts,
                "egress_chats" => &mut caps.egress_chats,
                "message_ids" => &mut caps.message_ids,
                other => return Err(format!("caps.{other}: no such cap")),
            };
            *slot = Some(n);
        }
        Ok(caps)
    }
}

impl Transcript {
    /// The case in the sessions.json shape (`name`, `config`, `steps`).
    pub fn case(&self) -> Value {
        json!({"name": self.name, "config": self.config, "steps": self.steps})
    }

    /// Names a failure of this transcript: its name, the step and what differed.
    pub fn describe(&self, failure: &Failure) -> String {
        let step = self.steps.get(failure.step).map(short).unwrap_or_default();
        format!(
            "{}: step {} ({step}): {}",
            self.name, failure.step, failure.message
        )
    }
}

macro_rules! transcript {
    ($name:ident, $config:expr, caps = $caps:expr, [$($step:expr),* $(,)?]) => {
        fn $name() -> Transcript {
            let steps: Steps = vec![$($step),*].into_iter().flatten().collect();
            Transcript { name: stringify!($name), config: $config, caps: Some($caps), steps }
        }
    };
    ($name:ident, $config:expr, [$($step:expr),* $(,)?]) => {
        fn $name() -> Transcript {
            let steps: Steps = vec![$($step),*].into_iter().flatten().collect();
            Transcript { name: stringify!($name), config: $config, caps: None, steps }
        }
    };
}

// ---- configs ---------------------------------------------------------------------

fn discord() -> Value {
    json!({"identities": [{"platform": "discord", "bot_id": "app1"}], "prompt_nonce": "n0nce", "reconnect_jitter": 0})
}

fn two_ids() -> Value {
    json!({"identities": [{"platform": "discord", "bot_id": "d1"}, {"platform": "telegram", "bot_id": "t1"}], "reconnect_jitter": 0})
}

fn with(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        base[k] = v;
    }
    base
}

// ---- action steps ----------------------------------------------------------------

fn open(t: u64) -> Steps {
    vec![json!({"do": "open", "now_ms": t})]
}
fn recv(t: u64, frame: Value) -> Steps {
    raw(
        t,
        &format!("{}\n", serde_json::to_string(&frame).unwrap_or_default()),
    )
}
fn raw(t: u64, text: &str) -> Steps {
    vec![json!({"do": "receive", "now_ms": t, "text": text})]
}
fn binary(t: u64, bytes: &[u8]) -> Steps {
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    vec![json!({"do": "receive", "now_ms": t, "b64": b64})]
}
fn app(t: u64, command: Value) -> Steps {
    vec![json!({"do": "app", "now_ms": t, "command": command})]
}
fn close(t: u64, code: Value, reason: &str) -> Steps {
    vec![json!({"do": "close", "now_ms": t, "code": code, "reason": reason})]
}
fn adv(t: u64) -> Steps {
    vec![json!({"do": "advance", "now_ms": t})]
}

// ---- expectation steps -----------------------------------------------------------

fn expect(sent: Value, events: Value) -> Steps {
    vec![
        json!({"expect_sent": sent}),
        json!({"expect_events": events}),
    ]
}
fn nothing() -> Steps {
    expect(json!([]), json!([]))
}
fn sent(frames: Value) -> Steps {
    expect(frames, json!([]))
}
fn events(evs: Value) -> Steps {
    expect(json!([]), evs)
}

// ---- frames, commands, events ----------------------------------------------------

fn descriptor_frame(platform: &str) -> Value {
    json!({"type": "descriptor", "descriptor": {"contract_version": 1, "platform": platform,
        "label": "L", "max_message_length": 2000, "supports_draft_streaming": false,
        "supports_edit": true, "supports_threads": true, "markdown_dialect": "discord",
        "len_unit": "chars", "supported_ops": ["send", "get_chat_info", "prompt"]}})
}
fn hello(bot: &str) -> Value {
    json!({"type": "hello", "platform": "discord", "botId": bot})
}
/// open at `t`, hello, descriptor at `t + 10`, ready.
fn handshake(t: u64) -> Steps {
    let mut s = open(t);
    s.extend(sent(json!([hello("app1")])));
    s.extend(recv(t + 10, descriptor_frame("discord")));
    s.extend(events(
        json!([{"event": "ready", "descriptor": {"platform": "discord"}}]),
    ));
    s
}
fn inbound(text: &str, chat: &str, buffer: Value) -> Value {
    json!({"type": "inbound", "event": {"text": text, "message_type": "text",
        "source": {"platform": "discord", "chat_id": chat, "chat_type": "group"}}, "bufferId": buffer})
}
fn inbound_from(source: Value) -> Value {
    json!({"type": "inbound", "event": {"text": "hi", "source": source}})
}
fn message(text: &str, buffer: Value) -> Value {
    json!({"event": "message", "message": {"text": text}, "buffer_id": buffer})
}
fn outbound(id: &str, action: Value) -> Value {
    json!({"op": "outbound", "id": id, "action": action})
}
fn say(chat: &str, content: &str) -> Value {
    json!({"op": "send", "chat_id": chat, "content": content})
}
fn out_frame(rid: &str) -> Value {
    json!({"type": "outbound", "requestId": rid})
}
fn result_frame(rid: &str, result: Value) -> Value {
    json!({"type": "outbound_result", "requestId": rid, "result": result})
}
fn result(id: &str, result: Value) -> Value {
    json!({"event": "outbound_result", "id": id, "result": result})
}
fn failed(id: &str, text: &str) -> Value {
    result(id, json!({"success": false, "error": text}))
}
fn ack(id: &str) -> Value {
    json!({"type": "inbound_ack", "bufferId": id})
}
fn app_ack(id: &str) -> Value {
    json!({"op": "ack", "buffer_id": id})
}
fn state(s: &str) -> Value {
    json!({"event": "state", "state": s})
}
fn backoff(ms: u64) -> Value {
    json!({"event": "state", "state": "backoff", "retry_in_ms": ms})
}
/// A Discord interaction forwarded by the connector.
fn forward(platform: &str, interaction: Value, buffer: Value) -> Value {
    let body = serde_json::to_string(&interaction).unwrap_or_default();
    let b64 = base64::engine::general_purpose::STANDARD.encode(body);
    json!({"type": "passthrough_forward", "forward": {"platform": platform, "botId": "app1",
        "method": "POST", "path": "/i", "headers": [], "bodyB64": b64}, "bufferId": buffer})
}
fn slash(id: &str, name: &str) -> Value {
    json!({"id": id, "type": 2, "channel_id": "222", "guild_id": "333",
        "member": {"user": {"id": "111", "username": "ben"}}, "data": {"name": name}})
}
fn press(id: &str, custom_id: &str) -> Value {
    json!({"id": id, "type": 3, "channel_id": "222", "guild_id": "333",
        "member": {"user": {"id": "111", "username": "ben"}},
        "data": {"custom_id": custom_id, "component_type": 2}, "message": {"id": "pm-1"}})
}
fn prompt(id: &str, prompt_id: &str, timeout_s: u64) -> Value {
    outbound(
        id,
        json!({"op": "prompt", "chat_id": "222", "content": "ok?", "prompt_id": prompt_id,
        "options": [{"id": "yes", "label": "Yes"}], "timeout_s": timeout_s}),
    )
}
fn stale(prompt_id: &str) -> Value {
    json!({"event": "prompt_stale", "chat_id": "222", "thread_id": null, "prompt_id": prompt_id})
}
fn idle(acked: bool) -> Value {
    json!({"event": "idle", "acked": acked})
}

// ==== outbound requests and results ===============================================

transcript!(outbound_two_answered_out_of_order_in_one_message, discord(), [
    handshake(0),
    app(100, outbound("a1", say("c1", "one"))), sent(json!([out_frame("$R1")])),
    app(110, outbound("a2", say("c1", "two"))), sent(json!([out_frame("$R2")])),
    raw(200, "{\"type\": \"outbound_result\", \"requestId\": \"$R2\", \"result\": {\"n\": 2}}\n{\"type\": \"outbound_result\", \"requestId\": \"$R1\", \"result\": {\"n\": 1}}\n"),
    events(json!([result("a2", json!({"n": 2})), result("a1", json!({"n": 1}))])),
]);

transcript!(
    outbound_timeout_then_late_result_ignored,
    with(discord(), json!({"outbound_timeout_ms": 1000})),
    [
        handshake(0),
        app(100, outbound("a1", say("c1", "slow"))),
        sent(json!([out_frame("$R1")])),
        adv(1099),
        nothing(),
        adv(1100),
        events(json!([result(
            "a1",
            json!({"success": false, "error": "relay outbound timed out", "ambiguous": true})
        )])),
        recv(1200, result_frame("$R1", json!({"success": true}))),
        nothing(),
        adv(100_000),
        nothing(),
    ]
);

transcript!(
    outbound_result_answers_before_deadline_cancels_it,
    with(discord(), json!({"outbound_timeout_ms": 1000})),
    [
        handshake(0),
        app(100, outbound("a1", say("c1", "x"))),
        sent(json!([out_frame("$R1")])),
        recv(1099, result_frame("$R1", json!({"ok": 1}))),
        events(json!([result("a1", json!({"ok": 1}))])),
        adv(5000),
        nothing(),
    ]
);

transcript!(
    outbound_result_with_non_string_request_id_skipped,
    discord(),
    [
        handshake(0),
        app(100, outbound("a1", say("c1", "x"))),
        sent(json!([out_frame("$R1")])),
        raw(
            200,
            "{\"type\": \"outbound_result\", \"requestId\": 7, \"result\": {}}\n"
        ),
        nothing(),
        recv(300, result_frame("$R1", json!({}))),
        events(json!([result("a1", json!({}))])),
    ]
);

transcript!(
    outbound_same_app_id_twice_answered_twice,
    discord(),
    [
        handshake(0),
        app(100, outbound("dup", say("c1", "1"))),
        sent(json!([out_frame("$R1")])),
        app(101, outbound("dup", say("c1", "2"))),
        sent(json!([out_frame("$R2")])),
        recv(200, result_frame("$R2", json!({"n": 2}))),
        events(json!([result("dup", json!({"n": 2}))])),
        recv(201, result_frame("$R1", json!({"n": 1}))),
        events(json!([result("dup", json!({"n": 1}))])),
    ]
);

transcript!(
    close_with_requests_pending_answers_in_issue_order,
    discord(),
    [
        handshake(0),
        app(100, outbound("a1", say("c1", "1"))),
        sent(json!([out_frame("$R1")])),
        app(
            101,
            outbound("g1", json!({"op": "get_chat_info", "chat_id": "c7"}))
        ),
        sent(json!([out_frame("$R2")])),
        app(102, outbound("a3", say("c1", "3"))),
        sent(json!([out_frame("$R3")])),
        close(200, json!(1006), ""),
        events(json!([
            failed("a1", "relay transport connection lost"),
            result(
                "g1",
                json!({"success": false, "error": "relay transport connection lost", "name": "c7", "type": "dm"})
            ),
            failed("a3", "relay transport connection lost"),
            backoff(1000),
        ])),
        adv(100_000),
        nothing(),
    ]
);

transcript!(
    late_result_from_closed_connection_never_matches_new_request,
    discord(),
    [
        handshake(0),
        app(100, outbound("a1", say("c1", "1"))),
        sent(json!([out_frame("$R1")])),
        close(200, json!(1006), ""),
        events(json!([
            failed("a1", "relay transport connection lost"),
            backoff(1000)
        ])),
        handshake(1200),
        app(1300, outbound("a2", say("c1", "2"))),
        sent(json!([out_frame("$R2")])),
        recv(1400, result_frame("$R1", json!({"stale": true}))),
        nothing(),
        recv(1500, result_frame("$R2", json!({"fresh": true}))),
        events(json!([result("a2", json!({"fresh": true}))])),
    ]
);

transcript!(
    outbound_before_open_not_connected_get_chat_info_shaped,
    discord(),
    [
        app(
            0,
            outbound("g0", json!({"op": "get_chat_info", "chat_id": "c5"}))
        ),
        events(json!([result(
            "g0",
            json!({"success": false, "error": "relay transport not connected", "name": "c5", "type": "dm"})
        )])),
    ]
);

transcript!(
    outbound_during_handshake_is_written,
    discord(),
    [
        open(0),
        sent(json!([hello("app1")])),
        app(5, outbound("a1", say("c1", "early"))),
        sent(json!([out_frame("$R1")])),
        recv(10, descriptor_frame("discord")),
        events(json!([{"event": "ready"}])),
        recv(20, result_frame("$R1", json!({"ok": true}))),
        events(json!([result("a1", json!({"ok": true}))])),
    ]
);

transcript!(
    outbound_after_handshake_failed_not_connected,
    with(discord(), json!({"handshake_timeout_ms": 100})),
    [
        open(0),
        sent(json!([hello("app1")])),
        adv(100),
        events(json!([state("handshake_failed")])),
        app(150, outbound("a1", say("c1", "x"))),
        events(json!([failed("a1", "relay transport not connected")])),
        recv(160, descriptor_frame("discord")),
        nothing(),
        close(200, json!(1000), "handshake timeout"),
        events(json!([backoff(1000)])),
    ]
);

transcript!(
    outbound_empty_platform_is_untagged,
    two_ids(),
    [
        open(0),
        sent(json!([hello("d1"), {"type": "hello", "platform": "telegram", "botId": "t1"}])),
        recv(10, descriptor_frame("discord")),
        events(json!([{"event": "ready"}])),
        app(
            100,
            json!({"op": "outbound", "id": "a1", "action": say("c1", "x"), "platform": ""})
        ),
        sent(json!([{"type": "outbound", "requestId": "$R1", "platform": null, "botId": null}])),
    ]
);

transcript!(
    outbound_cap_refuses_beyond_limit,
    discord(),
    caps = json!({"pending_requests": 2}),
    [
        handshake(0),
        app(100, outbound("a1", say("c1", "1"))),
        sent(json!([out_frame("$R1")])),
        app(101, outbound("a2", say("c1", "2"))),
        sent(json!([out_frame("$R2")])),
        app(102, outbound("a3", say("c1", "3"))),
        events(json!([failed(
            "a3",
            "relay send failed: too many requests in flight"
        )])),
        recv(200, result_frame("$R1", json!({}))),
        events(json!([result("a1", json!({}))])),
        app(201, outbound("a4", say("c1", "4"))),
        sent(json!([out_frame("$R3")])),
    ]
);

transcript!(
    get_chat_info_null_name_kept_and_extra_keys_remain,
    discord(),
    [
        handshake(0),
        app(
            100,
            outbound("g1", json!({"op": "get_chat_info", "chat_id": "c1"}))
        ),
        sent(json!([out_frame("$R1")])),
        recv(
            200,
            result_frame("$R1", json!({"success": true, "name": null, "extra": 1}))
        ),
        events(json!([result(
            "g1",
            json!({"success": true, "name": null, "type": "dm", "extra": 1})
        )])),
    ]
);

// ==== egress records ================================================================

transcript!(
    egress_record_survives_reconnect,
    discord(),
    [
        handshake(0),
        recv(
            100,
            inbound_from(
                json!({"platform": "discord", "chat_id": "c1", "user_id": "u1", "scope_id": "g1"})
            )
        ),
        events(json!([message("hi", json!(null))])),
        close(200, json!(1006), ""),
        events(json!([backoff(1000)])),
        handshake(1200),
        app(
            1300,
            outbound("a1", json!({"op": "send", "chat_id": "c1", "content": "x"}))
        ),
        sent(
            json!([{"type": "outbound", "requestId": "$R1", "platform": "discord", "botId": "app1",
        "action": {"metadata": {"user_id": "u1", "scope_id": "g1"}}}])
        ),
    ]
);

transcript!(
    egress_relay_platform_not_recorded_but_ids_are,
    discord(),
    [
        handshake(0),
        recv(
            100,
            inbound_from(json!({"platform": "myspace", "chat_id": "c1", "user_id": "u1"}))
        ),
        events(json!([{"event": "message", "message": {"source": {"platform": "relay"}}}])),
        app(200, outbound("a1", say("c1", "x"))),
        sent(
            json!([{"type": "outbound", "requestId": "$R1", "platform": null, "action": {"metadata": {"user_id": "u1"}}}])
        ),
    ]
);

transcript!(
    egress_keeps_last_non_empty_values,
    discord(),
    [
        handshake(0),
        recv(
            100,
            inbound_from(
                json!({"platform": "discord", "chat_id": "c1", "user_id": "u1", "scope_id": "g1", "profile": "p1"})
            )
        ),
        events(json!([message("hi", json!(null))])),
        recv(
            110,
            inbound_from(
                json!({"platform": "discord", "chat_id": "c1", "user_id": "", "scope_id": "g2"})
            )
        ),
        events(json!([message("hi", json!(null))])),
        app(
            200,
            json!({"op": "outbound", "id": "a1", "action": {"op": "send", "chat_id": "c1", "metadata": {"profile": "mine"}}})
        ),
        sent(
            json!([{"type": "outbound", "requestId": "$R1", "action": {"metadata": {"user_id": "u1", "scope_id": "g2", "profile": "mine"}}}])
        ),
    ]
);

transcript!(
    egress_numeric_chat_id_matches_and_odd_metadata_left_alone,
    discord(),
    [
        handshake(0),
        recv(
            100,
            inbound_from(json!({"platform": "discord", "chat_id": 555, "user_id": "u5"}))
        ),
        events(json!([{"event": "message", "message": {"source": {"chat_id": "555"}}}])),
        app(
            200,
            json!({"op": "outbound", "id": "a1", "action": {"op": "send", "chat_id": 555}})
        ),
        sent(
            json!([{"type": "outbound", "requestId": "$R1", "platform": "discord", "action": {"chat_id": 555, "metadata": {"user_id": "u5"}}}])
        ),
        app(
            210,
            json!({"op": "outbound", "id": "a2", "action": {"op": "send", "chat_id": "555", "metadata": "keep"}})
        ),
        sent(json!([{"type": "outbound", "requestId": "$R2", "action": {"metadata": "keep"}}])),
        app(
            220,
            json!({"op": "outbound", "id": "a3", "action": {"op": "send", "chat_id": "other"}})
        ),
        sent(
            json!([{"type": "outbound", "requestId": "$R3", "platform": null, "action": {"metadata": null}}])
        ),
    ]
);

transcript!(
    egress_explicit_platform_wins_over_record,
    two_ids(),
    [
        open(0),
        sent(json!([hello("d1"), {"type": "hello"}])),
        recv(10, descriptor_frame("discord")),
        events(json!([{"event": "ready"}])),
        recv(
            100,
            inbound_from(json!({"platform": "telegram", "chat_id": "9"}))
        ),
        events(json!([message("hi", json!(null))])),
        app(
            200,
            json!({"op": "outbound", "id": "a1", "action": say("9", "x")})
        ),
        sent(
            json!([{"type": "outbound", "requestId": "$R1", "platform": "telegram", "botId": "t1"}])
        ),
        app(
            210,
            json!({"op": "outbound", "id": "a2", "action": say("9", "x"), "platform": "slack"})
        ),
        sent(json!([{"type": "outbound", "requestId": "$R2", "platform": "slack", "botId": null}])),
    ]
);

// ==== handshake =====================================================================

transcript!(
    handshake_each_connection_anew_and_later_descriptors_are_events,
    discord(),
    [
        handshake(0),
        recv(20, descriptor_frame("telegram")),
        events(json!([{"event": "descriptor", "platform": "telegram",
            "descriptor": {"platform": "telegram", "max_message_length": 2000}}])),
        close(100, json!(1006), ""),
        events(json!([backoff(1000)])),
        handshake(1100),
        recv(1200, descriptor_frame("discord")),
        events(json!([{"event": "descriptor", "platform": "discord",
            "descriptor": {"platform": "discord"}}])),
    ]
);

transcript!(
    handshake_deadline_of_closed_connection_is_stale,
    with(discord(), json!({"handshake_timeout_ms": 1000})),
    [
        open(0),
        sent(json!([hello("app1")])),
        close(500, json!(1006), ""),
        events(json!([backoff(1000)])),
        open(1500),
        sent(json!([hello("app1")])),
        adv(1999),
        nothing(),
        adv(2500),
        events(json!([state("handshake_failed")])),
    ]
);

transcript!(
    handshake_rejected_descriptors_then_valid,
    discord(),
    [
        open(0),
        sent(json!([hello("app1")])),
        recv(
            10,
            json!({"type": "descriptor", "descriptor": {"platform": "discord"}})
        ),
        nothing(),
        recv(20, json!({"type": "descriptor", "descriptor": null})),
        nothing(),
        recv(30, descriptor_frame("discord")),
        events(json!([{"event": "ready"}])),
    ]
);

transcript!(
    hello_per_identity_with_manifest_on_every_open,
    json!({"identities": [
        {"platform": "discord", "bot_id": "d1", "command_manifest": [{"name": "new"}]},
        {"platform": "slack", "bot_id": "s1", "command_manifest": [{"name": "ignored"}]}],
        "reconnect_jitter": 0}),
    [
        open(0),
        // D20: the manifest is sent in Discord hellos only.
        sent(
            json!([{"type": "hello", "platform": "discord", "botId": "d1", "command_manifest": [{"name": "new"}]},
        {"type": "hello", "platform": "slack", "botId": "s1", "command_manifest": null}])
        ),
        close(10, json!(null), ""),
        events(json!([backoff(1000)])),
        open(1010),
        sent(
            json!([{"type": "hello", "botId": "d1", "command_manifest": [{"name": "new"}]}, {"type": "hello", "botId": "s1"}])
        ),
    ]
);

// ==== framing =======================================================================

transcript!(malformed_line_between_two_good_ones, discord(), [
    handshake(0),
    raw(100, "{\"type\": \"inbound\", \"event\": {\"text\": \"a\"}}\n{oops\n{\"type\": \"inbound\", \"event\": {\"text\": \"b\"}}\n"),
    events(json!([message("a", json!(null)), message("b", json!(null))])),
]);

transcript!(
    malformed_buffered_line_not_acked_then_good_redelivery_delivered,
    discord(),
    [
        handshake(0),
        raw(
            100,
            "{\"type\": \"inbound\", \"event\": null, \"bufferId\": \"b1\"}\n"
        ),
        nothing(),
        recv(200, inbound("ok", "c1", json!("b1"))),
        events(json!([message("ok", json!("b1"))])),
    ]
);

transcript!(
    receive_before_open_and_after_close_ignored,
    discord(),
    [
        recv(0, inbound("early", "c1", json!(null))),
        nothing(),
        handshake(10),
        close(100, json!(1006), ""),
        events(json!([backoff(1000)])),
        recv(200, inbound("late", "c1", json!(null))),
        nothing(),
    ]
);

transcript!(
    text_and_binary_share_one_buffer,
    discord(),
    [
        handshake(0),
        raw(
            100,
            "{\"type\": \"inbound\", \"event\": {\"text\": \"\u{e9}"
        ),
        nothing(),
        binary(
            110,
            b"x\"}}\n{\"type\": \"interrupt_inbound\", \"session_key\": \"s\"}\n"
        ),
        events(
            json!([message("\u{e9}x", json!(null)), {"event": "interrupt", "session_key": "s", "chat_id": ""}])
        ),
    ]
);

transcript!(
    oversize_line_across_messages_then_good,
    with(discord(), json!({"max_line_bytes": 600})),
    [
        handshake(0),
        raw(
            100,
            &format!(
                "{{\"type\": \"inbound\", \"event\": {{\"text\": \"{}",
                "x".repeat(400)
            )
        ),
        nothing(),
        raw(110, &"y".repeat(300)),
        nothing(),
        raw(
            120,
            "\"}}\n{\"type\": \"inbound\", \"event\": {\"text\": \"fine\"}}\n"
        ),
        events(json!([message("fine", json!(null))])),
    ]
);

transcript!(
    blank_and_whitespace_lines_skipped,
    discord(),
    [
        handshake(0),
        raw(100, "\n   \n\t\r\n{\"type\": \"going_idle_ack\"}\r\n\n"),
        nothing(),
    ]
);

// ==== close codes, backoff, revocation ===============================================

transcript!(
    close_4401_before_handshake_backs_off,
    discord(),
    [
        open(0),
        sent(json!([hello("app1")])),
        close(10, json!(4401), "unauthorized"),
        events(json!([backoff(1000)])),
        close(1010, json!(4401), "unauthorized"),
        events(json!([backoff(2000)])),
    ]
);

transcript!(
    close_4401_after_handshake_redials_once,
    discord(),
    [
        handshake(0),
        close(100, json!(4401), "unauthorized"),
        events(json!([state("redial")])),
        handshake(101),
        close(200, json!(1006), ""),
        events(json!([backoff(1000)])),
    ]
);

transcript!(
    close_4401_expired_after_handshake_backs_off,
    discord(),
    [
        handshake(0),
        close(100, json!(4401), "expired"),
        events(json!([backoff(1000)])),
        open(1100),
        sent(json!([hello("app1")])),
        close(1200, json!(4401), "expired"),
        events(json!([backoff(2000)])),
    ]
);

transcript!(
    second_4401_on_immediate_redial_revokes_and_silences,
    discord(),
    [
        handshake(0),
        close(100, json!(4401), "unauthorized"),
        events(json!([state("redial")])),
        open(101),
        sent(json!([hello("app1")])),
        close(102, json!(4401), "unauthorized"),
        events(json!([state("revoked")])),
        app(200, outbound("a1", say("c1", "x"))),
        events(json!([failed("a1", "relay transport not connected")])),
        app(201, json!({"op": "going_idle"})),
        events(json!([idle(false)])),
        app(202, app_ack("b1")),
        nothing(),
        app(203, json!({"op": "interrupt", "session_key": "s"})),
        nothing(),
        open(300),
        nothing(),
        recv(301, inbound("x", "c1", json!("b9"))),
        nothing(),
        close(302, json!(1006), ""),
        nothing(),
        close(303, json!(4401), ""),
        nothing(),
    ]
);

transcript!(
    failed_redial_dial_with_4401_revokes,
    discord(),
    [
        handshake(0),
        close(100, json!(4401), "unauthorized"),
        events(json!([state("redial")])),
        close(101, json!(4401), "unauthorized"),
        events(json!([state("revoked")])),
    ]
);

transcript!(
    failed_redial_dial_other_code_backs_off_and_earns_a_new_redial,
    discord(),
    [
        handshake(0),
        close(100, json!(4401), "unauthorized"),
        events(json!([state("redial")])),
        close(101, json!(null), "refused"),
        events(json!([backoff(1000)])),
        open(1101),
        sent(json!([hello("app1")])),
        close(1102, json!(4401), "unauthorized"),
        events(json!([state("redial")])),
    ]
);

transcript!(
    backoff_counts_failed_dials_and_resets_only_after_a_stable_connection,
    with(discord(), json!({"stable_connection_ms": 5000})),
    [
        close(0, json!(null), "refused"),
        events(json!([backoff(1000)])),
        close(1000, json!(null), "refused"),
        events(json!([backoff(2000)])),
        close(3000, json!(null), "refused"),
        events(json!([backoff(4000)])),
        // A handshake alone does not restart the ladder (D11 revised)...
        handshake(7000),
        close(8000, json!(1011), ""),
        events(json!([backoff(8000)])),
        // ...a connection that lasted stable_connection_ms past it does: exactly
        // the limit counts as stable.
        handshake(16_000),
        close(21_010, json!(1006), ""),
        events(json!([backoff(1000)])),
        handshake(22_010),
        close(27_009, json!(1006), ""),
        events(json!([backoff(2000)])),
    ]
);

transcript!(
    backoff_base_and_cap_from_the_config,
    with(
        discord(),
        json!({"backoff_base_ms": 50, "backoff_max_ms": 120})
    ),
    [
        close(0, json!(null), "refused"),
        events(json!([backoff(50)])),
        close(50, json!(null), "refused"),
        events(json!([backoff(100)])),
        close(150, json!(null), "refused"),
        events(json!([backoff(120)])),
    ]
);

// ==== redial hold =====================================================================

transcript!(
    redial_hold_defers_the_dial_until_released_or_capped,
    discord(),
    [
        handshake(0),
        app(100, json!({"op": "hold_redial"})),
        nothing(),
        // Held: the dial waits for the hold's end (60 s after the hold), not 1 s.
        close(200, json!(1006), ""),
        events(json!([backoff(59_900)])),
        // Released: the dial is announced again for the backoff's own time
        // (1 s after the close).
        app(300, json!({"op": "release_redial"})),
        events(
            json!([{"event": "state", "state": "backoff", "retry_in_ms": 900, "reason": "redial released"}])
        ),
        // The next close backs off as usual.
        handshake(1300),
        close(1400, json!(1006), ""),
        events(json!([backoff(2000)])),
        // A hold while a dial is announced moves it to the hold's end.
        close(1500, json!(1006), ""),
        events(json!([backoff(4000)])),
        app(1600, json!({"op": "hold_redial"})),
        events(
            json!([{"event": "state", "state": "backoff", "retry_in_ms": 60_000, "reason": "redial held"}])
        ),
        app(1700, json!({"op": "release_redial"})),
        events(
            json!([{"event": "state", "state": "backoff", "retry_in_ms": 3800, "reason": "redial released"}])
        ),
        // A hold whose cap has passed no longer defers anything.
        app(5500, json!({"op": "hold_redial"})),
        nothing(),
        handshake(5600),
        close(65_500, json!(1006), ""),
        events(json!([backoff(8000)])),
    ]
);

// ==== a write that failed ===============================================================

transcript!(
    failed_write_answers_send_failed_then_closes,
    discord(),
    [
        handshake(0),
        app(100, outbound("a1", say("c1", "1"))),
        sent(json!([out_frame("$R1")])),
        app(110, outbound("a2", say("c1", "2"))),
        sent(json!([out_frame("$R2")])),
        // The host could not write a2's frame: a2 never left (not ambiguous);
        // a1 had been written, so it is lost with the connection (ambiguous).
        vec![json!({"do": "write_failed", "now_ms": 120, "reason": "broken pipe"})],
        events(json!([result(
            "a2",
            json!({"success": false, "error": "relay send failed: broken pipe", "ambiguous": null})
        )])),
        app(130, outbound("a3", say("c1", "3"))),
        events(json!([failed("a3", "relay transport not connected")])),
        close(140, json!(null), "broken pipe"),
        events(json!([
            result(
                "a1",
                json!({"success": false, "error": "relay transport connection lost", "ambiguous": true})
            ),
            backoff(1000),
        ])),
    ]
);

// ==== deliberate stop ====================================================================

transcript!(
    stop_answers_transport_closed_and_never_dials_again,
    discord(),
    [
        handshake(0),
        app(100, outbound("a1", say("c1", "1"))),
        sent(json!([out_frame("$R1")])),
        vec![json!({"do": "stop", "now_ms": 200})],
        events(json!([result(
            "a1",
            json!({"success": false,
            "error": "relay send failed: relay transport closed", "ambiguous": true})
        )])),
        app(210, outbound("a2", say("c1", "2"))),
        events(json!([failed("a2", "relay transport closed")])),
        close(300, json!(1000), ""),
        nothing(),
        app(310, json!({"op": "going_idle"})),
        events(json!([idle(false)])),
        adv(1_000_000),
        nothing(),
    ]
);

// ==== per-platform descriptors (D15) =====================================================

transcript!(
    two_platforms_each_descriptor_reaches_the_application,
    two_ids(),
    [
        open(0),
        sent(
            json!([{"type": "hello", "platform": "discord", "botId": "d1"},
            {"type": "hello", "platform": "telegram", "botId": "t1"}])
        ),
        recv(10, descriptor_frame("discord")),
        events(
            json!([{"event": "ready", "descriptor": {"platform": "discord", "max_message_length": 2000}}])
        ),
        recv(
            20,
            json!({"type": "descriptor", "descriptor": {"contract_version": 1, "platform": "telegram",
            "label": "Telegram", "max_message_length": 4096, "supports_draft_streaming": false,
            "supports_edit": true, "supports_threads": false, "markdown_dialect": "markdown_v2",
            "len_unit": "utf16"}})
        ),
        events(json!([{"event": "descriptor", "platform": "telegram",
            "descriptor": {"platform": "telegram", "max_message_length": 4096, "len_unit": "utf16"}}])),
    ]
);

// ==== message identity (D16) and nack (D10 revised) ======================================

transcript!(
    nack_releases_the_message_identity_too,
    discord(),
    [
        handshake(0),
        recv(
            100,
            json!({"type": "inbound", "event": {"text": "x", "message_id": "m1",
            "source": {"platform": "discord", "chat_id": "c1"}}, "bufferId": "b1"})
        ),
        events(json!([message("x", json!("b1"))])),
        app(110, json!({"op": "nack", "buffer_id": "b1"})),
        nothing(),
        // Replayed under a new id: delivered again, because b1 was released.
        recv(
            120,
            json!({"type": "inbound", "event": {"text": "x", "message_id": "m1",
            "source": {"platform": "discord", "chat_id": "c1"}}, "bufferId": "b2"})
        ),
        events(json!([message("x", json!("b2"))])),
        // The same message in another chat is another message.
        recv(
            130,
            json!({"type": "inbound", "event": {"text": "x", "message_id": "m1",
            "source": {"platform": "discord", "chat_id": "c2"}}})
        ),
        events(json!([message("x", json!(null))])),
        // A nack of an acked or unknown id changes nothing.
        app(140, app_ack("b2")),
        sent(json!([ack("b2")])),
        app(150, json!({"op": "nack", "buffer_id": "b2"})),
        nothing(),
        recv(
            160,
            json!({"type": "inbound", "event": {"text": "x", "message_id": "m1",
            "source": {"platform": "discord", "chat_id": "c1"}}, "bufferId": "b2"})
        ),
        sent(json!([ack("b2")])),
    ]
);

// ==== D17–D19 ===============================================================================

transcript!(
    connection_lost_is_ambiguous_d17,
    discord(),
    [
        handshake(0),
        app(100, outbound("a1", say("c1", "1"))),
        sent(json!([out_frame("$R1")])),
        close(200, json!(1006), ""),
        events(json!([
            result(
                "a1",
                json!({"success": false, "error": "relay transport connection lost", "ambiguous": true})
            ),
            backoff(1000),
        ])),
    ]
);

transcript!(
    prompt_timeout_clamped_d18,
    discord(),
    [
        handshake(0),
        // timeout_s 1 is clamped up to 30 s: a press at 20 s is still in time.
        app(1000, prompt("p1", "n0nce.0101", 1)),
        sent(json!([out_frame("$P1")])),
        recv(1100, result_frame("$P1", json!({"success": true}))),
        events(json!([result("p1", json!({"success": true}))])),
        recv(
            21_000,
            forward("discord", press("1", "hp1:n0nce.0101:yes"), json!(null))
        ),
        events(
            json!([{"event": "message", "message": {"prompt_response": {"prompt_id": "n0nce.0101"}}}])
        ),
        // timeout_s 10 days is clamped down to one day.
        app(30_000, prompt("p2", "n0nce.0102", 864_000)),
        sent(json!([out_frame("$P2")])),
        recv(30_100, result_frame("$P2", json!({"success": true}))),
        events(json!([result("p2", json!({"success": true}))])),
        adv(30_000 + 86_400_000),
        nothing(),
        recv(
            30_000 + 86_400_100,
            forward("discord", press("2", "hp1:n0nce.0102:yes"), json!(null))
        ),
        events(json!([stale("n0nce.0102")])),
    ]
);

transcript!(
    follow_up_tagged_by_its_kind_d19,
    two_ids(),
    [
        open(0),
        sent(
            json!([{"type": "hello", "platform": "discord"}, {"type": "hello", "platform": "telegram"}])
        ),
        recv(10, descriptor_frame("discord")),
        events(json!([{"event": "ready"}])),
        app(
            100,
            outbound(
                "f1",
                json!({"op": "follow_up", "kind": "telegram.callback", "content": "done"})
            )
        ),
        sent(
            json!([{"type": "outbound", "requestId": "$R1", "platform": "telegram", "botId": "t1"}])
        ),
        // A kind naming a platform the gateway does not front is not a tag.
        app(
            110,
            outbound(
                "f2",
                json!({"op": "follow_up", "kind": "slack.response_url", "content": "x"})
            )
        ),
        sent(json!([{"type": "outbound", "requestId": "$R2", "platform": null, "botId": null}])),
        // An explicit platform wins.
        app(
            120,
            json!({"op": "outbound", "id": "f3", "platform": "discord",
            "action": {"op": "follow_up", "kind": "telegram.callback"}})
        ),
        sent(
            json!([{"type": "outbound", "requestId": "$R3", "platform": "discord", "botId": "d1"}])
        ),
    ]
);

transcript!(
    close_code_null_after_handshake_backs_off,
    discord(),
    [
        handshake(0),
        close(100, json!(null), "reset"),
        events(json!([backoff(1000)])),
    ]
);

// ==== buffered deliveries (D10) =======================================================

transcript!(
    buffered_inbound_acked_only_after_app_ack,
    discord(),
    [
        handshake(0),
        recv(100, inbound("m", "c1", json!("b1"))),
        events(json!([message("m", json!("b1"))])),
        adv(50_000),
        nothing(),
        app(50_001, app_ack("b1")),
        sent(json!([ack("b1")])),
    ]
);

transcript!(
    redelivered_passthrough_not_delivered_twice,
    discord(),
    [
        handshake(0),
        recv(100, forward("discord", slash("9001", "new"), json!("pb-1"))),
        events(
            json!([{"event": "message", "message": {"text": "/new", "message_type": "command"}, "buffer_id": "pb-1"}])
        ),
        recv(200, forward("discord", slash("9001", "new"), json!("pb-1"))),
        nothing(),
        app(300, app_ack("pb-1")),
        sent(json!([ack("pb-1")])),
        recv(400, forward("discord", slash("9001", "new"), json!("pb-1"))),
        sent(json!([ack("pb-1")])),
    ]
);

transcript!(
    redelivery_on_next_connection_after_ack_acked_at_once,
    discord(),
    [
        handshake(0),
        recv(100, inbound("m", "c1", json!(7))),
        events(json!([message("m", json!("7"))])),
        close(200, json!(1006), ""),
        events(json!([backoff(1000)])),
        app(300, app_ack("7")),
        nothing(),
        handshake(1200),
        recv(1300, inbound("m", "c1", json!(7))),
        sent(json!([ack("7")])),
    ]
);

transcript!(
    unacked_redelivery_on_next_connection_suppressed,
    discord(),
    [
        handshake(0),
        recv(100, inbound("m", "c1", json!("b1"))),
        events(json!([message("m", json!("b1"))])),
        close(200, json!(1006), ""),
        events(json!([backoff(1000)])),
        handshake(1200),
        recv(1300, inbound("m", "c1", json!("b1"))),
        nothing(),
        app(1400, app_ack("b1")),
        sent(json!([ack("b1")])),
    ]
);

transcript!(
    dropped_forward_acked_at_once_and_again_on_redelivery,
    discord(),
    [
        handshake(0),
        recv(100, forward("twilio", json!({"x": 1}), json!("pb-3"))),
        sent(json!([ack("pb-3")])),
        recv(200, forward("twilio", json!({"x": 1}), json!("pb-3"))),
        sent(json!([ack("pb-3")])),
        recv(
            300,
            forward("discord", json!({"id": "1", "type": 1}), json!(null))
        ),
        nothing(),
        recv(
            310,
            forward("discord", json!({"id": "1", "type": 4}), json!("pb-4"))
        ),
        sent(json!([ack("pb-4")])),
    ]
);

transcript!(
    falsy_buffer_ids_mean_unbuffered,
    discord(),
    [
        handshake(0),
        recv(100, inbound("z", "c1", json!(0))),
        events(json!([message("z", json!(null))])),
        recv(110, inbound("f", "c1", json!(false))),
        events(json!([message("f", json!(null))])),
    ]
);

transcript!(
    app_ack_of_unknown_id_is_passed_on,
    discord(),
    [
        handshake(0),
        app(100, app_ack("never-seen")),
        sent(json!([ack("never-seen")])),
        recv(200, inbound("m", "c1", json!("never-seen"))),
        sent(json!([ack("never-seen")])),
    ]
);

transcript!(
    dedup_memory_is_bounded_lru,
    discord(),
    caps = json!({"buffer_ids": 2}),
    [
        handshake(0),
        recv(100, inbound("1", "c1", json!("b1"))),
        events(json!([message("1", json!("b1"))])),
        recv(110, inbound("2", "c1", json!("b2"))),
        events(json!([message("2", json!("b2"))])),
        recv(120, inbound("3", "c1", json!("b3"))),
        events(json!([message("3", json!("b3"))])),
        // b1 was the least recently seen and is forgotten: the bound wins over exactly-once.
        recv(130, inbound("1", "c1", json!("b1"))),
        events(json!([message("1", json!("b1"))])),
        recv(140, inbound("3", "c1", json!("b3"))),
        nothing(),
    ]
);

// ==== prompts ==========================================================================

transcript!(
    foreign_prompt_press_consumed_and_acked,
    discord(),
    [
        handshake(0),
        recv(
            100,
            forward("discord", press("1", "hp1:other.1234:yes"), json!("pb-1"))
        ),
        sent(json!([ack("pb-1")])),
        recv(
            110,
            forward("discord", press("2", "hp1:other.1234:yes"), json!(null))
        ),
        nothing(),
    ]
);

transcript!(
    pending_prompt_delivered_once_then_answered_consumed,
    discord(),
    [
        handshake(0),
        app(100, prompt("p1", "n0nce.0001", 60)),
        sent(json!([out_frame("$P1")])),
        recv(110, result_frame("$P1", json!({"success": true}))),
        events(json!([result("p1", json!({"success": true}))])),
        recv(
            200,
            forward("discord", press("1", "hp1:n0nce.0001:yes"), json!("pb-1"))
        ),
        events(
            json!([{"event": "message", "message": {"text": "/yes", "prompt_response": {"prompt_id": "n0nce.0001", "option_id": "yes"}}, "buffer_id": "pb-1"}])
        ),
        recv(
            300,
            forward("discord", press("2", "hp1:n0nce.0001:yes"), json!("pb-2"))
        ),
        sent(json!([ack("pb-2")])),
        app(400, app_ack("pb-1")),
        sent(json!([ack("pb-1")])),
    ]
);

transcript!(
    prompt_expired_press_is_stale,
    discord(),
    [
        handshake(0),
        app(1000, prompt("p1", "n0nce.0002", 30)),
        sent(json!([out_frame("$P1")])),
        recv(1100, result_frame("$P1", json!({"success": true}))),
        events(json!([result("p1", json!({"success": true}))])),
        adv(32_000),
        nothing(),
        recv(
            32_100,
            forward("discord", press("1", "hp1:n0nce.0002:yes"), json!("pb-1"))
        ),
        expect(json!([ack("pb-1")]), json!([stale("n0nce.0002")])),
    ]
);

transcript!(
    unknown_own_and_legacy_prompt_presses_are_stale,
    discord(),
    [
        handshake(0),
        recv(
            100,
            forward("discord", press("1", "hp1:n0nce.ffff:yes"), json!(null))
        ),
        events(json!([stale("n0nce.ffff")])),
        recv(
            110,
            forward("discord", press("2", "hp1:legacy1:yes"), json!(null))
        ),
        events(json!([stale("legacy1")])),
    ]
);

transcript!(
    prompt_sent_while_disconnected_is_not_registered,
    discord(),
    [
        app(0, prompt("p1", "n0nce.0003", 60)),
        events(json!([failed("p1", "relay transport not connected")])),
        handshake(10),
        recv(
            100,
            forward("discord", press("1", "hp1:n0nce.0003:yes"), json!(null))
        ),
        events(json!([stale("n0nce.0003")])),
    ]
);

transcript!(
    inbound_prompt_response_without_option_is_plain_message,
    discord(),
    [
        handshake(0),
        recv(
            100,
            json!({"type": "inbound", "event": {"text": "t", "source": {"chat_id": "c1"},
        "prompt_response": {"prompt_id": "n0nce.0009", "option_id": ""}}})
        ),
        events(json!([message("t", json!(null))])),
    ]
);

transcript!(
    prompt_reregistered_after_answer_is_pending_again,
    discord(),
    [
        handshake(0),
        app(100, prompt("p1", "n0nce.0004", 60)),
        sent(json!([out_frame("$P1")])),
        recv(
            110,
            forward("discord", press("1", "hp1:n0nce.0004:yes"), json!(null))
        ),
        events(json!([{"event": "message", "message": {"text": "/yes"}}])),
        app(200, prompt("p2", "n0nce.0004", 60)),
        sent(json!([out_frame("$P2")])),
        recv(
            210,
            forward("discord", press("2", "hp1:n0nce.0004:yes"), json!(null))
        ),
        events(json!([{"event": "message", "message": {"text": "/yes"}}])),
    ]
);

// ==== interrupts and going idle ==========================================================

transcript!(
    interrupts_both_ways,
    discord(),
    [
        app(0, json!({"op": "interrupt", "session_key": "s0"})),
        nothing(),
        handshake(10),
        recv(
            100,
            json!({"type": "interrupt_inbound", "session_key": "s1", "chat_id": 5})
        ),
        events(json!([{"event": "interrupt", "session_key": "s1", "chat_id": "5"}])),
        app(
            200,
            json!({"op": "interrupt", "session_key": "s2", "reason": "stop"})
        ),
        sent(json!([{"type": "interrupt", "session_key": "s2", "reason": "stop"}])),
    ]
);

transcript!(
    going_idle_twice_coalesces_into_one_wait,
    discord(),
    [
        handshake(0),
        app(100, json!({"op": "going_idle"})),
        sent(json!([{"type": "going_idle"}])),
        app(110, json!({"op": "going_idle"})),
        nothing(),
        recv(200, json!({"type": "going_idle_ack"})),
        events(json!([idle(true)])),
        app(300, json!({"op": "going_idle"})),
        sent(json!([{"type": "going_idle"}])),
    ]
);

transcript!(
    going_idle_deadline_of_closed_connection_is_stale,
    with(discord(), json!({"going_idle_timeout_ms": 1000})),
    [
        handshake(0),
        app(100, json!({"op": "going_idle"})),
        sent(json!([{"type": "going_idle"}])),
        close(200, json!(1006), ""),
        events(json!([idle(false), backoff(1000)])),
        handshake(300),
        adv(5000),
        nothing(),
        recv(5001, json!({"type": "going_idle_ack"})),
        nothing(),
    ]
);

// ==== application command errors =====================================================

transcript!(
    bad_commands_are_typed_errors_and_change_nothing,
    discord(),
    [
        handshake(0),
        app(100, json!({"op": "dance"})),
        events(json!([{"event": "error", "error": {"kind": "unknown_type"}}])),
        app(110, json!({"op": "outbound", "action": {}})),
        events(json!([{"event": "error", "error": {"kind": "missing_field"}}])),
        app(120, json!({"op": "outbound", "id": "a", "action": []})),
        events(json!([{"event": "error", "error": {"kind": "invalid_field"}}])),
        app(130, json!("outbound")),
        events(json!([{"event": "error", "error": {"kind": "not_object"}}])),
        app(140, outbound("a1", say("c1", "x"))),
        sent(json!([out_frame("$R1")])),
    ]
);

/// Every transcript, in file order.
pub fn all() -> Vec<Transcript> {
    vec![
        outbound_two_answered_out_of_order_in_one_message(),
        outbound_timeout_then_late_result_ignored(),
        outbound_result_answers_before_deadline_cancels_it(),
        outbound_result_with_non_string_request_id_skipped(),
        outbound_same_app_id_twice_answered_twice(),
        close_with_requests_pending_answers_in_issue_order(),
        late_result_from_closed_connection_never_matches_new_request(),
        outbound_before_open_not_connected_get_chat_info_shaped(),
        outbound_during_handshake_is_written(),
        outbound_after_handshake_failed_not_connected(),
        outbound_empty_platform_is_untagged(),
        outbound_cap_refuses_beyond_limit(),
        get_chat_info_null_name_kept_and_extra_keys_remain(),
        egress_record_survives_reconnect(),
        egress_relay_platform_not_recorded_but_ids_are(),
        egress_keeps_last_non_empty_values(),
        egress_numeric_chat_id_matches_and_odd_metadata_left_alone(),
        egress_explicit_platform_wins_over_record(),
        handshake_each_connection_anew_and_later_descriptors_are_events(),
        handshake_deadline_of_closed_connection_is_stale(),
        handshake_rejected_descriptors_then_valid(),
        hello_per_identity_with_manifest_on_every_open(),
        malformed_line_between_two_good_ones(),
        malformed_buffered_line_not_acked_then_good_redelivery_delivered(),
        receive_before_open_and_after_close_ignored(),
        text_and_binary_share_one_buffer(),
        oversize_line_across_messages_then_good(),
        blank_and_whitespace_lines_skipped(),
        close_4401_before_handshake_backs_off(),
        close_4401_after_handshake_redials_once(),
        close_4401_expired_after_handshake_backs_off(),
        second_4401_on_immediate_redial_revokes_and_silences(),
        failed_redial_dial_with_4401_revokes(),
        failed_redial_dial_other_code_backs_off_and_earns_a_new_redial(),
        backoff_counts_failed_dials_and_resets_only_after_a_stable_connection(),
        backoff_base_and_cap_from_the_config(),
        redial_hold_defers_the_dial_until_released_or_capped(),
        failed_write_answers_send_failed_then_closes(),
        stop_answers_transport_closed_and_never_dials_again(),
        two_platforms_each_descriptor_reaches_the_application(),
        nack_releases_the_message_identity_too(),
        connection_lost_is_ambiguous_d17(),
        prompt_timeout_clamped_d18(),
        follow_up_tagged_by_its_kind_d19(),
        close_code_null_after_handshake_backs_off(),
        buffered_inbound_acked_only_after_app_ack(),
        redelivered_passthrough_not_delivered_twice(),
        redelivery_on_next_connection_after_ack_acked_at_once(),
        unacked_redelivery_on_next_connection_suppressed(),
        dropped_forward_acked_at_once_and_again_on_redelivery(),
        falsy_buffer_ids_mean_unbuffered(),
        app_ack_of_unknown_id_is_passed_on(),
        dedup_memory_is_bounded_lru(),
        foreign_prompt_press_consumed_and_acked(),
        pending_prompt_delivered_once_then_answered_consumed(),
        prompt_expired_press_is_stale(),
        unknown_own_and_legacy_prompt_presses_are_stale(),
        prompt_sent_while_disconnected_is_not_registered(),
        inbound_prompt_response_without_option_is_plain_message(),
        prompt_reregistered_after_answer_is_pending_again(),
        interrupts_both_ways(),
        going_idle_twice_coalesces_into_one_wait(),
        going_idle_deadline_of_closed_connection_is_stale(),
        bad_commands_are_typed_errors_and_change_nothing(),
    ]
}
