//! Slack's request signatures: `X-Slack-Signature: v0=<hex>`, the HMAC-SHA256 with the
//! app's signing secret of `v0:{X-Slack-Request-Timestamp}:{raw body}`, and a timestamp
//! within five minutes of now (so that a captured request cannot be replayed later).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::SignatureError;

/// How far a request's timestamp may be from now, either way.
pub const MAX_CLOCK_SKEW_SECS: i64 = 5 * 60;

/// Checks a Slack request signature, in constant time. `now` is the current time in
/// Unix seconds (a parameter so that recorded examples can be checked).
pub fn verify_signature(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    signature: &str,
    now: i64,
) -> Result<(), SignatureError> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp(timestamp.chars().take(40).collect()))?;
    let age = now.saturating_sub(ts);
    if age.saturating_abs() > MAX_CLOCK_SKEW_SECS {
        return Err(SignatureError::Stale { age_secs: age });
    }
    let hex = signature
        .trim()
        .strip_prefix("v0=")
        .ok_or(SignatureError::Malformed)?;
    let expected = decode_hex(hex).ok_or(SignatureError::Malformed)?;
    if expected.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    let mut mac = new_mac(secret);
    mac.update(b"v0:");
    mac.update(timestamp.trim().as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// The `X-Slack-Signature` value Slack would send for this body and timestamp (for
/// tests and for tools that replay requests).
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = new_mac(secret);
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(3 + digest.len() * 2);
    out.push_str("v0=");
    for byte in digest.iter() {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn new_mac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; this cannot fail.
    match <Hmac<Sha256> as KeyInit>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-signing-secret";

    #[test]
    fn a_signature_we_made_verifies() {
        let body = b"token=x&text=deploy+web";
        let sig = sign(SECRET, "1700000000", body);
        assert!(sig.starts_with("v0=") && sig.len() == 67, "{sig}");
        assert_eq!(
            verify_signature(SECRET, "1700000000", body, &sig, 1_700_000_000),
            Ok(())
        );
        // Upper-case hex is the same signature.
        let upper = format!("v0={}", sig[3..].to_uppercase());
        assert_eq!(
            verify_signature(SECRET, "1700000000", body, &upper, 1_700_000_100),
            Ok(())
        );
    }

    #[test]
    fn wrong_secret_body_or_timestamp_is_a_mismatch() {
        let body = b"{\"type\":\"event_callback\"}";
        let sig = sign(SECRET, "1700000000", body);
        let now = 1_700_000_000;
        assert_eq!(
            verify_signature(b"other", "1700000000", body, &sig, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(SECRET, "1700000000", b"{}", &sig, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(SECRET, "1700000001", body, &sig, now),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_five_minute_window_holds_both_ways() {
        let body = b"x";
        let sig = sign(SECRET, "1700000000", body);
        assert_eq!(
            verify_signature(SECRET, "1700000000", body, &sig, 1_700_000_300),
            Ok(())
        );
        assert_eq!(
            verify_signature(SECRET, "1700000000", body, &sig, 1_700_000_301),
            Err(SignatureError::Stale { age_secs: 301 })
        );
        assert_eq!(
            verify_signature(SECRET, "1700000000", body, &sig, 1_699_999_600),
            Err(SignatureError::Stale { age_secs: -400 })
        );
    }

    #[test]
    fn malformed_input_is_refused() {
        let now = 1_700_000_000;
        assert_eq!(
            verify_signature(SECRET, "soon", b"x", "v0=00", now),
            Err(SignatureError::BadTimestamp("soon".to_owned()))
        );
        for bad in [
            "",
            "v1=abcd",
            "v0=xyz",
            "v0=abc",
            "v0=abcd",
            "a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        ] {
            assert_eq!(
                verify_signature(SECRET, "1700000000", b"x", bad, now),
                Err(SignatureError::Malformed),
                "{bad:?}"
            );
        }
    }
}
