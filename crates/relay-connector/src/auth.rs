//! Connector-side check of the upgrade token (PROTOCOL.md §2).
//!
//! The reference leaves the verify rules open (O3, O4); the emulator pins them so
//! gateway tests have something definite to fail against:
//! - header `Authorization: Bearer <token>` (scheme case-insensitive);
//! - token = base64url of `<gateway_id>:<exp>:<hex sig>`, padding optional, split
//!   from the right so the gateway id may itself contain `:`;
//! - `sig` must equal `relay_logic::auth::sign("<gateway_id>:<exp>", secret)` for
//!   one of the configured (current or rotated) secrets, compared in constant time;
//! - `exp` is decimal digits; `0` never expires, otherwise `exp + skew >= now`.
//!
//! A bad signature or shape is `unauthorized`; a good signature past its expiry is
//! `expired` (the gateway reconnects normally on that reason).

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

/// Close reason for a token that is missing, malformed or signed with an unknown secret.
pub const UNAUTHORIZED: &str = "unauthorized";
/// Close reason for a well-signed token whose expiry has passed.
pub const EXPIRED: &str = "expired";
/// The close code the connector uses for every authentication failure.
pub const CLOSE_UNAUTHORIZED: u16 = 4401;

/// A token that passed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The gateway id the token was minted for.
    pub gateway_id: String,
    /// Its expiry (unix seconds, `0` = never).
    pub exp: u64,
}

/// Why a token was refused; `reason` is the close reason sent with code 4401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// [`UNAUTHORIZED`] or [`EXPIRED`].
    pub reason: &'static str,
    /// Human-readable cause, for the report only (never sent to the gateway).
    pub detail: String,
    /// The gateway id when the token could be parsed that far.
    pub gateway_id: Option<String>,
}

impl Rejection {
    fn unauthorized(detail: impl Into<String>, gateway_id: Option<String>) -> Self {
        Rejection {
            reason: UNAUTHORIZED,
            detail: detail.into(),
            gateway_id,
        }
    }
}

const URL_SAFE_ANY_PAD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Verifies the value of an `Authorization` header (`None` when it was absent).
pub fn verify_header(
    header: Option<&str>,
    secrets: &[String],
    now_unix_s: u64,
    skew_s: u64,
) -> Result<Verified, Rejection> {
    let Some(header) = header else {
        return Err(Rejection::unauthorized("no Authorization header", None));
    };
    let header = header.trim();
    let token = match header.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => return Err(Rejection::unauthorized("not a Bearer credential", None)),
    };
    verify_token(token, secrets, now_unix_s, skew_s)
}

/// Verifies a bare token against the configured secrets.
pub fn verify_token(
    token: &str,
    secrets: &[String],
    now_unix_s: u64,
    skew_s: u64,
) -> Result<Verified, Rejection> {
    let raw = URL_SAFE_ANY_PAD
        .decode(token.as_bytes())
        .map_err(|e| Rejection::unauthorized(format!("token is not base64url: {e}"), None))?;
    let text =
        String::from_utf8(raw).map_err(|_| Rejection::unauthorized("token is not UTF-8", None))?;
    let mut parts = text.rsplitn(3, ':');
    let (sig, exp_text, gateway_id) = match (parts.next(), parts.next(), parts.next()) {
        (Some(sig), Some(exp), Some(id)) => (sig, exp, id),
        _ => {
            return Err(Rejection::unauthorized(
                "token has fewer than 3 fields",
                None,
            ))
        }
    };
    let id = Some(gateway_id.to_owned());
    if gateway_id.is_empty() {
        return Err(Rejection::unauthorized("empty gateway id", None));
    }
    if exp_text.is_empty() || !exp_text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Rejection::unauthorized("exp is not a decimal integer", id));
    }
    let Ok(exp) = exp_text.parse::<u64>() else {
        return Err(Rejection::unauthorized("exp out of range", id));
    };
    let payload = format!("{gateway_id}:{exp_text}");
    let signed = secrets.iter().any(|secret| {
        ct_eq(
            relay_logic::auth::sign(&payload, secret).as_bytes(),
            sig.as_bytes(),
        )
    });
    if !signed {
        return Err(Rejection::unauthorized(
            "signature matches no configured secret",
            id,
        ));
    }
    if exp != 0 && exp.saturating_add(skew_s) < now_unix_s {
        return Err(Rejection {
            reason: EXPIRED,
            detail: format!("token expired at {exp}, now {now_unix_s}"),
            gateway_id: id,
        });
    }
    Ok(Verified {
        gateway_id: gateway_id.to_owned(),
        exp,
    })
}

/// Constant-time equality, so the emulator does not model a timing oracle.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_logic::auth::upgrade_token;

    fn secrets() -> Vec<String> {
        vec!["old".into(), "s3cret".into()]
    }

    #[test]
    fn accepts_any_configured_secret_and_colon_ids() {
        let t = upgrade_token("gw:a:b", "s3cret", 300, 1000);
        let v = verify_token(&t, &secrets(), 1100, 0).unwrap();
        assert_eq!(v.gateway_id, "gw:a:b");
        assert_eq!(v.exp, 1300);
        let never = upgrade_token("gw", "old", 0, 1000);
        assert!(verify_token(&never, &secrets(), u64::MAX, 0).is_ok());
    }

    #[test]
    fn expiry_is_inclusive_and_reported_as_expired() {
        let t = upgrade_token("gw", "s3cret", 10, 1000);
        assert!(verify_token(&t, &secrets(), 1010, 0).is_ok());
        let e = verify_token(&t, &secrets(), 1011, 0).unwrap_err();
        assert_eq!(e.reason, EXPIRED);
        assert!(verify_token(&t, &secrets(), 1011, 1).is_ok());
    }

    #[test]
    fn bad_tokens_are_unauthorized() {
        let wrong = upgrade_token("gw", "nope", 0, 0);
        assert_eq!(
            verify_token(&wrong, &secrets(), 0, 0).unwrap_err().reason,
            UNAUTHORIZED
        );
        for bad in ["", "!!!", "Z3c", "Z3c6MTIzOg"] {
            assert_eq!(
                verify_token(bad, &secrets(), 0, 0).unwrap_err().reason,
                UNAUTHORIZED
            );
        }
        assert!(verify_header(None, &secrets(), 0, 0).is_err());
        assert!(verify_header(Some("Basic abc"), &secrets(), 0, 0).is_err());
        let good = upgrade_token("gw", "s3cret", 0, 0);
        assert!(verify_header(Some(&format!("bearer {good}")), &secrets(), 0, 0).is_ok());
    }
}
