//! Request correlation: outbound requests waiting for their `outbound_result`,
//! by request id, remembering the order they were issued (a close answers them
//! in that order).

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

/// One outbound request waiting for its result.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    /// The application's own id from the `outbound` command.
    pub app_id: String,
    /// The deadline timer to cancel when the request is answered.
    pub timer: u64,
    /// `Some(chat id)` for `get_chat_info`, whose results are reshaped.
    pub chat_info_of: Option<Value>,
}

/// The requests in flight on the current connection.
#[derive(Debug, Default)]
pub(crate) struct PendingRequests {
    by_id: HashMap<String, (u64, Pending)>,
    order: BTreeMap<u64, String>,
    next_seq: u64,
}

impl PendingRequests {
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn contains(&self, request_id: &str) -> bool {
        self.by_id.contains_key(request_id)
    }

    pub(crate) fn insert(&mut self, request_id: String, p: Pending) {
        self.next_seq += 1;
        let seq = self.next_seq;
        if let Some((old, _)) = self.by_id.insert(request_id.clone(), (seq, p)) {
            self.order.remove(&old);
        }
        self.order.insert(seq, request_id);
    }

    /// Removes the request: the first result (or the deadline) wins.
    pub(crate) fn take(&mut self, request_id: &str) -> Option<Pending> {
        let (seq, p) = self.by_id.remove(request_id)?;
        self.order.remove(&seq);
        Some(p)
    }

    /// Removes every request, in issue order.
    pub(crate) fn drain(&mut self) -> Vec<(String, Pending)> {
        let order = std::mem::take(&mut self.order);
        let mut out = Vec::with_capacity(order.len());
        for (_, id) in order {
            if let Some((_, p)) = self.by_id.remove(&id) {
                out.push((id, p));
            }
        }
        self.by_id.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(app: &str) -> Pending {
        Pending {
            app_id: app.into(),
            timer: 0,
            chat_info_of: None,
        }
    }

    #[test]
    fn drains_in_issue_order_and_first_take_wins() {
        let mut r = PendingRequests::default();
        r.insert("z".into(), p("a1"));
        r.insert("a".into(), p("a2"));
        r.insert("m".into(), p("a3"));
        assert_eq!(r.take("a").map(|p| p.app_id), Some("a2".into()));
        assert!(r.take("a").is_none());
        let ids: Vec<String> = r.drain().into_iter().map(|(_, p)| p.app_id).collect();
        assert_eq!(ids, ["a1", "a3"]);
        assert_eq!(r.len(), 0);
    }
}
