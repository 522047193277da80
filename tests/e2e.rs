//! End to end: the real `relay-host run` binary against real WebSocket servers on
//! loopback — the connector emulator started in-process through its Rust API, and,
//! for TLS, a `wss://` server written here with a certificate made by the test.
//! The application side is the binary's stdin/stdout (APP-PROTOCOL.md).
//!
//! `tests/sidecar.rs` covers the flag-configured happy path with a hand-written
//! peer, error events, `status` counters, token presence and the restart budget;
//! these tests cover the rest of the issue's list. Waits are on events with
//! generous deadlines; fixed windows appear only where something must *not*
//! happen. Timeouts in the configurations are small and the D11 backoff starts at
//! 1 s, so each test takes a few seconds.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    closed_port, is, is_state, observed, observed_until, of, states, Sidecar, TempDir, WAIT,
};
use futures_util::{SinkExt as _, StreamExt as _};
use relay_connector::behavior::builtin_descriptor;
use relay_connector::{
    Command, Connector, ConnectorHandle, ConnectorOptions, Initiator, Observed, Outcome, Seen, Sent,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const SECRET: &str = "e2e-upgrade-secret-5f2c";
const SECRET_VAR: &str = "RELAY_E2E_SECRET";
/// How long a revoked tenant must stay silent (longer than the first backoff).
const QUIET: Duration = Duration::from_millis(2500);

/// An emulator command from its NDJSON form (docs/CONNECTOR.md).
fn cmd(v: Value) -> Command {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("bad command {v}: {e}"))
}

fn inbound_event(text: &str, chat_id: &str) -> Value {
    json!({"text": text, "message_type": "text", "message_id": format!("in-{text}"),
           "source": {"platform": "discord", "chat_id": chat_id, "chat_type": "group",
                      "user_id": "u1", "user_name": "ann"}})
}

fn send_action(chat_id: &str, content: &str) -> Value {
    json!({"op": "send", "chat_id": chat_id, "content": content})
}

/// Starts the binary on a TOML configuration written to `dir`.
fn start_with_config(dir: &TempDir, toml: &str) -> Sidecar {
    let path = dir.write("tenants.toml", toml);
    Sidecar::start(
        &["run", "--config", path.to_str().expect("utf-8 path")],
        &[(SECRET_VAR, SECRET)],
    )
}

/// Two tenants: `live` on the emulator at `url`, `down` dialing a closed port.
fn live_and_down(url: &str) -> String {
    format!(
        r#"
[[tenants]]
id = "live"
url = "{url}"
[[tenants.identities]]
platform = "discord"
bot_id = "app1"

[[tenants]]
id = "down"
url = "ws://127.0.0.1:{port}"
reconnect_jitter_percent = 0
[[tenants.identities]]
platform = "discord"
bot_id = "app2"
"#,
        port = closed_port()
    )
}

fn is_seen_outbound(e: &Observed) -> bool {
    matches!(
        e,
        Observed::Seen {
            frame: Seen::Outbound { .. },
            ..
        }
    )
}

fn is_inbound_ack(e: &Observed) -> bool {
    matches!(
        e,
        Observed::Seen {
            frame: Seen::InboundAck { .. },
            ..
        }
    )
}

fn is_dial(e: &Observed) -> bool {
    matches!(
        e,
        Observed::Connected { .. } | Observed::Rejected { .. } | Observed::Refused { .. }
    )
}

/// Waits for the emulator's report of an `inbound_ack` for `buffer_id`.
async fn expect_ack(h: &ConnectorHandle, buffer_id: &str) {
    let ack = observed(h, &format!("inbound_ack {buffer_id}"), is_inbound_ack).await;
    let Observed::Seen {
        frame: Seen::InboundAck {
            buffer_id: id,
            known,
        },
        ..
    } = ack
    else {
        unreachable!()
    };
    assert_eq!(id, json!(buffer_id));
    assert!(known, "the acked id was pending in the connector's buffer");
}

/// Sends an `outbound` and waits for its result; returns (result event, every
/// sidecar event up to it, every emulator observation up to the outbound frame).
async fn round_trip(
    host: &mut Sidecar,
    h: &ConnectorHandle,
    tenant: &str,
    id: &str,
    action: Value,
) -> (Value, Vec<Value>, Vec<Observed>) {
    host.command(json!({"op": "outbound", "tenant": tenant, "id": id, "action": action}))
        .await;
    let seen = observed_until(h, &format!("outbound {id}"), is_seen_outbound).await;
    let events = host
        .collect_until(&format!("outbound_result {id}"), |e| {
            is(e, "outbound_result") && e["id"] == id
        })
        .await;
    let result = events.last().expect("the result").clone();
    assert_eq!(result["tenant"], tenant, "{result}");
    (result, events, seen)
}

fn message_count(host: &Sidecar) -> usize {
    host.seen.iter().filter(|e| is(e, "message")).count()
}

/// Items 1, 2, 3, 5: handshake with an upgrade token, inbound, outbound (also
/// get_chat_info), and interrupts both ways, through the emulator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_message_outbound_and_interrupts_through_the_emulator() {
    let h = Connector::start(ConnectorOptions::default().secret(SECRET))
        .await
        .expect("start the emulator");
    let url = format!("http://{}/", h.local_addr());
    let mut host = Sidecar::start(
        &[
            "run",
            "--url",
            &url,
            "--platform",
            "discord",
            "--bot-id",
            "app1",
            "--gateway-id",
            "gw-e2e",
            "--secret-env",
            SECRET_VAR,
        ],
        &[(SECRET_VAR, SECRET)],
    );

    // 1. The token passes, one hello, the descriptor; connecting -> handshaking -> ready.
    let conn = match observed(&h, "the upgrade", is_dial).await {
        Observed::Connected {
            conn, gateway_id, ..
        } => {
            assert_eq!(gateway_id.as_deref(), Some("gw-e2e"));
            conn
        }
        other => panic!("the upgrade was not accepted: {other:?}"),
    };
    match observed(&h, "hello", |e| matches!(e, Observed::Seen { .. })).await {
        Observed::Seen {
            conn: c,
            frame: Seen::Hello {
                platform, bot_id, ..
            },
        } => {
            assert_eq!(
                (c, platform.as_str(), bot_id.as_str()),
                (conn, "discord", "app1")
            );
        }
        other => panic!("expected the hello first, got {other:?}"),
    }
    let events = host
        .collect_until("state ready", |e| is_state(e, "ready"))
        .await;
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match e["event"].as_str() {
            Some("state") => format!("state {}", e["state"].as_str().unwrap_or("?")),
            other => other.unwrap_or("?").to_string(),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "state connecting",
            "state handshaking",
            "ready",
            "state ready"
        ]
    );
    assert!(events.iter().all(|e| of(e, "default")), "{events:#?}");
    let descriptor = &events[2]["descriptor"];
    for (key, value) in builtin_descriptor("discord")
        .as_object()
        .expect("descriptor object")
    {
        assert_eq!(&descriptor[key], value, "descriptor.{key} in {descriptor}");
    }

    // 2. Inbound (live) -> message.
    let out = h
        .inject(Command::inbound(inbound_event("hello there", "c1"), false))
        .expect("inbound");
    assert_eq!(
        out,
        Outcome::Sent {
            conns: vec![conn],
            buffer_id: None
        }
    );
    let m = host.expect("message", |e| is(e, "message")).await;
    assert_eq!(m["tenant"], "default");
    assert_eq!(m["buffer_id"], Value::Null);
    let msg = &m["message"];
    assert_eq!(msg["text"], "hello there");
    assert_eq!(msg["message_type"], "text");
    assert_eq!(msg["message_id"], "in-hello there");
    assert_eq!(msg["source"]["platform"], "discord");
    assert_eq!(msg["source"]["chat_id"], "c1");
    assert_eq!(msg["source"]["chat_type"], "group");
    assert_eq!(msg["source"]["user_id"], "u1");

    // 3. outbound -> outbound frame at the connector -> outbound_result with our id.
    host.command(json!({"op": "outbound", "tenant": "default", "id": "app-1",
                        "action": send_action("c1", "hi there")}))
        .await;
    let Observed::Seen {
        conn: c,
        frame:
            Seen::Outbound {
                request_id,
                action,
                platform,
                bot_id,
            },
    } = observed(&h, "outbound", is_seen_outbound).await
    else {
        unreachable!()
    };
    assert_eq!(c, conn);
    assert_eq!(action["op"], "send");
    assert_eq!(action["chat_id"], "c1");
    assert_eq!(action["content"], "hi there");
    // The chat's egress record: its platform and our bot id, and the user in metadata.
    assert_eq!(platform, Some(json!("discord")));
    assert_eq!(bot_id, Some(json!("app1")));
    assert_eq!(action["metadata"]["user_id"], "u1", "{action}");
    let rid = request_id.as_str().expect("string requestId");
    assert!(
        rid.len() == 32 && rid.bytes().all(|b| b.is_ascii_hexdigit()),
        "requestId {rid:?} is 32 hex digits, not the application's id"
    );
    let Observed::Sent {
        frame:
            Sent::OutboundResult {
                request_id: answered,
                result,
            },
        ..
    } = observed(&h, "outbound_result", |e| {
        matches!(
            e,
            Observed::Sent {
                frame: Sent::OutboundResult { .. },
                ..
            }
        )
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!(answered, request_id);
    let r = host
        .expect("outbound_result", |e| is(e, "outbound_result"))
        .await;
    assert_eq!(r["tenant"], "default");
    assert_eq!(r["id"], "app-1");
    assert_eq!(r["result"], result);
    assert_eq!(r["result"]["success"], true);
    assert!(r["result"]["message_id"].is_string(), "{r}");

    // get_chat_info results also carry name and type (PROTOCOL.md §12).
    let (r, _, _) = round_trip(
        &mut host,
        &h,
        "default",
        "app-2",
        json!({"op": "get_chat_info", "chat_id": "c1"}),
    )
    .await;
    assert_eq!(r["result"]["success"], true, "{r}");
    assert_eq!(r["result"]["name"], "chat c1", "{r}");
    assert_eq!(r["result"]["type"], "group", "{r}");

    // 5. interrupt command -> interrupt frame (reason null when omitted; `tenant`
    // may be left out with a single tenant).
    host.command(json!({"op": "interrupt", "tenant": "default", "session_key": "sk-1"}))
        .await;
    let seen = observed(&h, "interrupt", |e| matches!(e, Observed::Seen { .. })).await;
    assert_eq!(
        seen,
        Observed::Seen {
            conn,
            frame: Seen::Interrupt {
                session_key: json!("sk-1"),
                reason: Value::Null
            }
        }
    );
    host.command(json!({"op": "interrupt", "session_key": "sk-2", "reason": "user pressed stop"}))
        .await;
    let seen = observed(&h, "interrupt", |e| matches!(e, Observed::Seen { .. })).await;
    assert_eq!(
        seen,
        Observed::Seen {
            conn,
            frame: Seen::Interrupt {
                session_key: json!("sk-2"),
                reason: json!("user pressed stop")
            }
        }
    );
    // ... and interrupt_inbound from the connector -> interrupt event.
    h.inject(Command::interrupt("sk-3", "c1"))
        .expect("interrupt");
    let i = host.expect("interrupt", |e| is(e, "interrupt")).await;
    assert_eq!(
        i,
        json!({"event": "interrupt", "tenant": "default", "session_key": "sk-3", "chat_id": "c1"})
    );
    assert!(
        !host.seen.iter().any(|e| is(e, "error")),
        "{:#?}",
        host.seen
    );
}

/// Item 4: a silent connector makes the request time out (ambiguous), and a late
/// answer after the timeout is not delivered as a second result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_timeout_is_ambiguous_and_a_late_answer_is_dropped() {
    let h = Connector::start(ConnectorOptions::default())
        .await
        .expect("start the emulator");
    let dir = TempDir::new("timeout");
    let mut host = start_with_config(
        &dir,
        &format!(
            r#"
[[tenants]]
id = "t"
url = "{url}"
seed = 7
[tenants.timeouts]
outbound_ms = 300
[[tenants.identities]]
platform = "discord"
bot_id = "app1"
"#,
            url = h.url()
        ),
    );
    host.expect("ready", |e| is_state(e, "ready")).await;
    let ready_at = host.seen.len();

    h.inject(cmd(
        json!({"cmd": "outbound_rule", "op": "send", "reply": "silent", "times": 1}),
    ))
    .expect("rule");
    let t0 = Instant::now();
    host.command(
        json!({"op": "outbound", "tenant": "t", "id": "t-1", "action": send_action("c1", "one")}),
    )
    .await;
    observed(&h, "withheld", |e| matches!(e, Observed::Withheld { .. })).await;
    let r = host
        .expect("timeout result", |e| is(e, "outbound_result"))
        .await;
    let waited = t0.elapsed();
    assert_eq!(r["id"], "t-1");
    assert_eq!(
        r["result"],
        json!({"success": false, "error": "relay outbound timed out", "ambiguous": true})
    );
    assert!(
        waited >= Duration::from_millis(250),
        "answered after {waited:?}, before outbound_ms"
    );

    // The connector answers after the deadline: the request is already answered.
    h.inject(cmd(
        json!({"cmd": "outbound_rule", "op": "send", "reply": "success", "delay_ms": 1200, "times": 1}),
    ))
    .expect("rule");
    host.command(
        json!({"op": "outbound", "tenant": "t", "id": "t-2", "action": send_action("c1", "two")}),
    )
    .await;
    let Observed::Seen {
        frame: Seen::Outbound { request_id, .. },
        ..
    } = observed(&h, "outbound t-2", is_seen_outbound).await
    else {
        unreachable!()
    };
    let r = host
        .expect("t-2 result", |e| is(e, "outbound_result"))
        .await;
    assert_eq!(r["id"], "t-2");
    assert_eq!(r["result"]["error"], "relay outbound timed out");
    observed(&h, "the late answer", |e| {
        matches!(e, Observed::Sent { frame: Sent::OutboundResult { request_id: rid, .. }, .. } if *rid == request_id)
    })
    .await;
    // Written after the late answer on the same socket, so handled after it.
    let (r, events, _) = round_trip(&mut host, &h, "t", "t-3", send_action("c1", "three")).await;
    assert_eq!(r["result"]["success"], true, "{r}");
    assert!(
        !events
            .iter()
            .any(|e| is(e, "outbound_result") && e["id"] == "t-2"),
        "a second result for t-2: {events:#?}"
    );
    assert!(
        states(&host.seen[ready_at..]).is_empty(),
        "the link stayed up: {:#?}",
        host.seen
    );
}

/// Items 6 and 7: a Discord slash command forwarded as passthrough becomes a
/// command message; buffered deliveries are acked only after the application's
/// `ack`, and a dropped forward (PING) is acked at once without a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_command_passthrough_and_ack_after_hand_off() {
    let h = Connector::start(ConnectorOptions::default())
        .await
        .expect("start the emulator");
    let mut host = Sidecar::start(
        &[
            "run",
            "--url",
            &h.url(),
            "--platform",
            "discord",
            "--bot-id",
            "app1",
        ],
        &[],
    );
    host.expect("ready", |e| is_state(e, "ready")).await;

    // 7. A buffered inbound: message with its buffer id, no inbound_ack yet.
    let Outcome::Sent {
        buffer_id: Some(b1),
        ..
    } = h
        .inject(Command::inbound(inbound_event("durable", "c1"), true))
        .expect("inbound")
    else {
        panic!("delivered live")
    };
    let m = host.expect("message", |e| is(e, "message")).await;
    assert_eq!(m["buffer_id"], json!(b1));
    assert_eq!(m["message"]["text"], "durable");
    // Any ack the host sent on delivery would precede this outbound on the socket.
    let (r, _, before) = round_trip(&mut host, &h, "default", "o-1", send_action("c1", "x")).await;
    assert_eq!(r["result"]["success"], true);
    assert!(
        !before.iter().any(is_inbound_ack),
        "acked before the application's ack: {before:#?}"
    );
    assert_eq!(h.pending(), vec![b1.clone()]);
    host.command(json!({"op": "ack", "tenant": "default", "buffer_id": b1}))
        .await;
    expect_ack(&h, &b1).await;
    assert!(h.pending().is_empty());

    // 6. /skill run deploy as a buffered passthrough_forward.
    let interaction = json!({
        "id": "900000000000000001", "application_id": "app1", "token": "never-forwarded",
        "type": 2, "channel_id": "222", "guild_id": "333", "version": 1,
        "member": {"user": {"id": "111", "username": "ben"}},
        "data": {"name": "skill", "options": [
            {"type": 1, "name": "run", "options": [{"type": 3, "name": "target", "value": "deploy"}]}
        ]}
    });
    let Outcome::Sent {
        buffer_id: Some(b2),
        ..
    } = h
        .inject(Command::passthrough(interaction, true))
        .expect("passthrough")
    else {
        panic!("delivered live")
    };
    let m = host.expect("command message", |e| is(e, "message")).await;
    assert_eq!(m["buffer_id"], json!(b2));
    let msg = &m["message"];
    assert_eq!(msg["text"], "/skill run deploy", "{m}");
    assert_eq!(msg["message_type"], "command");
    assert_eq!(msg["message_id"], "900000000000000001");
    assert_eq!(msg["source"]["platform"], "discord");
    assert_eq!(msg["source"]["chat_id"], "222");
    assert_eq!(msg["source"]["chat_type"], "group");
    assert_eq!(msg["source"]["user_id"], "111");
    assert_eq!(msg["source"]["scope_id"], "333");
    // Not acked before the application says so; a reply to the chat carries the
    // interaction's egress record.
    let (_, _, before) = round_trip(
        &mut host,
        &h,
        "default",
        "o-2",
        send_action("222", "deploying"),
    )
    .await;
    assert!(!before.iter().any(is_inbound_ack), "{before:#?}");
    let Some(Observed::Seen {
        frame: Seen::Outbound {
            action, platform, ..
        },
        ..
    }) = before.last()
    else {
        unreachable!()
    };
    assert_eq!(platform, &Some(json!("discord")));
    assert_eq!(action["metadata"]["scope_id"], "333", "{action}");
    assert_eq!(action["metadata"]["user_id"], "111", "{action}");
    host.command(json!({"op": "ack", "buffer_id": b2})).await;
    expect_ack(&h, &b2).await;

    // A buffered PING is dropped (D13) and acked at once, with no message.
    let Outcome::Sent {
        buffer_id: Some(b3),
        ..
    } = h
        .inject(Command::passthrough(json!({"id": "9001", "type": 1}), true))
        .expect("passthrough")
    else {
        panic!("delivered live")
    };
    expect_ack(&h, &b3).await;
    let (_, events, _) = round_trip(&mut host, &h, "default", "o-3", send_action("c1", "y")).await;
    assert!(
        !events.iter().any(|e| is(e, "message")),
        "a PING became a message: {events:#?}"
    );
    assert!(h.pending().is_empty());
}

/// Item 8: the connector crashes and restarts on the same port; the host backs
/// off, reconnects, the unacked item is replayed but not delivered twice; after
/// the `ack` it is gone from the connector's buffer and not replayed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_restart_replays_without_duplicates() {
    let h = Connector::start(ConnectorOptions::default())
        .await
        .expect("start the emulator");
    let dir = TempDir::new("restart");
    let mut host = start_with_config(
        &dir,
        &format!(
            r#"
[[tenants]]
id = "r"
url = "{url}"
reconnect_jitter_percent = 0
[[tenants.identities]]
platform = "discord"
bot_id = "app1"
"#,
            url = h.url()
        ),
    );
    host.expect("ready", |e| is_state(e, "ready")).await;
    let Outcome::Sent {
        buffer_id: Some(b1),
        ..
    } = h
        .inject(Command::inbound(inbound_event("survives", "c1"), true))
        .expect("inbound")
    else {
        panic!("delivered live")
    };
    let m = host.expect("message", |e| is(e, "message")).await;
    assert_eq!(m["buffer_id"], json!(b1));

    // Crash (TCP drop, no close frame) and come back at once with the buffer.
    let crashed_at = Instant::now();
    let h = h.restart(true, Duration::ZERO).await.expect("restart");
    let events = host
        .collect_until("backoff", |e| is_state(e, "backoff"))
        .await;
    let backoff = events.last().expect("backoff");
    assert_eq!(backoff["retry_in_ms"], 1000, "D11 first delay: {backoff}");
    assert!(!events.iter().any(|e| is(e, "message")), "{events:#?}");
    observed(&h, "the reconnection", |e| {
        matches!(e, Observed::Connected { .. })
    })
    .await;
    let waited = crashed_at.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "dialed again after {waited:?}, before the backoff delay"
    );
    let replayed = observed(&h, "the replay", |e| {
        matches!(
            e,
            Observed::Sent {
                frame: Sent::Inbound { .. },
                ..
            }
        )
    })
    .await;
    assert!(
        matches!(&replayed, Observed::Sent { frame: Sent::Inbound { buffer_id: Some(id), .. }, .. } if *id == b1),
        "{replayed:?}"
    );
    let events = host
        .collect_until("ready again", |e| is_state(e, "ready"))
        .await;
    assert_eq!(states(&events), ["connecting", "handshaking", "ready"]);

    // The replayed frame precedes this round trip's result on the socket.
    let (r, _, before) = round_trip(&mut host, &h, "r", "o-1", send_action("c1", "x")).await;
    assert_eq!(r["result"]["success"], true);
    assert_eq!(
        message_count(&host),
        1,
        "the replay was delivered again: {:#?}",
        host.seen
    );
    assert!(
        !before.iter().any(is_inbound_ack),
        "acked without the application's ack: {before:#?}"
    );
    assert_eq!(h.pending(), vec![b1.clone()]);
    host.command(json!({"op": "ack", "tenant": "r", "buffer_id": b1}))
        .await;
    expect_ack(&h, &b1).await;
    assert!(h.pending().is_empty());

    // Another restart (graceful this time): nothing is replayed.
    let h = h.restart(false, Duration::ZERO).await.expect("restart");
    let backoff = host.expect("backoff", |e| is_state(e, "backoff")).await;
    assert_eq!(
        backoff["retry_in_ms"], 2000,
        "a handshake alone must not restart the ladder (D11 revised): {backoff}"
    );
    host.expect("ready again", |e| is_state(e, "ready")).await;
    let (_, _, before) = round_trip(&mut host, &h, "r", "o-2", send_action("c1", "y")).await;
    assert!(
        before
            .iter()
            .any(|e| matches!(e, Observed::Connected { .. })),
        "{before:#?}"
    );
    assert!(
        !before.iter().any(|e| matches!(
            e,
            Observed::Sent {
                frame: Sent::Inbound { .. } | Sent::Passthrough { .. },
                ..
            }
        )),
        "replayed after the ack: {before:#?}"
    );
    assert_eq!(message_count(&host), 1);
}

/// Item 9: 4401 before any handshake is retried; 4401 `expired` after one
/// reconnects normally; any other 4401 after one re-dials once at once, and a
/// 4401 on that re-dial revokes: no more dials, outbound is "not connected".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_close_codes() {
    // The connector does not know the gateway's secret yet.
    let h = Connector::start(ConnectorOptions::default().secret("some-other-secret"))
        .await
        .expect("start the emulator");
    let dir = TempDir::new("4401");
    let mut host = start_with_config(
        &dir,
        &format!(
            r#"
[[tenants]]
id = "a"
url = "{url}"
gateway_id = "gw-e2e"
secret_env = "{SECRET_VAR}"
reconnect_jitter_percent = 0
[[tenants.identities]]
platform = "discord"
bot_id = "app1"
"#,
            url = h.url()
        ),
    );

    // Before any handshake: an ordinary failure with backoff.
    let rejected = observed(&h, "the rejection", is_dial).await;
    assert!(
        matches!(&rejected, Observed::Rejected { code: 4401, reason, gateway_id, .. }
            if reason == "unauthorized" && gateway_id.as_deref() == Some("gw-e2e")),
        "{rejected:?}"
    );
    let events = host
        .collect_until("backoff", |e| is_state(e, "backoff"))
        .await;
    assert_eq!(states(&events), ["connecting", "handshaking", "backoff"]);
    assert_eq!(events.last().expect("backoff")["retry_in_ms"], 1000);
    h.inject(cmd(json!({"cmd": "secrets", "secrets": [SECRET]})))
        .expect("secrets");
    let dial = observed(&h, "the second dial", is_dial).await;
    assert!(
        matches!(dial, Observed::Connected { conn: 2, .. }),
        "{dial:?}"
    );
    let events = host.collect_until("ready", |e| is_state(e, "ready")).await;
    assert_eq!(states(&events), ["connecting", "handshaking", "ready"]);

    // 4401 "expired" after a handshake: reconnect normally (backoff, no re-dial).
    h.inject(Command::close(4401, "expired")).expect("close");
    let events = host.collect_until("ready", |e| is_state(e, "ready")).await;
    assert_eq!(
        states(&events),
        ["backoff", "connecting", "handshaking", "ready"]
    );
    // The second failure since the last stable connection (D11 revised).
    assert_eq!(events[0]["retry_in_ms"], 2000, "{events:#?}");
    let dial = observed(&h, "the third dial", is_dial).await;
    assert!(
        matches!(dial, Observed::Connected { conn: 3, .. }),
        "{dial:?}"
    );

    // The secret is rotated away and the connection closed with 4401: one
    // immediate re-dial with a fresh token, refused again -> revoked.
    h.inject(cmd(json!({"cmd": "secrets", "secrets": ["rotated-away"]})))
        .expect("secrets");
    h.inject(Command::close(4401, "unauthorized"))
        .expect("close");
    let events = host
        .collect_until("revoked", |e| is_state(e, "revoked"))
        .await;
    assert_eq!(
        states(&events),
        ["redial", "connecting", "handshaking", "revoked"]
    );
    assert!(
        events[0].get("retry_in_ms").is_none(),
        "the re-dial does not wait: {events:#?}"
    );
    let dial = observed(&h, "the re-dial", is_dial).await;
    assert!(
        matches!(
            &dial,
            Observed::Rejected {
                conn: 4,
                code: 4401,
                ..
            }
        ),
        "{dial:?}"
    );

    // Terminal: no further connection attempt.
    let quiet = h.wait_for(QUIET, is_dial).await;
    assert!(quiet.is_none(), "dialed after revoked: {quiet:?}");
    host.command(
        json!({"op": "outbound", "tenant": "a", "id": "late", "action": send_action("c1", "x")}),
    )
    .await;
    let events = host
        .collect_until("result", |e| is(e, "outbound_result"))
        .await;
    let r = events.last().expect("result");
    assert_eq!(r["id"], "late");
    assert_eq!(
        r["result"],
        json!({"success": false, "error": "relay transport not connected"})
    );
    assert!(states(&events).is_empty(), "{events:#?}");
    host.command(json!({"op": "status"})).await;
    let status = host.expect("status", |e| is(e, "status")).await;
    assert_eq!(status["tenants"][0]["state"], "revoked", "{status}");
}

/// The connector side of one socket of a server written here.
struct Peer<S> {
    ws: WebSocketStream<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Peer<S> {
    /// The next frame the gateway wrote (pings skipped).
    async fn frame(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame within the wait")
                .expect("socket open")
                .expect("frame");
            match msg {
                Message::Text(t) => {
                    assert!(t.ends_with('\n'), "one line per message: {t:?}");
                    return serde_json::from_str(t.trim_end()).expect("frame is JSON");
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected message {other:?}"),
            }
        }
    }

    async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::text(format!("{frame}\n")))
            .await
            .expect("send");
    }
}

/// Item 10: `wss://` to a server whose self-signed certificate is trusted only
/// through the tenant's `ca_file`; a tenant without it cannot connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_with_a_self_signed_certificate_from_ca_file() {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("make a certificate");
    let dir = TempDir::new("tls");
    dir.write("test-ca.pem", &certified.cert.pem());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .expect("server certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, mut sockets) = mpsc::unbounded_channel();
    let failed_tls = Arc::new(AtomicUsize::new(0));
    let failed = failed_tls.clone();
    let server = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, tx, failed) = (acceptor.clone(), tx.clone(), failed.clone());
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(WAIT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    _ => {
                        failed.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                };
                #[allow(clippy::result_large_err)]
                let check = |req: &Request, resp: Response| {
                    assert_eq!(req.uri().path(), "/relay");
                    Ok(resp)
                };
                if let Ok(ws) = tokio_tungstenite::accept_hdr_async(tls, check).await {
                    let _ = tx.send(ws);
                }
            });
        }
    });

    let mut host = start_with_config(
        &dir,
        &format!(
            r#"
[[tenants]]
id = "secure"
url = "https://127.0.0.1:{port}"
ca_file = "test-ca.pem"
[[tenants.identities]]
platform = "discord"
bot_id = "app1"

[[tenants]]
id = "untrusting"
url = "wss://127.0.0.1:{port}/relay"
reconnect_jitter_percent = 0
[[tenants.identities]]
platform = "discord"
bot_id = "app2"
"#
        ),
    );

    let ws = tokio::time::timeout(WAIT, sockets.recv())
        .await
        .expect("a TLS WebSocket within the wait")
        .expect("server running");
    let mut peer = Peer { ws };
    let hello = peer.frame().await;
    assert_eq!(hello["type"], "hello");
    assert_eq!(
        hello["botId"], "app1",
        "only the tenant with the CA got through"
    );
    peer.send(json!({"type": "descriptor", "descriptor": builtin_descriptor("discord")}))
        .await;
    let ready = host
        .expect("secure ready", |e| is(e, "ready") && of(e, "secure"))
        .await;
    assert_eq!(ready["descriptor"]["label"], "Discord");

    peer.send(json!({"type": "inbound", "event": inbound_event("over tls", "c1")}))
        .await;
    let m = host.expect("message", |e| is(e, "message")).await;
    assert_eq!(m["tenant"], "secure");
    assert_eq!(m["message"]["text"], "over tls");
    host.command(json!({"op": "outbound", "tenant": "secure", "id": "s-1",
                        "action": send_action("c1", "back over tls")}))
        .await;
    let out = peer.frame().await;
    assert_eq!(out["type"], "outbound");
    assert_eq!(out["action"]["content"], "back over tls");
    peer.send(
        json!({"type": "outbound_result", "requestId": out["requestId"],
                     "result": {"success": true, "message_id": "tls-1"}}),
    )
    .await;
    let r = host
        .expect("outbound_result", |e| is(e, "outbound_result"))
        .await;
    assert_eq!(r["tenant"], "secure");
    assert_eq!(r["id"], "s-1");
    assert_eq!(r["result"], json!({"success": true, "message_id": "tls-1"}));

    // The tenant without the CA file fails certificate verification and backs off.
    host.expect_ever("untrusting backoff", |e| {
        is_state(e, "backoff") && of(e, "untrusting")
    })
    .await;
    host.expect_log("invalid peer certificate").await;
    assert!(failed_tls.load(Ordering::SeqCst) >= 1);
    assert!(
        !host
            .seen
            .iter()
            .any(|e| of(e, "untrusting") && (is(e, "ready") || is_state(e, "handshaking"))),
        "{:#?}",
        host.seen
    );
    assert!(sockets.try_recv().is_err(), "a second WebSocket was opened");
    server.abort();
}

/// One inbound -> message and one outbound -> result on `tenant`.
async fn exchange(host: &mut Sidecar, h: &ConnectorHandle, tenant: &str, n: u32) {
    let text = format!("{tenant} message {n}");
    h.inject(Command::inbound(inbound_event(&text, "c1"), false))
        .unwrap_or_else(|e| panic!("inbound to {tenant}: {e}"));
    host.expect(&text, |e| {
        is(e, "message") && of(e, tenant) && e["message"]["text"] == text
    })
    .await;
    let id = format!("{tenant}-out-{n}");
    host.command(
        json!({"op": "outbound", "tenant": tenant, "id": id, "action": send_action("c1", &text)}),
    )
    .await;
    let r = host
        .expect(&id, |e| is(e, "outbound_result") && e["id"] == id)
        .await;
    assert_eq!(r["tenant"], tenant);
    assert_eq!(r["result"]["success"], true, "{r}");
}

/// Item 11: one tenant's guest exceeds its memory cap and is rebuilt; the other
/// tenant exchanges messages before, during and after that restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_memory_cap_restarts_while_another_keeps_working() {
    let fragile = Connector::start(ConnectorOptions::default())
        .await
        .expect("start the emulator");
    let steady = Connector::start(ConnectorOptions::default())
        .await
        .expect("start the emulator");
    let dir = TempDir::new("trap");
    let mut host = start_with_config(
        &dir,
        &format!(
            r#"
[host]
restart_max = 3
restart_window_s = 60

[[tenants]]
id = "fragile"
url = "{fragile}"
limits = {{ memory_mib = 2, max_line_bytes = 67108864, max_message_bytes = 67108864 }}
[tenants.timeouts]
handshake_ms = 20000
[[tenants.identities]]
platform = "discord"
bot_id = "app1"

[[tenants]]
id = "steady"
url = "{steady}"
[[tenants.identities]]
platform = "discord"
bot_id = "app2"
"#,
            fragile = fragile.url(),
            steady = steady.url()
        ),
    );
    host.expect_each(
        "both tenants ready",
        &[&|e| is_state(e, "ready") && of(e, "fragile"), &|e| {
            is_state(e, "ready") && of(e, "steady")
        }],
    )
    .await;
    exchange(&mut host, &steady, "steady", 1).await;

    // The fragile tenant's next hello will wait for its descriptor, so its restart
    // is still in progress while the steady tenant works.
    fragile
        .inject(cmd(
            json!({"cmd": "descriptor", "platform": "discord", "silent": true}),
        ))
        .expect("descriptor");
    // A 3 MiB line without newline cannot fit in a 2 MiB guest.
    fragile
        .inject(cmd(
            json!({"cmd": "raw", "line": "x".repeat(3 << 20), "newline": false}),
        ))
        .expect("raw");
    let trapped_at = host.seen.len();
    let backoff = host
        .expect("fragile backoff", |e| {
            is_state(e, "backoff") && of(e, "fragile")
        })
        .await;
    let reason = backoff["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("guest instance failed"), "{backoff}");
    exchange(&mut host, &steady, "steady", 2).await;

    // The rebuilt instance dialed again and is handshaking.
    let hello = observed(
        &fragile,
        "the rebuilt guest's hello",
        |e| matches!(e, Observed::Seen { frame: Seen::Hello { .. }, conn, .. } if *conn >= 2),
    )
    .await;
    let Observed::Seen { conn, .. } = hello else {
        unreachable!()
    };
    exchange(&mut host, &steady, "steady", 3).await;
    assert!(
        !host.seen[trapped_at..]
            .iter()
            .any(|e| of(e, "fragile") && is(e, "ready")),
        "the fragile tenant was not still restarting: {:#?}",
        host.seen
    );

    // Let its handshake finish: both tenants work.
    let descriptor = json!({"type": "descriptor", "descriptor": builtin_descriptor("discord")});
    fragile
        .inject(cmd(
            json!({"cmd": "raw", "line": descriptor.to_string(), "conn": conn}),
        ))
        .expect("raw descriptor");
    host.expect("fragile ready again", |e| {
        is_state(e, "ready") && of(e, "fragile")
    })
    .await;
    exchange(&mut host, &steady, "steady", 4).await;
    exchange(&mut host, &fragile, "fragile", 1).await;

    host.command(json!({"op": "status"})).await;
    let status = host.expect("status", |e| is(e, "status")).await;
    let tenants = status["tenants"].as_array().expect("tenants");
    let of_tenant = |id: &str| {
        tenants
            .iter()
            .find(|t| t["tenant"] == id)
            .unwrap_or_else(|| panic!("{id} in {status}"))
            .clone()
    };
    assert_eq!(of_tenant("fragile")["restarts"], 1, "{status}");
    assert_eq!(of_tenant("fragile")["state"], "ready", "{status}");
    assert_eq!(of_tenant("steady")["restarts"], 0, "{status}");
    assert_eq!(of_tenant("steady")["state"], "ready", "{status}");
    let steady_states: Vec<Value> = host
        .seen
        .iter()
        .filter(|e| of(e, "steady"))
        .cloned()
        .collect();
    assert_eq!(
        states(&steady_states),
        ["connecting", "handshaking", "ready"],
        "the steady tenant was disturbed"
    );
    assert_eq!(steady.connections().len(), 1, "steady never reconnected");
}

/// Item 12: end of stdin shuts down: the connected tenant goes idle (acked), closes
/// with 1000; a tenant that cannot connect stops at once; exit status 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_of_stdin_goes_idle_closes_and_exits_zero() {
    shutdown_goes_idle_closes_and_exits_zero("eof", |host| host.close_stdin()).await;
}

/// A container stop (SIGTERM) and Ctrl-C (SIGINT) are `shutdown` too: going_idle,
/// the bounded wait, close 1000, exit 0.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sigint_go_idle_close_and_exit_zero() {
    for signal in ["-TERM", "-INT"] {
        shutdown_goes_idle_closes_and_exits_zero("signal", |host| {
            let pid = host.child.id().expect("the host runs");
            let status = std::process::Command::new("kill")
                .args([signal, &pid.to_string()])
                .status()
                .expect("run kill");
            assert!(status.success(), "kill {signal} {pid}");
        })
        .await;
    }
}

async fn shutdown_goes_idle_closes_and_exits_zero(name: &str, end: impl FnOnce(&mut Sidecar)) {
    let h = Connector::start(ConnectorOptions::default())
        .await
        .expect("start the emulator");
    let dir = TempDir::new(name);
    let mut host = start_with_config(
        &dir,
        &format!(
            "[host]\nshutdown_grace_ms = 5000\n{}",
            live_and_down(&h.url())
        ),
    );
    host.expect_each(
        "live ready, down backing off",
        &[&|e| is_state(e, "ready") && of(e, "live"), &|e| {
            is_state(e, "backoff") && of(e, "down")
        }],
    )
    .await;

    end(&mut host);
    let seen = observed_until(&h, "the close", |e| {
        matches!(e, Observed::Disconnected { .. })
    })
    .await;
    assert!(
        seen.iter().any(|e| matches!(
            e,
            Observed::Seen {
                frame: Seen::GoingIdle,
                ..
            }
        )),
        "{seen:#?}"
    );
    assert!(
        seen.iter().any(|e| matches!(
            e,
            Observed::Sent {
                frame: Sent::GoingIdleAck,
                ..
            }
        )),
        "{seen:#?}"
    );
    assert!(
        matches!(
            seen.last(),
            Some(Observed::Disconnected {
                code: Some(1000),
                initiator: Initiator::Gateway,
                ..
            })
        ),
        "{seen:#?}"
    );
    let status = host.wait_exit().await;
    assert!(status.success(), "exit status {status}");
    host.rest().await;
    let idle = host
        .seen
        .iter()
        .find(|e| is(e, "idle"))
        .unwrap_or_else(|| panic!("no idle event: {:#?}", host.seen));
    assert_eq!(idle["tenant"], "live");
    assert_eq!(idle["acked"], true);
    for tenant in ["live", "down"] {
        let last = host
            .seen
            .iter()
            .rev()
            .find(|e| of(e, tenant))
            .unwrap_or_else(|| panic!("no event of {tenant}"));
        assert!(is_state(last, "stopped"), "{tenant} ends with {last}");
        assert_eq!(last["reason"], "shutdown", "{last}");
    }
}

/// `--metrics ADDR` serves the probes an orchestrator asks: `/healthz` while the
/// process runs, `/readyz` 200 only when every tenant's link is up (503 naming the
/// ones that are not), and the Prometheus counters at `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_probes_next_to_metrics() {
    let h = Connector::start(ConnectorOptions::default())
        .await
        .expect("start the emulator");
    let dir = TempDir::new("probes");
    let metrics = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let path = dir.write("tenants.toml", &live_and_down(&h.url()));
    let mut host = Sidecar::start(
        &[
            "run",
            "--config",
            path.to_str().expect("utf-8"),
            "--metrics",
            &metrics.to_string(),
        ],
        &[],
    );
    host.expect_each(
        "live ready, down backing off",
        &[&|e| is_state(e, "ready") && of(e, "live"), &|e| {
            is_state(e, "backoff") && of(e, "down")
        }],
    )
    .await;
    let get = |path: &'static str| common::http_get(metrics, path);
    let health = get("/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let ready = get("/readyz").await;
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(
        ready.contains("down backoff") && !ready.contains("live"),
        "{ready}"
    );
    let counters = get("/metrics").await;
    assert!(
        counters.contains("relay_state{tenant=\"live\",state=\"ready\"} 1"),
        "{counters}"
    );
    assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
    host.command(json!({"op": "shutdown"})).await;
    assert!(host.wait_exit().await.success());
}
