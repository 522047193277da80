//! Fault injection: a hostile connector written here (tokio-tungstenite on
//! loopback) against the real `relay-host run` binary. One scenario per test: a
//! frame cut by a TCP drop, 1-byte messages, a 10 MB line, 10,000 frames in one
//! message, outbound results that never come or come twice, a missing
//! descriptor, a connector that restarts in the middle of a buffered replay, a
//! connector that stops reading, invalid UTF-8, and the close codes 1000, 1006,
//! 4000 and 4401; and two faults of the application: a command line over 16 MiB
//! and an application that stops reading stdout. Each asserts what the
//! application sees on stdout and that nothing is lost or duplicated.
//!
//! Every wait is on an event with a generous deadline ([`WAIT`]); the fixed
//! windows only prove that something does *not* happen. Timeouts in the TOML are
//! small and the D11 backoff starts at 1 s, so each test takes a few seconds.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{is, is_state, of, states, Sidecar, TempDir, WAIT};
use futures_util::{SinkExt as _, StreamExt as _};
use relay_connector::behavior::builtin_descriptor;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A connector of our own: a loopback listener the host dials.
struct Server {
    listener: TcpListener,
}

impl Server {
    async fn bind() -> Server {
        Server {
            listener: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        }
    }

    /// A listener whose accepted sockets have a tiny receive buffer, so a peer
    /// that stops reading makes the host's writes block soon.
    fn bind_small_buffer() -> Server {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        socket
            .bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind");
        Server {
            listener: socket.listen(16).expect("listen"),
        }
    }

    fn url(&self) -> String {
        format!("ws://{}", self.listener.local_addr().expect("addr"))
    }

    /// The next WebSocket `host` opens (on a timeout, what it reported so far).
    async fn accept(&self, host: &mut Sidecar) -> Peer {
        let tcp = match tokio::time::timeout(WAIT, self.listener.accept()).await {
            Ok(accepted) => accepted.expect("accept").0,
            Err(_) => {
                host.expect_none_within(Duration::from_millis(100), "", |_| false)
                    .await;
                panic!(
                    "the host did not dial within the wait; events: {:#?}\nstderr:\n{}",
                    host.seen,
                    host.stderr()
                );
            }
        };
        let ws = tokio::time::timeout(WAIT, tokio_tungstenite::accept_async(tcp))
            .await
            .expect("upgrade within the wait")
            .expect("upgrade");
        Peer { ws }
    }

    /// Asserts that the host does not dial within `window`.
    async fn expect_no_dial(&self, window: Duration) {
        if let Ok(Ok((_, peer))) = tokio::time::timeout(window, self.listener.accept()).await {
            panic!("the host dialed again from {peer}");
        }
    }
}

/// The connector side of one socket.
struct Peer {
    ws: WebSocketStream<TcpStream>,
}

impl Peer {
    /// The next frame the host wrote (pings skipped); `None` once the socket ends
    /// or a close frame arrives.
    async fn next_frame(&mut self) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame or the end within the wait");
            match msg {
                Some(Ok(Message::Text(t))) => {
                    assert!(t.ends_with('\n'), "one line per message: {t:?}");
                    return Some(serde_json::from_str(t.trim_end()).expect("frame is JSON"));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(other)) => panic!("unexpected message {other:?}"),
            }
        }
    }

    async fn frame(&mut self) -> Value {
        self.next_frame().await.expect("the socket is open")
    }

    /// Reads the hello and answers with the built-in Discord descriptor.
    async fn handshake(&mut self) -> Value {
        let hello = self.frame().await;
        assert_eq!(hello["type"], "hello", "{hello}");
        self.text(&line(&descriptor_frame())).await;
        hello
    }

    async fn text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send text");
    }

    async fn binary(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(Message::binary(bytes))
            .await
            .expect("send binary");
    }

    /// Sends a close frame with `code` and waits for the host's reply.
    async fn close(mut self, code: u16, reason: &str) {
        self.ws
            .close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            }))
            .await
            .expect("send close");
        let _ = tokio::time::timeout(WAIT, async { while self.ws.next().await.is_some() {} }).await;
    }

    /// Ends the TCP connection without a close frame (the host sees 1006).
    fn drop_tcp(self) {
        drop(self.ws);
    }

    /// Frames until the socket ends, skipping pings.
    async fn drain(&mut self) -> Vec<Value> {
        let mut frames = Vec::new();
        while let Some(f) = self.next_frame().await {
            frames.push(f);
        }
        frames
    }
}

fn line(frame: &Value) -> String {
    format!("{frame}\n")
}

fn descriptor_frame() -> Value {
    json!({"type": "descriptor", "descriptor": builtin_descriptor("discord")})
}

fn event(text: &str) -> Value {
    json!({"text": text, "message_type": "text", "message_id": format!("in-{text}"),
           "source": {"platform": "discord", "chat_id": "c1", "chat_type": "group",
                      "user_id": "u1", "user_name": "ann"}})
}

fn inbound(text: &str) -> Value {
    json!({"type": "inbound", "event": event(text)})
}

fn buffered(text: &str, buffer_id: &str) -> Value {
    json!({"type": "inbound", "event": event(text), "bufferId": buffer_id})
}

/// Starts the binary with one tenant `f` dialing `url`; `extra` is appended to
/// the tenant table (e.g. `[tenants.timeouts]`).
fn start(dir: &TempDir, url: &str, extra: &str) -> Sidecar {
    let path = dir.write(
        "tenants.toml",
        &format!(
            r#"
[host]
shutdown_grace_ms = 500

[[tenants]]
id = "f"
url = "{url}"
seed = 11
reconnect_jitter_percent = 0
[[tenants.identities]]
platform = "discord"
bot_id = "app1"
{extra}
"#
        ),
    );
    Sidecar::start(&["run", "--config", path.to_str().expect("utf-8")], &[])
}

fn send(id: &str, content: &str) -> Value {
    json!({"op": "outbound", "tenant": "f", "id": id,
           "action": {"op": "send", "chat_id": "c1", "content": content}})
}

/// The texts of every `message` event so far, in order.
fn texts(host: &Sidecar) -> Vec<String> {
    host.seen
        .iter()
        .filter(|e| is(e, "message"))
        .map(|e| e["message"]["text"].as_str().unwrap_or("?").to_string())
        .collect()
}

async fn expect_message(host: &mut Sidecar, text: &str) -> Value {
    host.expect(&format!("message {text:?}"), |e| {
        is(e, "message") && e["message"]["text"] == text
    })
    .await
}

/// One outbound answered by `peer` at once; returns the result event.
async fn round_trip(host: &mut Sidecar, peer: &mut Peer, id: &str) -> Value {
    host.command(send(id, id)).await;
    let out = peer.frame().await;
    assert_eq!(out["type"], "outbound", "{out}");
    assert_eq!(out["action"]["content"], id, "{out}");
    peer.text(&line(
        &json!({"type": "outbound_result", "requestId": out["requestId"],
                            "result": {"success": true, "message_id": format!("m-{id}")}}),
    ))
    .await;
    let r = host
        .expect(id, |e| is(e, "outbound_result") && e["id"] == id)
        .await;
    assert_eq!(r["result"]["success"], true, "{r}");
    r
}

/// Stops the host (end of stdin) and checks it exits 0 and never logged a panic;
/// `peer` (the open socket, if any) acks the host's `going_idle` meanwhile.
async fn finish(mut host: Sidecar, peer: Option<Peer>) {
    if let Some(mut peer) = peer {
        tokio::spawn(async move {
            while let Some(frame) = peer.next_frame().await {
                if frame["type"] == "going_idle" {
                    peer.text(&line(&json!({"type": "going_idle_ack"}))).await;
                }
            }
        });
    }
    host.close_stdin();
    let status = host.wait_exit().await;
    assert!(status.success(), "exit status {status}");
    host.rest().await;
    let stderr = host.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !host.seen.iter().any(|e| is(e, "error")),
        "{:#?}",
        host.seen
    );
}

/// Half a line, then the TCP connection drops: the fragment is never delivered
/// and never glued to the next connection's first line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_line_then_a_tcp_drop() {
    let server = Server::bind().await;
    let dir = TempDir::new("half");
    let mut host = start(&dir, &server.url(), "");
    let mut peer = server.accept(&mut host).await;
    peer.handshake().await;
    host.expect("ready", |e| is_state(e, "ready")).await;

    let whole = line(&inbound("cut in half"));
    peer.text(&whole[..whole.len() / 2]).await;
    peer.drop_tcp();
    let events = host
        .collect_until("backoff", |e| is_state(e, "backoff"))
        .await;
    assert_eq!(events.last().expect("backoff")["retry_in_ms"], 1000);

    let mut peer = server.accept(&mut host).await;
    peer.handshake().await;
    host.expect("ready again", |e| is_state(e, "ready")).await;
    // The second half first: the stale first half must not complete with it.
    peer.text(&whole[whole.len() / 2..]).await;
    peer.text(&line(&inbound("after the drop"))).await;
    expect_message(&mut host, "after the drop").await;
    round_trip(&mut host, &mut peer, "flush").await;
    assert_eq!(texts(&host), ["after the drop"], "{:#?}", host.seen);
    finish(host, Some(peer)).await;
}

/// Every byte its own WebSocket message: text for ASCII, binary where a byte is
/// part of a multi-byte character. The frames arrive whole and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_split_into_one_byte_messages() {
    let server = Server::bind().await;
    let dir = TempDir::new("bytes");
    let mut host = start(&dir, &server.url(), "");
    let mut peer = server.accept(&mut host).await;
    assert_eq!(peer.frame().await["type"], "hello");
    for b in line(&descriptor_frame()).bytes() {
        peer.ws
            .feed(Message::text((b as char).to_string()))
            .await
            .expect("feed");
    }
    peer.ws.flush().await.expect("flush");
    host.expect("ready", |e| is_state(e, "ready")).await;

    for b in line(&inbound("one byte at a time")).bytes() {
        peer.ws
            .feed(Message::text((b as char).to_string()))
            .await
            .expect("feed");
    }
    for b in line(&inbound("héllo wörld 😀 ✓")).into_bytes() {
        peer.ws.feed(Message::binary(vec![b])).await.expect("feed");
    }
    peer.ws.flush().await.expect("flush");
    expect_message(&mut host, "héllo wörld 😀 ✓").await;
    round_trip(&mut host, &mut peer, "flush").await;
    assert_eq!(
        texts(&host),
        ["one byte at a time", "héllo wörld 😀 ✓"],
        "{:#?}",
        host.seen
    );
    assert_eq!(
        states(&host.seen),
        ["connecting", "handshaking", "ready"],
        "the link stayed up"
    );
    finish(host, Some(peer)).await;
}

/// A 10 MB line (a well-formed inbound, only too long) is skipped per D12 and
/// the next line is delivered: in 1 MB messages with the default limits, and in
/// one message where `max_message_bytes` allows it. One 10 MB message over the
/// default `max_message_bytes` (4 MiB) ends that socket instead; the host
/// reconnects and carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mb_line_is_skipped_and_the_next_line_delivered() {
    let huge = {
        let mut text = r#"{"type":"inbound","event":{"text":""#.to_string();
        text.push_str(&"x".repeat(10_000_000));
        text.push_str(r#"","source":{"platform":"discord","chat_id":"c1"}}}"#);
        text.push('\n');
        text
    };

    // Default limits (max_line_bytes 1 MiB, max_message_bytes 4 MiB).
    let server = Server::bind().await;
    let dir = TempDir::new("huge");
    let mut host = start(&dir, &server.url(), "");
    let mut peer = server.accept(&mut host).await;
    peer.handshake().await;
    host.expect("ready", |e| is_state(e, "ready")).await;
    let ready_at = host.seen.len();

    // (1) In 1 MB messages, the next line in the same message as the newline.
    let mut rest = huge.as_str();
    while rest.len() > 1_000_000 {
        let (piece, tail) = rest.split_at(1_000_000);
        peer.text(piece).await;
        rest = tail;
    }
    peer.text(&format!(
        "{rest}{}",
        line(&inbound("after 10 MB in pieces"))
    ))
    .await;
    expect_message(&mut host, "after 10 MB in pieces").await;
    round_trip(&mut host, &mut peer, "still-up").await;
    assert!(
        states(&host.seen[ready_at..]).is_empty(),
        "the link stayed up: {:#?}",
        &host.seen[ready_at..]
    );

    // (2) In one 10 MB message: over max_message_bytes, the socket is refused
    // (the host may hang up while it is still being written).
    let _ = peer
        .ws
        .send(Message::text(format!(
            "{huge}{}",
            line(&inbound("lost with the socket"))
        )))
        .await;
    let events = host
        .collect_until("backoff", |e| is_state(e, "backoff"))
        .await;
    assert!(!events.iter().any(|e| is(e, "message")), "{events:#?}");
    drop(peer);
    let mut peer = server.accept(&mut host).await;
    peer.handshake().await;
    host.expect("ready again", |e| is_state(e, "ready")).await;
    peer.text(&line(&inbound("after the refused message")))
        .await;
    expect_message(&mut host, "after the refused message").await;
    assert_eq!(
        texts(&host),
        ["after 10 MB in pieces", "after the refused message"]
    );
    finish(host, Some(peer)).await;

    // (3) max_message_bytes = 16 MiB: one 10 MB message reaches the guest (in
    // 256 KiB pieces) and the line is skipped there.
    let server = Server::bind().await;
    let dir = TempDir::new("huge-big");
    let mut host = start(
        &dir,
        &server.url(),
        "[tenants.limits]\nmax_message_bytes = 16777216",
    );
    let mut peer = server.accept(&mut host).await;
    peer.handshake().await;
    host.expect("ready", |e| is_state(e, "ready")).await;
    let ready_at = host.seen.len();
    peer.text(&format!("{huge}{}", line(&inbound("after 10 MB at once"))))
        .await;
    expect_message(&mut host, "after 10 MB at once").await;
    round_trip(&mut host, &mut peer, "still-up").await;
    assert!(
        states(&host.seen[ready_at..]).is_empty(),
        "{:#?}",
        &host.seen[ready_at..]
    );
    assert_eq!(texts(&host), ["after 10 MB at once"]);
    host.expect_log("too_large").await;
    finish(host, Some(peer)).await;
}

/// 10,000 frames in one WebSocket message: all delivered, once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_frames_in_one_message() {
    const N: usize = 10_000;
    let server = Server::bind().await;
    let dir = TempDir::new("many");
    let mut host = start(&dir, &server.url(), "");
    let mut peer = server.accept(&mut host).await;
    peer.handshake().await;
    host.expect("ready", |e| is_state(e, "ready")).await;

    let mut message = String::new();
    for i in 0..N {
        message.push_str(&line(&inbound(&format!("m{i}"))));
    }
    eprintln!("one message of {} bytes", message.len());
    peer.text(&message).await;
    let last = format!("m{}", N - 1);
    expect_message(&mut host, &last).await;
    round_trip(&mut host, &mut peer, "after").await;
    let expected: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    let got = texts(&host);
    assert_eq!(got.len(), N, "lost or duplicated");
    assert!(got == expected, "out of order");
    assert_eq!(
        states(&host.seen),
        ["connecting", "handshaking", "ready"],
        "the link stayed up (no guest restart)"
    );
    host.command(json!({"op": "status"})).await;
    let status = host.expect("status", |e| is(e, "status")).await;
    assert_eq!(status["tenants"][0]["restarts"], 0, "{status}");
    assert_eq!(
        status["tenants"][0]["frames_in"],
        N as u64 + 2,
        "descriptor, {N} inbound, one result: {status}"
    );
    finish(host, Some(peer)).await;
}

/// An outbound that is never answered gets the timeout result (and a late answer
/// is dropped); one answered twice gets exactly one `outbound_result`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_and_twice_answered_outbounds() {
    let server = Server::bind().await;
    let dir = TempDir::new("results");
    let mut host = start(&dir, &server.url(), "[tenants.timeouts]\noutbound_ms = 300");
    let mut peer = server.accept(&mut host).await;
    peer.handshake().await;
    host.expect("ready", |e| is_state(e, "ready")).await;
    let ready_at = host.seen.len();

    // Never answered.
    let t0 = Instant::now();
    host.command(send("silent", "no answer")).await;
    let silent = peer.frame().await;
    assert_eq!(silent["type"], "outbound");
    let r = host
        .expect("timeout result", |e| is(e, "outbound_result"))
        .await;
    assert!(t0.elapsed() >= Duration::from_millis(250), "{r}");
    assert_eq!(r["id"], "silent");
    assert_eq!(
        r["result"],
        json!({"success": false, "error": "relay outbound timed out", "ambiguous": true})
    );

    // Answered twice (and the silent one answered late, after its timeout).
    host.command(send("twice", "two answers")).await;
    let twice = peer.frame().await;
    for n in 1..=2 {
        peer.text(&line(
            &json!({"type": "outbound_result", "requestId": twice["requestId"],
                                "result": {"success": true, "message_id": format!("m{n}")}}),
        ))
        .await;
    }
    peer.text(&line(
        &json!({"type": "outbound_result", "requestId": silent["requestId"],
                            "result": {"success": true, "message_id": "late"}}),
    ))
    .await;
    // Written after the duplicates on the same socket, so handled after them.
    round_trip(&mut host, &mut peer, "flush").await;
    let results: Vec<&Value> = host.seen[ready_at..]
        .iter()
        .filter(|e| is(e, "outbound_result"))
        .collect();
    let ids: Vec<&str> = results
        .iter()
        .map(|e| e["id"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(ids, ["silent", "twice", "flush"], "{results:#?}");
    assert_eq!(
        results[1]["result"],
        json!({"success": true, "message_id": "m1"}),
        "the first answer wins"
    );
    assert!(states(&host.seen[ready_at..]).is_empty());
    finish(host, Some(peer)).await;
}

/// No descriptor within handshake_ms: `handshake_failed`, the host closes the
/// socket, backs off (1 s) and dials again; that handshake succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_descriptor_fails_the_handshake_then_backs_off() {
    let server = Server::bind().await;
    let dir = TempDir::new("nodesc");
    let mut host = start(
        &dir,
        &server.url(),
        "[tenants.timeouts]\nhandshake_ms = 300",
    );
    let mut peer = server.accept(&mut host).await;
    assert_eq!(peer.frame().await["type"], "hello");
    let hello_at = Instant::now();
    // Keep reading, so the host's close handshake completes.
    let rest = tokio::spawn(async move { peer.drain().await });
    let events = host
        .collect_until("backoff", |e| is_state(e, "backoff"))
        .await;
    assert!(hello_at.elapsed() >= Duration::from_millis(250));
    assert_eq!(
        states(&events),
        ["connecting", "handshaking", "handshake_failed", "backoff"]
    );
    assert_eq!(events.last().expect("backoff")["retry_in_ms"], 1000);
    let rest = rest.await.expect("drain");
    assert!(
        rest.is_empty(),
        "nothing but the close after the hello: {rest:?}"
    );
    let failed_at = Instant::now();
    let mut peer = server.accept(&mut host).await;
    assert!(
        failed_at.elapsed() >= Duration::from_millis(800),
        "dialed again before the backoff"
    );
    peer.handshake().await;
    let events = host.collect_until("ready", |e| is_state(e, "ready")).await;
    assert_eq!(states(&events), ["connecting", "handshaking", "ready"]);
    assert!(!host
        .seen
        .iter()
        .any(|e| is(e, "ready") && e["descriptor"].is_null()));
    finish(host, Some(peer)).await;
}

/// The connector restarts in the middle of a buffered replay (the third item cut
/// in half, then a TCP drop): after the next replay every item has reached the
/// application exactly once, and after its acks each id is acked exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_buffered_replay() {
    let server = Server::bind().await;
    let dir = TempDir::new("replay");
    let mut host = start(&dir, &server.url(), "");

    // Connection 1: b1 delivered, not acked; the connector crashes.
    let mut peer = server.accept(&mut host).await;
    peer.handshake().await;
    host.expect("ready", |e| is_state(e, "ready")).await;
    peer.text(&line(&buffered("one", "b1"))).await;
    let m = expect_message(&mut host, "one").await;
    assert_eq!(m["buffer_id"], "b1");
    peer.drop_tcp();
    host.expect("backoff", |e| is_state(e, "backoff")).await;

    // Connection 2: replay b1, b2 and half of b3, then crash again.
    let mut peer = server.accept(&mut host).await;
    peer.handshake().await;
    host.expect("ready", |e| is_state(e, "ready")).await;
    let b3 = line(&buffered("three", "b3"));
    peer.text(&format!(
        "{}{}{}",
        line(&buffered("one", "b1")),
        line(&buffered("two", "b2")),
        &b3[..b3.len() / 2]
    ))
    .await;
    expect_message(&mut host, "two").await;
    peer.drop_tcp();
    host.expect("backoff", |e| is_state(e, "backoff")).await;

    // Connection 3: the whole replay.
    let mut peer = server.accept(&mut host).await;
    peer.handshake().await;
    host.expect("ready", |e| is_state(e, "ready")).await;
    for (text, id) in [("one", "b1"), ("two", "b2"), ("three", "b3")] {
        peer.text(&line(&buffered(text, id))).await;
    }
    expect_message(&mut host, "three").await;
    // Nothing acked before the application says so: the outbound is the first
    // frame after the hello.
    host.command(send("probe", "probe")).await;
    let first = peer.frame().await;
    assert_eq!(first["type"], "outbound", "{first}");
    peer.text(&line(
        &json!({"type": "outbound_result", "requestId": first["requestId"],
                            "result": {"success": true}}),
    ))
    .await;
    host.expect("probe result", |e| is(e, "outbound_result"))
        .await;
    let messages: Vec<(String, Value)> = host
        .seen
        .iter()
        .filter(|e| is(e, "message"))
        .map(|e| {
            (
                e["message"]["text"].as_str().unwrap_or("?").to_string(),
                e["buffer_id"].clone(),
            )
        })
        .collect();
    assert_eq!(
        messages,
        [
            ("one".to_string(), json!("b1")),
            ("two".to_string(), json!("b2")),
            ("three".to_string(), json!("b3"))
        ],
        "each buffered item exactly once"
    );

    // The application acks; the connector's replay buffer empties.
    let mut pending: HashMap<String, usize> = ["b1", "b2", "b3"]
        .iter()
        .map(|id| (id.to_string(), 0))
        .collect();
    for id in ["b1", "b2", "b3"] {
        host.command(json!({"op": "ack", "tenant": "f", "buffer_id": id}))
            .await;
    }
    for _ in 0..3 {
        let ack = peer.frame().await;
        assert_eq!(ack["type"], "inbound_ack", "{ack}");
        *pending
            .get_mut(ack["bufferId"].as_str().expect("bufferId"))
            .expect("a pending id") += 1;
    }
    assert!(pending.values().all(|&n| n == 1), "{pending:?}");

    // One more restart: nothing left to replay, and no stray ack is sent.
    peer.close(1001, "restart").await;
    let mut peer = server.accept(&mut host).await;
    peer.handshake().await;
    host.expect("ready", |e| is_state(e, "ready")).await;
    round_trip(&mut host, &mut peer, "after").await;
    assert_eq!(texts(&host), ["one", "two", "three"]);
    finish(host, Some(peer)).await;
}

/// The connector stops reading: the host's writes block (back-pressure, no
/// unbounded buffering), then it reads again and every frame arrives, in order,
/// and every command gets exactly one result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_that_stops_reading() {
    const N: usize = 300;
    let server = Server::bind_small_buffer();
    let dir = TempDir::new("slow");
    let mut host = start(&dir, &server.url(), "");
    let mut peer = server.accept(&mut host).await;
    peer.handshake().await;
    host.expect("ready", |e| is_state(e, "ready")).await;
    let ready_at = host.seen.len();

    // 300 x 64 KB: far more than the socket buffers hold (4 MiB at most here).
    let padding = "p".repeat(64 << 10);
    for i in 0..N {
        host.command(send(&format!("o{i}"), &format!("{i} {padding}")))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    host.command(json!({"op": "status"})).await;
    let status = host.expect("status", |e| is(e, "status")).await;
    let written = status["tenants"][0]["frames_out"]
        .as_u64()
        .expect("frames_out");
    eprintln!(
        "frames written while the connector did not read: {written} of {}",
        N + 1
    );
    assert!(written < N as u64 / 2, "the writes did not block: {status}");

    // Read again (slowly at first), answer everything.
    let mut request_ids = std::collections::HashSet::new();
    for i in 0..N {
        if i < 50 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let f = peer.frame().await;
        assert_eq!(f["type"], "outbound", "{f}");
        let content = f["action"]["content"].as_str().expect("content");
        assert!(
            content.starts_with(&format!("{i} ")),
            "frame {i} out of order"
        );
        assert!(
            request_ids.insert(f["requestId"].to_string()),
            "duplicate frame"
        );
        peer.text(&line(
            &json!({"type": "outbound_result", "requestId": f["requestId"],
                                "result": {"success": true, "message_id": format!("m{i}")}}),
        ))
        .await;
    }
    let last = format!("o{}", N - 1);
    host.expect(&last, |e| is(e, "outbound_result") && e["id"] == last)
        .await;
    let mut results: HashMap<String, usize> = HashMap::new();
    for e in host.seen[ready_at..]
        .iter()
        .filter(|e| is(e, "outbound_result"))
    {
        assert_eq!(e["result"]["success"], true, "{e}");
        *results
            .entry(e["id"].as_str().expect("id").to_string())
            .or_default() += 1;
    }
    assert_eq!(results.len(), N, "a result is missing");
    assert!(results.values().all(|&n| n == 1), "a duplicated result");
    assert!(
        states(&host.seen[ready_at..]).is_empty(),
        "the link stayed up"
    );
    finish(host, Some(peer)).await;
}

/// One tenant's connector stops reading and its command queue fills: the shared
/// stdin reader never waits for it. Commands beyond the queue are answered at
/// once (outbound: `relay send failed: too many commands queued…`), and the
/// other tenant's commands keep flowing meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_tenant_queue_never_stalls_the_other_tenants() {
    const QUEUE: usize = 8;
    const N: usize = 200;
    let stuck_server = Server::bind_small_buffer();
    let fine_server = Server::bind().await;
    let dir = TempDir::new("full-queue");
    let path = dir.write(
        "tenants.toml",
        &format!(
            r#"
[host]
shutdown_grace_ms = 300
command_queue = {QUEUE}

[[tenants]]
id = "stuck"
url = "{stuck}"
[[tenants.identities]]
platform = "discord"
bot_id = "app1"

[[tenants]]
id = "fine"
url = "{fine}"
[[tenants.identities]]
platform = "discord"
bot_id = "app2"
"#,
            stuck = stuck_server.url(),
            fine = fine_server.url(),
        ),
    );
    let mut host = Sidecar::start(&["run", "--config", path.to_str().expect("utf-8")], &[]);
    let mut stuck = stuck_server.accept(&mut host).await;
    stuck.handshake().await;
    let mut fine = fine_server.accept(&mut host).await;
    fine.handshake().await;
    host.expect_each(
        "both ready",
        &[&|e| is_state(e, "ready") && of(e, "stuck"), &|e| {
            is_state(e, "ready") && of(e, "fine")
        }],
    )
    .await;

    // 200 x 64 KB to a connector that reads nothing: the tenant's writes block,
    // its queue fills, and the rest must be answered at once.
    let padding = "p".repeat(64 << 10);
    for i in 0..N {
        host.command(
            json!({"op": "outbound", "tenant": "stuck", "id": format!("s{i}"),
            "action": {"op": "send", "chat_id": "c1", "content": format!("{i} {padding}")}}),
        )
        .await;
    }
    // The other tenant is served meanwhile: its round trip completes while the
    // stuck tenant's writes are still blocked.
    host.command(json!({"op": "outbound", "tenant": "fine", "id": "f1",
        "action": {"op": "send", "chat_id": "c1", "content": "hello"}}))
        .await;
    let f = fine.frame().await;
    assert_eq!(f["type"], "outbound", "{f}");
    fine.text(&line(
        &json!({"type": "outbound_result", "requestId": f["requestId"],
        "result": {"success": true}}),
    ))
    .await;
    host.expect("f1 answered", |e| {
        is(e, "outbound_result") && e["id"] == "f1"
    })
    .await;
    let refused = host
        .seen
        .iter()
        .filter(|e| {
            is(e, "outbound_result")
                && of(e, "stuck")
                && e["result"]["error"]
                    .as_str()
                    .is_some_and(|t| t.contains("too many commands queued"))
        })
        .count();
    assert!(
        refused >= N / 4,
        "only {refused} of {N} refused at once with a queue of {QUEUE}"
    );
    drop(stuck);
    finish(host, Some(fine)).await;
}

/// Invalid UTF-8 in a line (binary message) is skipped and the next line is
/// fine. In a *text* message it breaks the WebSocket protocol: the host drops
/// that socket, reconnects and carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_skipped() {
    let server = Server::bind().await;
    let dir = TempDir::new("utf8");
    let mut host = start(&dir, &server.url(), "");
    let mut peer = server.accept(&mut host).await;
    peer.handshake().await;
    host.expect("ready", |e| is_state(e, "ready")).await;
    let ready_at = host.seen.len();

    // A whole line of garbage, and an inbound whose text holds an invalid byte.
    let mut bytes = b"\xff\xfe\xfd not utf-8\n".to_vec();
    let mut bad = line(&inbound("bad-XX")).into_bytes();
    let at = bad.windows(2).position(|w| w == b"XX").expect("marker");
    bad[at] = 0xC3; // a lead byte followed by 'X': invalid
    bytes.extend_from_slice(&bad);
    bytes.extend_from_slice(line(&inbound("fine after garbage")).as_bytes());
    peer.binary(bytes).await;
    expect_message(&mut host, "fine after garbage").await;
    round_trip(&mut host, &mut peer, "still-up").await;
    assert_eq!(texts(&host), ["fine after garbage"]);
    assert!(states(&host.seen[ready_at..]).is_empty());

    // A text frame that is not UTF-8: a protocol error, the socket is dropped.
    peer.ws
        .send(Message::Frame(Frame::message(
            b"{\"type\":\"inbound\xff\"}\n".to_vec(),
            OpCode::Data(Data::Text),
            true,
        )))
        .await
        .expect("send a raw frame");
    host.expect("backoff", |e| is_state(e, "backoff")).await;
    let mut peer = server.accept(&mut host).await;
    peer.handshake().await;
    host.expect("ready again", |e| is_state(e, "ready")).await;
    peer.text(&line(&inbound("fine after reconnect"))).await;
    expect_message(&mut host, "fine after reconnect").await;
    assert_eq!(texts(&host), ["fine after garbage", "fine after reconnect"]);
    finish(host, Some(peer)).await;
}

/// Close codes: 1000, a TCP drop (1006) and 4000 back off and reconnect (1, 2
/// and 4 s: short connections do not restart the ladder, D11 revised);
/// 4401 after a handshake re-dials at once, and a 4401 on that re-dial's
/// connection revokes (no further dial). A request in flight at a close is answered "connection
/// lost", exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_codes_1000_1006_4000_and_4401() {
    let server = Server::bind().await;
    let dir = TempDir::new("closes");
    let mut host = start(&dir, &server.url(), "");
    let mut peer = server.accept(&mut host).await;
    peer.handshake().await;
    host.expect("ready", |e| is_state(e, "ready")).await;

    for (n, code) in [1000u16, 1006, 4000].into_iter().enumerate() {
        let id = format!("in-flight-{code}");
        host.command(send(&id, "x")).await;
        assert_eq!(peer.frame().await["type"], "outbound");
        let closed_at = Instant::now();
        if code == 1006 {
            peer.drop_tcp();
        } else {
            peer.close(code, "bye").await;
        }
        let events = host
            .collect_until("backoff", |e| is_state(e, "backoff"))
            .await;
        let lost: Vec<&Value> = events.iter().filter(|e| is(e, "outbound_result")).collect();
        assert_eq!(lost.len(), 1, "{code}: {events:#?}");
        assert_eq!(lost[0]["id"], id.as_str());
        assert_eq!(
            lost[0]["result"],
            json!({"success": false, "error": "relay transport connection lost", "ambiguous": true})
        );
        assert_eq!(states(&events), ["backoff"], "{code}: {events:#?}");
        assert_eq!(
            events.last().expect("backoff")["retry_in_ms"],
            1000 << n,
            "{code}"
        );
        peer = server.accept(&mut host).await;
        assert!(
            closed_at.elapsed() >= Duration::from_millis(800),
            "{code}: dialed again before the backoff"
        );
        peer.handshake().await;
        let events = host.collect_until("ready", |e| is_state(e, "ready")).await;
        assert_eq!(
            states(&events),
            ["connecting", "handshaking", "ready"],
            "{code}"
        );
        round_trip(&mut host, &mut peer, &format!("after-{n}")).await;
    }

    // 4401 after a handshake: one immediate re-dial, which is accepted.
    let closed_at = Instant::now();
    peer.close(4401, "unauthorized").await;
    let mut peer = server.accept(&mut host).await;
    assert!(
        closed_at.elapsed() < Duration::from_millis(800),
        "the re-dial does not wait for a backoff"
    );
    peer.handshake().await;
    let events = host.collect_until("ready", |e| is_state(e, "ready")).await;
    assert_eq!(
        states(&events),
        ["redial", "connecting", "handshaking", "ready"]
    );
    assert!(events[0].get("retry_in_ms").is_none(), "{events:#?}");

    round_trip(&mut host, &mut peer, "after-redial").await;

    // 4401 again on that re-dial connection, even after its handshake: revoked
    // (vector close_4401_on_redial_after_handshake_revoked), no more dials.
    peer.close(4401, "unauthorized").await;
    let events = host
        .collect_until("revoked", |e| is_state(e, "revoked"))
        .await;
    assert_eq!(states(&events), ["revoked"]);
    server.expect_no_dial(Duration::from_millis(2500)).await;
    host.command(send("late", "x")).await;
    let r = host
        .expect("late result", |e| is(e, "outbound_result"))
        .await;
    assert_eq!(
        r["result"],
        json!({"success": false, "error": "relay transport not connected"})
    );
    let results = host
        .seen
        .iter()
        .filter(|e| is(e, "outbound_result"))
        .count();
    assert_eq!(results, 3 + 3 + 1 + 1, "one result per command");
    finish(host, None).await;
}

// ---- faults of the application side ---------------------------------------------

/// A command line over 16 MiB is answered `too_large` and skipped; the host
/// carries on with the next command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_line_over_16_mib_is_refused() {
    let server = Server::bind().await;
    let dir = TempDir::new("bigcmd");
    let mut host = start(&dir, &server.url(), "");
    let mut peer = server.accept(&mut host).await;
    peer.handshake().await;
    host.expect("ready", |e| is_state(e, "ready")).await;
    host.command(send("huge", &"x".repeat(17 << 20))).await;
    let e = host.expect("error", |e| is(e, "error")).await;
    assert_eq!(e["error"]["kind"], "too_large", "{e}");
    round_trip(&mut host, &mut peer, "next").await;
    assert!(
        !host
            .seen
            .iter()
            .any(|e| is(e, "outbound_result") && e["id"] == "huge"),
        "the refused command was not executed"
    );
    // The one error expected here; `finish` checks there is no other.
    host.seen.retain(|e| !is(e, "error"));
    finish(host, Some(peer)).await;
}

/// The next stdout line of the binary, as JSON.
async fn next_event(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) -> Value {
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("an event within the wait")
        .expect("read stdout")
        .expect("stdout open");
    serde_json::from_str(&line).expect("JSON event")
}

/// The application stops reading stdout while 50,000 messages arrive: the host
/// waits for it (its event queue is bounded, then it reads the socket no further,
/// so the connector's writes are held back) and, once the application reads
/// again, every message arrives once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_that_stops_reading_stdout() {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt as _, BufReader};

    const N: usize = 50_000;
    let server = Server::bind().await;
    let dir = TempDir::new("slowapp");
    let path = dir.write(
        "tenants.toml",
        &format!(
            "[[tenants]]\nid = \"f\"\nurl = \"{}\"\n[[tenants.identities]]\nplatform = \"discord\"\nbot_id = \"app1\"\n",
            server.url()
        ),
    );
    let mut child = tokio::process::Command::new(common::relay_host_bin())
        .args(["run", "--config", path.to_str().expect("utf-8")])
        .env("RUST_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start relay-host");
    let stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let listener = server;
    let mut peer = {
        let (tcp, _) = tokio::time::timeout(WAIT, listener.listener.accept())
            .await
            .expect("dial")
            .expect("accept");
        Peer {
            ws: tokio_tungstenite::accept_async(tcp).await.expect("upgrade"),
        }
    };
    peer.handshake().await;
    loop {
        let e = next_event(&mut lines).await;
        if is_state(&e, "ready") {
            break;
        }
    }

    // 20,000 messages while nobody reads stdout.
    let writer = tokio::spawn(async move {
        for batch in 0..N / 1000 {
            let mut message = String::new();
            for i in batch * 1000..(batch + 1) * 1000 {
                message.push_str(&line(&inbound(&format!("m{i}"))));
            }
            peer.text(&message).await;
        }
        peer
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    // ~9.5 MB of frames: more than the event queue, the pipe and the socket
    // buffers hold, so the connector is held back instead of the host buffering.
    assert!(
        !writer.is_finished(),
        "the host took every frame although nobody read its events"
    );

    // Read again: everything, once, in order, on the same link.
    let mut got = 0;
    while got < N {
        let e = next_event(&mut lines).await;
        assert!(!is(&e, "state"), "the link or guest was disturbed: {e}");
        if is(&e, "message") {
            assert_eq!(
                e["message"]["text"],
                format!("m{got}"),
                "lost or out of order"
            );
            got += 1;
        }
    }
    let mut peer = tokio::time::timeout(WAIT, writer)
        .await
        .expect("the connector's writes complete")
        .expect("writer");
    drop(stdin);
    while let Some(frame) = peer.next_frame().await {
        if frame["type"] == "going_idle" {
            peer.text(&line(&json!({"type": "going_idle_ack"}))).await;
        }
    }
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits")
        .expect("wait");
    assert!(status.success(), "exit status {status}");
}
