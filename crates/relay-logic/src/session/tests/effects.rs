//! Effect-level checks the transcript format does not see: link effects, timers,
//! stats, config validation, determinism.

use serde_json::{json, Value};

use crate::session::{Config, Connection, Effect, Identity, LinkState};

fn config() -> Config {
    let mut c = Config::new(vec![Identity {
        platform: "discord".into(),
        bot_id: "app1".into(),
        command_manifest: None,
    }]);
    c.reconnect_jitter_percent = 0;
    c
}

const DESCRIPTOR: &str = "{\"type\": \"descriptor\", \"descriptor\": {\"contract_version\": 1, \"platform\": \"discord\", \"label\": \"D\", \"max_message_length\": 2000, \"supports_draft_streaming\": false, \"supports_edit\": true, \"supports_threads\": true, \"markdown_dialect\": \"discord\", \"len_unit\": \"chars\"}}\n";

fn ready(c: &mut Connection, t: u64) -> Vec<Effect> {
    let mut e = c.open(t);
    e.extend(c.receive(t + 1, DESCRIPTOR.as_bytes()));
    e
}

fn timers(effects: &[Effect]) -> Vec<(u64, u64)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::SetTimer { id, at_ms } => Some((*id, *at_ms)),
            _ => None,
        })
        .collect()
}

fn link(effects: &[Effect]) -> Vec<Effect> {
    effects
        .iter()
        .filter(|e| {
            matches!(
                e,
                Effect::CloseLink(_) | Effect::Reconnect(_) | Effect::Redial | Effect::GiveUp(_)
            )
        })
        .cloned()
        .collect()
}

fn sends(effects: &[Effect]) -> Vec<Value> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { line: l, .. } => serde_json::from_str(l.trim_end()).ok(),
            _ => None,
        })
        .collect()
}

#[test]
fn config_validation() {
    assert!(Connection::new(Config::new(vec![])).is_err());
    for f in [
        |c: &mut Config| c.handshake_timeout_ms = 0,
        |c: &mut Config| c.outbound_timeout_ms = 0,
        |c: &mut Config| c.going_idle_timeout_ms = 0,
        |c: &mut Config| c.max_line_bytes = 0,
        |c: &mut Config| c.reconnect_jitter_percent = 101,
    ] {
        let mut c = config();
        f(&mut c);
        assert!(Connection::new(c).is_err());
    }
    assert!(Connection::new(config()).is_ok());
}

#[test]
fn handshake_deadline_closes_the_link_and_the_close_backs_off() {
    let mut c = Connection::new(config()).unwrap();
    let e = c.open(0);
    let [(id, at)] = timers(&e)[..] else {
        panic!("one timer: {e:?}")
    };
    assert_eq!(at, 30_000);
    let e = c.timer_fired(at, id);
    assert!(matches!(&link(&e)[..], [Effect::CloseLink(_)]), "{e:?}");
    assert_eq!(c.state(), LinkState::HandshakeFailed);
    assert!(
        link(&c.timer_fired(at, id)).is_empty(),
        "a fired timer never fires twice"
    );
    let e = c.closed(at + 5, Some(1000), "");
    assert_eq!(link(&e), vec![Effect::Reconnect(1000)]);
    assert_eq!(c.state(), LinkState::Backoff);
}

#[test]
fn link_decisions_as_effects() {
    let mut c = Connection::new(config()).unwrap();
    ready(&mut c, 0);
    assert_eq!(link(&c.closed(10, Some(4401), "x")), vec![Effect::Redial]);
    assert_eq!(c.state(), LinkState::Redial);
    c.open(11);
    let e = c.closed(12, Some(4401), "x");
    assert!(matches!(&link(&e)[..], [Effect::GiveUp(_)]), "{e:?}");
    assert_eq!(c.state(), LinkState::Revoked);
    // Terminal: nothing is written again, whatever the host does.
    let mut after = c.open(20);
    after.extend(c.receive(21, DESCRIPTOR.as_bytes()));
    after.extend(c.going_idle(22));
    after.extend(c.ack(23, "b"));
    after.extend(c.interrupt(24, "s", None));
    after.extend(c.outbound(25, "a", json!({"op": "send"}), None));
    after.extend(c.closed(26, None, ""));
    assert!(sends(&after).is_empty(), "{after:?}");
    assert!(!after
        .iter()
        .any(|e| matches!(e, Effect::Reconnect(_) | Effect::Redial)));
}

#[test]
fn stale_and_unknown_timers_are_ignored() {
    let mut c = Connection::new(config()).unwrap();
    ready(&mut c, 0);
    let e = c.outbound(10, "a1", json!({"op": "send"}), None);
    let [(id, at)] = timers(&e)[..] else {
        panic!("{e:?}")
    };
    c.closed(20, Some(1006), "");
    let e = c.timer_fired(at, id);
    assert!(e.iter().all(|e| matches!(e, Effect::Log(..))), "{e:?}");
    assert!(c
        .timer_fired(0, 999_999)
        .iter()
        .all(|e| matches!(e, Effect::Log(..))));
}

#[test]
fn cancels_match_sets() {
    let mut c = Connection::new(config()).unwrap();
    let mut all = ready(&mut c, 0);
    all.extend(c.outbound(10, "a1", json!({"op": "send"}), None));
    all.extend(c.going_idle(11));
    all.extend(c.closed(12, None, ""));
    let set: Vec<u64> = timers(&all).into_iter().map(|t| t.0).collect();
    let mut cancelled: Vec<u64> = all
        .iter()
        .filter_map(|e| match e {
            Effect::CancelTimer(id) => Some(*id),
            _ => None,
        })
        .collect();
    cancelled.sort();
    assert_eq!(
        set, cancelled,
        "every timer is cancelled exactly once: {all:?}"
    );
    assert_eq!(c.usage().timers, 0);
}

#[test]
fn open_while_open_loses_the_old_connection_without_a_link_decision() {
    let mut c = Connection::new(config()).unwrap();
    ready(&mut c, 0);
    c.outbound(10, "a1", json!({"op": "send"}), None);
    let e = c.open(20);
    assert!(link(&e).is_empty());
    let lost = e.iter().any(|e| {
        matches!(e, Effect::Emit(v) if v.to_value()["result"]["error"] == "relay transport connection lost")
    });
    assert!(lost, "{e:?}");
    assert_eq!(
        sends(&e),
        vec![json!({"type": "hello", "platform": "discord", "botId": "app1"})]
    );
}

#[test]
fn stats_report_counters_and_state() {
    let mut c = Connection::new(config()).unwrap();
    assert_eq!(c.stats()["state"], "connecting");
    assert_eq!(c.stats()["connected"], false);
    ready(&mut c, 0);
    c.outbound(10, "a1", json!({"op": "send"}), None);
    c.receive(11, b"garbage\n");
    let s = c.stats();
    assert_eq!(s["state"], "ready");
    assert_eq!(s["connected"], true);
    assert_eq!(s["frames_in"], 1);
    assert_eq!(s["frames_out"], 2);
    assert_eq!(s["pending_outbound"], 1);
    c.going_idle(12);
    c.receive(13, b"{\"type\": \"going_idle_ack\"}\n");
    assert_eq!(c.stats()["state"], "idle");
    c.closed(14, None, "");
    assert_eq!(c.stats()["state"], "backoff");
    assert_eq!(c.stats()["pending_outbound"], 0);
}

#[test]
fn same_seed_same_effects_other_seed_other_ids() {
    let script = |seed: u64, jitter: u8| {
        let mut cfg = config();
        cfg.seed = seed;
        cfg.reconnect_jitter_percent = jitter;
        let mut c = Connection::new(cfg).unwrap();
        let mut e = ready(&mut c, 0);
        e.extend(c.outbound(10, "a1", json!({"op": "send"}), None));
        e.extend(c.outbound(11, "a2", json!({"op": "send"}), None));
        for t in 0..6 {
            e.extend(c.closed(100 + t, None, ""));
        }
        e
    };
    assert_eq!(script(42, 20), script(42, 20));
    let ids = |e: &[Effect]| -> Vec<Value> {
        sends(e)
            .into_iter()
            .filter_map(|f| f.get("requestId").cloned())
            .collect()
    };
    let a = ids(&script(42, 0));
    assert_eq!(a.len(), 2);
    assert_ne!(a[0], a[1]);
    assert_ne!(a, ids(&script(43, 0)));
    // Jitter draws come from their own stream: they never shift request ids.
    assert_eq!(a, ids(&script(42, 20)));
}

#[test]
fn jitter_stays_within_percent() {
    let mut cfg = config();
    cfg.reconnect_jitter_percent = 50;
    cfg.seed = 9;
    let mut c = Connection::new(cfg).unwrap();
    let mut seen = Vec::new();
    for n in 1..=10u32 {
        let e = c.closed(u64::from(n), None, "");
        let [Effect::Reconnect(ms)] = link(&e)[..] else {
            panic!("{e:?}")
        };
        let base = (1000u64 << (n - 1).min(16)).min(30_000);
        assert!((base / 2..=base).contains(&ms), "{ms} for n={n}");
        seen.push(base - ms);
    }
    assert!(seen.iter().any(|j| *j > 0), "jitter applied: {seen:?}");
}

#[test]
fn sends_are_one_line_each() {
    let mut c = Connection::new(config()).unwrap();
    let mut e = ready(&mut c, 0);
    e.extend(c.outbound(
        1,
        "a",
        json!({"op": "send", "content": "multi\nline\u{2028}é"}),
        None,
    ));
    e.extend(c.interrupt(2, "s\nk", Some("r".into())));
    for eff in &e {
        if let Effect::Send { line: l, .. } = eff {
            assert!(l.ends_with('\n') && l.matches('\n').count() == 1, "{l:?}");
            assert!(
                l.is_ascii(),
                "non-ASCII escaped like Python json.dumps: {l:?}"
            );
        }
    }
}

#[test]
fn authorization_needs_both_credentials() {
    let mut cfg = config();
    assert_eq!(Connection::new(cfg.clone()).unwrap().authorization(0), None);
    cfg.gateway_id = Some("gw".into());
    cfg.secret = Some("s3cret".into());
    let auth = Connection::new(cfg)
        .unwrap()
        .authorization(1_700_000_000)
        .unwrap();
    assert!(auth.starts_with("Bearer ") && !auth.contains("s3cret"));
}

/// A line that lies inside one text message skips UTF-8 validation; every way of
/// cutting the same bytes into text and binary messages must still give the same
/// effects, including for lines made invalid by bytes of a binary message.
#[test]
fn text_and_binary_messages_give_the_same_effects() {
    let mut stream: Vec<u8> = Vec::new();
    for line in [
        r#"{"type": "inbound", "event": {"text": "grüße 👋 \"q\"", "source": {"chat_id": "c1"}}}"#,
        "",
        "   ",
        r#"{"type": "interrupt_inbound", "session_key": "s", "chat_id": "日本"}"#,
        r#"{"type": "inbound", "event": {"text": "\ud800"}}"#,
        "not json",
        r#"{"type": "inbound", "bufferId": "b1", "event": {"text": "x"}}"#,
    ] {
        stream.extend_from_slice(line.as_bytes());
        stream.push(b'\n');
    }
    // A line whose bytes are not UTF-8, then one more good line.
    stream.extend_from_slice(b"{\"type\": \"inbound\", \"event\": {\"text\": \"\xff\"}}\n");
    stream.extend_from_slice("{\"type\": \"going_idle_ack\"}\n".as_bytes());

    let run = |cuts: &[usize], text_mask: u32| {
        let mut c = Connection::new(config()).unwrap();
        ready(&mut c, 0);
        let mut out = Vec::new();
        let mut start = 0;
        for (i, &end) in cuts.iter().chain([stream.len()].iter()).enumerate() {
            let piece = &stream[start..end];
            match std::str::from_utf8(piece) {
                Ok(text) if text_mask & (1 << (i % 32)) != 0 => out.extend(c.receive_text(5, text)),
                _ => out.extend(c.receive(5, piece)),
            }
            start = end;
        }
        out
    };
    let want = run(&[], 0);
    assert!(want.iter().any(|e| matches!(e, Effect::Emit(_))));
    for step in [1, 2, 3, 5, 7, 16, 61] {
        let cuts: Vec<usize> = (step..stream.len()).step_by(step).collect();
        for mask in [0, u32::MAX, 0x5555_5555, 0xaaaa_aaaa] {
            assert_eq!(run(&cuts, mask), want, "step {step}, mask {mask:#x}");
        }
    }
}
