//! Discord interaction (a passthrough forward's body) → MessageEvent
//! (PROTOCOL.md §11, variant C as fixed by D1, D3, D6, D13).

use crate::event::MessageEvent;
use crate::forward::Forward;

/// Why a forward did not become a message; logged, and acked at once when buffered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub reason: String,
}

/// Converts a forward; `Err(Dropped)` for non-Discord platforms, bodies that are not
/// UTF-8 JSON objects, and interaction types other than 2, 3 and 5 (D13).
pub fn interaction_to_event(forward: &Forward) -> Result<MessageEvent, Dropped> {
    let _ = forward;
    todo!("discord::interaction_to_event")
}
