//! The replay buffer: buffered deliveries the gateway has not acknowledged yet.
//!
//! A real connector keeps buffered inbound messages and passthrough forwards until
//! the gateway answers `inbound_ack {bufferId}`, and re-sends them (same id) when
//! the gateway reconnects. The buffer is plain data so it can outlive one emulator
//! run (in-process restart, or `--replay-file` for the CLI).

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// What a buffered entry delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An `inbound` frame; `payload` is its `event`.
    Inbound,
    /// A `passthrough_forward` frame; `payload` is its `forward`.
    Passthrough,
}

/// One unacknowledged delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The id the gateway must echo in `inbound_ack`.
    pub buffer_id: String,
    /// Frame kind.
    pub kind: Kind,
    /// The `event` or `forward` object.
    pub payload: Value,
    /// How many times it was written to a gateway so far.
    pub deliveries: u32,
    /// The gateway (upgrade-token id) of the connection it was first sent to: a
    /// replay goes to that gateway only, not to whichever tenant says hello for the
    /// same platform first. `None`: queued with no connection, any gateway.
    #[serde(default)]
    pub gateway: Option<String>,
    /// The connection it was last written to (not persisted: after a restart every
    /// entry is due on the next connection).
    #[serde(skip)]
    last_conn: Option<u64>,
}

impl Entry {
    /// The wire frame (without the trailing newline).
    pub fn frame(&self) -> Value {
        frame(self.kind, &self.payload, Some(&self.buffer_id))
    }

    /// The platform the delivery is for: `event.source.platform` of an inbound,
    /// `forward.platform` of a passthrough; `None` when it names none.
    pub fn platform(&self) -> Option<&str> {
        let platform = match self.kind {
            Kind::Inbound => self.payload.get("source").and_then(|s| s.get("platform")),
            Kind::Passthrough => self.payload.get("platform"),
        };
        platform.and_then(Value::as_str).filter(|p| !p.is_empty())
    }
}

/// Builds an `inbound` or `passthrough_forward` frame.
pub fn frame(kind: Kind, payload: &Value, buffer_id: Option<&str>) -> Value {
    let mut f = match kind {
        Kind::Inbound => json!({"type": "inbound", "event": payload}),
        Kind::Passthrough => json!({"type": "passthrough_forward", "forward": payload}),
    };
    if let (Some(id), Some(obj)) = (buffer_id, f.as_object_mut()) {
        obj.insert("bufferId".into(), id.into());
    }
    f
}

/// Pending buffered deliveries in injection order, plus the id counter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplayBuffer {
    entries: Vec<Entry>,
    next_seq: u64,
}

/// Raised when a caller-chosen buffer id is still pending.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bufferId {0:?} is still pending")]
pub struct DuplicateId(pub String);

impl ReplayBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh id, never handed out before by this buffer (`buf-<n>`).
    pub fn fresh_id(&mut self) -> String {
        loop {
            self.next_seq += 1;
            let id = format!("buf-{}", self.next_seq);
            if !self.contains(&id) {
                return id;
            }
        }
    }

    /// Adds a pending entry; an id that is still pending is refused (one that was
    /// already acked may be reused, to test the gateway's de-duplication).
    pub fn push(
        &mut self,
        buffer_id: String,
        kind: Kind,
        payload: Value,
    ) -> Result<(), DuplicateId> {
        self.push_for(buffer_id, kind, payload, None)
    }

    /// Like [`ReplayBuffer::push`], for the gateway that should receive its replays.
    pub fn push_for(
        &mut self,
        buffer_id: String,
        kind: Kind,
        payload: Value,
        gateway: Option<String>,
    ) -> Result<(), DuplicateId> {
        if self.contains(&buffer_id) {
            return Err(DuplicateId(buffer_id));
        }
        self.entries.push(Entry {
            buffer_id,
            kind,
            payload,
            deliveries: 0,
            gateway,
            last_conn: None,
        });
        Ok(())
    }

    /// Whether `buffer_id` is pending.
    pub fn contains(&self, buffer_id: &str) -> bool {
        self.entries.iter().any(|e| e.buffer_id == buffer_id)
    }

    /// Removes an acknowledged entry; false when it was not pending.
    pub fn ack(&mut self, buffer_id: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.buffer_id != buffer_id);
        self.entries.len() != before
    }

    /// Drops an entry without an ack (`None`: all of them); returns how many went.
    pub fn forget(&mut self, buffer_id: Option<&str>) -> usize {
        let before = self.entries.len();
        match buffer_id {
            Some(id) => self.entries.retain(|e| e.buffer_id != id),
            None => self.entries.clear(),
        }
        before - self.entries.len()
    }

    /// Pending ids, oldest first.
    pub fn pending_ids(&self) -> Vec<String> {
        self.entries.iter().map(|e| e.buffer_id.clone()).collect()
    }

    /// Pending entries, oldest first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Number of pending entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records that `buffer_id` was written to connection `conn`.
    pub(crate) fn mark_sent(&mut self, buffer_id: &str, conn: u64) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.buffer_id == buffer_id) {
            e.deliveries = e.deliveries.saturating_add(1);
            e.last_conn = Some(conn);
        }
    }

    /// Entries not yet written to `conn`, marked as written to it (the replay after
    /// a connection's first hello). `force` takes every entry (`replay` command).
    pub(crate) fn take_due(&mut self, conn: u64, force: bool) -> Vec<Entry> {
        let mut due = Vec::new();
        for e in &mut self.entries {
            if force || e.last_conn != Some(conn) {
                e.deliveries = e.deliveries.saturating_add(1);
                e.last_conn = Some(conn);
                due.push(e.clone());
            }
        }
        due
    }

    /// The replay after a `hello` for `platform` on `conn`: entries for that
    /// platform not yet written to `conn` and, when `first` (the connection's first
    /// hello), entries that name no platform; marked as written to it.
    pub(crate) fn take_due_on_hello(
        &mut self,
        conn: u64,
        platform: &str,
        first: bool,
        gateway: Option<&str>,
    ) -> Vec<Entry> {
        let mut due = Vec::new();
        for e in &mut self.entries {
            let ours = e.gateway.is_none() || e.gateway.as_deref() == gateway;
            let wanted = ours
                && match e.platform() {
                    Some(p) => p == platform,
                    None => first,
                };
            if wanted && e.last_conn != Some(conn) {
                e.deliveries = e.deliveries.saturating_add(1);
                e.last_conn = Some(conn);
                due.push(e.clone());
            }
        }
        due
    }

    /// Forgets which connection saw what (a restart: every entry is due again).
    pub(crate) fn reset_delivery_marks(&mut self) {
        for e in &mut self.entries {
            e.last_conn = None;
        }
    }

    /// Forgets deliveries to a connection that ended, so a later connection gets them.
    pub(crate) fn connection_ended(&mut self, conn: u64) {
        for e in &mut self.entries {
            if e.last_conn == Some(conn) {
                e.last_conn = None;
            }
        }
    }

    /// Reads a buffer saved by [`ReplayBuffer::save`]; a missing file is an empty buffer.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) if text.trim().is_empty() => Ok(Self::new()),
            Ok(text) => Ok(serde_json::from_str(&text)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the buffer as JSON (via a temporary file, so a crash leaves the old one).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_once_per_connection_until_acked() {
        let mut b = ReplayBuffer::new();
        let id = b.fresh_id();
        b.push(id.clone(), Kind::Inbound, json!({"text": "hi"}))
            .unwrap();
        assert!(b.push(id.clone(), Kind::Inbound, json!({})).is_err());
        assert_eq!(b.take_due(1, false).len(), 1);
        assert!(b.take_due(1, false).is_empty());
        assert_eq!(b.take_due(2, false)[0].frame()["bufferId"], json!(id));
        b.connection_ended(2);
        assert_eq!(b.take_due(1, false).len(), 1);
        assert!(b.ack(&id));
        assert!(!b.ack(&id));
        assert!(b.take_due(3, true).is_empty());
        // An acked id may be injected again.
        b.push(id, Kind::Passthrough, json!({})).unwrap();
        assert_ne!(b.fresh_id(), "buf-1");
    }

    #[test]
    fn hello_replay_goes_to_the_gateway_it_was_meant_for() {
        let mut b = ReplayBuffer::new();
        let tg = json!({"text": "a", "source": {"platform": "telegram"}});
        b.push_for("g1".into(), Kind::Inbound, tg, Some("gw-1".into()))
            .unwrap();
        let ids = |due: Vec<Entry>| due.into_iter().map(|e| e.buffer_id).collect::<Vec<_>>();
        // Another tenant's telegram hello does not take it, even when first.
        assert!(b
            .take_due_on_hello(1, "telegram", true, Some("gw-2"))
            .is_empty());
        assert_eq!(
            ids(b.take_due_on_hello(2, "telegram", true, Some("gw-1"))),
            ["g1"]
        );
    }

    #[test]
    fn hello_replay_is_per_platform() {
        let mut b = ReplayBuffer::new();
        let tg = json!({"text": "a", "source": {"platform": "telegram"}});
        b.push("tg".into(), Kind::Inbound, tg).unwrap();
        b.push("any".into(), Kind::Inbound, json!({"text": "b"}))
            .unwrap();
        let fwd = json!({"platform": "discord", "bodyB64": ""});
        b.push("dc".into(), Kind::Passthrough, fwd).unwrap();
        let ids = |due: Vec<Entry>| due.into_iter().map(|e| e.buffer_id).collect::<Vec<_>>();
        // A Slack gateway gets only the item that names no platform.
        assert_eq!(ids(b.take_due_on_hello(1, "slack", true, None)), ["any"]);
        // A gateway fronting discord, then telegram, gets each platform's items
        // at that platform's hello, and the unscoped one at its first hello.
        assert_eq!(
            ids(b.take_due_on_hello(2, "discord", true, None)),
            ["any", "dc"]
        );
        assert_eq!(ids(b.take_due_on_hello(2, "telegram", false, None)), ["tg"]);
        assert!(b.take_due_on_hello(2, "telegram", false, None).is_empty());
    }
}
