//! Feeds an NDJSON corpus through the native session many times; for profilers
//! (`valgrind --tool=callgrind`, `perf record`). Usage: profile_pipeline FILE [ROUNDS]
//!
//! Each line arrives as a text message and every emitted event is turned into its
//! JSON text, as in the component, so the profile covers the whole frame pipeline.
//! `RELAY_BINARY=1` sends binary messages instead (the bytes path, UTF-8 checked);
//! `RELAY_DUMP=FILE` writes every effect, one a line, to compare two builds.
use std::io::Write;

use relay_logic::session::{Config, Connection, Effect, Identity};

const DESCRIPTOR: &str = "{\"type\": \"descriptor\", \"descriptor\": {\"contract_version\": 1, \"platform\": \"discord\", \"label\": \"Discord\", \"max_message_length\": 2000, \"supports_draft_streaming\": false, \"supports_edit\": true, \"supports_threads\": true, \"markdown_dialect\": \"discord\", \"len_unit\": \"chars\"}}\n";

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: profile_pipeline FILE [ROUNDS]");
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(10);
    let binary = std::env::var_os("RELAY_BINARY").is_some();
    let mut dump = std::env::var_os("RELAY_DUMP")
        .map(|p| std::io::BufWriter::new(std::fs::File::create(p).expect("dump file")));
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
    let (mut effects, mut emitted_bytes) = (0, 0);
    for r in 0..rounds {
        let now = r as u64 + 1;
        for l in &lines {
            let out = if binary {
                conn.receive(now, l.as_bytes())
            } else {
                conn.receive_text(now, l)
            };
            for e in out {
                effects += 1;
                let emitted = match &e {
                    Effect::Emit(ev) => Some(ev.to_json_string()),
                    _ => None,
                };
                if let Some(f) = dump.as_mut() {
                    let line = match &emitted {
                        Some(json) => format!("EMIT {json}"),
                        None => format!("{e:?}"),
                    };
                    writeln!(f, "{line}").expect("dump written");
                }
                emitted_bytes += emitted.map_or(0, |j| j.len());
            }
        }
    }
    println!("{effects} effects, {emitted_bytes} bytes emitted");
}
