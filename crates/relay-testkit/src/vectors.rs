//! The project's conformance data (`spec/vectors/`) and the cases it deliberately
//! disagrees with.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// `<repo>/spec/vectors`, the project's own copy of the conformance vectors (kept
/// byte-identical to `../shared/vectors` by the e2e conformance test).
pub fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec/vectors")
}

/// Loads a vector file (a JSON array of cases) with arbitrary-precision numbers.
pub fn load_cases(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    match serde_json::from_str(&text) {
        Ok(Value::Array(cases)) => Ok(cases),
        Ok(_) => Err(format!("{}: not a JSON array of cases", path.display())),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Vectors this project deliberately disagrees with (docs/DEVIATIONS.md):
/// `(file, case name, reason)`. Runners report them apart, never as passed.
pub const KNOWN_DEVIATIONS: &[(&str, &str, &str)] = &[
    (
        "sessions.json",
        "outbound_platform_tag_for_fronted_identity",
        STALE_SINCE_D15,
    ),
    (
        "sessions.json",
        "multi_identity_reply_follows_inbound_platform",
        STALE_SINCE_D15,
    ),
];

/// Why the two multi-identity cases above are deviations.
const STALE_SINCE_D15: &str = "stale since D15: the same two descriptors in one message give ready plus a descriptor event in multi_identity_first_descriptor_ready_later_ones_descriptor_events; this case still expects ready alone (docs/DEVIATIONS.md)";

/// The reason a case is a known deviation, if it is one.
pub fn deviation(file: &str, case: &str) -> Option<&'static str> {
    KNOWN_DEVIATIONS
        .iter()
        .find(|(f, c, _)| *f == file && *c == case)
        .map(|(_, _, why)| *why)
}

/// A stale D15 case with its one wrong expectation corrected: the step expecting
/// the Discord `ready` also gets the Telegram `descriptor` event that follows it.
/// The native tests run the stale cases whole this way, so the rest of each case
/// stays checked.
pub fn with_d15_descriptor_event(case: &Value) -> Value {
    let mut case = case.clone();
    if let Some(steps) = case["steps"].as_array_mut() {
        for step in steps {
            if let Some(events) = step.get_mut("expect_events").and_then(Value::as_array_mut) {
                if events.len() == 1 && events[0]["event"] == "ready" {
                    events.push(json!({"event": "descriptor", "platform": "telegram",
                        "descriptor": {"platform": "telegram", "max_message_length": 4096}}));
                }
            }
        }
    }
    case
}
