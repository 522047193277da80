//! Feeds an NDJSON corpus through the native session many times; for profilers
//! (`valgrind --tool=callgrind`, `perf record`). Usage: profile_pipeline FILE [ROUNDS]
use relay_guest::session::{Config, Connection, Identity};

const DESCRIPTOR: &str = "{\"type\": \"descriptor\", \"descriptor\": {\"contract_version\": 1, \"platform\": \"discord\", \"label\": \"Discord\", \"max_message_length\": 2000, \"supports_draft_streaming\": false, \"supports_edit\": true, \"supports_threads\": true, \"markdown_dialect\": \"discord\", \"len_unit\": \"chars\"}}\n";

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: profile_pipeline FILE [ROUNDS]");
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(10);
    let text = std::fs::read_to_string(path).expect("corpus readable");
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    let mut conn = Connection::new(Config::new(vec![Identity {
        platform: "discord".into(),
        bot_id: "app".into(),
        command_manifest: None,
    }]))
    .expect("valid config");
    conn.open(0);
    conn.receive(0, DESCRIPTOR.as_bytes());
    let mut effects = 0;
    for r in 0..rounds {
        for l in &lines {
            effects += conn.receive(r as u64 + 1, l.as_bytes()).len();
        }
    }
    println!("{effects} effects");
}
