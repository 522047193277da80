//! `relay-demo` as a smoke test: the real binary plays the whole scripted
//! conversation (connector emulator and three tenants in one process) and must
//! exit 0 with the key lines of the transcript on stdout.

use std::process::Command;
use std::time::Instant;

#[test]
fn demo_plays_every_step() {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_relay-demo"))
        // Generous per-step budget: tests run side by side on small machines.
        .args(["--step-timeout-ms", "20000"])
        .env_remove("RUST_LOG")
        .output()
        .expect("run relay-demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "demo failed ({}):\n{stdout}\n--- stderr ---\n{stderr}",
        output.status
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    for needle in [
        // 1. handshakes, each with a signed upgrade token
        "[acme   ] host → conn  WebSocket upgrade with a signed token of gw-acme → accepted",
        // acme fronts two platforms: two hellos, two descriptors, `ready` for the
        // first and a `descriptor` event for the second (D15), both in `status`
        "[acme   ] host → conn  hello platform=discord botId=acme-bot commands=/skill",
        "[acme   ] host → conn  hello platform=whatsapp botId=acme-wa",
        "[acme   ] conn → host  descriptor for discord",
        "[acme   ] conn → host  descriptor for whatsapp",
        "[acme   ] host → app   ready Discord · max 2000 chars",
        "[acme   ] host → app   descriptor platform=whatsapp · max 4096 chars",
        "[acme   ] host → app   status descriptors: discord max 2000, whatsapp max 4096",
        "[globex ] host → app   ready Telegram · max 4096 chars",
        "[initech] host → app   ready Slack · max 40000 chars",
        // 2. a message in, an answer out
        r#"[acme   ] conn → host  inbound "hello from discord""#,
        r#"[acme   ] host → app   message chat=900100 user=Ada text="hello from discord""#,
        "[acme   ]  app → host  outbound id=acme-1 send chat=900100",
        "[acme   ] host → app   outbound_result id=acme-1 success message_id=m1",
        "[initech] host → app   outbound_result id=initech-1 success",
        // 3, 4. Discord interactions through passthrough
        r#"[acme   ] host → app   message type=command chat=900100 user=Ada text="/skill run deploy prod""#,
        r#"text="approve_deploy" on=m1"#,
        // 5. interrupts both ways
        "[globex ] host → app   interrupt session_key=",
        "[initech] host → conn  interrupt session_key=",
        // 6. buffered delivery across a connector crash
        "[globex ] host → app   state backoff retry_in_ms=1000",
        "[globex ] conn → host  inbound bufferId=buf-1 (replayed after the hello)",
        "[acme   ] host → app   descriptor platform=whatsapp (reconnect 1)",
        "saw buf-1 exactly once",
        "[globex ] host → conn  inbound_ack bufferId=buf-1 → removed from the replay buffer",
        // 7. a message delivered live, then again from the buffer: acked at once,
        // delivered once (D16)
        r#"[initech] conn → host  inbound "is the build green?" message_id=1700000000.000100 (live, not buffered)"#,
        r#"[initech] host → app   message chat=C0INIT01 user=peter text="is the build green?""#,
        "(the same message, from the buffer)",
        "[initech] host → conn  inbound_ack bufferId=",
        "at once (message_id=1700000000.000100 delivered before) → removed from the replay buffer",
        "[initech]  app         saw message_id=1700000000.000100 exactly once",
        // 8. shutdown
        "[initech] host → app   idle acked=true, then state stopped",
    ] {
        assert!(has(needle), "missing line {needle:?} in:\n{stdout}");
    }
    // The steps in order, the summary last.
    let headings: Vec<&str> = lines.iter().filter_map(|l| l.strip_prefix("── ")).collect();
    assert_eq!(headings.len(), 9, "{headings:?}");
    assert!(
        headings[6].starts_with("7. a live message replayed"),
        "{headings:?}"
    );
    assert!(headings[8].starts_with("9. summary"), "{headings:?}");
    // The live message and its buffered copy reach the application once.
    let deliveries = lines
        .iter()
        .filter(|l| l.contains("host → app   message") && l.contains("is the build green?"))
        .count();
    assert_eq!(deliveries, 1, "{stdout}");
    // The summary table: a header and one row per tenant.
    let header = lines
        .iter()
        .position(|l| l.starts_with("tenant") && l.contains("reconnects"))
        .unwrap_or_else(|| panic!("no summary table in:\n{stdout}"));
    for (row, tenant) in lines[header + 1..]
        .iter()
        .zip(["acme", "globex", "initech"])
    {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells.first(), Some(&tenant), "row {row:?}");
        if tenant == "acme" {
            assert_eq!(cells.get(1), Some(&"discord+whatsapp"), "row {row:?}");
        }
        assert_eq!(cells.get(2), Some(&"stopped"), "row {row:?}");
        assert_eq!(cells.get(7), Some(&"1"), "one reconnect each: {row:?}");
        assert_eq!(cells.get(8), Some(&"0"), "no sandbox restarts: {row:?}");
    }
    assert!(has("connector restarted once"), "{stdout}");
    assert!(has("wall time"), "{stdout}");
    // Not a terminal: no colours; nothing secret in either stream.
    assert!(!stdout.contains('\x1b'), "ANSI escapes on a pipe");
    for text in [&stdout, &stderr] {
        assert!(!text.contains("Bearer"), "an upgrade token was printed");
    }
    assert!(
        started.elapsed().as_secs() < 30,
        "the demo took {:?}",
        started.elapsed()
    );
}
