//! A busy machine does not restart a healthy tenant: the per-call CPU budget
//! counts the CPU time of the thread running the guest, not wall time, so calls
//! that are descheduled behind other processes are not charged for it.
//!
//! The host is pinned to one core that two spinning processes of higher priority
//! keep busy, while one tenant whose budget is one epoch tick (5 ms of CPU)
//! exchanges large messages (about a millisecond of guest work each) both ways.
//! Counted in wall ticks, as it once was, a call that crossed a tick boundary
//! trapped and the tenant restarted: this test failed that way (an outbound
//! answered `relay transport connection lost`) before the budget counted CPU.

mod common;

use common::{is, is_state, of, Sidecar, TempDir};
use relay_connector::{Command, Connector, ConnectorOptions};
use serde_json::{json, Value};

/// Spinning processes, killed when dropped.
struct Hogs(Vec<std::process::Child>);

impl Hogs {
    /// `n` spinning processes on CPU 0, at a higher priority than the host where
    /// the system allows it (`nice -n -10` needs privileges; without them they
    /// run at the same priority, which loads the core all the same).
    fn start(n: usize) -> Hogs {
        Hogs(
            (0..n)
                .map(|_| {
                    std::process::Command::new("taskset")
                        .args([
                            "0x1",
                            "nice",
                            "-n",
                            "-10",
                            "sh",
                            "-c",
                            "while :; do :; done",
                        ])
                        .stderr(std::process::Stdio::null())
                        .spawn()
                        .expect("start a spinning process (taskset, nice and sh)")
                })
                .collect(),
        )
    }
}

/// Pins every thread of process `pid` to CPU 0, where the hogs spin.
fn pin_to_cpu0(pid: u32) {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "0x1", &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run taskset");
    assert!(status.success(), "taskset -a -p 0x1 {pid}: {status}");
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn inbound_event(text: &str) -> Value {
    json!({"text": text, "message_type": "text", "message_id": format!("in-{text}"),
           "source": {"platform": "discord", "chat_id": "c1", "chat_type": "group",
                      "user_id": "u1", "user_name": "ann"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loaded_machine_does_not_restart_a_healthy_tenant() {
    let connector = Connector::start(ConnectorOptions::default())
        .await
        .expect("start the emulator");
    let dir = TempDir::new("busy");
    let config = dir.write(
        "tenants.toml",
        &format!(
            r#"
[[tenants]]
id = "calm"
url = "{url}"
limits = {{ cpu_ms_per_call = 5 }}
[[tenants.identities]]
platform = "discord"
bot_id = "calm-bot"
"#,
            url = connector.url()
        ),
    );
    let mut host = Sidecar::start(&["run", "--config", config.to_str().expect("utf-8")], &[]);
    host.expect("ready", |e| is_state(e, "ready") && of(e, "calm"))
        .await;

    // The host shares CPU 0 with two spinning processes of higher priority: its
    // threads run in short slices.
    pin_to_cpu0(host.child.id().expect("the host runs"));
    let hogs = Hogs::start(2);
    // Large messages, so each call into the guest takes long enough (a
    // millisecond or more) to be preempted in the middle.
    let filler = "x".repeat(256 << 10);
    for n in 0..40 {
        let text = format!("calm {n} {filler}");
        connector
            .inject(Command::inbound(inbound_event(&text), false))
            .expect("inbound to the tenant");
        host.expect(&format!("calm {n}"), |e| {
            is(e, "message") && of(e, "calm") && e["message"]["text"] == text
        })
        .await;
        let id = format!("o-{n}");
        host.command(json!({"op": "outbound", "tenant": "calm", "id": id,
                            "action": {"op": "send", "chat_id": "c1", "content": text}}))
            .await;
        let r = host
            .expect(&id, |e| is(e, "outbound_result") && e["id"] == id)
            .await;
        assert_eq!(r["result"]["success"], true, "{}", r["result"]);
    }
    drop(hogs);

    host.command(json!({"op": "status"})).await;
    let status = host.expect("status", |e| is(e, "status")).await;
    assert_eq!(status["tenants"][0]["restarts"], 0, "{status}");
    let stops: Vec<&Value> = host
        .seen
        .iter()
        .filter(|e| of(e, "calm") && (is_state(e, "backoff") || is_state(e, "stopped")))
        .collect();
    assert!(stops.is_empty(), "the tenant was interrupted: {stops:?}");
    host.close_stdin();
    assert!(host.wait_exit().await.success());
}
