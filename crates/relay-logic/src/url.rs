//! Dial and provision URL normalisation (PROTOCOL.md §1.1, §1.2).
//!
//! Pure text rules, exactly as the reference applies them: nothing is parsed as a
//! URL, so a query string or an upper-case scheme is carried along untouched.

use crate::json::py_strip;

/// The WebSocket URL to dial for a configured connector base URL.
pub fn dial_url(base: &str) -> String {
    let s = py_strip(base);
    let mut url = if let Some(rest) = s.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = s.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        s.to_string()
    };
    let trimmed = url.trim_end_matches('/').len();
    url.truncate(trimmed);
    if !url.ends_with("/relay") {
        url.push_str("/relay");
    }
    url
}

/// The self-provisioning endpoint (`POST`) for a configured base URL.
pub fn provision_url(base: &str) -> String {
    let s = base.trim_end_matches('/');
    let mut url = if let Some(rest) = s.strip_prefix("ws://") {
        format!("http://{rest}")
    } else if let Some(rest) = s.strip_prefix("wss://") {
        format!("https://{rest}")
    } else {
        s.to_string()
    };
    if url.ends_with("/relay") {
        url.truncate(url.len() - "/relay".len());
    }
    url.push_str("/relay/provision");
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_is_idempotent() {
        let once = dial_url(" https://h/x/ ");
        assert_eq!(once, "wss://h/x/relay");
        assert_eq!(dial_url(&once), once);
    }

    #[test]
    fn provision_strips_one_relay() {
        assert_eq!(
            provision_url("wss://h/relay/relay"),
            "https://h/relay/relay/provision"
        );
    }
}
