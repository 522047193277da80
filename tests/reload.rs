//! Reloading `relay-host run --config FILE` while it runs (SIGHUP, or the `reload`
//! command): new tenants start, removed ones stop gracefully, changed ones restart,
//! and unchanged ones keep their connection — checked against one in-process
//! emulator that sees every connection. A file that does not load changes nothing;
//! a host started from flags has nothing to reload; `--shard` filters the reloaded
//! file like the first one.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::*;
use relay_connector::script::InboundCmd;
use relay_connector::{
    Command, Connector, ConnectorHandle, ConnectorOptions, Initiator, Observed, Outcome, Seen,
};
use relay_host::shard::shard_of;
use serde_json::{json, Value};

/// A tenants file: every tenant on `url`, one identity each (`bot` is its bot id).
fn tenants_toml(url: &str, tenants: &[(&str, &str)]) -> String {
    let mut toml = String::from("[host]\nshutdown_grace_ms = 5000\n");
    for (id, bot) in tenants {
        toml.push_str(&format!(
            r#"
[[tenants]]
id = "{id}"
url = "{url}"
reconnect_jitter_percent = 0
[[tenants.identities]]
platform = "discord"
bot_id = "{bot}"
"#
        ));
    }
    toml
}

/// (conn, bot id) of every hello, in order.
fn hellos(record: &[Observed]) -> Vec<(u64, String)> {
    record
        .iter()
        .filter_map(|e| match e {
            Observed::Seen {
                conn,
                frame: Seen::Hello { bot_id, .. },
            } => Some((*conn, bot_id.clone())),
            _ => None,
        })
        .collect()
}

/// The one connection `bot` said hello on within `record`.
fn conn_of(record: &[Observed], bot: &str) -> u64 {
    let conns: Vec<u64> = hellos(record)
        .into_iter()
        .filter(|(_, b)| b == bot)
        .map(|(c, _)| c)
        .collect();
    assert_eq!(conns.len(), 1, "{bot} said hello on {conns:?}");
    conns[0]
}

fn connected(record: &[Observed]) -> Vec<u64> {
    record
        .iter()
        .filter_map(|e| match e {
            Observed::Connected { conn, .. } => Some(*conn),
            _ => None,
        })
        .collect()
}

fn went_idle(record: &[Observed], conn: u64) -> bool {
    record
        .iter()
        .any(|e| matches!(e, Observed::Seen { conn: c, frame: Seen::GoingIdle } if *c == conn))
}

/// How `conn` ended, if it did: (close code, who closed).
fn ended(record: &[Observed], conn: u64) -> Option<(Option<u16>, Initiator)> {
    record.iter().find_map(|e| match e {
        Observed::Disconnected {
            conn: c,
            code,
            initiator,
            ..
        } if *c == conn => Some((*code, *initiator)),
        _ => None,
    })
}

/// Sends SIGHUP to the host (the test crate has no libc: `kill` does it).
fn hangup(host: &Sidecar) {
    let pid = host.child.id().expect("the host runs");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -HUP {pid}: {status}");
}

/// Waits until each of `tenants` reported `ready` since event number `from`.
async fn ready_since(host: &mut Sidecar, from: usize, tenants: &[&str]) {
    let mut open: BTreeSet<String> = tenants.iter().map(|t| t.to_string()).collect();
    for e in &host.seen[from..] {
        if is_state(e, "ready") {
            open.remove(e["tenant"].as_str().unwrap_or(""));
        }
    }
    while !open.is_empty() {
        let e = host
            .expect(&format!("ready of {open:?}"), |e| {
                is_state(e, "ready") && open.contains(e["tenant"].as_str().unwrap_or(""))
            })
            .await;
        open.remove(e["tenant"].as_str().unwrap_or(""));
    }
}

/// The first event since number `from` matching `want`, waiting if none has yet.
async fn since(
    host: &mut Sidecar,
    from: usize,
    what: &str,
    want: impl Fn(&Value) -> bool,
) -> Value {
    match host.seen[from..].iter().find(|e| want(e)) {
        Some(e) => e.clone(),
        None => host.expect(what, want).await,
    }
}

/// A new message each time (the component delivers a message id only once).
fn text_event(tenant: &str, message_id: &str) -> Value {
    json!({"text": format!("still there, {tenant}?"), "message_type": "text",
           "message_id": message_id,
           "source": {"platform": "discord", "chat_id": format!("chat-{tenant}"),
                      "chat_type": "group", "user_id": "u1"}})
}

/// A message in and an outbound out, on the connection `conn` of `tenant`.
async fn round_trip(
    host: &mut Sidecar,
    h: &ConnectorHandle,
    record: &Record,
    tenant: &str,
    conn: u64,
) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let message_id = format!("m-{tenant}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let outcome = h
        .inject(Command::Inbound(InboundCmd {
            event: text_event(tenant, &message_id),
            conn: Some(conn),
            ..InboundCmd::default()
        }))
        .expect("inject an inbound");
    assert!(
        matches!(&outcome, Outcome::Sent { conns, .. } if *conns == [conn]),
        "{outcome:?}"
    );
    let m = host
        .expect(&format!("a message for {tenant}"), |e| {
            is(e, "message") && of(e, tenant)
        })
        .await;
    assert_eq!(m["message"]["message_id"], message_id.as_str(), "{m}");
    let id = format!("out-{message_id}");
    host.command(json!({"op": "outbound", "tenant": tenant, "id": id,
                        "action": {"op": "send", "chat_id": format!("chat-{tenant}"), "content": "yes"}}))
        .await;
    let r = host
        .expect(&format!("the outbound_result of {id}"), |e| {
            is(e, "outbound_result") && e["id"] == id.as_str()
        })
        .await;
    assert_eq!(r["tenant"], tenant);
    assert_eq!(r["result"]["success"], true, "{r}");
    record
        .wait(&format!("{tenant}'s outbound on conn {conn}"), |r| {
            r.iter().any(|e| {
                matches!(e, Observed::Seen { conn: c, frame: Seen::Outbound { .. } } if *c == conn)
            })
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_reload_start_stop_restart_and_leave_the_rest_alone() {
    let started = Instant::now();
    let h = Connector::start(ConnectorOptions::default())
        .await
        .expect("start the emulator");
    let record = Record::start(&h);
    let dir = TempDir::new("reload");
    let url = h.url();
    let path = dir.write(
        "tenants.toml",
        &tenants_toml(&url, &[("a", "bot-a"), ("b", "bot-b"), ("c", "bot-c")]),
    );
    let config = path.to_str().expect("utf-8 path").to_string();
    let mut host = Sidecar::start(&["run", "--config", &config], &[]);
    ready_since(&mut host, 0, &["a", "b", "c"]).await;
    record.wait("three hellos", |r| hellos(r).len() == 3).await;
    let first = record.all();
    let (conn_a, conn_b, conn_c) = (
        conn_of(&first, "bot-a"),
        conn_of(&first, "bot-b"),
        conn_of(&first, "bot-c"),
    );
    let mark = first.len();

    // 1. SIGHUP: a unchanged, b removed, c changed (bot id), d added.
    dir.write(
        "tenants.toml",
        &tenants_toml(&url, &[("d", "bot-d"), ("a", "bot-a"), ("c", "bot-c2")]),
    );
    let before = host.seen.len();
    hangup(&host);
    let reloaded = host.expect("reloaded", |e| is(e, "reloaded")).await;
    assert_eq!(
        reloaded,
        json!({"event": "reloaded", "started": ["d"], "stopped": ["b"],
               "restarted": ["c"], "unchanged": ["a"]})
    );
    // The removed and the changed tenant stopped before the answer, gracefully.
    let reload_events = host.seen[before..].to_vec();
    let b_events: Vec<&Value> = reload_events.iter().filter(|e| of(e, "b")).collect();
    assert!(
        b_events.iter().any(|e| is(e, "idle") && e["acked"] == true),
        "b went idle: {b_events:#?}"
    );
    let b_stopped = b_events.last().expect("events of b");
    assert!(is_state(b_stopped, "stopped"), "{b_events:#?}");
    assert_eq!(b_stopped["reason"], "removed by reload");
    let c_stopped = reload_events
        .iter()
        .find(|e| of(e, "c") && is_state(e, "stopped"))
        .expect("the old c stopped before the answer");
    let reason = c_stopped["reason"].as_str().expect("a reason");
    assert!(
        reason.starts_with("restarted by reload") && reason.contains("identities"),
        "{c_stopped}"
    );
    ready_since(&mut host, before, &["c", "d"]).await;
    record
        .wait("hellos of bot-c2 and bot-d", |r| {
            let new = hellos(&r[mark..]);
            ["bot-c2", "bot-d"]
                .iter()
                .all(|bot| new.iter().any(|(_, b)| b == bot))
        })
        .await;
    let after = record.all();
    for conn in [conn_b, conn_c] {
        assert!(went_idle(&after, conn), "conn {conn} got going_idle");
        assert_eq!(
            ended(&after, conn),
            Some((Some(1000), Initiator::Gateway)),
            "conn {conn} closed by the gateway with 1000"
        );
    }
    let conn_c2 = conn_of(&after[mark..], "bot-c2");
    let conn_d = conn_of(&after[mark..], "bot-d");
    assert!(conn_c2 != conn_c && conn_d != conn_a);
    // a: the same connection, nothing new.
    assert_eq!(
        sorted(connected(&after[mark..])),
        sorted(vec![conn_c2, conn_d]),
        "only c and d connected again"
    );
    assert_eq!(ended(&after, conn_a), None, "a's connection is untouched");
    assert!(!went_idle(&after, conn_a));
    assert!(
        !hellos(&after[mark..]).iter().any(|(_, b)| b == "bot-a"),
        "a said no new hello"
    );
    assert!(
        !host.seen[before..]
            .iter()
            .any(|e| of(e, "a") && is(e, "state")),
        "a's link did not change: {:#?}",
        &host.seen[before..]
    );
    round_trip(&mut host, &h, &record, "a", conn_a).await;
    round_trip(&mut host, &h, &record, "c", conn_c2).await;
    host.expect_log("configuration reloaded").await;

    // b is gone: its commands are unknown; status lists the file's tenants in order.
    host.command(json!({"op": "ack", "tenant": "b", "id": "k1", "buffer_id": "x"}))
        .await;
    let e = host.expect("unknown_tenant", |e| is(e, "error")).await;
    assert_eq!(e["error"]["kind"], "unknown_tenant", "{e}");
    assert_eq!(e["id"], "k1");
    host.command(json!({"op": "status"})).await;
    let status = host.expect("status", |e| is(e, "status")).await;
    let listed: Vec<(&str, &str)> = status["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .map(|t| (t["tenant"].as_str().unwrap(), t["state"].as_str().unwrap()))
        .collect();
    assert_eq!(listed, [("d", "ready"), ("a", "ready"), ("c", "ready")]);

    // 2. The `reload` command: d removed, the rest unchanged.
    dir.write(
        "tenants.toml",
        &tenants_toml(&url, &[("a", "bot-a"), ("c", "bot-c2")]),
    );
    let before = host.seen.len();
    host.command(json!({"op": "reload", "id": "r1"})).await;
    let reloaded = host.expect("reloaded r1", |e| is(e, "reloaded")).await;
    assert_eq!(
        reloaded,
        json!({"event": "reloaded", "id": "r1", "started": [], "stopped": ["d"],
               "restarted": [], "unchanged": ["a", "c"]})
    );
    let d_stopped = since(&mut host, before, "d stopped", |e| {
        of(e, "d") && is_state(e, "stopped")
    })
    .await;
    assert_eq!(d_stopped["reason"], "removed by reload");
    record
        .wait("d's connection closed", |r| ended(r, conn_d).is_some())
        .await;
    assert_eq!(
        ended(&record.all(), conn_d),
        Some((Some(1000), Initiator::Gateway))
    );

    // 3. A broken file, by command and by SIGHUP: reported, nothing changes.
    let mark = record.all().len();
    let before = host.seen.len();
    dir.write(
        "tenants.toml",
        &tenants_toml(&url, &[("a", "bot-a"), ("c", "bot-c2")]).replace("bot_id", "bot_idd"),
    );
    host.command(json!({"op": "reload", "id": "r2"})).await;
    let e = host.expect("a reload error", |e| is(e, "error")).await;
    assert_eq!(e["id"], "r2", "{e}");
    assert_eq!(e["error"]["kind"], "reload_failed", "{e}");
    let message = e["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("tenants.toml") && message.contains("bot_idd"),
        "names the file and the field: {message}"
    );
    assert!(message.ends_with("nothing changed"), "{message}");
    hangup(&host);
    let e = host.expect("a reload error", |e| is(e, "error")).await;
    assert_eq!(e["error"]["kind"], "reload_failed", "{e}");
    assert!(e.get("id").is_none(), "{e}");
    host.expect_log("reload failed, nothing changed").await;
    host.expect_none_within(Duration::from_millis(500), "a tenant event", |e| {
        e.get("tenant").is_some()
    })
    .await;
    assert!(
        !host.seen[before..]
            .iter()
            .any(|e| e.get("tenant").is_some()),
        "no tenant noticed: {:#?}",
        &host.seen[before..]
    );
    assert!(
        connected(&record.all()[mark..]).is_empty(),
        "no new connection"
    );
    round_trip(&mut host, &h, &record, "a", conn_a).await;

    // 4. Shutdown as usual.
    host.close_stdin();
    assert!(host.wait_exit().await.success());
    let rest = host.rest().await;
    for t in ["a", "c"] {
        assert!(
            rest.iter()
                .chain(host.seen.iter())
                .any(|e| of(e, t) && is_state(e, "stopped") && e["reason"] == "shutdown"),
            "{t} stopped by the shutdown"
        );
    }
    let stderr = host.stderr();
    assert!(!stderr.contains("panicked"), "{stderr}");
    eprintln!("reload test took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_started_from_flags_has_nothing_to_reload() {
    let url = format!("http://127.0.0.1:{}/", closed_port());
    let mut host = Sidecar::start(
        &[
            "run",
            "--url",
            &url,
            "--platform",
            "discord",
            "--bot-id",
            "b",
        ],
        &[],
    );
    // The first event comes after the start, when SIGHUP is watched.
    host.expect("connecting", |e| is_state(e, "connecting"))
        .await;
    host.command(json!({"op": "reload", "id": "r"})).await;
    let e = host.expect("an error", |e| is(e, "error")).await;
    assert_eq!(e["id"], "r");
    assert_eq!(e["error"]["kind"], "reload_unavailable", "{e}");
    hangup(&host);
    let e = host.expect("an error", |e| is(e, "error")).await;
    assert_eq!(e["error"]["kind"], "reload_unavailable", "{e}");
    // Still running.
    host.command(json!({"op": "status"})).await;
    let status = host.expect("status", |e| is(e, "status")).await;
    assert_eq!(status["tenants"][0]["tenant"], "default");
    host.command(json!({"op": "shutdown"})).await;
    assert!(host.wait_exit().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_shard_keeps_only_the_shards_tenants() {
    let h = Connector::start(ConnectorOptions::default())
        .await
        .expect("start the emulator");
    let record = Record::start(&h);
    let dir = TempDir::new("reload-shard");
    let url = h.url();
    let bot = |t: &str| format!("bot-{t}");
    let file = |tenants: &[&str], changed: &str| {
        let list: Vec<(String, String)> = tenants
            .iter()
            .map(|t| {
                let b = if *t == changed {
                    format!("{}-new", bot(t))
                } else {
                    bot(t)
                };
                (t.to_string(), b)
            })
            .collect();
        let refs: Vec<(&str, &str)> = list.iter().map(|(t, b)| (t.as_str(), b.as_str())).collect();
        tenants_toml(&url, &refs)
    };
    let first = ["t00", "t01", "t02", "t03", "t07"];
    let second = ["t02", "t03", "t06", "t07", "t09", "t11"];
    // Shard 0 of 2 (pinned by the rendezvous hash, src/shard.rs).
    let mine: Vec<&str> = first
        .iter()
        .chain(&second)
        .copied()
        .filter(|t| shard_of(t, 2) == 0)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(mine, ["t01", "t02", "t03", "t06"]);
    let path = dir.write("tenants.toml", &file(&first, ""));
    let config = path.to_str().expect("utf-8 path").to_string();
    let mut host = Sidecar::start(&["run", "--config", &config, "--shard", "0/2"], &[]);
    ready_since(&mut host, 0, &["t01", "t02", "t03"]).await;

    dir.write("tenants.toml", &file(&second, "t03"));
    let before = host.seen.len();
    hangup(&host);
    let reloaded = host.expect("reloaded", |e| is(e, "reloaded")).await;
    assert_eq!(
        reloaded,
        json!({"event": "reloaded", "started": ["t06"], "stopped": ["t01"],
               "restarted": ["t03"], "unchanged": ["t02"]})
    );
    ready_since(&mut host, before, &["t03", "t06"]).await;
    record
        .wait("hellos of t03 and t06", |r| {
            let all = hellos(r);
            all.iter().any(|(_, b)| b == "bot-t03-new") && all.iter().any(|(_, b)| b == "bot-t06")
        })
        .await;
    for e in &host.seen {
        if let Some(t) = e.get("tenant").and_then(Value::as_str) {
            assert!(mine.contains(&t), "an event about {t}, not of shard 0: {e}");
        }
    }
    for (_, b) in hellos(&record.all()) {
        let t = b.trim_start_matches("bot-").trim_end_matches("-new");
        assert!(mine.contains(&t), "{b} said hello from shard 0");
    }
    host.close_stdin();
    assert!(host.wait_exit().await.success());
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}
