//! `--python-ref`: the pure-Python reference relay handler
//! (`../shared/bench/py_reference.py`) on the same corpus, in the same run, so the
//! report can say how many times faster each pipeline is than the code it
//! replaces. Absent Python or script: a note and `null`, never a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// What the reference measured (its last stdout line).
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// `WebSocketRelayTransport._handle_frame` over every line, frames/s.
    pub py_ref_fps: f64,
    /// `json.loads` alone over the same lines, frames/s.
    pub py_json_floor_fps: f64,
}

/// Where the script is when no path is given: `../shared/bench/py_reference.py`
/// beside the repository this binary was built from.
pub fn default_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/bench/py_reference.py")
}

/// Runs the reference on `corpus` (one frame per line); `Err` says why it could
/// not, for the report's note.
pub fn run(script: &Path, corpus: &Path, runs: u32) -> Result<Reference, String> {
    if !script.is_file() {
        return Err(format!("{} not found", script.display()));
    }
    let output = Command::new("python3")
        .arg(script)
        .arg(corpus)
        .args(["--runs", &runs.to_string()])
        .output()
        .map_err(|e| format!("python3 could not be started: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or_default();
        return Err(format!("the reference failed ({}): {last}", output.status));
    }
    parse(&String::from_utf8_lossy(&output.stdout))
}

/// Reads the last stdout line: `{"py_ref_fps": ..., "py_json_floor_fps": ...}`.
fn parse(stdout: &str) -> Result<Reference, String> {
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or("the reference printed nothing")?;
    let v: Value =
        serde_json::from_str(last).map_err(|e| format!("unreadable last line ({e}): {last}"))?;
    let num = |k: &str| {
        v.get(k)
            .and_then(Value::as_f64)
            .filter(|f| *f > 0.0)
            .ok_or(format!("no positive `{k}` in {last}"))
    };
    Ok(Reference {
        py_ref_fps: num("py_ref_fps")?,
        py_json_floor_fps: num("py_json_floor_fps")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_last_line() {
        let out = "warming up\n{\"py_ref_fps\": 27000.5, \"py_json_floor_fps\": 99000, \"frames\": 3, \"bytes\": 9}\n";
        assert_eq!(
            parse(out),
            Ok(Reference {
                py_ref_fps: 27000.5,
                py_json_floor_fps: 99000.0
            })
        );
        assert!(parse("").is_err());
        assert!(parse("{\"py_ref_fps\": 0}").is_err());
    }

    #[test]
    fn a_missing_script_is_a_note_not_a_failure() {
        let err = run(Path::new("/nonexistent/py_reference.py"), Path::new("x"), 1).unwrap_err();
        assert!(err.contains("not found"), "{err}");
    }
}
