//! Webhook signatures, in the way Stripe documents them.
//!
//! Each delivery carries `Tally-Signature: t=<unix seconds>,v1=<hex>`, where the hex is
//! HMAC-SHA256, keyed with the endpoint's secret, over `"<t>.<body>"`. A receiver recomputes it
//! over the raw body, compares in constant time, and refuses a timestamp too far from its clock,
//! which stops a captured delivery from being replayed later. Each attempt is signed afresh.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

/// The header that carries the signature.
pub const HEADER: &str = "Tally-Signature";
/// The prefix of every secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// How far a delivery's timestamp may be from the receiver's clock, by default.
pub const TOLERANCE_SECONDS: i64 = 300;
/// The longest signature header `verify` reads.
pub const HEADER_LEN_MAX: usize = 1024;

type HmacSha256 = Hmac<Sha256>;

/// A new secret: `whsec_` and 32 random bytes in hex.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system provides randomness");
    format!("{SECRET_PREFIX}{}", hex::encode(bytes))
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `Tally-Signature` header of `body` at `timestamp` (Unix seconds).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", hex::encode(mac(secret, timestamp, body).finalize().into_bytes()))
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignatureError {
    #[error("the signature header is malformed")]
    Malformed,
    #[error("no signature matches the body")]
    Mismatch,
    #[error("the timestamp is {0} s away from now, beyond the tolerance")]
    Stale(i64),
}

impl SignatureError {
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Malformed => "signature_malformed",
            SignatureError::Mismatch => "signature_mismatch",
            SignatureError::Stale(_) => "signature_stale",
        }
    }
}

/// Checks a delivery as a receiver would: some `v1` in `header` is the HMAC of `body` at the
/// header's `t`, and `t` is within `tolerance_seconds` of `now` (Unix seconds).
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64, tolerance_seconds: i64) -> Result<(), SignatureError> {
    if header.len() > HEADER_LEN_MAX {
        return Err(SignatureError::Malformed);
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = Some(value.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", value)) => signatures.push(hex::decode(value).map_err(|_| SignatureError::Malformed)?),
            Some(_) => {}
            None => return Err(SignatureError::Malformed),
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let matched = signatures.iter().any(|signature| mac(secret, timestamp, body).verify_slice(signature).is_ok());
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    let skew = now.saturating_sub(timestamp).saturating_abs();
    if skew > tolerance_seconds {
        return Err(SignatureError::Stale(skew));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_body_verifies() {
        let secret = new_secret();
        assert!(secret.starts_with(SECRET_PREFIX) && secret.len() == SECRET_PREFIX.len() + 64);
        let header = sign(&secret, 1_700_000_000, b"{\"seq\":1}");
        assert_eq!(verify(&secret, &header, b"{\"seq\":1}", 1_700_000_010, TOLERANCE_SECONDS), Ok(()));
    }

    #[test]
    fn a_changed_body_a_wrong_secret_or_an_old_timestamp_is_refused() {
        let secret = new_secret();
        let header = sign(&secret, 1_700_000_000, b"{\"seq\":1}");
        assert_eq!(verify(&secret, &header, b"{\"seq\":2}", 1_700_000_000, 300), Err(SignatureError::Mismatch));
        assert_eq!(verify(&new_secret(), &header, b"{\"seq\":1}", 1_700_000_000, 300), Err(SignatureError::Mismatch));
        assert_eq!(verify(&secret, &header, b"{\"seq\":1}", 1_700_000_301, 300), Err(SignatureError::Stale(301)));
        // A replay with a fresh timestamp but the old signature does not match.
        let replayed = header.replace("t=1700000000", "t=1700000400");
        assert_eq!(verify(&secret, &replayed, b"{\"seq\":1}", 1_700_000_400, 300), Err(SignatureError::Mismatch));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let secret = new_secret();
        for header in ["", "t=1", "v1=00", "t=x,v1=00", "t=1,v1=zz", "garbage"] {
            assert_eq!(verify(&secret, header, b"", 1, 300), Err(SignatureError::Malformed), "{header}");
        }
    }

    #[test]
    fn the_signature_is_stripe_s_construction() {
        // HMAC-SHA256("whsec_test", "1.{}") computed independently (Python's hmac module).
        assert_eq!(
            sign("whsec_test", 1, b"{}"),
            "t=1,v1=7500d5d4be4b3ef07af1fe56f7d522d135cdaa7530de557e67cc1049c52de094"
        );
    }
}
