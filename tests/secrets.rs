//! Secrets never reach the output: a whole session at the most verbose log level
//! (`RUST_LOG=trace`, text and JSON logs) with a gateway id and a distinctive
//! secret — handshake, messages, an outbound, a 4401 close and the re-dial with a
//! fresh token — and neither the secret nor any bearer token the host could have
//! minted during the run appears on stdout or stderr.
//!
//! The host dials the emulator (which checks the tokens) through a small TCP
//! proxy written here that records each upgrade request, so the test knows the
//! exact `Authorization` headers sent and checks that its list of candidate
//! tokens (every second around the run) contains them.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use common::{is, is_state, Sidecar, WAIT};
use relay_connector::{Command, Connector, ConnectorOptions, Observed};
use relay_logic::auth;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const SECRET: &str = "Zq7-sEcReT-quokka-31f9c0d2-do-not-print";
const SECRET_VAR: &str = "RELAY_SECRETS_TEST_SECRET";
const GATEWAY: &str = "gw-secrets-test";

fn unix_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Forwards every connection to `upstream`, recording each HTTP request head.
async fn recording_proxy(upstream: std::net::SocketAddr) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let heads = Arc::new(Mutex::new(Vec::new()));
    let record = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match client.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                record
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let Ok(mut server) = TcpStream::connect(upstream).await else {
                    return;
                };
                if server.write_all(&head).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    (format!("http://{addr}/"), heads)
}

fn inbound_event(text: &str) -> Value {
    json!({"text": text, "message_type": "text", "message_id": format!("in-{text}"),
           "source": {"platform": "discord", "chat_id": "c1", "chat_type": "group",
                      "user_id": "u1", "user_name": "ann"}})
}

async fn session(log_format: &str) {
    let started = unix_s();
    let h = Connector::start(ConnectorOptions::default().secret(SECRET))
        .await
        .expect("start the emulator");
    let (url, heads) = recording_proxy(h.local_addr()).await;
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
            GATEWAY,
            "--secret-env",
            SECRET_VAR,
            "--log-format",
            log_format,
        ],
        &[(SECRET_VAR, SECRET), ("RUST_LOG", "trace")],
    );

    // Handshake with a token the emulator verified. At trace level wasmtime's
    // compiler logs hundreds of MB while it loads the component, before the
    // first dial: a longer first wait.
    let connected = h
        .wait_for(WAIT * 3, |e| {
            matches!(e, Observed::Connected { .. } | Observed::Rejected { .. })
        })
        .await
        .expect("the emulator saw the upgrade");
    assert!(
        matches!(&connected, Observed::Connected { gateway_id: Some(g), .. } if g == GATEWAY),
        "{connected:?}"
    );
    host.expect("ready", |e| is_state(e, "ready")).await;

    // Messages both ways.
    for n in 0..3 {
        let text = format!("hello {n}");
        h.inject(Command::inbound(inbound_event(&text), n == 0))
            .expect("inbound");
        let m = host
            .expect(&text, |e| is(e, "message") && e["message"]["text"] == text)
            .await;
        if let Some(b) = m["buffer_id"].as_str() {
            host.command(json!({"op": "ack", "buffer_id": b})).await;
        }
        let id = format!("o-{n}");
        host.command(json!({"op": "outbound", "id": id,
                            "action": {"op": "send", "chat_id": "c1", "content": text}}))
            .await;
        let r = host
            .expect(&id, |e| is(e, "outbound_result") && e["id"] == id)
            .await;
        assert_eq!(r["result"]["success"], true, "{r}");
    }

    // 4401 after the handshake: an immediate re-dial with a fresh token.
    h.inject(Command::close(4401, "unauthorized"))
        .expect("close");
    host.expect("redial", |e| is_state(e, "redial")).await;
    host.expect("ready again", |e| is_state(e, "ready")).await;
    h.inject(Command::inbound(inbound_event("after redial"), false))
        .expect("inbound");
    host.expect("message", |e| {
        is(e, "message") && e["message"]["text"] == "after redial"
    })
    .await;

    host.close_stdin();
    let status = host.wait_exit().await;
    assert!(status.success(), "exit status {status}");
    host.rest().await;
    // stderr is drained by a task: wait for the last log line.
    host.expect_log("relay-host stopped").await;
    let ended = unix_s();

    // The tokens that were sent, as the proxy saw them.
    let heads = heads.lock().unwrap().clone();
    let sent: Vec<String> = heads
        .iter()
        .filter_map(|h| {
            h.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("authorization")
                    .then(|| value.trim().to_string())
            })
        })
        .collect();
    assert_eq!(sent.len(), 2, "one token per dial: {heads:?}");

    // Every token (and signature) the host could have minted during the run.
    let mut candidates = Vec::new();
    for now in started - 5..=ended + 5 {
        let token = auth::upgrade_token(GATEWAY, SECRET, auth::DEFAULT_TTL_SECONDS, now);
        let exp = now + auth::DEFAULT_TTL_SECONDS;
        candidates.push(auth::sign(&format!("{GATEWAY}:{exp}"), SECRET));
        candidates.push(token);
    }
    for header in &sent {
        let token = header
            .strip_prefix("Bearer ")
            .unwrap_or_else(|| panic!("not a bearer header: {header}"));
        assert!(
            candidates.iter().any(|c| c == token),
            "the candidate list misses a token the host sent"
        );
    }

    let stdout: String = host.seen.iter().map(|e| format!("{e}\n")).collect();
    let stderr = host.stderr();
    // The run really was verbose.
    let trace_marker = match log_format {
        "json" => "\"level\":\"TRACE\"",
        _ => "TRACE",
    };
    assert!(
        stderr.contains(trace_marker),
        "no trace-level log line in:\n{stderr}"
    );
    eprintln!(
        "--log-format {log_format}: {} bytes of stderr, {} events, {} candidate tokens/signatures",
        stderr.len(),
        host.seen.len(),
        candidates.len()
    );
    for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(!text.contains(SECRET), "the secret appears on {name}");
        assert!(
            !text.contains("Bearer "),
            "a bearer header appears on {name}"
        );
        for c in &candidates {
            assert!(!text.contains(c.as_str()), "a token appears on {name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_token_in_trace_text_logs() {
    tokio::time::timeout(WAIT * 6, session("text"))
        .await
        .expect("the session finishes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_token_in_trace_json_logs() {
    tokio::time::timeout(WAIT * 6, session("json"))
        .await
        .expect("the session finishes");
}
