//! Egress records (PROTOCOL.md §11.5, vectors rule 3): what the gateway learned
//! about a chat from its inbound traffic, added to later outbound actions for it.
//!
//! The connector routes a reply by these values (scope, user, profile, platform);
//! the application should not have to echo them, so the component remembers them
//! per chat id, across reconnects, for a bounded number of chats.

use serde_json::{Map, Value};

use super::lru::BoundedMap;
use crate::event::SessionSource;

/// The last non-empty values seen for one chat.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ChatRecord {
    pub platform: Option<String>,
    pub user_id: Option<String>,
    pub scope_id: Option<String>,
    pub profile: Option<String>,
}

/// Per-chat records, keyed by chat id, LRU-bounded.
#[derive(Debug)]
pub(crate) struct EgressRecords {
    chats: BoundedMap<String, ChatRecord>,
}

/// Records a non-empty value (copying it only when it changed: the same chat
/// mostly repeats the same values).
fn set_non_empty(slot: &mut Option<String>, value: &str) {
    if !value.is_empty() && slot.as_deref() != Some(value) {
        *slot = Some(value.to_string());
    }
}

impl EgressRecords {
    pub(crate) fn new(cap: usize) -> Self {
        EgressRecords {
            chats: BoundedMap::new(cap),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.chats.len()
    }

    /// Records a delivered (or consumed) event's source; skipped without a chat id.
    pub(crate) fn record(&mut self, source: &SessionSource) {
        if source.chat_id.is_empty() {
            return;
        }
        self.chats.update(&source.chat_id, |rec| {
            if source.platform != "relay" {
                set_non_empty(&mut rec.platform, &source.platform);
            }
            for (slot, value) in [
                (&mut rec.user_id, &source.user_id),
                (&mut rec.scope_id, &source.scope_id),
                (&mut rec.profile, &source.profile),
            ] {
                if let Some(v) = value {
                    set_non_empty(slot, v);
                }
            }
        });
    }

    /// Adds the recorded `scope_id`, `user_id` and `profile` of `action.chat_id` to
    /// `action.metadata` where those keys are missing or empty (present values win;
    /// a non-object `metadata` is left alone). Returns the recorded platform.
    pub(crate) fn enrich(&mut self, action: &mut Value) -> Option<String> {
        let chat_id = crate::json::opt_str(action.get("chat_id"))?;
        let rec = self.chats.get(&chat_id)?.clone();
        self.chats.touch(&chat_id);
        let additions: Vec<(&str, String)> = [
            ("scope_id", &rec.scope_id),
            ("user_id", &rec.user_id),
            ("profile", &rec.profile),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect();
        if let (Some(obj), false) = (action.as_object_mut(), additions.is_empty()) {
            let meta = obj
                .entry("metadata")
                .or_insert_with(|| Value::Object(Map::new()));
            if meta.is_null() {
                *meta = Value::Object(Map::new());
            }
            if let Some(m) = meta.as_object_mut() {
                for (k, v) in additions {
                    let present = m.get(k).is_some_and(crate::json::truthy);
                    if !present {
                        m.insert(k.to_string(), Value::String(v));
                    }
                }
            }
        }
        rec.platform
    }
}
