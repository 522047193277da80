//! The prompt registry (PROTOCOL.md §11.6, vectors rule 6): which of this gateway's
//! prompts still wait for a press, and which were already answered.
//!
//! The connector fans a press out to every gateway of the tenant, so most presses a
//! gateway sees can belong to someone else; the registry decides, without I/O,
//! whether a press is delivered, swallowed, or reported stale.

use serde_json::Value;

use super::lru::BoundedMap;

/// How long a prompt waits when its action has no usable `timeout_s`.
pub const DEFAULT_PROMPT_TIMEOUT_S: u64 = 3600;

/// The shortest and longest a prompt waits (D18): `timeout_s` is clamped to these.
pub const MIN_PROMPT_TIMEOUT_S: u64 = 30;
pub const MAX_PROMPT_TIMEOUT_S: u64 = 86_400;

/// D18: how long a prompt stays pending: `timeout_s` clamped to 30…86400 s;
/// absent or not a finite number → 3600 s.
pub(crate) fn prompt_timeout_ms(timeout_s: Option<&Value>) -> u64 {
    let seconds = timeout_s
        .and_then(Value::as_f64)
        .filter(|s| s.is_finite())
        .map_or(DEFAULT_PROMPT_TIMEOUT_S as f64, |s| {
            s.clamp(MIN_PROMPT_TIMEOUT_S as f64, MAX_PROMPT_TIMEOUT_S as f64)
        });
    (seconds * 1000.0) as u64
}

/// The decision for one press.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Another gateway's prompt (its nonce differs): consumed silently.
    Foreign,
    /// Already answered: consumed silently.
    Answered,
    /// Ours but not pending (unknown, evicted or expired): consumed, `prompt_stale`.
    Stale,
    /// Pending: delivered as a message; the prompt is now answered.
    Deliver,
}

/// Pending prompts (id → expiry, monotonic ms) and the memory of answered ids.
#[derive(Debug)]
pub(crate) struct PromptRegistry {
    nonce: String,
    pending: BoundedMap<String, u64>,
    answered: BoundedMap<String, ()>,
}

impl PromptRegistry {
    pub(crate) fn new(nonce: String, cap_pending: usize, cap_answered: usize) -> Self {
        PromptRegistry {
            nonce,
            pending: BoundedMap::new(cap_pending),
            answered: BoundedMap::new(cap_answered),
        }
    }

    pub(crate) fn sizes(&self) -> (usize, usize) {
        (self.pending.len(), self.answered.len())
    }

    /// Registers the prompt of an `outbound` action when it is one (`op` `prompt`
    /// with a string `prompt_id`): pending until `now + timeout_s`. Expired entries
    /// are purged first, so a full registry only evicts live prompts when it must.
    pub(crate) fn register_action(&mut self, action: &Value, now_ms: u64) {
        if action.get("op").and_then(Value::as_str) != Some("prompt") {
            return;
        }
        let Some(id) = action.get("prompt_id").and_then(Value::as_str) else {
            return;
        };
        let timeout_ms = prompt_timeout_ms(action.get("timeout_s"));
        self.pending.retain(|_, exp| *exp > now_ms);
        self.answered.remove(&id.to_string());
        self.pending
            .insert(id.to_string(), now_ms.saturating_add(timeout_ms));
    }

    /// Judges a press of `prompt_id` at `now_ms` (rule 6 order: foreign, answered,
    /// stale, deliver). A delivered prompt moves to the answered memory.
    pub(crate) fn judge(&mut self, prompt_id: &str, now_ms: u64) -> Verdict {
        if let Some((owner, _)) = prompt_id.split_once('.') {
            if owner != self.nonce {
                return Verdict::Foreign;
            }
        }
        let key = prompt_id.to_string();
        if self.answered.get(&key).is_some() {
            return Verdict::Answered;
        }
        match self.pending.remove(&key) {
            Some(expires) if now_ms < expires => {
                self.answered.insert(key, ());
                Verdict::Deliver
            }
            _ => Verdict::Stale,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prompt(id: &str, t: Value) -> Value {
        json!({"op": "prompt", "prompt_id": id, "timeout_s": t})
    }

    #[test]
    fn verdicts_in_rule_order() {
        let mut r = PromptRegistry::new("n1".into(), 8, 8);
        r.register_action(&prompt("n1.a", json!(60)), 1000);
        r.register_action(&prompt("legacy", json!(null)), 1000);
        r.register_action(&json!({"op": "send", "prompt_id": "n1.x"}), 1000);
        assert_eq!(r.judge("other.a", 2000), Verdict::Foreign);
        assert_eq!(r.judge("n1.x", 2000), Verdict::Stale);
        assert_eq!(r.judge("n1.a", 60_999), Verdict::Deliver);
        assert_eq!(r.judge("n1.a", 61_000), Verdict::Answered);
        assert_eq!(r.judge("legacy", 3_600_999), Verdict::Deliver);
    }

    #[test]
    fn timeouts_clamped_d18() {
        let ms = |v: Value| prompt_timeout_ms(Some(&v));
        assert_eq!(ms(json!(1)), 30_000);
        assert_eq!(ms(json!(-5)), 30_000);
        assert_eq!(ms(json!(90.5)), 90_500);
        assert_eq!(ms(json!(1e9)), 86_400_000);
        assert_eq!(ms(json!("60")), 3_600_000);
        assert_eq!(prompt_timeout_ms(None), 3_600_000);
    }

    #[test]
    fn expiry_and_caps() {
        let mut r = PromptRegistry::new("n".into(), 2, 1);
        r.register_action(&prompt("n.a", json!(30)), 0);
        assert_eq!(
            r.judge("n.a", 30_000),
            Verdict::Stale,
            "expired at the boundary"
        );
        r.register_action(&prompt("n.b", json!(10)), 0);
        r.register_action(&prompt("n.c", json!(10)), 0);
        r.register_action(&prompt("n.d", json!(10)), 0);
        assert_eq!(r.sizes().0, 2);
        assert_eq!(r.judge("n.b", 1), Verdict::Stale, "evicted by the cap");
        assert_eq!(r.judge("n.c", 1), Verdict::Deliver);
        assert_eq!(r.judge("n.d", 1), Verdict::Deliver);
        assert_eq!(r.sizes().1, 1);
        assert_eq!(r.judge("n.d", 1), Verdict::Answered);
        assert_eq!(
            r.judge("n.c", 1),
            Verdict::Stale,
            "forgotten answers are stale"
        );
        r.register_action(&prompt("n.e", json!("soon")), 0);
        assert_eq!(r.judge("n.e", 3_599_999), Verdict::Deliver);
    }
}
