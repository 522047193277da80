//! Runs our own transcripts (`relay_testkit::transcripts`) natively; the same
//! cases run through the compiled component in the end-to-end conformance test.

use serde_json::json;

use relay_testkit::transcripts::all;

use super::driver::{run_transcript, run_transcript_through_link};

#[test]
fn every_transcript_passes_natively() {
    let all = all();
    assert!(all.len() >= 40, "only {} transcripts", all.len());
    let failures: Vec<String> = all.iter().filter_map(|t| run_transcript(t).err()).collect();
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every transcript, its caps included, through the 0.2 link too.
#[test]
fn every_transcript_passes_through_the_link() {
    let failures: Vec<String> = all()
        .iter()
        .filter_map(|t| run_transcript_through_link(t).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn transcript_names_are_unique() {
    let mut names: Vec<&str> = all().iter().map(|t| t.name).collect();
    let n = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), n);
}

/// The driver must be able to fail: a transcript with a wrong expectation does.
#[test]
fn a_wrong_expectation_fails() {
    let mut t = all()
        .into_iter()
        .find(|t| t.caps.is_none())
        .expect("a transcript");
    t.steps
        .push(json!({"expect_events": [{"event": "no such event"}]}));
    let err = run_transcript(&t).unwrap_err();
    assert!(err.contains("step"), "{err}");
}
