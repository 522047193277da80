//! The connector emulator, driven by a plain tokio-tungstenite client (no component):
//! handshake, outbound results, going idle, buffered replay until ack (also across
//! an emulator restart), scripted frames, and the 4401 token rules.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use relay_connector::{
    Command, Connector, ConnectorHandle, ConnectorOptions, Initiator, Observed, Outcome, Seen, Sent,
};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const STEP: Duration = Duration::from_secs(5);

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn dial(url: &str, authorization: Option<&str>) -> Client {
    let mut req = url.into_client_request().expect("valid url");
    if let Some(a) = authorization {
        req.headers_mut()
            .insert("authorization", HeaderValue::from_str(a).expect("header"));
    }
    let (ws, _) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(req))
        .await
        .expect("upgrade in time")
        .expect("upgrade accepted");
    ws
}

async fn send(ws: &mut Client, frame: Value) {
    ws.send(Message::Text(format!("{frame}\n").into()))
        .await
        .expect("send");
}

/// The next connector frame; every frame must be one `\n`-terminated JSON object
/// per text message.
async fn recv(ws: &mut Client) -> Value {
    loop {
        let msg = tokio::time::timeout(STEP, ws.next())
            .await
            .expect("a frame in time")
            .expect("stream open")
            .expect("no transport error");
        match msg {
            Message::Text(t) => {
                let text = t.as_str();
                assert!(text.ends_with('\n'), "frame without newline: {text:?}");
                assert_eq!(text.matches('\n').count(), 1, "one frame per message");
                return serde_json::from_str(text.trim_end()).expect("frame is JSON");
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// The close frame the connector sends, as (code, reason).
async fn recv_close(ws: &mut Client) -> (u16, String) {
    loop {
        let msg = tokio::time::timeout(STEP, ws.next())
            .await
            .expect("a close in time")
            .expect("a close frame before the stream ends");
        match msg {
            Ok(Message::Close(Some(f))) => return (u16::from(f.code), f.reason.to_string()),
            Ok(Message::Close(None)) => panic!("close frame without a code"),
            Ok(Message::Text(t)) => panic!("expected a close, got frame {t}"),
            Ok(_) => continue,
            Err(e) => panic!("expected a close frame, got error {e}"),
        }
    }
}

/// Says hello and checks the descriptor that answers it.
async fn handshake(ws: &mut Client, platform: &str, bot_id: &str) -> Value {
    send(
        ws,
        json!({"type": "hello", "platform": platform, "botId": bot_id}),
    )
    .await;
    let f = recv(ws).await;
    assert_eq!(f["type"], "descriptor", "hello answered by {f}");
    assert_eq!(f["descriptor"]["platform"], platform);
    f["descriptor"].clone()
}

async fn observed(
    h: &ConnectorHandle,
    what: &str,
    pred: impl FnMut(&Observed) -> bool,
) -> Observed {
    h.wait_for(STEP, pred)
        .await
        .unwrap_or_else(|| panic!("the emulator did not report {what}"))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

fn inbound_event(text: &str) -> Value {
    json!({"text": text, "message_type": "text",
           "source": {"platform": "discord", "chat_id": "c1", "chat_type": "group"}})
}

#[tokio::test]
async fn handshake_outbound_going_idle_and_malformed_lines() {
    let h = Connector::start(ConnectorOptions::default())
        .await
        .expect("start");
    assert!(matches!(
        h.next_event(STEP).await,
        Some(Observed::Listening { addr }) if addr == h.local_addr()
    ));
    let mut ws = dial(&h.url(), None).await;

    let d = handshake(&mut ws, "discord", "app1").await;
    assert_eq!(d["contract_version"], 1);
    assert_eq!(d["label"], "Discord");
    assert_eq!(d["max_message_length"], 2000);
    assert_eq!(d["len_unit"], "chars");
    assert_eq!(d["markdown_dialect"], "discord");
    for op in [
        "send",
        "edit",
        "typing",
        "follow_up",
        "get_chat_info",
        "prompt",
    ] {
        assert!(
            d["supported_ops"].as_array().unwrap().contains(&json!(op)),
            "{op} missing from {d}"
        );
    }
    observed(&h, "the hello", |e| {
        matches!(e, Observed::Seen { frame: Seen::Hello { platform, bot_id, .. }, .. }
            if platform == "discord" && bot_id == "app1")
    })
    .await;
    let conns = h.connections();
    assert_eq!(conns.len(), 1);
    assert_eq!(
        conns[0].hellos,
        vec![("discord".to_owned(), "app1".to_owned())]
    );

    // outbound → outbound_result with the same requestId.
    let rid = "0123456789abcdef0123456789abcdef";
    send(
        &mut ws,
        json!({"type": "outbound", "requestId": rid,
               "action": {"op": "send", "chat_id": "c1", "content": "hi"}, "platform": "discord"}),
    )
    .await;
    let r = recv(&mut ws).await;
    assert_eq!(r["type"], "outbound_result");
    assert_eq!(r["requestId"], rid);
    assert_eq!(r["result"]["success"], true);
    assert!(r["result"]["message_id"].is_string(), "{r}");
    let seen = observed(&h, "the outbound", |e| {
        matches!(
            e,
            Observed::Seen {
                frame: Seen::Outbound { .. },
                ..
            }
        )
    })
    .await;
    let Observed::Seen {
        frame: Seen::Outbound { action, .. },
        ..
    } = seen
    else {
        unreachable!()
    };
    assert_eq!(action["content"], "hi");

    // A malformed line is reported and skipped; a frame split over two messages
    // still arrives whole.
    ws.send(Message::Text("this is not json\n[1,2]\n".into()))
        .await
        .unwrap();
    ws.send(Message::Text(
        r#"{"type": "outbound", "requestId": "r2", "action": {"op": "get_cha"#.into(),
    ))
    .await
    .unwrap();
    ws.send(Message::Text("t_info\", \"chat_id\": \"c7\"}}\n".into()))
        .await
        .unwrap();
    let r = recv(&mut ws).await;
    assert_eq!(r["requestId"], "r2");
    assert_eq!(
        r["result"],
        json!({"success": true, "chat_info": {"name": "chat c7", "type": "group"}})
    );
    observed(&h, "the malformed line", |e| {
        matches!(e, Observed::Seen { frame: Seen::Malformed { line, .. }, .. } if line == "this is not json")
    })
    .await;

    // Scripted failure for one send, then back to success.
    h.inject(
        serde_json::from_str::<Command>(
            r#"{"cmd":"outbound_rule","op":"send","reply":"fail","error":"rate limited","times":1}"#,
        )
        .unwrap(),
    )
    .unwrap();
    for (id, ok) in [("r3", false), ("r4", true)] {
        send(
            &mut ws,
            json!({"type": "outbound", "requestId": id, "action": {"op": "send"}}),
        )
        .await;
        let r = recv(&mut ws).await;
        assert_eq!(r["requestId"], id);
        assert_eq!(r["result"]["success"], ok, "{r}");
    }

    // interrupt is recorded; going_idle is acknowledged.
    send(
        &mut ws,
        json!({"type": "interrupt", "session_key": "agent:main:discord:c1", "reason": null}),
    )
    .await;
    observed(&h, "the interrupt", |e| {
        matches!(e, Observed::Seen { frame: Seen::Interrupt { session_key, .. }, .. }
            if session_key == "agent:main:discord:c1")
    })
    .await;
    send(&mut ws, json!({"type": "going_idle"})).await;
    assert_eq!(recv(&mut ws).await, json!({"type": "going_idle_ack"}));
    assert!(h.connections()[0].idle);
    // An idle connection takes no live-only delivery.
    assert_eq!(
        h.inject(Command::inbound(inbound_event("x"), false)),
        Err(relay_connector::CommandError::NoConnection)
    );

    // A scripted close reaches the gateway with its code and reason.
    h.inject(Command::close(4401, "revoked")).unwrap();
    assert_eq!(recv_close(&mut ws).await, (4401, "revoked".to_owned()));
    h.shutdown().await;
}

#[tokio::test]
async fn buffered_inbound_is_replayed_until_acked() {
    let h = Connector::start(ConnectorOptions::default())
        .await
        .expect("start");
    let mut ws = dial(&h.url(), None).await;
    handshake(&mut ws, "discord", "app1").await;

    let Ok(Outcome::Sent {
        buffer_id: Some(id),
        ..
    }) = h.inject(Command::inbound(inbound_event("remember me"), true))
    else {
        panic!("a buffered inbound is sent with a buffer id")
    };
    let f = recv(&mut ws).await;
    assert_eq!(f["type"], "inbound");
    assert_eq!(f["bufferId"], id.as_str());
    assert_eq!(f["event"]["text"], "remember me");
    // A live-only inbound carries no bufferId and is not kept.
    h.inject(Command::inbound(inbound_event("once"), false))
        .unwrap();
    let f = recv(&mut ws).await;
    assert_eq!(f["event"]["text"], "once");
    assert!(f.get("bufferId").is_none(), "{f}");
    assert_eq!(h.pending(), vec![id.clone()]);

    // Not acked: the next connection gets it again after its hello, same id.
    ws.close(None).await.unwrap();
    drop(ws);
    let mut ws = dial(&h.url(), None).await;
    handshake(&mut ws, "discord", "app1").await;
    let f = recv(&mut ws).await;
    assert_eq!(f["type"], "inbound");
    assert_eq!(f["bufferId"], id.as_str());
    assert_eq!(f["event"]["text"], "remember me");

    // Acked: gone from the buffer.
    send(&mut ws, json!({"type": "inbound_ack", "bufferId": id})).await;
    observed(&h, "the ack", |e| {
        matches!(e, Observed::Seen { frame: Seen::InboundAck { known: true, buffer_id }, .. }
            if *buffer_id == json!(id))
    })
    .await;
    assert!(h.pending().is_empty());

    // The next connection gets the descriptor and then nothing buffered: the first
    // frame after it is the answer to a sentinel outbound.
    drop(ws);
    let mut ws = dial(&h.url(), None).await;
    handshake(&mut ws, "discord", "app1").await;
    send(
        &mut ws,
        json!({"type": "outbound", "requestId": "sentinel", "action": {"op": "typing"}}),
    )
    .await;
    let f = recv(&mut ws).await;
    assert_eq!(f["type"], "outbound_result", "no replay after the ack: {f}");
    assert_eq!(f["requestId"], "sentinel");
    h.shutdown().await;
}

#[tokio::test]
async fn queued_passthrough_survives_an_emulator_restart() {
    let h = Connector::start(ConnectorOptions::default())
        .await
        .expect("start");
    let addr = h.local_addr();
    let interaction = json!({"id": "9001", "type": 2, "token": "SECRET-TOKEN",
        "channel_id": "222", "guild_id": "333", "data": {"name": "new"}});
    let cmd: Command = serde_json::from_value(json!({
        "cmd": "passthrough", "interaction": interaction, "profile": "reviewer",
        "botId": "app1", "buffered": true,
    }))
    .unwrap();
    let Ok(Outcome::Queued { buffer_id: id }) = h.inject(cmd) else {
        panic!("a buffered passthrough with no gateway is queued")
    };

    // Crash and come back on the same port with the durable buffer.
    let stopped = h.kill().await;
    assert_eq!(stopped.replay.pending_ids(), vec![id.clone()]);
    let h = stopped
        .start_again()
        .await
        .expect("restart on the same port");
    assert_eq!(h.local_addr(), addr);

    let mut ws = dial(&h.url(), None).await;
    handshake(&mut ws, "discord", "app1").await;
    let f = recv(&mut ws).await;
    assert_eq!(f["type"], "passthrough_forward");
    assert_eq!(f["bufferId"], id.as_str());
    let fwd = &f["forward"];
    assert_eq!(fwd["platform"], "discord");
    assert_eq!(fwd["botId"], "app1");
    assert_eq!(fwd["method"], "POST");
    assert_eq!(fwd["path"], "/interactions");
    assert_eq!(
        fwd["headers"],
        json!([["content-type", "application/json"]])
    );
    assert_eq!(fwd["profile"], "reviewer");
    let body: Value = serde_json::from_slice(
        &STANDARD
            .decode(fwd["bodyB64"].as_str().unwrap())
            .expect("standard base64"),
    )
    .unwrap();
    let mut expected = interaction.clone();
    expected.as_object_mut().unwrap().remove("token");
    assert_eq!(body, expected, "the interaction minus its token");

    send(&mut ws, json!({"type": "inbound_ack", "bufferId": id})).await;
    observed(&h, "the ack", |e| {
        matches!(
            e,
            Observed::Seen {
                frame: Seen::InboundAck { known: true, .. },
                ..
            }
        )
    })
    .await;

    // Live scripted frames: interrupt_inbound, a raw line, and a TCP drop.
    h.inject(Command::interrupt("sess-1", "222")).unwrap();
    assert_eq!(
        recv(&mut ws).await,
        json!({"type": "interrupt_inbound", "session_key": "sess-1", "chat_id": "222"})
    );
    h.inject(Command::raw(r#"{"type": "mystery"}"#)).unwrap();
    assert_eq!(recv(&mut ws).await, json!({"type": "mystery"}));
    h.inject(serde_json::from_str(r#"{"cmd":"drop"}"#).unwrap())
        .unwrap();
    match tokio::time::timeout(STEP, ws.next())
        .await
        .expect("drop in time")
    {
        None | Some(Err(_)) => {}
        Some(Ok(m)) => panic!("a drop sends nothing, got {m:?}"),
    }
    h.shutdown().await;
}

#[tokio::test]
async fn upgrade_token_rules() {
    let secret = "s3cret";
    let h = Connector::start(ConnectorOptions::default().secret("rotated").secret(secret))
        .await
        .expect("start");
    let url = h.url();

    // Missing header, wrong secret, garbage: 4401 "unauthorized" after the upgrade.
    let wrong = relay_logic::auth::upgrade_token("gw-1", "other", 300, now());
    for auth in [
        None,
        Some(format!("Bearer {wrong}")),
        Some("Bearer %%%".into()),
    ] {
        let mut ws = dial(&url, auth.as_deref()).await;
        assert_eq!(
            recv_close(&mut ws).await,
            (4401, "unauthorized".to_owned()),
            "for {auth:?}"
        );
    }
    // Well signed but expired: 4401 "expired".
    let old = relay_logic::auth::upgrade_token("gw-1", secret, 10, now() - 1000);
    let mut ws = dial(&url, Some(&format!("Bearer {old}"))).await;
    assert_eq!(recv_close(&mut ws).await, (4401, "expired".to_owned()));
    observed(&h, "the expired rejection", |e| {
        matches!(e, Observed::Rejected { reason, gateway_id: Some(g), .. }
            if reason == "expired" && g == "gw-1")
    })
    .await;

    // A good token (the id may contain ':'), fresh or never-expiring, is accepted.
    let mut open = Vec::new();
    for ttl in [300, 0] {
        let good = relay_logic::auth::upgrade_token("gw:tenant:1", secret, ttl, now());
        let mut ws = dial(&url, Some(&format!("Bearer {good}"))).await;
        handshake(&mut ws, "telegram", "t1").await;
        observed(
            &h,
            "the accepted connection",
            |e| matches!(e, Observed::Connected { gateway_id: Some(g), .. } if g == "gw:tenant:1"),
        )
        .await;
        open.push(ws);
    }
    let conns = h.connections();
    assert_eq!(conns.len(), 2, "only the two good tokens got through");
    assert!(conns
        .iter()
        .all(|c| c.gateway_id.as_deref() == Some("gw:tenant:1")));
    h.shutdown().await;
}

/// Sends one `outbound` (tagged with `platform` when given) and returns its result.
async fn outbound(ws: &mut Client, rid: &str, action: Value, platform: Option<&str>) -> Value {
    let mut frame = json!({"type": "outbound", "requestId": rid, "action": action});
    if let Some(p) = platform {
        frame["platform"] = json!(p);
    }
    send(ws, frame).await;
    let r = recv(ws).await;
    assert_eq!(r["type"], "outbound_result", "{r}");
    assert_eq!(r["requestId"], rid, "{r}");
    r["result"].clone()
}

fn ops_of(descriptor: &Value) -> Vec<String> {
    descriptor["supported_ops"]
        .as_array()
        .unwrap_or_else(|| panic!("no supported_ops in {descriptor}"))
        .iter()
        .map(|op| op.as_str().expect("op names are strings").to_owned())
        .collect()
}

/// Waits for the emulator to hang up: the stream ends or fails without a close
/// frame (a TCP drop). Returns how long that took.
async fn expect_dropped(ws: &mut Client) -> Duration {
    let started = tokio::time::Instant::now();
    loop {
        match tokio::time::timeout(STEP, ws.next())
            .await
            .expect("the connector hangs up in time")
        {
            None | Some(Err(_)) => return started.elapsed(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(m)) => panic!("a drop sends nothing, got {m:?}"),
        }
    }
}

#[tokio::test]
async fn new_ops_answer_with_the_reference_result_shapes() {
    let h = Connector::start(ConnectorOptions::default())
        .await
        .expect("start");
    let mut ws = dial(&h.url(), None).await;
    // The first hello (slack) is the session default for untagged frames.
    handshake(&mut ws, "slack", "S1").await;
    handshake(&mut ws, "discord", "D1").await;

    // draft: one message id per stream, the sealing frame included.
    let draft = |id: u64, content: &str, final_: bool| {
        json!({"op": "draft", "chat_id": "C1", "draft_id": id, "content": content,
               "final": final_, "metadata": {}})
    };
    let first = outbound(&mut ws, "d1", draft(7, "hel", false), None).await;
    assert_eq!(first["success"], true, "{first}");
    let stream = first["message_id"].as_str().expect("a draft message id");
    let more = outbound(&mut ws, "d2", draft(7, "hello wor", false), None).await;
    assert_eq!(more, first, "a stream keeps its message id");
    let sealed = outbound(&mut ws, "d3", draft(7, "hello world", true), None).await;
    assert_eq!(sealed, json!({"success": true, "message_id": stream}));
    let other = outbound(&mut ws, "d4", draft(8, "x", false), None).await;
    assert_ne!(
        other["message_id"],
        json!(stream),
        "another stream, another id"
    );

    // task cards: success alone.
    let card = json!({"op": "task_card", "chat_id": "C1", "card_id": "turn:1700.1",
                      "chunks": [{"id": "call_1", "title": "terminal", "status": "in_progress"}],
                      "metadata": {"thread_ts": "1700.1"}});
    assert_eq!(
        outbound(&mut ws, "c1", card, None).await,
        json!({"success": true})
    );
    let stop = json!({"op": "task_card_stop", "chat_id": "C1", "card_id": "turn:1700.1"});
    assert_eq!(
        outbound(&mut ws, "c2", stop, None).await,
        json!({"success": true})
    );

    // thread_create: a thread id (Slack echoes an explicit anchor).
    let anchored = json!({"op": "thread_create", "chat_id": "C1", "thread_name": "handoff",
                          "message_id": "1700.2"});
    assert_eq!(
        outbound(&mut ws, "t1", anchored, None).await,
        json!({"success": true, "thread_id": "1700.2"})
    );
    let create =
        json!({"op": "thread_create", "chat_id": "900100", "thread_name": "fix the build"});
    let created = outbound(&mut ws, "t2", create, Some("discord")).await;
    assert_eq!(created["success"], true, "{created}");
    let thread_id = created["thread_id"].as_str().expect("a thread id");
    assert_eq!(created.as_object().unwrap().len(), 2, "{created}");

    // thread_rename and delete: success alone.
    let rename = json!({"op": "thread_rename", "chat_id": "900100", "message_id": thread_id,
                        "thread_name": "Fix the build", "only_if_connector_created": true});
    assert_eq!(
        outbound(&mut ws, "t3", rename, Some("discord")).await,
        json!({"success": true})
    );
    let delete = json!({"op": "delete", "chat_id": "900100", "message_id": "m1", "metadata": {}});
    assert_eq!(
        outbound(&mut ws, "x1", delete, Some("discord")).await,
        json!({"success": true})
    );

    // The ops of before keep their answers.
    for (i, op) in [
        "send",
        "typing",
        "follow_up",
        "send_media",
        "prompt",
        "react",
    ]
    .into_iter()
    .enumerate()
    {
        let r = outbound(
            &mut ws,
            &format!("o{i}"),
            json!({"op": op, "chat_id": "900100"}),
            Some("discord"),
        )
        .await;
        assert_eq!(r["success"], true, "{op}: {r}");
        assert!(r["message_id"].is_string(), "{op}: {r}");
    }
    let edit = json!({"op": "edit", "chat_id": "900100", "message_id": "m1", "content": "x"});
    assert_eq!(
        outbound(&mut ws, "e1", edit, Some("discord")).await,
        json!({"success": true, "message_id": "m1"})
    );
    let info = json!({"op": "get_chat_info", "chat_id": "c9"});
    assert_eq!(
        outbound(&mut ws, "g1", info, Some("discord")).await,
        json!({"success": true, "chat_info": {"name": "chat c9", "type": "group"}})
    );
    h.shutdown().await;
}

#[tokio::test]
async fn supported_ops_per_platform_and_an_unsupported_op_is_declined() {
    let h = Connector::start(ConnectorOptions::default())
        .await
        .expect("start");
    let mut ws = dial(&h.url(), None).await;
    let discord = handshake(&mut ws, "discord", "D1").await;
    let telegram = handshake(&mut ws, "telegram", "T1").await;
    let slack = handshake(&mut ws, "slack", "S1").await;
    let whatsapp = handshake(&mut ws, "whatsapp", "W1").await;
    let base = [
        "send",
        "edit",
        "typing",
        "follow_up",
        "get_chat_info",
        "prompt",
        "send_media",
        "react",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    assert_eq!(
        ops_of(&discord),
        with(&["delete", "thread_create", "thread_rename"])
    );
    assert_eq!(
        ops_of(&telegram),
        with(&["delete", "draft", "thread_create", "thread_rename"])
    );
    assert_eq!(
        ops_of(&slack),
        with(&[
            "delete",
            "draft",
            "task_card",
            "task_card_stop",
            "thread_create"
        ])
    );
    assert_eq!(ops_of(&whatsapp), with(&[]));
    // Native draft streaming needs the flag and the op.
    assert_eq!(discord["supports_draft_streaming"], false);
    assert_eq!(telegram["supports_draft_streaming"], true);
    assert_eq!(slack["supports_draft_streaming"], true);
    assert_eq!(whatsapp["supports_threads"], false);

    // An op the platform does not advertise: a definite, structured failure that
    // is not an egress decline.
    let card =
        json!({"op": "task_card", "chat_id": "900100", "card_id": "turn:root", "chunks": []});
    let declined = outbound(&mut ws, "r1", card.clone(), Some("discord")).await;
    assert_eq!(declined["success"], false, "{declined}");
    assert_eq!(declined["code"], "unsupported_op", "{declined}");
    let error = declined["error"].as_str().expect("an error text");
    assert!(
        error.contains("task_card") && error.contains("discord"),
        "{error}"
    );
    assert!(
        !error.to_lowercase().contains("egress declined:"),
        "{error}"
    );
    assert!(declined.get("ambiguous").is_none(), "{declined}");
    // The same op for a platform that advertises it is performed.
    assert_eq!(
        outbound(&mut ws, "r2", card, Some("slack")).await,
        json!({"success": true})
    );
    let rename = json!({"op": "thread_rename", "chat_id": "C1", "message_id": "1700.1",
                        "thread_name": "x"});
    let declined = outbound(&mut ws, "r3", rename.clone(), Some("slack")).await;
    assert_eq!(declined["code"], "unsupported_op", "{declined}");
    // Untagged frames are held to the first hello's platform (discord here).
    assert_eq!(
        outbound(&mut ws, "r4", rename, None).await,
        json!({"success": true})
    );
    let draft =
        json!({"op": "draft", "chat_id": "C1", "draft_id": 1, "content": "x", "final": false});
    assert_eq!(
        outbound(&mut ws, "r5", draft.clone(), None).await["code"],
        "unsupported_op"
    );
    assert_eq!(
        outbound(&mut ws, "r6", draft, Some("telegram")).await["success"],
        true
    );
    let create = json!({"op": "thread_create", "chat_id": "w1", "thread_name": "x"});
    assert_eq!(
        outbound(&mut ws, "r7", create, Some("whatsapp")).await["code"],
        "unsupported_op"
    );
    // Unknown op names are declined too.
    assert_eq!(
        outbound(&mut ws, "r8", json!({"op": "teleport"}), None).await["code"],
        "unsupported_op"
    );

    // A custom descriptor's own supported_ops is what the emulator holds the
    // gateway to; one without such a list leaves every op answered.
    let custom = json!({"cmd": "descriptor", "platform": "discord", "descriptor": {
        "contract_version": 1, "platform": "discord", "label": "Discord",
        "max_message_length": 2000, "supports_draft_streaming": false,
        "supports_edit": true, "supports_threads": true, "markdown_dialect": "discord",
        "len_unit": "chars", "supported_ops": ["send"]}});
    h.inject(serde_json::from_value(custom).unwrap()).unwrap();
    let edit = json!({"op": "edit", "chat_id": "c", "message_id": "m1", "content": "x"});
    assert_eq!(
        outbound(&mut ws, "r9", edit.clone(), Some("discord")).await["code"],
        "unsupported_op"
    );
    let bare =
        json!({"cmd": "descriptor", "platform": "discord", "descriptor": {"platform": "discord"}});
    h.inject(serde_json::from_value(bare).unwrap()).unwrap();
    assert_eq!(
        outbound(&mut ws, "r10", json!({"op": "task_card"}), Some("discord")).await,
        json!({"success": true})
    );
    // A scripted rule answers even an unadvertised op.
    h.inject(serde_json::from_value(json!({"cmd": "descriptor", "platform": "discord"})).unwrap())
        .unwrap();
    let rule = json!({"cmd": "outbound_rule", "op": "task_card", "reply": "success", "times": 1});
    h.inject(serde_json::from_value(rule).unwrap()).unwrap();
    assert_eq!(
        outbound(&mut ws, "r11", json!({"op": "task_card"}), Some("discord")).await,
        json!({"success": true})
    );
    assert_eq!(
        outbound(&mut ws, "r12", json!({"op": "task_card"}), Some("discord")).await["code"],
        "unsupported_op"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn two_hellos_get_two_descriptors_each_with_its_platforms_limits() {
    let h = Connector::start(ConnectorOptions::default())
        .await
        .expect("start");
    let mut ws = dial(&h.url(), None).await;
    // Both hellos in one WebSocket message, as two lines.
    let hellos = format!(
        "{}\n{}\n",
        json!({"type": "hello", "platform": "discord", "botId": "D1"}),
        json!({"type": "hello", "platform": "telegram", "botId": "T1"})
    );
    ws.send(Message::Text(hellos.into())).await.unwrap();
    let mut limits = Vec::new();
    for _ in 0..2 {
        let f = recv(&mut ws).await;
        assert_eq!(f["type"], "descriptor", "{f}");
        let d = &f["descriptor"];
        limits.push((
            d["platform"].as_str().unwrap().to_owned(),
            d["max_message_length"].clone(),
            d["markdown_dialect"].clone(),
        ));
    }
    assert_eq!(
        limits,
        vec![
            ("discord".to_owned(), json!(2000), json!("discord")),
            ("telegram".to_owned(), json!(4096), json!("markdown_v2")),
        ]
    );
    // A third identity in a message of its own gets a third descriptor.
    let d = handshake(&mut ws, "slack", "S1").await;
    assert_eq!(d["max_message_length"], 40000);
    let mut reported = Vec::new();
    while reported.len() < 3 {
        let ev = observed(&h, "a descriptor report", |e| {
            matches!(
                e,
                Observed::Sent {
                    frame: Sent::Descriptor { .. },
                    ..
                }
            )
        })
        .await;
        if let Observed::Sent {
            frame: Sent::Descriptor { platform },
            conn,
        } = ev
        {
            assert_eq!(conn, 1);
            reported.push(platform);
        }
    }
    assert_eq!(reported, ["discord", "telegram", "slack"]);
    assert_eq!(h.connections()[0].hellos.len(), 3);
    h.shutdown().await;
}

#[tokio::test]
async fn descriptor_then_drop_drops_after_the_handshake() {
    let h = Connector::start(ConnectorOptions::default())
        .await
        .expect("start");
    let cmd = relay_connector::script::parse_line(
        r#"{"cmd":"drop_after_handshake","delay_ms":300,"times":1}"#,
    )
    .expect("a known command");
    assert_eq!(h.inject(cmd), Ok(Outcome::Done));

    // Both hellos are answered, the connection works until the delay has passed
    // since the last descriptor, then the TCP stream is dropped (no close frame).
    let mut ws = dial(&h.url(), None).await;
    handshake(&mut ws, "discord", "D1").await;
    handshake(&mut ws, "telegram", "T1").await;
    let since_descriptor = tokio::time::Instant::now();
    let r = outbound(
        &mut ws,
        "r1",
        json!({"op": "send", "chat_id": "c", "content": "x"}),
        None,
    )
    .await;
    assert_eq!(r["success"], true, "{r}");
    expect_dropped(&mut ws).await;
    let waited = since_descriptor.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "dropped {waited:?} after the last descriptor"
    );
    observed(&h, "the drop", |e| {
        matches!(e, Observed::Dropped { conn: 1 })
    })
    .await;
    observed(&h, "the disconnect", |e| {
        matches!(e, Observed::Disconnected { conn: 1, code: None, reason, initiator: Initiator::Connector }
            if reason == "dropped after the handshake")
    })
    .await;

    // `times: 1` is used up: the next connection stays.
    let mut ws = dial(&h.url(), None).await;
    handshake(&mut ws, "discord", "D1").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = outbound(&mut ws, "r2", json!({"op": "typing", "chat_id": "c"}), None).await;
    assert_eq!(r["success"], true, "{r}");
    assert_eq!(h.connections().len(), 1);
    h.shutdown().await;

    // From the start options (`--drop-after-handshake 0`): every connection, right
    // after its descriptor; a connection that never says hello is not dropped.
    let h = Connector::start(ConnectorOptions::default().drop_after_handshake(Duration::ZERO))
        .await
        .expect("start");
    let mut quiet = dial(&h.url(), None).await;
    for _ in 0..2 {
        let mut ws = dial(&h.url(), None).await;
        handshake(&mut ws, "slack", "S1").await;
        expect_dropped(&mut ws).await;
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(200), quiet.next())
            .await
            .is_err(),
        "no hello, no descriptor, no drop"
    );
    // Turned off at run time.
    let off =
        relay_connector::script::parse_line(r#"{"cmd":"drop_after_handshake","enabled":false}"#)
            .unwrap();
    h.inject(off).unwrap();
    let mut ws = dial(&h.url(), None).await;
    handshake(&mut ws, "slack", "S1").await;
    let r = outbound(&mut ws, "r3", json!({"op": "send"}), None).await;
    assert_eq!(r["success"], true, "{r}");
    h.shutdown().await;
}

/// The next pong, skipping anything else; `None` when none comes within `wait`.
async fn pong_within(ws: &mut Client, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut frames = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Pong(_)))) => return Some(Value::from(frames)),
            Ok(Some(Ok(Message::Text(t)))) => {
                frames.push(serde_json::from_str::<Value>(t.as_str().trim_end()).expect("JSON"))
            }
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("the stream ended while waiting for a pong: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_stalled_connection_answers_no_ping_until_it_resumes() {
    let h = Connector::start(ConnectorOptions::default())
        .await
        .expect("start");
    let mut ws = dial(&h.url(), None).await;
    handshake(&mut ws, "discord", "app1").await;

    // Not read for 700 ms: a ping (and a frame) sent meanwhile waits unanswered.
    let stall = relay_connector::script::parse_line(r#"{"cmd":"stall","ms":700}"#).unwrap();
    assert_eq!(
        h.inject(stall),
        Ok(Outcome::Sent {
            conns: vec![1],
            buffer_id: None
        })
    );
    observed(&h, "the stall", |e| {
        matches!(e, Observed::Stalled { conn: 1, ms: 700 })
    })
    .await;
    let stalled_at = tokio::time::Instant::now();
    ws.send(Message::Ping(b"p1".to_vec().into()))
        .await
        .expect("ping");
    send(
        &mut ws,
        json!({"type": "outbound", "requestId": "r1", "action": {"op": "typing", "chat_id": "c"}}),
    )
    .await;
    assert!(
        pong_within(&mut ws, Duration::from_millis(350))
            .await
            .is_none(),
        "no pong while stalled"
    );
    // Then it reads again: the pong comes, and the frame is answered.
    let before = pong_within(&mut ws, STEP)
        .await
        .expect("a pong after the stall");
    assert!(
        stalled_at.elapsed() >= Duration::from_millis(600),
        "pong after {:?}",
        stalled_at.elapsed()
    );
    observed(&h, "the resume", |e| {
        matches!(e, Observed::Resumed { conn: 1 })
    })
    .await;
    let answered = if before.as_array().is_some_and(|a| !a.is_empty()) {
        before[0].clone()
    } else {
        recv(&mut ws).await
    };
    assert_eq!(answered["type"], "outbound_result", "{answered}");
    assert_eq!(answered["requestId"], "r1");

    // `ms: 0` ends a stall early.
    h.inject(relay_connector::script::parse_line(r#"{"cmd":"stall","ms":60000}"#).unwrap())
        .unwrap();
    observed(&h, "the long stall", |e| {
        matches!(e, Observed::Stalled { conn: 1, ms: 60000 })
    })
    .await;
    h.inject(relay_connector::script::parse_line(r#"{"cmd":"stall","ms":0}"#).unwrap())
        .unwrap();
    observed(&h, "the early resume", |e| {
        matches!(e, Observed::Resumed { conn: 1 })
    })
    .await;
    ws.send(Message::Ping(b"p2".to_vec().into()))
        .await
        .expect("ping");
    assert!(
        pong_within(&mut ws, Duration::from_secs(2)).await.is_some(),
        "a pong at once after the stall ended"
    );

    // A close during a stall ends it, so the close handshake completes.
    h.inject(relay_connector::script::parse_line(r#"{"cmd":"stall","ms":60000}"#).unwrap())
        .unwrap();
    h.inject(Command::close(1000, "bye")).unwrap();
    let (code, reason) = recv_close(&mut ws).await;
    assert_eq!((code, reason.as_str()), (1000, "bye"));
    let _ = ws.close(None).await;
    observed(&h, "the disconnect", |e| {
        matches!(
            e,
            Observed::Disconnected {
                conn: 1,
                code: Some(1000),
                ..
            }
        )
    })
    .await;
    h.shutdown().await;
}
