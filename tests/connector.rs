//! The connector emulator, driven by a plain tokio-tungstenite client (no component):
//! handshake, outbound results, going idle, buffered replay until ack (also across
//! an emulator restart), scripted frames, and the 4401 token rules.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use relay_host::connector::{
    Command, Connector, ConnectorHandle, ConnectorOptions, Observed, Outcome, Seen,
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
        Err(relay_host::connector::CommandError::NoConnection)
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
    let wrong = relay_guest::auth::upgrade_token("gw-1", "other", 300, now());
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
    let old = relay_guest::auth::upgrade_token("gw-1", secret, 10, now() - 1000);
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
        let good = relay_guest::auth::upgrade_token("gw:tenant:1", secret, ttl, now());
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
