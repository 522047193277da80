//! Helpers for the end-to-end tests that run the real `relay-host` binary: the
//! sidecar process (commands on stdin, events from stdout, stderr kept), temporary
//! configuration files, and waits on the in-process connector emulator.
//!
//! Every wait is on an event with a generous deadline ([`WAIT`]); the only fixed
//! windows are the ones that prove something does *not* happen.

// Each test binary that includes this module uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use relay_connector::{ConnectorHandle, Observed};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// Longest wait for anything that should happen (a loaded 2-core machine may be slow).
pub const WAIT: Duration = Duration::from_secs(20);

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "relay-e2e-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `text` to `name` inside the directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The running `relay-host` binary: stdin for commands, every stdout line as an
/// event, stderr collected as it comes (a full pipe would block the host).
pub struct Sidecar {
    pub child: Child,
    stdin: Option<ChildStdin>,
    events: mpsc::UnboundedReceiver<Value>,
    /// Every event received so far, in order (also those an `expect` skipped).
    pub seen: Vec<Value>,
    stderr: Arc<Mutex<String>>,
}

impl Sidecar {
    /// Starts `relay-host` with `args`, the extra environment `env`, and logs at
    /// debug level for the host and the component.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Sidecar {
        let mut command = Command::new(relay_host_bin());
        command
            .args(args)
            .env("RUST_LOG", "info,relay_host=debug,relay_component=debug")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start relay-host");
        let stderr_text = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr piped");
        let sink = stderr_text.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout carries only JSON events: {line:?} ({e})"));
                assert!(v.is_object(), "every event is an object: {line}");
                let _ = tx.send(v);
            }
        });
        Sidecar {
            stdin: child.stdin.take(),
            child,
            events,
            seen: Vec::new(),
            stderr: stderr_text,
        }
    }

    /// Sends one APP-PROTOCOL command.
    pub async fn command(&mut self, command: Value) {
        self.line(&command.to_string()).await;
    }

    /// Sends one raw line (e.g. one that is not JSON).
    pub async fn line(&mut self, line: &str) {
        self.bytes(format!("{line}\n").as_bytes()).await;
    }

    /// Sends raw bytes (e.g. a line that is not UTF-8), newline included.
    pub async fn bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).await.expect("write to stdin");
        stdin.flush().await.expect("flush stdin");
    }

    /// Closes stdin (the host treats it as `shutdown`).
    pub fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    /// Waits for the next event matching `want`; earlier events stay in `seen`.
    pub async fn expect(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} event; saw {:#?}", self.seen))
                .unwrap_or_else(|| panic!("stdout ended before {what}; saw {:#?}", self.seen));
            self.seen.push(event.clone());
            if want(&event) {
                return event;
            }
        }
    }

    /// The first event ever received that matches `want`, waiting if none has yet.
    pub async fn expect_ever(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        match self.seen.iter().find(|e| want(e)) {
            Some(e) => e.clone(),
            None => self.expect(what, want).await,
        }
    }

    /// Waits until each of `wants` has matched an event, in any order.
    pub async fn expect_each(&mut self, what: &str, wants: &[&dyn Fn(&Value) -> bool]) {
        let mut open: Vec<usize> = (0..wants.len()).collect();
        while !open.is_empty() {
            let event = self
                .expect(what, |e| open.iter().any(|&i| wants[i](e)))
                .await;
            open.retain(|&i| !wants[i](&event));
        }
    }

    /// Like [`Sidecar::expect`], returning every event up to and including the match.
    pub async fn collect_until(&mut self, what: &str, want: impl Fn(&Value) -> bool) -> Vec<Value> {
        let start = self.seen.len();
        self.expect(what, want).await;
        self.seen[start..].to_vec()
    }

    /// Asserts that no event matching `unwanted` arrives within `window`.
    pub async fn expect_none_within(
        &mut self,
        window: Duration,
        what: &str,
        unwanted: impl Fn(&Value) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + window;
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            self.seen.push(event.clone());
            assert!(!unwanted(&event), "unexpected {what}: {event}");
        }
    }

    /// Waits for the process to exit (after a shutdown).
    pub async fn wait_exit(&mut self) -> ExitStatus {
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("relay-host exits in time")
            .expect("wait for relay-host")
    }

    /// The events still arriving until stdout ends (after the process exited).
    pub async fn rest(&mut self) -> Vec<Value> {
        let mut rest = Vec::new();
        while let Ok(Some(event)) = tokio::time::timeout(WAIT, self.events.recv()).await {
            self.seen.push(event.clone());
            rest.push(event);
        }
        rest
    }

    /// Everything logged to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr contains `needle` (logs and events travel on different
    /// pipes, so a log line may trail the event that followed it).
    pub async fn expect_log(&self, needle: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self.stderr().contains(needle) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "stderr never mentioned {needle:?}:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Whether `event` is an APP-PROTOCOL event named `name`.
pub fn is(event: &Value, name: &str) -> bool {
    event["event"] == name
}

/// Whether `event` is a `state` event with `state`.
pub fn is_state(event: &Value, state: &str) -> bool {
    is(event, "state") && event["state"] == state
}

/// Whether `event` concerns `tenant`.
pub fn of(event: &Value, tenant: &str) -> bool {
    event["tenant"] == tenant
}

/// The `state` values among `events`, in order.
pub fn states(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| is(e, "state"))
        .map(|e| e["state"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// Waits for an emulator observation matching `pred`.
pub async fn observed(
    h: &ConnectorHandle,
    what: &str,
    pred: impl FnMut(&Observed) -> bool,
) -> Observed {
    h.wait_for(WAIT, pred)
        .await
        .unwrap_or_else(|| panic!("the emulator did not report {what}"))
}

/// Every emulator observation up to and including the first matching `pred`.
pub async fn observed_until(
    h: &ConnectorHandle,
    what: &str,
    mut pred: impl FnMut(&Observed) -> bool,
) -> Vec<Observed> {
    let mut all = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ev = tokio::time::timeout_at(deadline, h.recv())
            .await
            .unwrap_or_else(|_| panic!("the emulator did not report {what}; saw {all:#?}"));
        let done = pred(&ev);
        all.push(ev);
        if done {
            return all;
        }
    }
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The `relay-host` binary of this build: it sits in the target profile folder,
/// one level above this test executable (`target/release/deps/`). `cargo test
/// --workspace` builds it first (relay-host has integration tests of its own);
/// running this package alone needs `cargo build --release -p relay-host`.
pub fn relay_host_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executables live in target/<profile>/deps");
    let bin = profile.join(format!("relay-host{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --release -p relay-host` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

/// Every observation of the emulator, in order (several tenants or processes
/// interleave, so waits look at the whole record instead of consuming a stream).
/// A gap (the subscription fell behind) is recorded and fails every later look.
#[derive(Clone)]
pub struct Record(Arc<Mutex<(Vec<Observed>, u64)>>);

impl Record {
    pub fn start(h: &ConnectorHandle) -> Record {
        use tokio::sync::broadcast::error::RecvError;
        let record = Record(Arc::new(Mutex::new((Vec::new(), 0))));
        let sink = record.0.clone();
        let mut rx = h.subscribe();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => sink.lock().unwrap().0.push(ev),
                    Err(RecvError::Lagged(n)) => sink.lock().unwrap().1 += n,
                    Err(RecvError::Closed) => break,
                }
            }
        });
        record
    }

    pub fn all(&self) -> Vec<Observed> {
        let record = self.0.lock().unwrap();
        assert_eq!(record.1, 0, "the record lost observations");
        record.0.clone()
    }

    /// Waits until `done` holds for the record.
    pub async fn wait(&self, what: &str, done: impl Fn(&[Observed]) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            if done(&self.all()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the emulator never reported {what}; saw {:#?}",
                self.all()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One plain HTTP/1.1 GET to `addr` (the host's metrics listener); the whole
/// response, status line first.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut text = String::new();
    s.read_to_string(&mut text).await.expect("read");
    text
}
