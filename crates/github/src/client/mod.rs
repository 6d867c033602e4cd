//! The transport under every call: octocrab's HTTP stack, our credentials, retries
//! with backoff, rate limits, and turning GitHub's refusals into errors that say what
//! to fix.
//!
//! Why not octocrab's own auth and retry layers: its retry layer cannot tell a rate
//! limit that lifts in two seconds from one that lifts in forty minutes (the status
//! sender must reschedule for the latter rather than hold a worker), its App mode
//! targets one installation per client while a faseng serves many repositories, and
//! its personal-token mode cannot hand the token to `git clone`. So octocrab runs
//! unauthenticated, with retries off, and the `Authorization` header is set here.
//!
//! This module holds what a call is (`Call`, `As`, `Needs`), the retry policy and
//! the write lanes; `transport` sends calls, `reply` reads GitHub's answers and
//! refusals.

mod reply;
mod transport;

pub(crate) use reply::{Reply, refusal};
pub(crate) use transport::{Transport, chain};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use serde_json::Value;

/// How hard a call tries before it reports [`GitHubError::Unavailable`](crate::GitHubError::Unavailable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per call, the first included (5xx, network errors, rate limits).
    pub attempts: u32,
    /// Wait before the second attempt after a 5xx or network error; doubled each time.
    pub base_delay: Duration,
    /// The longest rate-limit wait done inside a call. A longer one ends the call with
    /// `Unavailable` at once: a chat reply should not hang for minutes, and the status
    /// sender reschedules for the reset instead.
    pub max_inline_wait: Duration,
    /// Per attempt, from sending to the last byte of the answer.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(500),
            max_inline_wait: Duration::from_secs(20),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// The pause between two writes on one credential unless the client is told otherwise
/// ([`crate::GitHub::with_write_spacing`]).
///
/// GitHub's best practices, on secondary rate limits: "If you are making a large
/// number of POST, PATCH, PUT, or DELETE requests for a single user or client ID, wait
/// at least one second between each request", and "make requests serially instead of
/// concurrently"
/// (<https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api>).
pub const DEFAULT_WRITE_SPACING: Duration = Duration::from_secs(1);

/// Whose budget a write counts against. GitHub counts secondary limits per user or
/// App installation, so writes are serialised per token, per installation, and for
/// the App's own JWT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Gate {
    /// `GITHUB_TOKEN`.
    Token,
    /// The App's JWT (token exchanges).
    App,
    /// One installation token (whichever token of it is current).
    Installation(i64),
}

/// The time the last write of a lane ended; `None` before the first.
type Lane = Arc<tokio::sync::Mutex<Option<tokio::time::Instant>>>;

/// One lane per [`Gate`]: a write holds its lane from its first attempt to its last,
/// so writes on one credential go one at a time, and each attempt starts at least
/// `spacing` after the previous attempt on the lane ended.
pub(crate) struct WriteGates {
    pub spacing: Duration,
    lanes: std::sync::Mutex<HashMap<Gate, Lane>>,
}

impl WriteGates {
    pub fn new(spacing: Duration) -> WriteGates {
        WriteGates {
            spacing,
            lanes: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn lane(&self, gate: Gate) -> Lane {
        // The map holds plain data: a panic elsewhere cannot leave it half-written.
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        lanes.entry(gate).or_default().clone()
    }
}

/// What a call needs from the credentials, for 403 messages that name it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Needs {
    /// Classic personal access token scope.
    pub scope: &'static str,
    /// GitHub App / fine-grained token permission.
    pub permission: &'static str,
    /// The same as a GitHub App manifest's `default_permissions` entry
    /// (<https://docs.github.com/en/rest/authentication/permissions-required-for-github-apps>).
    pub app_permission: (&'static str, &'static str),
}

impl Needs {
    /// Every need a call of this crate may have: the App manifest's permissions.
    pub const ALL: &[Needs] = &[
        Needs::DEPLOYMENTS_WRITE,
        Needs::DEPLOYMENTS_READ,
        Needs::METADATA_READ,
        Needs::STATUSES_READ,
        Needs::CHECKS_READ,
        Needs::CONTENTS_READ,
    ];

    pub const DEPLOYMENTS_WRITE: Needs = Needs {
        scope: "`repo_deployment` scope (`repo` for a private repository)",
        permission: "Deployments: write",
        app_permission: ("deployments", "write"),
    };
    pub const DEPLOYMENTS_READ: Needs = Needs {
        scope: "`repo_deployment` scope (`repo` for a private repository)",
        permission: "Deployments: read",
        app_permission: ("deployments", "read"),
    };
    pub const METADATA_READ: Needs = Needs {
        scope: "`repo` scope for a private repository",
        permission: "Metadata: read",
        app_permission: ("metadata", "read"),
    };
    pub const STATUSES_READ: Needs = Needs {
        scope: "`repo:status` scope (`repo` for a private repository)",
        permission: "Commit statuses: read",
        app_permission: ("statuses", "read"),
    };
    pub const CHECKS_READ: Needs = Needs {
        scope: "`repo` scope for a private repository",
        permission: "Checks: read",
        app_permission: ("checks", "read"),
    };
    pub const CONTENTS_READ: Needs = Needs {
        scope: "`repo` scope for a private repository",
        permission: "Contents: read",
        app_permission: ("contents", "read"),
    };
}

/// Whose credentials a call goes out with.
#[derive(Debug, Clone)]
pub(crate) enum As {
    /// The token, or the App's installation token for this repository.
    Repo(String),
    /// The App itself (its JWT): installation look-ups and token exchange.
    App,
}

/// One GitHub request, rebuilt for each attempt.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub method: Method,
    /// Path and query relative to `api_url`, starting with `/`.
    pub path: String,
    pub body: Option<Value>,
    pub auth: As,
    /// What the call is about, for 404 texts: "repository acme/web".
    pub target: String,
    pub needs: Needs,
    /// `false`: a 3xx is returned as it is instead of being followed.
    pub follow_redirects: bool,
    /// `true`: sending it twice does no harm, so a 5xx or a lost answer is retried.
    /// `false` (a deployment create: GitHub may have created it before failing): such
    /// a failure ends the call at once with [`CallError::ambiguous`] set, for the
    /// caller to find out what happened; only failures before sending are retried.
    pub idempotent: bool,
}

impl Call {
    pub fn get(path: String, auth: As, target: String, needs: Needs) -> Call {
        Call {
            method: Method::GET,
            path,
            body: None,
            auth,
            target,
            needs,
            follow_redirects: true,
            idempotent: true,
        }
    }

    pub fn post(path: String, body: Value, auth: As, target: String, needs: Needs) -> Call {
        Call {
            method: Method::POST,
            body: Some(body),
            ..Call::get(path, auth, target, needs)
        }
    }

    /// POST, PATCH, PUT and DELETE: the requests GitHub's secondary limits count
    /// most, which go through a [`WriteGates`] lane.
    pub fn is_write(&self) -> bool {
        matches!(
            self.method,
            Method::POST | Method::PATCH | Method::PUT | Method::DELETE
        )
    }

    /// `POST /repos/o/r/deployments`, without the query: for messages.
    pub fn describe(&self) -> String {
        let path = self.path.split('?').next().unwrap_or_default();
        format!("{} {}", self.method, path)
    }
}

/// Percent-encodes one path segment (a ref may hold `/`, `#`, `?`...), the way
/// octokit expands `{ref}`.
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Percent-encodes a query value.
pub(crate) fn query_value(s: &str) -> String {
    segment(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("feature/x#1"), "feature%2Fx%231");
        assert_eq!(segment("v1.2.3_rc-1~"), "v1.2.3_rc-1~");
        assert_eq!(segment("é"), "%C3%A9");
    }
}
