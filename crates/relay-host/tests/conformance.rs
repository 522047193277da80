//! Every vector of the project's copy (spec/vectors) through the compiled
//! component, exactly as `relay-host conform` runs them: the test fails on any
//! failing case and on any case that was silently not run. When `../shared` is
//! beside the repository (as in CI), the copy must equal it byte for byte.

use std::path::PathBuf;

use relay_host::conform::{self, KNOWN_DEVIATIONS};
use relay_host::sandbox::{Allocation, Runtime};

fn vectors() -> PathBuf {
    relay_testkit::vectors::vectors_dir()
}

/// The copy the project keeps must not drift from the upstream vectors: an
/// update there fails here until it is brought in (and read). Skipped, with a
/// note, when the repository stands alone.
#[test]
fn vectors_match_the_shared_copy() {
    let upstream = relay_testkit::vectors::vectors_dir().join("../../../shared/vectors");
    if !upstream.is_dir() {
        eprintln!("skipped: no ../shared/vectors beside the repository");
        return;
    }
    let names = |dir: &PathBuf| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("vectors folder reads")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let ours = names(&vectors());
    assert_eq!(
        ours,
        names(&upstream),
        "spec/vectors and ../shared/vectors hold different files"
    );
    for name in &ours {
        let a = std::fs::read(vectors().join(name)).expect("ours reads");
        let b = std::fs::read(upstream.join(name)).expect("upstream reads");
        assert!(
            a == b,
            "spec/vectors/{name} differs from ../shared/vectors/{name}: copy it over \
             (cp ../shared/vectors/* spec/vectors/) and run the tests"
        );
    }
}

fn run(files: &[&str]) -> conform::Summary {
    let runtime = Runtime::new(Allocation::OnDemand, conform::limits()).expect("component loads");
    let paths: Vec<PathBuf> = files.iter().map(|f| vectors().join(f)).collect();
    let mut make = || {
        runtime
            .instantiate(conform::limits())
            .map_err(anyhow::Error::from)
    };
    conform::run_files(&paths, &mut make).expect("vector files load")
}

fn case_count(file: &str) -> usize {
    relay_testkit::vectors::load_cases(&vectors().join(file))
        .expect("vector file loads")
        .len()
}

fn assert_all_pass(file: &str) {
    let summary = run(&[file]);
    for line in &summary.lines {
        eprintln!("{line}");
    }
    let deviations = KNOWN_DEVIATIONS
        .iter()
        .filter(|(f, _, _)| *f == file)
        .count();
    assert_eq!(summary.failed, 0, "{file}: {}", summary.closing_line());
    assert_eq!(summary.deviations, deviations, "{file}: deviations");
    assert_eq!(
        summary.passed + summary.deviations,
        case_count(file),
        "{file}: every case ran"
    );
}

#[test]
fn dial_url() {
    assert_all_pass("dial_url.json");
}

#[test]
fn provision_url() {
    assert_all_pass("provision_url.json");
}

#[test]
fn upgrade_token() {
    assert_all_pass("upgrade_token.json");
}

#[test]
fn descriptor() {
    assert_all_pass("descriptor.json");
}

#[test]
fn inbound_event() {
    assert_all_pass("inbound_event.json");
}

#[test]
fn passthrough_forward() {
    assert_all_pass("passthrough_forward.json");
}

#[test]
fn discord_interaction() {
    assert_all_pass("discord_interaction.json");
}

#[test]
fn frames() {
    assert_all_pass("frames.json");
}

#[test]
fn sessions() {
    assert_all_pass("sessions.json");
}

/// The runner must be able to fail: a corrupted expectation is reported.
#[test]
fn a_wrong_expectation_fails() {
    let dir = std::env::temp_dir().join(format!("relay-conform-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("dial_url.json");
    std::fs::write(
        &file,
        r#"[{"name":"right","input":"https://h","expected":"wss://h/relay"},
            {"name":"wrong","input":"https://h","expected":"ws://h/relay"}]"#,
    )
    .unwrap();
    let runtime = Runtime::new(Allocation::OnDemand, conform::limits()).unwrap();
    let mut make = || {
        runtime
            .instantiate(conform::limits())
            .map_err(anyhow::Error::from)
    };
    let summary = conform::run_files(&[file], &mut make).unwrap();
    assert_eq!((summary.passed, summary.failed), (1, 1));
    assert!(
        summary.lines[0].contains("dial_url.json::wrong"),
        "{:?}",
        summary.lines
    );
}

/// Our own transcripts (crates/relay-testkit/src/transcripts.rs), which also run
/// natively, through the compiled component — those with memory caps smaller
/// than the defaults too (contract 0.2's `options.caps`).
#[test]
fn our_transcripts_through_the_component() {
    let runtime = Runtime::new(Allocation::OnDemand, conform::limits()).expect("component loads");
    let all = relay_testkit::transcripts::all();
    let mut ran = 0;
    let mut failures = Vec::new();
    let mut with_caps = 0;
    for t in &all {
        let mut sb = runtime.instantiate(conform::limits()).expect("instance");
        let mut case = t.case();
        if let Some(caps) = &t.caps {
            case["caps"] = caps.clone();
            with_caps += 1;
        }
        match conform::session(&mut sb, &case) {
            Ok(Ok(())) => {}
            Ok(Err(diff)) => failures.push(format!("{}: {diff}", t.name)),
            Err(e) => failures.push(format!("{}: sandbox error {e:#}", t.name)),
        }
        ran += 1;
    }
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        ran >= 40,
        "the issue asks for at least 40 transcripts through the component: {ran}"
    );
    assert!(with_caps > 0, "no transcript with custom caps ran");
}
