//! GitHub webhooks: checking `X-Hub-Signature-256` and reading the deliveries faseng
//! acts on.
//!
//! Parsing is by hand over `serde_json::Value` rather than through octocrab's webhook
//! models, so that a delivery that cannot be used is refused with the exact reason
//! (`` `deployment.id` is missing ``) in the 400 body, and so that `payload` is kept
//! exactly as sent (hubot-deploy sends an object, its encrypted mode a string).

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

/// Why a delivery's signature was refused; the `Display` text is meant for the 401
/// body and the log, and says what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No signature header: the webhook has no secret on GitHub's side.
    #[error(
        "the X-Hub-Signature-256 header is missing: set the webhook's secret on GitHub to \
         GITHUB_WEBHOOK_SECRET"
    )]
    Missing,
    /// The header is there but not a SHA-256 signature.
    #[error("the X-Hub-Signature-256 header is not `sha256=` and 64 hex digits")]
    Malformed,
    /// The signature is well-formed but wrong: another secret, or a forged or altered body.
    #[error(
        "the X-Hub-Signature-256 signature does not match the body: is GITHUB_WEBHOOK_SECRET \
         the webhook's secret?"
    )]
    Mismatch,
}

/// Checks `X-Hub-Signature-256` (`sha256=<hex>`) over the raw body, in constant time
/// (hmac's `verify_slice`), so that the time taken tells nothing about the right value.
pub fn verify_signature(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?.trim();
    let hex = header
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let expected = decode_hex(hex).ok_or(SignatureError::Malformed)?;
    if expected.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// `sha256=<hex>` of `body` under `secret`: what GitHub sends, for tests and tools.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(secret) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; this arm cannot run.
        Err(_) => return String::new(),
    };
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::from("sha256=");
    for b in digest.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    hex.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// A delivery, by its `X-GitHub-Event`.
// One event per request, moved once: boxing the large variant would buy nothing and
// make every construction and match noisier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `deployment` (action `created`): queue it.
    Deployment(DeploymentEvent),
    /// `ping`: sent when the webhook is set up; answer 200.
    Ping {
        /// GitHub's zen line of the day.
        zen: Option<String>,
        /// The webhook's id on GitHub.
        hook_id: Option<i64>,
    },
    /// Anything else (`deployment_status`, `status`, `push`...): acknowledged, ignored.
    Other {
        /// The `X-GitHub-Event` header value.
        event: String,
    },
}

/// What faseng needs from a `deployment` delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentEvent {
    /// `deployment.id`: the GitHub deployment id.
    pub deployment_id: i64,
    /// `deployment.sha`: the commit to deploy.
    pub sha: String,
    /// `deployment.ref` as the requester wrote it.
    pub git_ref: String,
    /// `deployment.task`; `deploy` when missing or empty.
    pub task: String,
    /// `deployment.environment`.
    pub environment: String,
    /// `deployment.description`.
    pub description: Option<String>,
    /// `deployment.created_at` (RFC 3339), as GitHub wrote it; chima's signed request
    /// must be from about the same moment.
    pub created_at: Option<String>,
    /// As sent: an object (hubot-deploy), a string (hubot-deploy's encrypted mode) or
    /// `{}`. Missing or `null` reads as `{}`.
    pub payload: Value,
    /// `deployment.creator.login` (the sender's login when GitHub sends no creator).
    pub creator: String,
    /// `repository.full_name`.
    pub repository: String,
    /// `repository.clone_url`.
    pub clone_url: String,
    /// Set when the webhook belongs to a GitHub App.
    pub installation_id: Option<i64>,
}

/// What is wrong with a delivery body; the `Display` text is meant for the 400 body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The body does not parse as JSON (a form-encoded webhook, typically).
    #[error("the body is not JSON ({detail}); set the webhook's content type to application/json")]
    NotJson {
        /// The parser's complaint, or `it is form-encoded`.
        detail: String,
    },
    /// The body is JSON but not an object.
    #[error("the body is JSON but not an object (it is {found})")]
    NotObject {
        /// What it is instead, e.g. `an array`.
        found: &'static str,
    },
    /// A field faseng needs is absent or `null`.
    #[error("`{field}` is missing")]
    Missing {
        /// Its path, e.g. `deployment.sha`.
        field: String,
    },
    /// A field has the wrong JSON type.
    #[error("`{field}` is not {expected}")]
    WrongType {
        /// Its path, e.g. `deployment.id`.
        field: String,
        /// What it should be, e.g. `an integer`.
        expected: &'static str,
    },
}

/// The `X-GitHub-Event` of a deployment: faseng's work
/// (<https://docs.github.com/en/webhooks/webhook-events-and-payloads#deployment>).
pub const DEPLOYMENT_EVENT: &str = "deployment";

/// The `X-GitHub-Event` GitHub sends when a webhook is created; no subscription
/// needed (<https://docs.github.com/en/webhooks/webhook-events-and-payloads#ping>).
pub const PING_EVENT: &str = "ping";

/// Parses a delivery by its `X-GitHub-Event` header value. Every event's body must be
/// a JSON object; `deployment` and `ping` are read, others only named.
pub fn parse_event(event: &str, body: &[u8]) -> Result<Event, EventError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| EventError::NotJson {
        detail: if body.starts_with(b"payload=") {
            "it is form-encoded".to_string()
        } else {
            e.to_string()
        },
    })?;
    let Value::Object(root) = value else {
        return Err(EventError::NotObject {
            found: kind(&value),
        });
    };
    match event.trim() {
        DEPLOYMENT_EVENT => deployment(&root).map(Event::Deployment),
        PING_EVENT => Ok(Event::Ping {
            zen: optional_str(&root, "zen", "zen")?,
            hook_id: match root.get("hook_id") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_i64().ok_or(EventError::WrongType {
                    field: "hook_id".to_string(),
                    expected: "an integer",
                })?),
            },
        }),
        other => Ok(Event::Other {
            event: other.to_string(),
        }),
    }
}

fn deployment(root: &Map<String, Value>) -> Result<DeploymentEvent, EventError> {
    let d = object(root, "deployment", "deployment")?;
    let repo = object(root, "repository", "repository")?;
    let deployment_id = match d.get("id") {
        None | Some(Value::Null) => return Err(missing("deployment.id")),
        Some(v) => v.as_i64().ok_or(EventError::WrongType {
            field: "deployment.id".to_string(),
            expected: "an integer",
        })?,
    };
    let creator = match d.get("creator").and_then(Value::as_object) {
        Some(c) => Some(string(c, "login", "deployment.creator.login")?),
        None => None,
    };
    let creator = match creator {
        Some(login) => login,
        None => match root.get("sender").and_then(Value::as_object) {
            Some(sender) => string(sender, "login", "sender.login")?,
            None => return Err(missing("deployment.creator.login")),
        },
    };
    let installation_id = match root.get("installation") {
        None | Some(Value::Null) => None,
        Some(Value::Object(inst)) => match inst.get("id") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_i64().ok_or(EventError::WrongType {
                field: "installation.id".to_string(),
                expected: "an integer",
            })?),
        },
        Some(_) => {
            return Err(EventError::WrongType {
                field: "installation".to_string(),
                expected: "an object",
            });
        }
    };
    Ok(DeploymentEvent {
        deployment_id,
        sha: string(d, "sha", "deployment.sha")?,
        git_ref: string(d, "ref", "deployment.ref")?,
        task: optional_str(d, "task", "deployment.task")?
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "deploy".to_string()),
        environment: string(d, "environment", "deployment.environment")?,
        description: optional_str(d, "description", "deployment.description")?,
        created_at: optional_str(d, "created_at", "deployment.created_at")?,
        payload: match d.get("payload") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(p) => p.clone(),
        },
        creator,
        repository: string(repo, "full_name", "repository.full_name")?,
        clone_url: string(repo, "clone_url", "repository.clone_url")?,
        installation_id,
    })
}

fn missing(field: &str) -> EventError {
    EventError::Missing {
        field: field.to_string(),
    }
}

fn object<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<&'a Map<String, Value>, EventError> {
    match map.get(key) {
        None | Some(Value::Null) => Err(missing(field)),
        Some(Value::Object(o)) => Ok(o),
        Some(_) => Err(EventError::WrongType {
            field: field.to_string(),
            expected: "an object",
        }),
    }
}

fn string(map: &Map<String, Value>, key: &str, field: &str) -> Result<String, EventError> {
    optional_str(map, key, field)?.ok_or_else(|| missing(field))
}

fn optional_str(
    map: &Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<String>, EventError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(EventError::WrongType {
            field: field.to_string(),
            expected: "a string",
        }),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_decoding() {
        assert_eq!(decode_hex("00ffA0"), Some(vec![0, 255, 160]));
        assert_eq!(decode_hex("0"), None);
        assert_eq!(decode_hex("zz"), None);
        assert_eq!(decode_hex(""), Some(vec![]));
    }

    #[test]
    fn sign_and_verify_agree() {
        // GitHub's documented example: secret "It's a Secret to Everybody", body
        // "Hello, World!".
        let sig = sign(b"It's a Secret to Everybody", b"Hello, World!");
        assert_eq!(
            sig,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        assert_eq!(
            verify_signature(b"It's a Secret to Everybody", b"Hello, World!", Some(&sig)),
            Ok(())
        );
        let upper = sig.replace("sha256=", "").to_ascii_uppercase();
        assert_eq!(
            verify_signature(
                b"It's a Secret to Everybody",
                b"Hello, World!",
                Some(&format!("sha256={upper}"))
            ),
            Ok(())
        );
    }
}
