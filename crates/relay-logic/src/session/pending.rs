//! Request correlation: outbound requests waiting for their `outbound_result`,
//! by request id, remembering the order they were issued (a close answers them
//! in that order).

use std::collections::BTreeMap;

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
    /// Number of its `outbound` frame among all frames written (see `write_failed`).
    pub frame: u64,
}

/// The requests in flight on the current connection.
#[derive(Debug, Default)]
pub(crate) struct PendingRequests {
    by_id: BTreeMap<String, (u64, Pending)>,
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

    /// Removes the requests whose frame is number `frame` or later, in issue order.
    pub(crate) fn take_from_frame(&mut self, frame: u64) -> Vec<(String, Pending)> {
        let ids: Vec<String> = self
            .order
            .values()
            .filter(|id| self.by_id.get(*id).is_some_and(|(_, p)| p.frame >= frame))
            .cloned()
            .collect();
        ids.into_iter()
            .filter_map(|id| self.take(&id).map(|p| (id, p)))
            .collect()
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
        p_at(app, 0)
    }

    fn p_at(app: &str, frame: u64) -> Pending {
        Pending {
            app_id: app.into(),
            timer: 0,
            chat_info_of: None,
            frame,
        }
    }

    #[test]
    fn take_from_frame_keeps_earlier_frames() {
        let mut r = PendingRequests::default();
        r.insert("x".into(), p_at("a1", 3));
        r.insert("y".into(), p_at("a2", 5));
        r.insert("z".into(), p_at("a3", 7));
        let ids: Vec<String> = r
            .take_from_frame(5)
            .into_iter()
            .map(|(_, p)| p.app_id)
            .collect();
        assert_eq!(ids, ["a2", "a3"]);
        assert_eq!(r.len(), 1);
        assert!(r.contains("x"));
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
