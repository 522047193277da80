//! The connector side of the demo: the in-process emulator, scripted with
//! [`Command`]s, and its observations read the same way the application reads
//! events (ask for the one expected; the others wait in a backlog). Connections
//! are told apart by the gateway id of their upgrade token, so every observation
//! can be attributed to a tenant whatever order the tenants dialed in.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::Failure;
use relay_connector::{Command, ConnectorHandle, ConnectorOptions, Observed, Outcome, Seen, Sent};

/// The running emulator and what it reported so far.
pub struct Wire {
    handle: Option<ConnectorHandle>,
    backlog: VecDeque<Observed>,
    /// gateway id → tenant.
    gateways: HashMap<String, String>,
    /// connection id (of the current run) → tenant.
    conns: HashMap<u64, String>,
    timeout: Duration,
    restarts: u32,
}

/// The connection an observation is about, if any.
fn conn_of(o: &Observed) -> Option<u64> {
    match o {
        Observed::Connected { conn, .. }
        | Observed::Rejected { conn, .. }
        | Observed::Disconnected { conn, .. }
        | Observed::Seen { conn, .. }
        | Observed::Sent { conn, .. }
        | Observed::Dropped { conn }
        | Observed::Withheld { conn, .. }
        | Observed::SendFailed { conn, .. }
        | Observed::Stalled { conn, .. }
        | Observed::Resumed { conn } => Some(*conn),
        Observed::Listening { .. } | Observed::Refused { .. } | Observed::Queued { .. } => None,
    }
}

impl Wire {
    /// Starts the emulator. `gateways`: (gateway id, tenant) pairs.
    pub async fn start(
        options: ConnectorOptions,
        gateways: &[(&str, &str)],
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let handle = relay_connector::Connector::start(options).await?;
        Ok(Wire {
            handle: Some(handle),
            backlog: VecDeque::new(),
            gateways: gateways
                .iter()
                .map(|(g, t)| (g.to_string(), t.to_string()))
                .collect(),
            conns: HashMap::new(),
            timeout,
            restarts: 0,
        })
    }

    fn handle(&self) -> Result<&ConnectorHandle, Failure> {
        self.handle
            .as_ref()
            .ok_or_else(|| Failure::new("the connector emulator is not running"))
    }

    /// `ws://127.0.0.1:PORT/relay`.
    pub fn url(&self) -> String {
        self.handle.as_ref().map(|h| h.url()).unwrap_or_default()
    }

    /// How often the emulator was restarted.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Buffer ids still waiting for `inbound_ack`.
    pub fn pending(&self) -> Vec<String> {
        self.handle
            .as_ref()
            .map(|h| h.pending())
            .unwrap_or_default()
    }

    /// Carries out a scripted command.
    pub fn inject(&self, cmd: Command) -> Result<Outcome, Failure> {
        self.handle()?
            .inject(cmd)
            .map_err(|e| Failure::new(format!("the connector emulator refused a command: {e}")))
    }

    /// The live connection of `tenant` (newest that said hello).
    pub fn conn_for(&self, tenant: &str) -> Result<u64, Failure> {
        self.handle()?
            .connections()
            .iter()
            .rev()
            .find(|c| {
                !c.hellos.is_empty()
                    && c.gateway_id
                        .as_ref()
                        .and_then(|g| self.gateways.get(g))
                        .is_some_and(|t| t == tenant)
            })
            .map(|c| c.conn)
            .ok_or_else(|| Failure::new(format!("[{tenant}] has no live connection")))
    }

    /// The first observation about `tenant`'s connection satisfying `pred`, from
    /// the backlog or arriving within the step timeout. A rejected upgrade token
    /// fails at once.
    pub async fn expect(
        &mut self,
        tenant: &str,
        what: &str,
        pred: impl Fn(&Observed) -> bool,
    ) -> Result<Observed, Failure> {
        let conns = &self.conns;
        let mine = |o: &Observed| {
            conn_of(o)
                .and_then(|c| conns.get(&c))
                .is_some_and(|t| t == tenant)
        };
        if let Some(i) = self.backlog.iter().position(|o| mine(o) && pred(o)) {
            if let Some(o) = self.backlog.remove(i) {
                return Ok(o);
            }
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            let handle = self.handle()?;
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(o) = handle.next_event(left).await else {
                return Err(Failure::new(format!(
                    "[{tenant}] the connector did not report {what} within {} ms",
                    self.timeout.as_millis()
                )));
            };
            match &o {
                Observed::Connected {
                    conn,
                    gateway_id: Some(g),
                    ..
                } => {
                    if let Some(t) = self.gateways.get(g) {
                        self.conns.insert(*conn, t.clone());
                    }
                }
                Observed::Rejected {
                    reason, gateway_id, ..
                } => {
                    return Err(Failure::new(format!(
                        "the connector rejected an upgrade token ({reason}, gateway {gateway_id:?})"
                    )))
                }
                _ => {}
            }
            let t = conn_of(&o).and_then(|c| self.conns.get(&c));
            if t.is_some_and(|t| t == tenant) && pred(&o) {
                return Ok(o);
            }
            self.backlog.push_back(o);
        }
    }

    /// Kills the emulator (TCP dropped, no close frames, like a crash) and starts
    /// it again on the same port with its replay buffer. Returns the buffer ids
    /// that were pending across the restart.
    pub async fn restart(&mut self) -> Result<Vec<String>, Failure> {
        let handle = self
            .handle
            .take()
            .ok_or_else(|| Failure::new("the connector emulator is not running"))?;
        let stopped = handle.kill().await;
        let pending = stopped.replay.pending_ids();
        let addr = stopped.addr;
        let handle = stopped.start_again().await.map_err(|e| {
            Failure::new(format!(
                "the connector emulator could not listen on {addr} again: {e:#}"
            ))
        })?;
        self.handle = Some(handle);
        // Connection ids start at 1 again; nothing from the old run is awaited.
        self.backlog.clear();
        self.conns.clear();
        self.restarts += 1;
        Ok(pending)
    }

    /// Ends the emulator gracefully.
    pub async fn shutdown(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
    }
}

/// `Seen::…` frames, for predicates.
pub fn seen(o: &Observed) -> Option<&Seen> {
    match o {
        Observed::Seen { frame, .. } => Some(frame),
        _ => None,
    }
}

/// `Sent::…` frames, for predicates.
pub fn sent(o: &Observed) -> Option<&Sent> {
    match o {
        Observed::Sent { frame, .. } => Some(frame),
        _ => None,
    }
}
