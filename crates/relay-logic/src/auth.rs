//! The upgrade token (PROTOCOL.md §2): `base64url_nopad(id:exp:hex(hmac))`.
//!
//! Minted inside the component so every host presents byte-identical tokens; the
//! secret never leaves this module except as the HMAC it keys.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The reference's default token lifetime.
pub const DEFAULT_TTL_SECONDS: i64 = 300;

/// Lower-case hex HMAC-SHA256 of `payload` keyed with `secret`.
pub fn sign(payload: &str, secret: &str) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(payload.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// The bearer token; `exp` is `now + ttl` for a positive TTL, else `0` (never).
pub fn upgrade_token(gateway_id: &str, secret: &str, ttl_seconds: i64, now_unix_s: i64) -> String {
    let exp = if ttl_seconds > 0 {
        now_unix_s.saturating_add(ttl_seconds)
    } else {
        0
    };
    let payload = format!("{gateway_id}:{exp}");
    let sig = sign(&payload, secret);
    URL_SAFE_NO_PAD.encode(format!("{payload}:{sig}"))
}

/// Whether credentials are usable for the upgrade: both non-empty (the reference
/// checks truthiness of the stripped values).
pub fn has_credentials(gateway_id: Option<&str>, secret: Option<&str>) -> bool {
    matches!((gateway_id, secret), (Some(g), Some(s)) if !g.trim().is_empty() && !s.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_matches_reference_vector() {
        assert_eq!(
            sign("gw:0", "k"),
            "211588a97b7c36e677fbe80ed58eacefe36bbc685eee199222e3a5ae2f5bc636"
        );
    }

    #[test]
    fn token_carries_expiry() {
        let t = upgrade_token("g", "s", 10, 100);
        let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(t).unwrap()).unwrap();
        assert!(raw.starts_with("g:110:"));
    }
}
