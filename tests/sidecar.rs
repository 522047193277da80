//! The `relay-host run` sidecar end to end: the real binary, a WebSocket connector
//! written here, APP-PROTOCOL commands on stdin and events on stdout.

use std::sync::{Arc, Mutex};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

mod common;
use common::{is, is_state, of, Sidecar, WAIT};

const SECRET: &str = "s3cret-for-the-sidecar-test";
const DESCRIPTOR: &str = "{\"type\":\"descriptor\",\"descriptor\":{\"contract_version\":1,\"platform\":\"discord\",\"label\":\"Discord\",\"max_message_length\":2000,\"supports_draft_streaming\":false,\"supports_edit\":true,\"supports_threads\":true,\"markdown_dialect\":\"discord\",\"len_unit\":\"chars\"}}\n";

/// The connector side of one accepted socket.
struct Peer {
    ws: WebSocketStream<TcpStream>,
}

impl Peer {
    async fn accept(listener: &TcpListener, auth: Arc<Mutex<Vec<String>>>) -> Peer {
        let (stream, _) = tokio::time::timeout(WAIT, listener.accept())
            .await
            .expect("the host dials within the wait")
            .expect("accept");
        // The error type is tungstenite's, not ours.
        #[allow(clippy::result_large_err)]
        let callback = move |req: &Request, resp: Response| {
            assert_eq!(req.uri().path(), "/relay", "dial URL is the base + /relay");
            if let Some(v) = req.headers().get("authorization") {
                auth.lock().unwrap().push(v.to_str().unwrap().to_string());
            }
            Ok(resp)
        };
        let ws = tokio_tungstenite::accept_hdr_async(stream, callback)
            .await
            .expect("upgrade");
        Peer { ws }
    }

    /// The next frame the gateway wrote, as JSON (pings are skipped).
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

    async fn send(&mut self, line: &str) {
        self.ws.send(Message::text(line)).await.expect("send");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_relays_both_ways_and_exits_cleanly() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let auth = Arc::new(Mutex::new(Vec::new()));
    let url = format!("http://127.0.0.1:{port}/");
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
            "gw-test",
            "--secret-env",
            "RELAY_SIDECAR_TEST_SECRET",
        ],
        &[("RELAY_SIDECAR_TEST_SECRET", SECRET)],
    );

    // Dial, hello, descriptor: connecting -> handshaking -> ready.
    let mut peer = Peer::accept(&listener, auth.clone()).await;
    let hello = peer.frame().await;
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["platform"], "discord");
    assert_eq!(hello["botId"], "app1");
    host.expect("connecting", |e| is_state(e, "connecting"))
        .await;
    host.expect("handshaking", |e| is_state(e, "handshaking"))
        .await;
    peer.send(DESCRIPTOR).await;
    let ready = host.expect("ready", |e| is(e, "ready")).await;
    assert_eq!(ready["tenant"], "default");
    assert_eq!(ready["descriptor"]["platform"], "discord");
    assert_eq!(ready["descriptor"]["max_message_length"], 2000);

    // Inbound -> message event; ack -> inbound_ack frame.
    peer.send(concat!(
        r#"{"type": "inbound", "event": {"text": "hello there", "message_type": "text", "#,
        r#""source": {"platform": "discord", "chat_id": "c1", "chat_type": "group", "user_id": "u1"}, "#,
        r#""message_id": "m1"}, "bufferId": "b1"}"#,
        "\n"
    ))
    .await;
    let message = host.expect("message", |e| is(e, "message")).await;
    assert_eq!(message["tenant"], "default");
    assert_eq!(message["buffer_id"], "b1");
    assert_eq!(message["message"]["text"], "hello there");
    assert_eq!(message["message"]["source"]["chat_id"], "c1");
    host.command(json!({"op": "ack", "tenant": "default", "buffer_id": "b1"}))
        .await;
    let ack = peer.frame().await;
    assert_eq!(ack, json!({"type": "inbound_ack", "bufferId": "b1"}));

    // Outbound command -> outbound frame; its result -> outbound_result event.
    host.command(json!({
        "op": "outbound", "tenant": "default", "id": "app-1",
        "action": {"op": "send", "chat_id": "c1", "content": "hi"},
    }))
    .await;
    let outbound = peer.frame().await;
    assert_eq!(outbound["type"], "outbound");
    assert_eq!(outbound["action"]["content"], "hi");
    let request_id = outbound["requestId"]
        .as_str()
        .expect("requestId")
        .to_string();
    peer.send(&format!(
        "{}\n",
        json!({"type": "outbound_result", "requestId": request_id,
               "result": {"success": true, "message_id": "m-9"}})
    ))
    .await;
    let result = host
        .expect("outbound_result", |e| is(e, "outbound_result"))
        .await;
    assert_eq!(result["id"], "app-1");
    assert_eq!(result["tenant"], "default");
    assert_eq!(
        result["result"],
        json!({"success": true, "message_id": "m-9"})
    );

    // Bad input is answered with `error` events and the host keeps running.
    host.line("this is not json").await;
    let e = host.expect("error", |e| is(e, "error")).await;
    assert_eq!(e["error"]["kind"], "malformed_json");
    // A command that is not UTF-8 is answered, never mangled (U+FFFD) and acted on.
    host.bytes(b"{\"op\": \"outbound\", \"tenant\": \"default\", \"id\": \"u\xff1\", \"action\": {\"op\": \"send\"}}\n")
        .await;
    let e = host.expect("error", |e| is(e, "error")).await;
    assert_eq!(e["error"]["kind"], "malformed_json", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not UTF-8")),
        "{e}"
    );
    host.command(json!({"op": "outbound", "tenant": "nope", "id": "x1", "action": {}}))
        .await;
    let e = host.expect("error", |e| is(e, "error")).await;
    assert_eq!(e["id"], "x1");
    assert_eq!(e["error"]["kind"], "unknown_tenant");
    host.command(json!({"op": "outbound", "tenant": "default", "id": "x2"}))
        .await;
    let e = host.expect("error", |e| is(e, "error")).await;
    assert_eq!(e["id"], "x2");
    assert_eq!(e["error"]["kind"], "missing_field");

    // Status carries the per-tenant counters.
    host.command(json!({"op": "status"})).await;
    let status = host.expect("status", |e| is(e, "status")).await;
    let t = &status["tenants"][0];
    assert_eq!(t["tenant"], "default");
    assert_eq!(t["state"], "ready");
    assert_eq!(
        t["frames_in"], 3,
        "descriptor, inbound, outbound_result: {t}"
    );
    assert_eq!(t["frames_out"], 3, "hello, inbound_ack, outbound: {t}");
    assert_eq!(t["pending_outbound"], 0);
    assert_eq!(t["restarts"], 0);
    assert!(t["connected_since_ms"].as_u64().is_some(), "{t}");

    // The connector closes with a request in flight: it is answered as lost, the
    // component decides on a backoff, and the host dials again.
    host.command(json!({
        "op": "outbound", "tenant": "default", "id": "app-2",
        "action": {"op": "send", "chat_id": "c1", "content": "lost"},
    }))
    .await;
    assert_eq!(peer.frame().await["type"], "outbound");
    peer.ws
        .close(Some(CloseFrame {
            code: CloseCode::Away,
            reason: "restarting".into(),
        }))
        .await
        .unwrap();
    let lost = host
        .expect("lost result", |e| is(e, "outbound_result"))
        .await;
    assert_eq!(lost["id"], "app-2");
    assert_eq!(
        lost["result"],
        json!({"success": false, "error": "relay transport connection lost", "ambiguous": true})
    );
    let backoff = host.expect("backoff", |e| is_state(e, "backoff")).await;
    assert!(backoff["retry_in_ms"].as_u64().is_some(), "{backoff}");
    drop(peer);
    let mut peer = Peer::accept(&listener, auth.clone()).await;
    assert_eq!(peer.frame().await["type"], "hello");
    peer.send(DESCRIPTOR).await;
    host.expect("second ready", |e| is(e, "ready")).await;

    // End of stdin = shutdown: going_idle (acked here), close, stopped, exit 0.
    host.close_stdin();
    let going_idle = peer.frame().await;
    assert_eq!(going_idle, json!({"type": "going_idle"}));
    peer.send("{\"type\":\"going_idle_ack\"}\n").await;
    let idle = host.expect("idle", |e| is(e, "idle")).await;
    assert_eq!(idle["acked"], true);
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match peer.ws.next().await {
                Some(Ok(Message::Close(frame))) => {
                    // Keep reading, so the close reply is sent.
                    tokio::spawn(async move { while peer.ws.next().await.is_some() {} });
                    return frame;
                }
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("the host closes the socket");
    assert_eq!(closed.map(|f| u16::from(f.code)), Some(1000));
    host.expect("stopped", |e| is_state(e, "stopped")).await;
    let status = host.wait_exit().await;
    assert!(status.success(), "exit status {status}");
    assert!(host.rest().await.is_empty(), "nothing after stopped");

    // A fresh bearer token on each dial; the secret never reaches the logs.
    let auth = auth.lock().unwrap().clone();
    assert_eq!(auth.len(), 2, "{auth:?}");
    assert!(auth.iter().all(|a| a.starts_with("Bearer ")), "{auth:?}");
    host.expect_log("connected").await;
    let stderr = host.stderr();
    assert!(!stderr.contains(SECRET), "secret in the logs");
    for token in &auth {
        assert!(
            !stderr.contains(&token["Bearer ".len()..]),
            "token in the logs"
        );
    }
}

/// Makes the guest of the connection `peer` serves trap: a line without newline
/// larger than the 2 MiB memory cap the config gives that tenant.
async fn make_guest_trap(peer: &mut Peer) {
    peer.send(&"x".repeat(3 << 20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_guest_is_rebuilt_alone_until_its_budget_is_spent() {
    let (l1, l2) = (
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    );
    let config = std::env::temp_dir().join(format!("relay-sidecar-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            r#"
[host]
restart_max = 1
restart_window_s = 60
shutdown_grace_ms = 300

[[tenants]]
id = "fragile"
url = "ws://127.0.0.1:{p1}"
limits = {{ memory_mib = 2, max_line_bytes = 67108864, max_message_bytes = 67108864 }}
[[tenants.identities]]
platform = "discord"
bot_id = "app1"

[[tenants]]
id = "steady"
url = "ws://127.0.0.1:{p2}"
[[tenants.identities]]
platform = "discord"
bot_id = "app2"
"#,
            p1 = l1.local_addr().unwrap().port(),
            p2 = l2.local_addr().unwrap().port(),
        ),
    )
    .unwrap();
    let mut host = Sidecar::start(
        &["run", "--config", config.to_str().unwrap()],
        &[("RELAY_SIDECAR_TEST_SECRET", SECRET)],
    );
    let auth = Arc::new(Mutex::new(Vec::new()));
    let mut fragile = Peer::accept(&l1, auth.clone()).await;
    let mut steady = Peer::accept(&l2, auth.clone()).await;
    for peer in [&mut fragile, &mut steady] {
        assert_eq!(peer.frame().await["type"], "hello");
        peer.send(DESCRIPTOR).await;
    }
    let mut ready = std::collections::HashSet::new();
    while ready.len() < 2 {
        let e = host.expect("both ready", |e| is(e, "ready")).await;
        ready.insert(e["tenant"].to_string());
    }

    // First failure: the request in flight is answered, the instance rebuilt and
    // the link dialed again.
    host.command(json!({
        "op": "outbound", "tenant": "fragile", "id": "o1",
        "action": {"op": "send", "chat_id": "c1", "content": "hi"},
    }))
    .await;
    assert_eq!(fragile.frame().await["type"], "outbound");
    make_guest_trap(&mut fragile).await;
    let lost = host.expect("o1 result", |e| is(e, "outbound_result")).await;
    assert_eq!(lost["tenant"], "fragile");
    assert_eq!(lost["id"], "o1");
    assert_eq!(
        lost["result"],
        json!({"success": false, "error": "relay transport connection lost", "ambiguous": true})
    );
    let backoff = host
        .expect("backoff", |e| is_state(e, "backoff") && of(e, "fragile"))
        .await;
    let reason = backoff["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("guest instance failed"), "{backoff}");
    let mut fragile = Peer::accept(&l1, auth.clone()).await;
    assert_eq!(fragile.frame().await["type"], "hello");
    fragile.send(DESCRIPTOR).await;
    host.expect("fragile ready again", |e| {
        is(e, "ready") && of(e, "fragile")
    })
    .await;

    // Second failure within the window: over budget, the tenant stops for good,
    // and its commands are still answered: those queued while it stops too.
    make_guest_trap(&mut fragile).await;
    const BURST: usize = 200;
    for i in 0..BURST {
        host.command(json!({
            "op": "outbound", "tenant": "fragile", "id": format!("q{i}"),
            "action": {"op": "send", "chat_id": "c1", "content": "hi"},
        }))
        .await;
    }
    let stopped = host
        .expect_ever("stopped", |e| is_state(e, "stopped") && of(e, "fragile"))
        .await;
    let is_burst = |e: &Value| {
        is(e, "outbound_result") && e["id"].as_str().is_some_and(|id| id.starts_with('q'))
    };
    while host.seen.iter().filter(|e| is_burst(e)).count() < BURST {
        host.expect("a burst result", is_burst).await;
    }
    let mut answered = std::collections::HashMap::new();
    for e in host.seen.iter().filter(|e| is_burst(e)) {
        *answered.entry(e["id"].to_string()).or_insert(0) += 1;
    }
    assert_eq!(answered.len(), BURST, "every queued command answered");
    assert!(
        answered.values().all(|n| *n == 1),
        "answered twice: {answered:?}"
    );
    let reason = stopped["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("restart budget"), "{stopped}");
    host.command(json!({
        "op": "outbound", "tenant": "fragile", "id": "o2",
        "action": {"op": "send", "chat_id": "c1", "content": "hi"},
    }))
    .await;
    let closed = host.expect("o2 result", |e| is(e, "outbound_result")).await;
    assert_eq!(closed["id"], "o2");
    assert_eq!(closed["result"]["error"], "relay transport closed");

    // The other tenant never noticed.
    host.command(json!({"op": "status"})).await;
    let status = host.expect("status", |e| is(e, "status")).await;
    assert_eq!(status["tenants"][0]["tenant"], "fragile");
    assert_eq!(status["tenants"][0]["state"], "stopped");
    assert_eq!(status["tenants"][0]["restarts"], 2);
    assert_eq!(status["tenants"][1]["tenant"], "steady");
    assert_eq!(status["tenants"][1]["state"], "ready");
    assert_eq!(status["tenants"][1]["restarts"], 0);
    assert!(
        !host
            .seen
            .iter()
            .any(|e| of(e, "steady") && is_state(e, "backoff")),
        "steady tenant was disturbed: {:#?}",
        host.seen
    );

    // Shutdown: the steady tenant goes idle without an ack (bounded wait) and
    // the process still exits 0.
    host.command(json!({"op": "shutdown"})).await;
    assert_eq!(steady.frame().await, json!({"type": "going_idle"}));
    tokio::spawn(async move { while steady.ws.next().await.is_some() {} });
    host.expect("steady stopped", |e| {
        is_state(e, "stopped") && of(e, "steady")
    })
    .await;
    let status = host.wait_exit().await;
    assert!(status.success(), "exit status {status}");
    let _ = std::fs::remove_file(&config);
}
