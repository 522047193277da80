//! spec/vectors/sessions.json, every case, through the script driver.

use relay_testkit::vectors::{deviation, load_cases, vectors_dir, with_d15_descriptor_event};

use super::driver::{run_case, run_case_through_link};

#[test]
fn sessions_json_all_cases_pass() {
    let cases = load_cases(&vectors_dir().join("sessions.json")).expect("sessions.json loads");
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    let mut deviations = 0;
    for case in &cases {
        let name = case.get("name").and_then(|n| n.as_str()).unwrap_or("?");
        // docs/DEVIATIONS.md: stale since D15 (the host runners list them too).
        // Run whole, with D15's descriptor event added where `ready` is expected.
        let corrected;
        let case = if deviation("sessions.json", name).is_some() {
            deviations += 1;
            corrected = with_d15_descriptor_event(case);
            &corrected
        } else {
            case
        };
        let result = std::panic::catch_unwind(|| run_case(case));
        match result {
            Ok(Ok(())) => {}
            Ok(Err(f)) => failures.push(format!("{name} (step {}): {}", f.step, f.message)),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{name}: panicked: {msg}"));
            }
        }
    }
    for f in &failures {
        eprintln!("FAIL {f}");
    }
    eprintln!(
        "sessions.json: {}/{} cases pass, {deviations} known deviations",
        cases.len() - failures.len() - deviations,
        cases.len()
    );
    assert_eq!(deviations, relay_testkit::vectors::KNOWN_DEVIATIONS.len());
    assert!(
        failures.is_empty(),
        "{} session cases failed",
        failures.len()
    );
}

/// The runner must be able to fail: for every case, an extra expected event, a
/// changed expected frame, or a dropped expected frame makes that case fail.
#[test]
fn sessions_json_mutated_expectations_fail() {
    use serde_json::{json, Value};
    let cases = load_cases(&vectors_dir().join("sessions.json")).expect("sessions.json loads");
    let mut checked = 0;
    for case in &cases {
        let name = case["name"].as_str().unwrap_or("?");
        let steps = case["steps"].as_array().cloned().unwrap_or_default();
        for (i, step) in steps.iter().enumerate() {
            let mutants: Vec<Value> = if let Some(ev) = step.get("expect_events") {
                let mut more = ev.as_array().cloned().unwrap_or_default();
                more.push(json!({"event": "bogus"}));
                vec![json!({"expect_events": more})]
            } else if let Some(sent) = step.get("expect_sent").and_then(Value::as_array) {
                let mut v = Vec::new();
                if let Some(first) = sent.first() {
                    let mut changed = sent.clone();
                    changed[0] =
                        json!({"type": format!("{}x", first["type"].as_str().unwrap_or(""))});
                    v.push(json!({"expect_sent": changed}));
                    v.push(json!({"expect_sent": sent[1..].to_vec()}));
                }
                v
            } else {
                continue;
            };
            for m in mutants {
                let mut c = case.clone();
                c["steps"][i] = m;
                assert!(
                    run_case(&c).is_err(),
                    "{name}: mutating step {i} went unnoticed"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 200, "only {checked} mutants");
}

/// The same cases through the 0.2 link, which keeps its own timers and
/// announces the bookkeeping states the vectors leave out.
#[test]
fn sessions_json_all_cases_pass_through_the_link() {
    let cases = load_cases(&vectors_dir().join("sessions.json")).expect("sessions.json loads");
    let failures: Vec<String> = cases
        .iter()
        .map(|case| {
            let name = case.get("name").and_then(|n| n.as_str()).unwrap_or("?");
            let corrected = with_d15_descriptor_event(case);
            let case = if deviation("sessions.json", name).is_some() {
                &corrected
            } else {
                case
            };
            (name, run_case_through_link(case))
        })
        .filter_map(|(name, r)| {
            r.err()
                .map(|f| format!("{name} (step {}): {}", f.step, f.message))
        })
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}
