//! The link's own rules: dials, states, keepalive, shutdown, recovery.

use serde_json::{json, Value};

use super::*;
use crate::session::Identity;

const DESCRIPTOR: &str = r#"{"type":"descriptor","descriptor":{"contract_version":1,"platform":"slack","label":"Slack","max_message_length":40000,"supports_draft_streaming":false,"supports_edit":true,"supports_threads":true,"markdown_dialect":"slack","len_unit":"chars"}}"#;

fn config() -> LinkConfig {
    LinkConfig {
        identities: vec![Identity {
            platform: "slack".into(),
            bot_id: "B1".into(),
            command_manifest: None,
        }],
        url: "http://127.0.0.1:9".into(),
        tenant: Some("t1".into()),
        seed: 1,
        unix_offset_ms: 1_700_000_000_000,
        gateway_id: Some("gw".into()),
        secret: Some("s3cret".into()),
        options: Options {
            reconnect_jitter_percent: Some(0),
            ..Options::default()
        },
    }
}

fn events(effects: &[Effect]) -> Vec<Value> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Emit(ev) => Some(serde_json::from_str(&ev.line).unwrap()),
            _ => None,
        })
        .collect()
}

fn states(effects: &[Effect]) -> Vec<String> {
    events(effects)
        .iter()
        .filter(|e| e["event"] == "state")
        .map(|e| e["state"].as_str().unwrap().to_string())
        .collect()
}

fn ready_link() -> Link {
    let mut link = Link::new(config()).unwrap();
    link.start(0);
    link.open(10);
    let out = link.receive_text(20, &format!("{DESCRIPTOR}\n"));
    assert_eq!(states(&out), ["ready"]);
    link
}

#[test]
fn start_dials_with_the_derived_url_and_a_token() {
    let mut link = Link::new(config()).unwrap();
    let out = link.start(0);
    assert_eq!(states(&out), ["connecting"]);
    let dial = out
        .iter()
        .find_map(|e| match e {
            Effect::Dial { url, authorization } => Some((url.clone(), authorization.clone())),
            _ => None,
        })
        .expect("a dial");
    assert_eq!(dial.0, crate::url::dial_url("http://127.0.0.1:9"));
    assert!(dial.1.unwrap().starts_with("Bearer "));
    assert_eq!(events(&out)[0]["tenant"], "t1");
    // No second dial while one is in progress.
    assert!(link.start(1).is_empty());
}

#[test]
fn every_state_of_a_session_is_announced_by_the_link() {
    let mut link = Link::new(config()).unwrap();
    let mut seen = states(&link.start(0));
    seen.extend(states(&link.open(5)));
    seen.extend(states(&link.receive_text(6, &format!("{DESCRIPTOR}\n"))));
    seen.extend(states(&link.going_idle(7)));
    seen.extend(states(
        &link.receive_text(8, "{\"type\":\"going_idle_ack\"}\n"),
    ));
    seen.extend(states(&link.closed(9, Some(1006), "gone")));
    assert_eq!(
        seen,
        ["connecting", "handshaking", "ready", "idle", "backoff"]
    );
    assert_eq!(link.poll_timeout(), Some(9 + 1000));
    let out = link.handle_timeout(1009);
    assert_eq!(states(&out), ["connecting"]);
    assert!(out.iter().any(|e| matches!(e, Effect::Dial { .. })));
}

#[test]
fn keepalive_pings_and_declares_a_silent_link_dead() {
    let mut link = ready_link();
    let ping_at = 10 + DEFAULT_PING_INTERVAL_MS;
    assert_eq!(link.poll_timeout(), Some(ping_at));
    assert_eq!(link.handle_timeout(ping_at), [Effect::SendPing]);
    link.pong(ping_at + 5);
    // Answered: the next ping, no close.
    let next = ping_at + DEFAULT_PING_INTERVAL_MS;
    assert_eq!(link.poll_timeout(), Some(next));
    assert_eq!(link.handle_timeout(next), [Effect::SendPing]);
    // Unanswered: pings go on until the pong deadline, then the close.
    let dead = next + DEFAULT_PONG_TIMEOUT_MS;
    let mut t = next;
    let mut closes = Vec::new();
    while let Some(at) = link.poll_timeout().filter(|at| *at <= dead) {
        t = at;
        closes.extend(link.handle_timeout(t).into_iter().filter_map(|e| match e {
            Effect::CloseLink { code, .. } => Some(code),
            _ => None,
        }));
    }
    assert_eq!(t, dead);
    assert_eq!(closes, [DEFAULT_DEAD_LINK_CLOSE_CODE]);
}

#[test]
fn keepalive_off_sends_no_ping() {
    let mut c = config();
    c.options.ping_interval_ms = Some(0);
    let mut link = Link::new(c).unwrap();
    link.start(0);
    link.open(1);
    assert_eq!(
        link.poll_timeout(),
        Some(1 + 30_000),
        "only the handshake deadline"
    );
}

#[test]
fn shutdown_goes_idle_then_closes_with_1000_and_stops() {
    let mut link = ready_link();
    let out = link.outbound(30, "a1", json!({"op": "send", "chat_id": "C"}), None);
    assert_eq!(
        out.iter()
            .filter(|e| matches!(e, Effect::Send { .. }))
            .count(),
        1
    );
    let out = link.shutdown(40, 5_000, None);
    let sent: Vec<&String> = out
        .iter()
        .filter_map(|e| match e {
            Effect::Send { line, .. } => Some(line),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].contains("going_idle"));
    // The ack ends the wait: the pending request is answered, the socket closed.
    let out = link.receive_text(50, "{\"type\":\"going_idle_ack\"}\n");
    let ev = events(&out);
    assert_eq!(ev[0]["event"], "idle");
    assert_eq!(ev[0]["acked"], true);
    assert_eq!(ev[1]["event"], "outbound_result");
    assert_eq!(
        ev[1]["result"]["error"],
        "relay send failed: relay transport closed"
    );
    assert!(out
        .iter()
        .any(|e| matches!(e, Effect::CloseLink { code: 1000, .. })));
    let out = link.closed(60, Some(1000), "bye");
    assert_eq!(states(&out), ["stopped"]);
    assert_eq!(events(&out)[0]["reason"], "shutdown");
    assert!(link.is_finished());
    assert_eq!(link.poll_timeout(), None);
}

#[test]
fn shutdown_without_an_ack_waits_only_the_grace() {
    let mut link = ready_link();
    link.shutdown(100, 300, Some("removed".into()));
    assert_eq!(link.poll_timeout(), Some(400));
    let out = link.handle_timeout(400);
    assert!(out
        .iter()
        .any(|e| matches!(e, Effect::CloseLink { code: 1000, .. })));
    let out = link.closed(410, None, "");
    assert_eq!(states(&out), ["stopped"]);
    assert_eq!(events(&out)[0]["reason"], "removed");
}

#[test]
fn shutdown_while_down_stops_at_once_and_never_dials() {
    let mut link = ready_link();
    link.closed(100, Some(1006), "");
    let out = link.shutdown(200, 5_000, None);
    assert_eq!(states(&out), ["stopped"]);
    assert_eq!(link.poll_timeout(), None);
    assert!(link.handle_timeout(100_000).is_empty());
}

#[test]
fn a_recovered_link_answers_what_was_owed_and_skips_replayed_buffers() {
    let mut link = Link::new(config()).unwrap();
    let out = link.recover(
        0,
        Recovery {
            owed: vec![
                (
                    "a1".into(),
                    Some(json!({"op": "get_chat_info", "chat_id": "C9"})),
                ),
                ("a2".into(), None),
            ],
            in_flight: vec!["b7".into()],
            idle_owed: true,
            dial_after_ms: 500,
            revoked: false,
            reason: "guest instance failed".into(),
        },
    );
    let ev = events(&out);
    assert_eq!(ev[0]["id"], "a1");
    assert_eq!(ev[0]["result"]["error"], "relay transport connection lost");
    assert_eq!(ev[0]["result"]["name"], "C9");
    assert_eq!(ev[0]["result"]["type"], "dm");
    assert_eq!(ev[1]["id"], "a2");
    assert_eq!(
        ev[2],
        json!({"tenant": "t1", "event": "idle", "acked": false})
    );
    assert_eq!(ev[3]["state"], "backoff");
    assert_eq!(ev[3]["retry_in_ms"], 500);
    assert_eq!(link.poll_timeout(), Some(500));
    assert!(link
        .handle_timeout(500)
        .iter()
        .any(|e| matches!(e, Effect::Dial { .. })));
    link.open(510);
    link.receive_text(520, &format!("{DESCRIPTOR}\n"));
    let replay = r#"{"type":"inbound","bufferId":"b7","event":{"text":"hi","source":{"platform":"slack","chat_id":"C","user_id":"U"}}}"#;
    let out = link.receive_text(530, &format!("{replay}\n"));
    assert!(events(&out).iter().all(|e| e["event"] != "message"));
    let fresh = replay.replace("b7", "b8");
    let out = link.receive_text(540, &format!("{fresh}\n"));
    let ev = events(&out);
    assert_eq!(ev.len(), 1);
    let Effect::Emit(e) = &out.iter().find(|e| matches!(e, Effect::Emit(_))).unwrap() else {
        unreachable!()
    };
    assert_eq!(e.kind, EventKind::Message);
    assert_eq!(e.buffer_id.as_deref(), Some("b8"));
}

#[test]
fn typed_event_facts_match_the_line() {
    let mut link = ready_link();
    let out = link.outbound(30, "x1", json!({"op": "send", "chat_id": "C"}), None);
    let request_id = out
        .iter()
        .find_map(|e| match e {
            Effect::Send { line, .. } => {
                let v: Value = serde_json::from_str(line.trim_end()).unwrap();
                Some(v["requestId"].as_str().unwrap().to_string())
            }
            _ => None,
        })
        .unwrap();
    let out = link.receive_text(
        40,
        &format!("{{\"type\":\"outbound_result\",\"requestId\":\"{request_id}\",\"result\":{{\"success\":true}}}}\n"),
    );
    let Some(Effect::Emit(e)) = out.iter().find(|e| matches!(e, Effect::Emit(_))) else {
        panic!("no event: {out:?}")
    };
    assert_eq!(e.kind, EventKind::OutboundResult);
    assert_eq!(e.id.as_deref(), Some("x1"));
    assert!(e
        .line
        .starts_with("{\"event\":\"outbound_result\",\"tenant\":\"t1\",\"id\":\"x1\""));
}

#[test]
fn defaults_live_here() {
    let s = Settings::new(config()).unwrap();
    assert_eq!(s.ping_interval_ms, DEFAULT_PING_INTERVAL_MS);
    assert_eq!(s.max_message_bytes, DEFAULT_MAX_MESSAGE_BYTES);
    assert_eq!(s.connection.handshake_timeout_ms, 30_000);
    assert_eq!(s.connection.prompt_nonce, "");
    let mut bad = config();
    bad.options.max_message_bytes = Some(0);
    assert!(Settings::new(bad).is_err());
}

#[test]
fn state_names_read_back() {
    for s in crate::session::LinkState::ALL {
        assert_eq!(crate::session::LinkState::from_name(s.as_str()), Some(s));
    }
    assert_eq!(crate::session::LinkState::from_name("asleep"), None);
}
