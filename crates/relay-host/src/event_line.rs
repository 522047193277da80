//! One APP-PROTOCOL event as the finished line the application reads.
//!
//! Why a line and not a `serde_json::Value`: the component renders each of its
//! events once, as the compact JSON line the sidecar writes (contract 0.2,
//! `event.line`). Carrying those bytes through unchanged means the sidecar's
//! stdout costs one write per event, not a parse, a rebuild and a
//! re-serialisation; consumers that need the content (the typed client, tests)
//! parse it where they need it.
//!
//! What a guest renders is checked before it is trusted (a hostile component must
//! not speak for another tenant): one line (no CR/LF), one JSON object, its
//! `event` a string and its `tenant` exactly once and equal to the tenant that
//! runs it. The check walks the object without building values.
//!
//! Fair share: every tenant reaches the shared stream through [`TenantEvents`],
//! which lets at most [`tenant_share`] of its events wait unread at a time (a
//! line gives its place back when the reader drops it). A chatty tenant then
//! waits for the application on its own — its socket goes unread, TCP slows its
//! connector — while the others' events still find room.

use std::fmt;
use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use serde::de::{self, Deserializer as _, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

/// One APP-PROTOCOL event: compact JSON, one object, no newline.
pub struct EventLine {
    line: String,
    /// The tenant's place in the stream, given back on drop.
    quota: Option<OwnedSemaphorePermit>,
}

/// How many of one tenant's events may wait unread in a stream of `capacity`:
/// an eighth of it (at least one).
pub fn tenant_share(capacity: usize) -> usize {
    (capacity / 8).max(1)
}

/// One tenant's sender into the shared event stream (see the module docs).
#[derive(Clone)]
pub(crate) struct TenantEvents {
    tx: mpsc::Sender<EventLine>,
    quota: Arc<Semaphore>,
}

impl TenantEvents {
    /// A sender whose tenant may have `share` events waiting at a time.
    pub(crate) fn new(tx: mpsc::Sender<EventLine>, share: usize) -> Self {
        TenantEvents {
            tx,
            quota: Arc::new(Semaphore::new(share.max(1))),
        }
    }

    /// Waits for a place of this tenant's share, then for room in the stream.
    /// An event for a stream nobody reads any more is dropped.
    pub(crate) async fn send(&self, mut line: EventLine) {
        if let Ok(permit) = self.quota.clone().acquire_owned().await {
            line.quota = Some(permit);
        }
        let _ = self.tx.send(line).await;
    }
}

/// Why a guest-rendered line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LineError {
    #[error("the event line is not UTF-8")]
    NotUtf8,
    #[error("the event line contains a line break")]
    LineBreak,
    #[error("the event line is not one JSON object: {0}")]
    NotObject(String),
    #[error("the event line has no single string `event`")]
    NoEvent,
    #[error("the event line names another tenant, or none, or more than one")]
    WrongTenant,
}

impl EventLine {
    /// The line, without its newline.
    pub fn as_str(&self) -> &str {
        &self.line
    }

    /// The line's content as JSON (parsed here, on demand).
    pub fn value(&self) -> Value {
        // Every EventLine is a JSON object (checked or serialised on the way in).
        serde_json::from_str(&self.line).unwrap_or(Value::Null)
    }

    /// The line, without its newline.
    pub fn into_string(self) -> String {
        self.line
    }

    fn new(line: String) -> Self {
        EventLine { line, quota: None }
    }

    /// An event the host builds itself.
    pub(crate) fn from_map(map: Map<String, Value>) -> Self {
        Self::from_value(Value::Object(map))
    }

    /// An event the host builds itself (an object).
    pub(crate) fn from_value(value: Value) -> Self {
        EventLine::new(value.to_string())
    }

    /// A line the component rendered for `tenant`, checked (see the module docs).
    pub(crate) fn from_guest(bytes: Vec<u8>, tenant: &str) -> Result<Self, LineError> {
        // Each scan once: the line-break search (memchr) and the UTF-8 check
        // (simdutf8: std's check, inside String::from_utf8, goes a byte at a time
        // through non-ASCII text and was 5 % of pipeline (f)'s samples).
        if memchr::memchr2(b'\n', b'\r', &bytes).is_some() {
            return Err(LineError::LineBreak);
        }
        simdutf8::basic::from_utf8(&bytes).map_err(|_| LineError::NotUtf8)?;
        // SAFETY: `bytes` was checked to be UTF-8 on the line above.
        let line = unsafe { String::from_utf8_unchecked(bytes) };
        check(&line, tenant)?;
        Ok(EventLine::new(line))
    }
}

/// A copy holds no place in the stream.
impl Clone for EventLine {
    fn clone(&self) -> Self {
        EventLine::new(self.line.clone())
    }
}

impl PartialEq for EventLine {
    fn eq(&self, other: &Self) -> bool {
        self.line == other.line
    }
}

impl Eq for EventLine {}

impl fmt::Display for EventLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line)
    }
}

impl fmt::Debug for EventLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.line, f)
    }
}

fn check(line: &str, tenant: &str) -> Result<(), LineError> {
    let mut de = serde_json::Deserializer::from_str(line);
    let seen = de
        .deserialize_map(TopLevel { tenant })
        .map_err(|e| LineError::NotObject(e.to_string()))?;
    de.end().map_err(|e| LineError::NotObject(e.to_string()))?;
    match seen {
        Seen { events, .. } if events != 1 => Err(LineError::NoEvent),
        Seen {
            tenants: 1,
            tenant_ok: true,
            ..
        } => Ok(()),
        _ => Err(LineError::WrongTenant),
    }
}

#[derive(Default)]
struct Seen {
    events: u32,
    tenants: u32,
    tenant_ok: bool,
}

struct TopLevel<'a> {
    tenant: &'a str,
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = Seen;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an APP-PROTOCOL event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Seen, A::Error> {
        let mut seen = Seen::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "event" => {
                    map.next_value::<std::borrow::Cow<'de, str>>()
                        .map_err(|_| de::Error::custom("`event` is not a string"))?;
                    seen.events += 1;
                }
                "tenant" => {
                    seen.tenants += 1;
                    let value = map.next_value::<std::borrow::Cow<'de, str>>()?;
                    seen.tenant_ok = value == self.tenant;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(line: &str) -> Result<EventLine, LineError> {
        EventLine::from_guest(line.as_bytes().to_vec(), "t1")
    }

    #[test]
    fn a_rendered_line_passes_unchanged() {
        let line = r#"{"event":"message","tenant":"t1","message":{"text":"h\u00e9 \"x\""},"buffer_id":"b1"}"#;
        assert_eq!(guest(line).unwrap().as_str(), line);
        assert_eq!(guest(line).unwrap().value()["buffer_id"], "b1");
    }

    #[tokio::test]
    async fn a_tenant_holds_at_most_its_share_of_the_stream() {
        let (tx, mut rx) = mpsc::channel(64);
        let chatty = TenantEvents::new(tx.clone(), 4);
        let quiet = TenantEvents::new(tx, 4);
        let flood = tokio::spawn({
            let chatty = chatty.clone();
            async move {
                for i in 0..100 {
                    chatty
                        .send(EventLine::new(format!("{{\"event\":\"c{i}\"}}")))
                        .await;
                }
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        quiet.send(EventLine::new("{\"event\":\"q\"}".into())).await;
        // Nothing was read yet: the chatty tenant holds only its 4 places, so the
        // quiet tenant's event is the fifth in the stream, not the 65th.
        let mut order = Vec::new();
        while let Some(line) = rx.recv().await {
            order.push(line.into_string());
            if order.len() == 5 {
                break;
            }
        }
        assert_eq!(order[4], "{\"event\":\"q\"}", "{order:?}");
        flood.abort();
    }

    #[test]
    fn a_line_for_another_tenant_is_refused() {
        for line in [
            r#"{"event":"message","tenant":"t2"}"#,
            r#"{"event":"message"}"#,
            r#"{"event":"message","tenant":"t1","tenant":"t2"}"#,
            r#"{"event":"message","tenant":7}"#,
        ] {
            assert!(guest(line).is_err(), "{line}");
        }
    }

    #[test]
    fn what_is_not_one_event_object_is_refused() {
        assert_eq!(
            guest("{\"event\":\"x\",\n\"tenant\":\"t1\"}"),
            Err(LineError::LineBreak)
        );
        assert_eq!(guest(r#"{"tenant":"t1"}"#), Err(LineError::NoEvent));
        assert_eq!(
            guest(r#"{"event":"x","event":"y","tenant":"t1"}"#),
            Err(LineError::NoEvent)
        );
        for line in [
            r#"{"event":"x","tenant":"t1"} {}"#,
            r#"["event"]"#,
            r#"{"event":"x","tenant":"t1""#,
            r#"{"event":1,"tenant":"t1"}"#,
        ] {
            assert!(
                matches!(guest(line), Err(LineError::NotObject(_))),
                "{line}"
            );
        }
        assert_eq!(
            EventLine::from_guest(vec![b'{', 0xff, b'}'], "t1"),
            Err(LineError::NotUtf8)
        );
        // What a String must never hold (it is built unchecked after the check):
        // a surrogate, an overlong form, a sequence cut off at the end, past the
        // 16-byte blocks a SIMD check works in.
        let pad = r#"{"event":"x","tenant":"t1","text":"日本語 grüße "#.as_bytes();
        for bad in [
            &b"\xed\xa0\x80"[..],
            b"\xc0\xaf",
            b"\xf4\x90\x80\x80",
            b"\xe6\x97",
        ] {
            let mut line = pad.to_vec();
            line.extend_from_slice(bad);
            assert_eq!(
                EventLine::from_guest(line, "t1"),
                Err(LineError::NotUtf8),
                "{bad:x?}"
            );
        }
        let good = r#"{"event":"x","tenant":"t1","text":"日本語 grüße 🚀"}"#;
        assert_eq!(
            EventLine::from_guest(good.as_bytes().to_vec(), "t1").map(|l| l.to_string()),
            Ok(good.to_string())
        );
    }
}
