//! Scale-out with `relay-host run --config FILE --shard K/N` (docs/DEPLOY.md): three
//! processes on one tenants file against one emulator serve every tenant exactly
//! once; one shard's process is stopped with SIGTERM and started again, and the
//! connector's buffered delivery carries what was in flight across the restart
//! (at-least-once: what the application acked is not delivered again, what it did
//! not ack is). Also: a shard that no tenant hashes to still runs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use common::*;
use relay_connector::script::InboundCmd;
use relay_connector::{
    Command, Connector, ConnectorHandle, ConnectorOptions, Initiator, Observed, Outcome, Seen, Sent,
};
use relay_host::shard::shard_of;
use serde_json::{json, Value};

const SECRET: &str = "shard-upgrade-secret-7d1e";
const SECRET_VAR: &str = "RELAY_SHARD_SECRET";
const TENANTS: usize = 30;
const SHARDS: u32 = 3;
/// The shard whose process is restarted.
const RESTARTED: u32 = 2;

fn tenant(i: usize) -> String {
    format!("t{i:02}")
}

fn gateway_of(tenant: &str) -> String {
    format!("gw-{tenant}")
}

fn bot_of(tenant: &str) -> String {
    format!("bot-{tenant}")
}

/// Every tenant on the same emulator, each with its own gateway id (so the
/// emulator replays a tenant's buffered items to that tenant only) and bot id.
fn tenants_toml(url: &str) -> String {
    let mut toml = String::from("[host]\nshutdown_grace_ms = 5000\n");
    for i in 0..TENANTS {
        let t = tenant(i);
        toml.push_str(&format!(
            r#"
[[tenants]]
id = "{t}"
url = "{url}"
gateway_id = "{gw}"
secret_env = "{SECRET_VAR}"
reconnect_jitter_percent = 0
[[tenants.identities]]
platform = "discord"
bot_id = "{bot}"
"#,
            gw = gateway_of(&t),
            bot = bot_of(&t),
        ));
    }
    toml
}

fn start_shard(config: &str, k: u32) -> Sidecar {
    Sidecar::start(
        &[
            "run",
            "--config",
            config,
            "--shard",
            &format!("{k}/{SHARDS}"),
        ],
        &[(SECRET_VAR, SECRET)],
    )
}

/// conn → gateway id of every authenticated connection.
fn gateways(record: &[Observed]) -> BTreeMap<u64, String> {
    record
        .iter()
        .filter_map(|e| match e {
            Observed::Connected {
                conn,
                gateway_id: Some(g),
                ..
            } => Some((*conn, g.clone())),
            _ => None,
        })
        .collect()
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

/// The connection each tenant said hello on, checked: one hello per connection,
/// with the bot id of the tenant whose gateway id authenticated it.
fn conns_by_tenant(record: &[Observed], tenants: &BTreeSet<String>) -> BTreeMap<String, u64> {
    let gw = gateways(record);
    let mut by_tenant = BTreeMap::new();
    for (conn, bot) in hellos(record) {
        let t = bot.strip_prefix("bot-").expect("a bot id of the test");
        if !tenants.contains(t) {
            continue;
        }
        assert_eq!(
            gw.get(&conn),
            Some(&gateway_of(t)),
            "{bot} said hello on conn {conn}, not authenticated as its gateway"
        );
        if let Some(earlier) = by_tenant.insert(t.to_string(), conn) {
            panic!("{t} said hello on conn {earlier} and again on conn {conn}");
        }
    }
    by_tenant
}

fn acked_ids(record: &[Observed]) -> Vec<String> {
    record
        .iter()
        .filter_map(|e| match e {
            Observed::Seen {
                frame: Seen::InboundAck { buffer_id, known },
                ..
            } => {
                assert!(known, "an ack for an id the connector did not hold: {e:?}");
                Some(buffer_id.as_str().expect("string buffer id").to_string())
            }
            _ => None,
        })
        .collect()
}

/// Waits until `host` reported `ready` for each of `tenants`, and checks that
/// it reported nothing about any other tenant.
async fn await_ready(host: &mut Sidecar, k: u32, tenants: &BTreeSet<String>) {
    let mut ready = BTreeSet::new();
    while ready != *tenants {
        let e = host
            .expect(&format!("shard {k}: every tenant ready"), |e| {
                is_state(e, "ready")
            })
            .await;
        ready.insert(e["tenant"].as_str().expect("tenant").to_string());
    }
    assert_only_tenants(host, k, tenants);
}

fn assert_only_tenants(host: &Sidecar, k: u32, tenants: &BTreeSet<String>) {
    for e in &host.seen {
        if let Some(t) = e.get("tenant").and_then(Value::as_str) {
            assert!(
                tenants.contains(t),
                "shard {k} reported on {t}, not one of its tenants: {e}"
            );
        }
    }
}

fn inbound(tenant: &str, what: &str) -> Value {
    json!({"text": format!("{what} {tenant}"), "message_type": "text",
           "message_id": format!("m-{what}-{tenant}"),
           "source": {"platform": "discord", "chat_id": format!("chat-{tenant}"),
                      "chat_type": "group", "user_id": "u1", "user_name": "ann"}})
}

/// One buffered message for `tenant` on its connection; returns its buffer id.
fn inject_buffered(h: &ConnectorHandle, conn: u64, tenant: &str, what: &str) -> String {
    let outcome = h
        .inject(Command::Inbound(InboundCmd {
            event: inbound(tenant, what),
            buffered: true,
            conn: Some(conn),
            ..InboundCmd::default()
        }))
        .expect("inject a buffered inbound");
    match outcome {
        Outcome::Sent {
            conns,
            buffer_id: Some(id),
        } if conns == [conn] => id,
        other => panic!("not written to conn {conn}: {other:?}"),
    }
}

/// `(tenant, buffer_id, text)` of every `message` event seen so far.
fn messages(host: &Sidecar) -> Vec<(String, String, String)> {
    host.seen
        .iter()
        .filter(|e| is(e, "message"))
        .map(|e| {
            (
                e["tenant"].as_str().expect("tenant").to_string(),
                e["buffer_id"]
                    .as_str()
                    .expect("a buffered message")
                    .to_string(),
                e["message"]["text"].as_str().expect("text").to_string(),
            )
        })
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_shards_serve_every_tenant_once_and_a_restart_redelivers_only_what_was_not_acked() {
    let started = Instant::now();
    let h = Connector::start(ConnectorOptions::default().secret(SECRET))
        .await
        .expect("start the emulator");
    let record = Record::start(&h);
    let dir = TempDir::new("shard");
    let config = dir.write("tenants.toml", &tenants_toml(&h.url()));
    let config = config.to_str().expect("utf-8 path").to_string();

    let all: BTreeSet<String> = (0..TENANTS).map(tenant).collect();
    let expected: Vec<BTreeSet<String>> = (0..SHARDS)
        .map(|k| {
            all.iter()
                .filter(|t| shard_of(t, SHARDS) == k)
                .cloned()
                .collect()
        })
        .collect();
    // The rendezvous hash of t00..t29 (pinned by shard::tests::stable_assignments).
    assert_eq!(
        expected.iter().map(BTreeSet::len).collect::<Vec<_>>(),
        [8, 7, 15]
    );

    // 1. Three processes, one tenants file: each serves its shard's tenants.
    let mut hosts: Vec<Sidecar> = (0..SHARDS).map(|k| start_shard(&config, k)).collect();
    for (k, host) in hosts.iter_mut().enumerate() {
        await_ready(host, k as u32, &expected[k]).await;
    }
    for (k, host) in hosts.iter().enumerate() {
        host.expect_log(&format!(
            "shard {k}/{SHARDS} serves {} of {TENANTS} tenants",
            expected[k].len()
        ))
        .await;
    }
    record
        .wait("30 hellos", |r| hellos(r).len() >= TENANTS)
        .await;
    let first_run = record.all();
    // Every tenant said hello exactly once, across all three processes, on its
    // own connection authenticated as its own gateway.
    let conns = conns_by_tenant(&first_run, &all);
    assert_eq!(conns.keys().cloned().collect::<BTreeSet<_>>(), all);
    assert_eq!(hellos(&first_run).len(), TENANTS, "{first_run:#?}");
    assert!(
        !first_run
            .iter()
            .any(|e| matches!(e, Observed::Rejected { .. })),
        "{first_run:#?}"
    );
    let ready_at = started.elapsed();

    // 2. Buffered messages for shard 2's tenants: one the application acks, one
    //    it leaves in flight.
    let restarted = &expected[RESTARTED as usize];
    let mut acked = BTreeMap::new(); // buffer id -> tenant
    let mut open = BTreeMap::new();
    for t in restarted {
        acked.insert(inject_buffered(&h, conns[t], t, "acked"), t.clone());
        open.insert(inject_buffered(&h, conns[t], t, "open"), t.clone());
    }
    let shard2 = &mut hosts[RESTARTED as usize];
    while messages(shard2).len() < 2 * restarted.len() {
        shard2
            .expect("the buffered messages", |e| is(e, "message"))
            .await;
    }
    let delivered = messages(shard2);
    for (tenant, id, text) in &delivered {
        let (map, what) = if acked.contains_key(id) {
            (&acked, "acked")
        } else {
            (&open, "open")
        };
        assert_eq!(map.get(id), Some(tenant), "{id} delivered to {tenant}");
        assert_eq!(*text, format!("{what} {tenant}"));
    }
    assert_eq!(
        sorted(delivered.iter().map(|(_, id, _)| id.clone()).collect()),
        sorted(acked.keys().chain(open.keys()).cloned().collect()),
        "each buffered message delivered once"
    );
    for (id, t) in &acked {
        shard2
            .command(json!({"op": "ack", "tenant": t, "buffer_id": id}))
            .await;
    }
    record
        .wait("the application's acks", |r| {
            acked_ids(r).len() >= acked.len()
        })
        .await;
    assert_eq!(
        sorted(acked_ids(&record.all())),
        acked.keys().cloned().collect::<Vec<_>>()
    );
    assert_eq!(
        sorted(h.pending()),
        open.keys().cloned().collect::<Vec<_>>()
    );

    // 3. SIGTERM: every tenant of shard 2 goes idle, closes with 1000; exit 0.
    let before_stop = record.all().len();
    let pid = shard2.child.id().expect("shard 2 runs");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid}");
    let exit = shard2.wait_exit().await;
    assert!(exit.success(), "shard 2 exited with {exit}");
    shard2.rest().await;
    let closing: BTreeSet<u64> = restarted.iter().map(|t| conns[t]).collect();
    record
        .wait("shard 2's connections closed", |r| {
            r[before_stop..]
                .iter()
                .filter(
                    |e| matches!(e, Observed::Disconnected { conn, .. } if closing.contains(conn)),
                )
                .count()
                == closing.len()
        })
        .await;
    for t in restarted {
        let of_t: Vec<&Value> = shard2.seen.iter().filter(|e| of(e, t)).collect();
        assert!(
            of_t.iter().any(|e| is(e, "idle") && e["acked"] == true),
            "{t}: no acked idle: {of_t:#?}"
        );
        let last = of_t.last().expect("events");
        assert!(
            is_state(last, "stopped") && last["reason"] == "shutdown",
            "{t} ended with {last}"
        );
    }
    let stop = record.all()[before_stop..].to_vec();
    for t in restarted {
        let c = conns[t];
        let on_c: Vec<&Observed> = stop
            .iter()
            .filter(|e| match e {
                Observed::Seen { conn, .. }
                | Observed::Sent { conn, .. }
                | Observed::Disconnected { conn, .. } => *conn == c,
                _ => false,
            })
            .collect();
        assert!(
            on_c.iter().any(|e| matches!(
                e,
                Observed::Seen {
                    frame: Seen::GoingIdle,
                    ..
                }
            )) && on_c.iter().any(|e| matches!(
                e,
                Observed::Sent {
                    frame: Sent::GoingIdleAck,
                    ..
                }
            )),
            "{t}: {on_c:#?}"
        );
        assert!(
            matches!(
                on_c.last(),
                Some(Observed::Disconnected {
                    code: Some(1000),
                    initiator: Initiator::Gateway,
                    ..
                })
            ),
            "{t}: {on_c:#?}"
        );
    }
    // The other shards were not disturbed.
    let disconnected: BTreeSet<u64> = stop
        .iter()
        .filter_map(|e| match e {
            Observed::Disconnected { conn, .. } => Some(*conn),
            _ => None,
        })
        .collect();
    assert_eq!(disconnected, closing);
    // Going idle acknowledges nothing: what was in flight is still buffered.
    assert_eq!(
        sorted(h.pending()),
        open.keys().cloned().collect::<Vec<_>>()
    );

    // 4. The same flags again: the same tenants, and only the un-acked messages.
    let before_restart = record.all().len();
    let mut again = start_shard(&config, RESTARTED);
    await_ready(&mut again, RESTARTED, restarted).await;
    // A round trip per tenant: its result follows the replay on the same socket,
    // so once every result is in, every replayed message is too.
    for t in restarted {
        again
            .command(
                json!({"op": "outbound", "tenant": t, "id": format!("after-{t}"),
                            "action": {"op": "send", "chat_id": format!("chat-{t}"),
                                       "content": "back"}}),
            )
            .await;
    }
    let mut answered = BTreeSet::new();
    while answered.len() < restarted.len() {
        let r = again
            .expect("the outbound results", |e| is(e, "outbound_result"))
            .await;
        assert_eq!(r["result"]["success"], true, "{r}");
        answered.insert(r["tenant"].as_str().expect("tenant").to_string());
    }
    assert_eq!(answered, *restarted);
    let redelivered = messages(&again);
    for (tenant, id, text) in &redelivered {
        assert!(
            !acked.contains_key(id),
            "{id} ({text}) was acked and delivered again to {tenant}"
        );
        assert_eq!(open.get(id), Some(tenant), "{id} ({text})");
        assert_eq!(*text, format!("open {tenant}"));
    }
    assert_eq!(
        sorted(redelivered.iter().map(|(_, id, _)| id.clone()).collect()),
        open.keys().cloned().collect::<Vec<_>>(),
        "every un-acked message delivered again, once"
    );
    let second_run = record.all()[before_restart..].to_vec();
    let new_conns = conns_by_tenant(&second_run, &all);
    assert_eq!(
        new_conns.keys().cloned().collect::<BTreeSet<_>>(),
        *restarted,
        "only shard 2's tenants dialed again"
    );
    let replayed: Vec<String> = second_run
        .iter()
        .filter_map(|e| match e {
            Observed::Sent {
                conn,
                frame:
                    Sent::Inbound {
                        buffer_id: Some(id),
                        replay: true,
                    },
            } => {
                assert_eq!(Some(conn), open.get(id).map(|t| &new_conns[t]), "{id}");
                Some(id.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(sorted(replayed), open.keys().cloned().collect::<Vec<_>>());

    // The new process acks them: nothing is left in flight.
    for (id, t) in &open {
        again
            .command(json!({"op": "ack", "tenant": t, "buffer_id": id}))
            .await;
    }
    record
        .wait("the acks after the restart", |r| {
            acked_ids(r).len() >= acked.len() + open.len()
        })
        .await;
    assert!(h.pending().is_empty(), "{:?}", h.pending());

    // 5. Everything ends cleanly; every tenant said hello once per process run.
    hosts[RESTARTED as usize] = again;
    for (k, host) in hosts.iter_mut().enumerate() {
        host.close_stdin();
        let exit = host.wait_exit().await;
        assert!(exit.success(), "shard {k} exited with {exit}");
        host.rest().await;
        assert_only_tenants(host, k as u32, &expected[k]);
    }
    let mut per_bot: BTreeMap<String, usize> = BTreeMap::new();
    for (_, bot) in hellos(&record.all()) {
        *per_bot.entry(bot).or_default() += 1;
    }
    for t in &all {
        let runs = if restarted.contains(t) { 2 } else { 1 };
        assert_eq!(per_bot.get(&bot_of(t)), Some(&runs), "hellos of {t}");
    }
    eprintln!(
        "three shards ready after {ready_at:?}; whole test {:?}",
        started.elapsed()
    );
}

/// A shard that no tenant hashes to runs anyway: probes answer (ready, with no
/// tenant), `status` lists none, and SIGTERM ends it with status 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_with_no_tenant_serves_the_probes_and_waits() {
    let dir = TempDir::new("shard-empty");
    // `acme` is on shard 2 of 3 (shard::tests::stable_assignments).
    assert_eq!(shard_of("acme", 3), 2);
    let config = dir.write(
        "tenants.toml",
        &format!(
            r#"
[[tenants]]
id = "acme"
url = "ws://127.0.0.1:{port}"
[[tenants.identities]]
platform = "discord"
bot_id = "b"
"#,
            port = closed_port()
        ),
    );
    let metrics = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let mut host = Sidecar::start(
        &[
            "run",
            "--config",
            config.to_str().expect("utf-8"),
            "--shard",
            "0/3",
            "--metrics",
            &metrics.to_string(),
        ],
        &[],
    );
    host.expect_log("shard 0/3 serves none of the 1 configured tenants")
        .await;
    host.expect_log("relay-host running").await;
    let get = |path: &'static str| common::http_get(metrics, path);
    let health = get("/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let ready = get("/readyz").await;
    assert!(
        ready.starts_with("HTTP/1.1 200") && ready.ends_with("ready: 0 tenants\n"),
        "{ready}"
    );
    host.command(json!({"op": "status"})).await;
    let status = host.expect("status", |e| is(e, "status")).await;
    assert_eq!(status["tenants"], json!([]));
    host.command(json!({"op": "ack", "tenant": "acme", "buffer_id": "b1"}))
        .await;
    let e = host.expect("error", |e| is(e, "error")).await;
    assert_eq!(e["error"]["kind"], "unknown_tenant", "{e}");

    let pid = host.child.id().expect("the host runs");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let exit = host.wait_exit().await;
    assert!(exit.success(), "exited with {exit}");
    assert!(host.rest().await.is_empty());
    assert!(
        !host.stderr().contains("tenant=acme"),
        "a shard with no tenant ran one: {}",
        host.stderr()
    );
}

/// deploy/kubernetes/: the ConfigMap's tenants file loads in the real binary
/// (secrets from the environment, as the StatefulSet gives them), splits over
/// three shards as its comment says, and the StatefulSet's numbers agree with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_example_loads_and_splits_as_documented() {
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    let configmap =
        std::fs::read_to_string(deploy.join("configmap.yaml")).expect("read configmap.yaml");
    let statefulset =
        std::fs::read_to_string(deploy.join("statefulset.yaml")).expect("read statefulset.yaml");
    // The block scalar under `tenants.toml: |`, indented by four spaces.
    let toml: String = configmap
        .lines()
        .skip_while(|l| l.trim() != "tenants.toml: |")
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    assert!(
        toml.contains("[[tenants]]"),
        "no tenants file in configmap.yaml"
    );
    // Nothing leaves the machine: the connector URL becomes a closed loopback port.
    let toml = toml.replace(
        "https://relay.example.com",
        &format!("ws://127.0.0.1:{}", closed_port()),
    );
    let secret_vars: Vec<String> = toml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("secret_env = \""))
        .map(|v| v.split('"').next().expect("quoted").to_string())
        .collect();
    assert_eq!(secret_vars.len(), 6, "{toml}");
    let env: Vec<(String, String)> = secret_vars
        .iter()
        .map(|v| (v.clone(), format!("secret-of-{v}")))
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let dir = TempDir::new("shard-k8s");
    let config = dir.write("tenants.toml", &toml);
    let config = config.to_str().expect("utf-8 path");

    for (k, tenants) in [
        (0, "umbrella,hooli"),
        (1, "globex,soylent"),
        (2, "acme,initech"),
    ] {
        let mut host = Sidecar::start(
            &["run", "--config", config, "--shard", &format!("{k}/3")],
            &env,
        );
        host.expect_log(&format!("shard {k}/3 serves 2 of 6 tenants"))
            .await;
        host.expect_log(&format!("tenants={tenants}")).await;
        let ids: BTreeSet<String> = tenants.split(',').map(str::to_string).collect();
        let mut dialing = BTreeSet::new();
        while dialing != ids {
            let e = host
                .expect("each tenant dials", |e| is_state(e, "connecting"))
                .await;
            dialing.insert(e["tenant"].as_str().expect("tenant").to_string());
        }
        assert_only_tenants(&host, k, &ids);
        host.close_stdin();
        let exit = host.wait_exit().await;
        assert!(exit.success(), "shard {k} exited with {exit}");
        let stderr = host.stderr();
        for (_, secret) in &env {
            assert!(!stderr.contains(secret), "a secret in the logs: {stderr}");
        }
    }

    // replicas = SHARDS, and the grace period outlasts the shutdown grace plus
    // the 2 s close handshake.
    // The number after `key` on the first line that starts with it (a trailing
    // `# comment` and quotes aside).
    let field = |text: &str, key: &str| -> u64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .and_then(|rest| rest.split('#').next())
            .and_then(|v| v.trim().trim_matches('"').parse().ok())
            .unwrap_or_else(|| panic!("no number after {key}"))
    };
    assert_eq!(field(&statefulset, "replicas:"), 3);
    let shards = statefulset
        .lines()
        .skip_while(|l| l.trim() != "- name: SHARDS")
        .nth(1)
        .expect("SHARDS has a value");
    assert_eq!(field(shards, "value:"), 3);
    assert!(statefulset.contains("- $(POD_INDEX)/$(SHARDS)"));
    let grace_ms = field(&toml, "shutdown_grace_ms =");
    let termination_s = field(&statefulset, "terminationGracePeriodSeconds:");
    assert!(
        termination_s * 1000 > grace_ms + 2000,
        "terminationGracePeriodSeconds {termination_s} s vs shutdown_grace_ms {grace_ms}"
    );
}
