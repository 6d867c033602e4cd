//! chima's signed request: who asked, where, for what, and when, under a key that
//! chima and faseng share.
//!
//! A GitHub Deployment can be created by anyone with write access to the repository,
//! with any payload. The only way faseng can tell that a chat user asked (and which
//! one) is a signature it can check: chima signs the request it puts in the payload,
//! faseng verifies it and that it names the deployment's own app, environment, ref and
//! task. A signature copied from another deployment fails that comparison, is too old
//! ([`MAX_REQUEST_AGE_SECS`]), or carries a nonce faseng has already used.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The version of [`ChimaRequest`]'s signed form; a change of fields changes it.
pub const REQUEST_VERSION: u32 = 1;

/// How far apart chima's `issued_at` and GitHub's `deployment.created_at` may be
/// (either way, for clock skew). A signature replayed later than this counts for
/// nothing; a genuine one arrives within seconds.
pub const MAX_REQUEST_AGE_SECS: i64 = 300;

/// Domain separation: a signature over a request is never valid as anything else.
const CONTEXT: &[u8] = b"chima-request-v1\n";

/// What chima vouches for. Field order is the signed form's order: the signature is
/// over `serde_json::to_vec` of this struct, which serde writes in declaration order,
/// so both sides compute it from the same type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChimaRequest {
    /// [`REQUEST_VERSION`].
    pub version: u32,
    /// Random, single use: faseng refuses a second deployment carrying it.
    pub nonce: String,
    /// Unix seconds when chima signed it.
    pub issued_at: i64,
    /// `slack`, `shell`, or `auto-deploy` (faseng's own requests).
    pub adapter: String,
    /// The chat user's id (Slack `U...`), as the transport verified it.
    pub user_id: Option<String>,
    /// The chat user's name, for people to read.
    pub user_name: String,
    /// The room (channel id) the command was typed in.
    pub room: Option<String>,
    /// The thread to answer in.
    pub thread_ts: Option<String>,
    /// The app's name in app.json.
    pub app: String,
    /// The canonical environment (aliases applied).
    pub environment: String,
    /// The ref the deployment was created for.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// `deploy`, `deploy:migrate`, ...
    pub task: String,
    /// The host filter, if any.
    pub hosts: Option<String>,
    /// Break-glass (`deploy!!`): the reason the chat user gave. Signed with the rest,
    /// so that faseng lets a deployment pass a window or a freeze only when chima says
    /// so; left out of the signed form when there is none, so that every other request
    /// signs exactly as version 1 always did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency: Option<String>,
}

/// A request with its signature: `payload.chima`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRequest {
    /// What was signed.
    pub request: ChimaRequest,
    /// `hmac-sha256=<hex>` over the request.
    pub signature: String,
}

/// The shared key. Either `CHIMA_SIGNING_KEY` itself, or a key derived from
/// `FASENG_API_TOKEN` (which both sides hold already), so that one secret suffices.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

/// Why a signed request does not count. The text goes into the deployment's log and
/// status, so it says what to check; it never contains the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// faseng has no key to check with.
    #[error(
        "faseng has no signing key (CHIMA_SIGNING_KEY or FASENG_API_TOKEN) to check chima's signature with"
    )]
    NoKey,
    /// The signature is not ours.
    #[error(
        "chima's signature does not verify: is CHIMA_SIGNING_KEY (or FASENG_API_TOKEN) the same for chima and faseng?"
    )]
    BadSignature,
    /// Another version of the signed form.
    #[error("chima's request is version {0}; this faseng reads version {REQUEST_VERSION}")]
    Version(u32),
    /// The request names something other than the deployment it rides on.
    #[error("chima's request is for {field} `{signed}`, but the deployment is for `{actual}`")]
    Mismatch {
        /// Which field differs.
        field: &'static str,
        /// What chima signed.
        signed: String,
        /// What the deployment says.
        actual: String,
    },
    /// Signed too long before (or after) the deployment was created.
    #[error(
        "chima signed this request {0} s away from the deployment's creation (at most {MAX_REQUEST_AGE_SECS} s): a copied signature counts for nothing"
    )]
    Stale(i64),
    /// The nonce was seen on another deployment.
    #[error("chima's request was already used by another deployment")]
    Replayed,
}

impl SigningKey {
    /// `CHIMA_SIGNING_KEY` as given.
    pub fn new(secret: &[u8]) -> SigningKey {
        SigningKey(secret.to_vec())
    }

    /// A key derived from `FASENG_API_TOKEN`: HMAC-SHA256(token, a fixed label), so the
    /// token itself is never used as a signing key and a signature never reveals it.
    pub fn derived_from_api_token(token: &[u8]) -> SigningKey {
        SigningKey(hmac(token, &[b"chima-signing-key-v1"]))
    }

    /// Signs `request`.
    pub fn sign(&self, request: ChimaRequest) -> SignedRequest {
        let signature = format!(
            "hmac-sha256={}",
            hex(&hmac(&self.0, &[CONTEXT, &body(&request)]))
        );
        SignedRequest { request, signature }
    }

    /// Checks the signature only (constant time); the caller compares the fields.
    pub fn verify(&self, signed: &SignedRequest) -> Result<(), VerifyError> {
        if signed.request.version != REQUEST_VERSION {
            return Err(VerifyError::Version(signed.request.version));
        }
        let given = signed
            .signature
            .strip_prefix("hmac-sha256=")
            .and_then(unhex)
            .ok_or(VerifyError::BadSignature)?;
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .map_err(|_| VerifyError::BadSignature)?;
        mac.update(CONTEXT);
        mac.update(&body(&signed.request));
        mac.verify_slice(&given)
            .map_err(|_| VerifyError::BadSignature)
    }
}

impl SignedRequest {
    /// Checks that the request names this deployment: app, environment, ref and task
    /// equal, and signed within [`MAX_REQUEST_AGE_SECS`] of `created_at` (unix seconds,
    /// GitHub's `deployment.created_at`; `None` skips the time check, for deployments
    /// that do not come from GitHub).
    pub fn check_matches(
        &self,
        app: &str,
        environment: &str,
        git_ref: &str,
        task: &str,
        created_at: Option<i64>,
    ) -> Result<(), VerifyError> {
        let r = &self.request;
        for (field, signed, actual) in [
            ("app", &r.app, app),
            ("environment", &r.environment, environment),
            ("ref", &r.git_ref, git_ref),
            ("task", &r.task, task),
        ] {
            if signed != actual {
                return Err(VerifyError::Mismatch {
                    field,
                    signed: signed.chars().take(100).collect(),
                    actual: actual.chars().take(100).collect(),
                });
            }
        }
        if let Some(created) = created_at {
            let skew = created - r.issued_at;
            if skew.abs() > MAX_REQUEST_AGE_SECS {
                return Err(VerifyError::Stale(skew));
            }
        }
        Ok(())
    }
}

/// A random nonce (128 bits, hex) from the kernel's generator.
pub fn new_nonce() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        // No /dev/urandom (a very bare chroot): time, pid and a counter, hashed. Unique
        // is what a nonce needs; it is not a secret.
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let seed = format!(
            "{:?}-{}-{}",
            std::time::SystemTime::now(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        bytes.copy_from_slice(&hmac(seed.as_bytes(), &[b"nonce"])[..16]);
    }
    hex(&bytes)
}

fn body(request: &ChimaRequest) -> Vec<u8> {
    // Serialising a struct of strings and integers cannot fail.
    serde_json::to_vec(request).unwrap_or_default()
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        // HMAC takes keys of any length: this arm cannot run.
        return Vec::new();
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ChimaRequest {
        ChimaRequest {
            version: REQUEST_VERSION,
            nonce: new_nonce(),
            issued_at: 1_700_000_000,
            adapter: "slack".into(),
            user_id: Some("U024BE7LH".into()),
            user_name: "alice".into(),
            room: Some("C0OPS".into()),
            thread_ts: Some("1700000000.000100".into()),
            app: "web".into(),
            environment: "production".into(),
            git_ref: "main".into(),
            task: "deploy".into(),
            hosts: None,
            emergency: None,
        }
    }

    #[test]
    fn a_signature_verifies_under_the_same_key_only() {
        let key = SigningKey::new(b"a-signing-key-of-some-length");
        let signed = key.sign(request());
        assert_eq!(key.verify(&signed), Ok(()));
        let other = SigningKey::new(b"another-signing-key-entirely");
        assert_eq!(other.verify(&signed), Err(VerifyError::BadSignature));
    }

    #[test]
    fn any_changed_field_breaks_the_signature() {
        let key = SigningKey::derived_from_api_token(b"faseng-api-token-for-tests");
        let signed = key.sign(request());
        let mut changed = signed.clone();
        changed.request.user_name = "mallory".into();
        assert_eq!(key.verify(&changed), Err(VerifyError::BadSignature));
        let mut changed = signed.clone();
        changed.request.environment = "staging".into();
        assert_eq!(key.verify(&changed), Err(VerifyError::BadSignature));
        let mut changed = signed;
        changed.signature = "hmac-sha256=zz".into();
        assert_eq!(key.verify(&changed), Err(VerifyError::BadSignature));
    }

    #[test]
    fn the_signed_form_survives_a_json_round_trip() {
        let key = SigningKey::new(b"a-signing-key-of-some-length");
        let signed = key.sign(request());
        let text = serde_json::to_string(&signed).unwrap();
        let back: SignedRequest = serde_json::from_str(&text).unwrap();
        assert_eq!(key.verify(&back), Ok(()));
    }

    #[test]
    fn the_derived_key_is_not_the_token() {
        let derived = SigningKey::derived_from_api_token(b"token-token-token");
        assert_ne!(derived.0, b"token-token-token".to_vec());
        assert_eq!(derived.0.len(), 32);
        assert!(!format!("{derived:?}").contains("token"));
    }

    #[test]
    fn the_request_must_name_the_deployment() {
        let signed = SigningKey::new(b"k".repeat(20).as_slice()).sign(request());
        let created = Some(1_700_000_010);
        assert_eq!(
            signed.check_matches("web", "production", "main", "deploy", created),
            Ok(())
        );
        assert!(matches!(
            signed.check_matches("web", "staging", "main", "deploy", created),
            Err(VerifyError::Mismatch {
                field: "environment",
                ..
            })
        ));
        assert!(matches!(
            signed.check_matches("web", "production", "evil", "deploy", created),
            Err(VerifyError::Mismatch { field: "ref", .. })
        ));
        assert!(matches!(
            signed.check_matches("web", "production", "main", "deploy:unlock", created),
            Err(VerifyError::Mismatch { field: "task", .. })
        ));
        assert_eq!(
            signed.check_matches("web", "production", "main", "deploy", Some(1_700_003_600)),
            Err(VerifyError::Stale(3600))
        );
    }

    #[test]
    fn unknown_fields_and_versions_are_refused() {
        let key = SigningKey::new(b"a-signing-key-of-some-length");
        let mut v = serde_json::to_value(key.sign(request())).unwrap();
        v["request"]["admin"] = serde_json::json!(true);
        assert!(serde_json::from_value::<SignedRequest>(v).is_err());
        let mut r = request();
        r.version = 2;
        let signed = key.sign(r);
        assert_eq!(key.verify(&signed), Err(VerifyError::Version(2)));
    }

    #[test]
    fn break_glass_is_signed_and_cannot_be_added_or_changed() {
        let key = SigningKey::new(b"a-signing-key-of-some-length");
        let plain = key.sign(request());
        // A request without it signs as before: the field is not in the signed form.
        assert!(!serde_json::to_string(&plain).unwrap().contains("emergency"));
        let mut added = plain.clone();
        added.request.emergency = Some("let me through".into());
        assert_eq!(key.verify(&added), Err(VerifyError::BadSignature));
        let mut r = request();
        r.emergency = Some("db down".into());
        let glass = key.sign(r);
        assert_eq!(key.verify(&glass), Ok(()));
        let mut changed = glass.clone();
        changed.request.emergency = Some("other".into());
        assert_eq!(key.verify(&changed), Err(VerifyError::BadSignature));
        let mut removed = glass;
        removed.request.emergency = None;
        assert_eq!(key.verify(&removed), Err(VerifyError::BadSignature));
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(new_nonce(), new_nonce());
        assert_eq!(new_nonce().len(), 32);
    }
}
