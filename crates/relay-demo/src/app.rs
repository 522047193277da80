//! The demo's application: it holds the [`HostHandle`], sends APP-PROTOCOL
//! commands and reads the event stream. Steps ask for the event they expect;
//! events that arrive first (another tenant's, or `state` bookkeeping) wait in a
//! backlog, so the transcript follows the script, not the arrival order.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use super::Failure;
use relay_host::app::{Events, HostHandle};

/// What the application saw of one tenant.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub messages: u64,
    pub outbound_results: u64,
    /// `ready` events: the first handshake plus every reconnect.
    pub readies: u64,
    pub interrupts: u64,
}

impl Counts {
    /// Handshakes after the first one.
    pub fn reconnects(&self) -> u64 {
        self.readies.saturating_sub(1)
    }
}

/// The application side of the demo.
pub struct App {
    handle: HostHandle,
    events: Events,
    backlog: VecDeque<Value>,
    counts: BTreeMap<String, Counts>,
    timeout: Duration,
}

impl App {
    pub fn new(handle: HostHandle, events: Events, timeout: Duration) -> Self {
        App {
            handle,
            events,
            backlog: VecDeque::new(),
            counts: BTreeMap::new(),
            timeout,
        }
    }

    pub fn handle(&self) -> &HostHandle {
        &self.handle
    }

    /// One APP-PROTOCOL command (answers come back as events).
    pub async fn send(&self, command: Value) {
        self.handle.send_command(command).await;
    }

    /// The counts of one tenant so far.
    pub fn counts(&self, tenant: &str) -> Counts {
        self.counts.get(tenant).copied().unwrap_or_default()
    }

    /// The first event named `kind` for `tenant` that satisfies `pred`, from the
    /// backlog or arriving within the step timeout. An `error` event fails at once.
    pub async fn expect(
        &mut self,
        tenant: &str,
        kind: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value, Failure> {
        self.expect_where(&format!("[{tenant}]"), kind, |v| {
            v["tenant"] == tenant && pred(v)
        })
        .await
    }

    /// The next answer named `kind` that concerns no single tenant (`status`).
    pub async fn expect_host(&mut self, kind: &str) -> Result<Value, Failure> {
        self.expect_where("[host]", kind, |v| v["tenant"].is_null())
            .await
    }

    /// How many events named `kind` for `tenant` satisfying `pred` wait in the
    /// backlog (arrived, not asked for yet).
    pub fn waiting(&self, tenant: &str, kind: &str, pred: impl Fn(&Value) -> bool) -> usize {
        self.backlog
            .iter()
            .filter(|v| v["event"] == kind && v["tenant"] == tenant && pred(v))
            .count()
    }

    async fn expect_where(
        &mut self,
        who: &str,
        kind: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value, Failure> {
        let matches = |v: &Value| v["event"] == kind && pred(v);
        if let Some(i) = self.backlog.iter().position(matches) {
            if let Some(v) = self.backlog.remove(i) {
                return Ok(v);
            }
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            let event = match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => {
                    return Err(Failure::new(format!(
                        "{who} no `{kind}` event within {} ms",
                        self.timeout.as_millis()
                    )))
                }
                Ok(None) => {
                    return Err(Failure::new(format!(
                        "{who} the host's event stream ended before a `{kind}` event"
                    )))
                }
                Ok(Some(event)) => event.value(),
            };
            self.count(&event);
            if event["event"] == "error" {
                return Err(Failure::new(format!(
                    "the host answered with an error while {who} waited for `{kind}`: {event}"
                )));
            }
            if matches(&event) {
                return Ok(event);
            }
            self.backlog.push_back(event);
        }
    }

    /// After the host has stopped: every event nobody asked for except `state`
    /// bookkeeping (a duplicate `message` would show up here).
    pub async fn leftovers(&mut self) -> Vec<Value> {
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(50), self.events.recv()).await
        {
            let event = event.value();
            self.count(&event);
            self.backlog.push_back(event);
        }
        self.backlog
            .drain(..)
            .filter(|e| e["event"] != "state")
            .collect()
    }

    fn count(&mut self, event: &Value) {
        let Some(tenant) = event["tenant"].as_str() else {
            return;
        };
        let c = self.counts.entry(tenant.to_string()).or_default();
        match event["event"].as_str() {
            Some("message") => c.messages += 1,
            Some("outbound_result") => c.outbound_results += 1,
            Some("ready") => c.readies += 1,
            Some("interrupt") => c.interrupts += 1,
            _ => {}
        }
    }
}
