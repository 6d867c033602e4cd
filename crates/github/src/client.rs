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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::http::request::Builder;
use hyper::{Method, StatusCode};
use octocrab::Octocrab;
use serde_json::Value;

use crate::auth::Credentials;
use crate::error::{CallError, GitHubError};

/// Largest answer read from GitHub. Lists are paged, so a real answer is far smaller;
/// the cap keeps a misbehaving proxy from filling memory.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// How hard a call tries before it reports [`GitHubError::Unavailable`].
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

/// An answer from GitHub, read to the end.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON, or an error that says which call answered what.
    pub fn json<T: serde::de::DeserializeOwned>(&self, call: &Call) -> Result<T, CallError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            CallError::new(GitHubError::unavailable(format!(
                "GitHub's answer to {} ({}) could not be read: {e}",
                call.describe(),
                self.status.as_u16()
            )))
        })
    }

    /// GitHub's `message` and its `errors`, joined: what a person should read.
    pub fn github_message(&self) -> String {
        let Ok(v) = serde_json::from_slice::<Value>(&self.body) else {
            let text = String::from_utf8_lossy(&self.body);
            let text = text.trim();
            return if text.is_empty() {
                self.status
                    .canonical_reason()
                    .unwrap_or("no message")
                    .to_string()
            } else {
                text.chars().take(300).collect()
            };
        };
        let mut message = v
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_else(|| self.status.canonical_reason().unwrap_or("no message"))
            .to_string();
        let details: Vec<String> = v
            .get("errors")
            .and_then(Value::as_array)
            .map(|errors| errors.iter().map(describe_error_item).collect())
            .unwrap_or_default();
        if !details.is_empty() {
            message.push_str(" (");
            message.push_str(&details.join("; "));
            message.push(')');
        }
        message
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `rel="next"` address of GitHub's `Link` header, if there is one.
    ///
    /// GitHub pages lists and says where the next page is in `Link`, e.g.
    /// `<https://api.github.com/repositories/1300192/issues?page=2>; rel="next",
    /// <...?page=5>; rel="last"`; clients are to follow it rather than build the
    /// address (<https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api>).
    pub fn next_link(&self) -> Option<String> {
        self.headers
            .get_all(header::LINK)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(next_in_link)
    }

    /// The wait GitHub asks for when this answer is a rate limit, else `None`.
    ///
    /// GitHub's rules: 429, or 403 with `x-ratelimit-remaining: 0` (primary limit), or
    /// 403 with `Retry-After` or a "secondary rate limit" message. The wait is
    /// `Retry-After`, else until `x-ratelimit-reset`, else a minute (GitHub's advice for
    /// secondary limits without headers).
    pub fn rate_limit_wait(&self) -> Option<Duration> {
        let status = self.status;
        if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::FORBIDDEN {
            return None;
        }
        let retry_after = self
            .header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let exhausted = self
            .header("x-ratelimit-remaining")
            .is_some_and(|v| v.trim() == "0");
        let secondary = status == StatusCode::FORBIDDEN
            && String::from_utf8_lossy(&self.body)
                .to_ascii_lowercase()
                .contains("rate limit");
        if status == StatusCode::FORBIDDEN && retry_after.is_none() && !exhausted && !secondary {
            return None;
        }
        if let Some(wait) = retry_after {
            return Some(wait);
        }
        if exhausted
            && let Some(reset) = self.header("x-ratelimit-reset")
            && let Ok(reset) = reset.trim().parse::<i64>()
        {
            let now = chrono::Utc::now().timestamp();
            // One second more: the reset second itself may still be limited.
            return Some(Duration::from_secs((reset - now).max(0) as u64 + 1));
        }
        Some(Duration::from_secs(60))
    }
}

fn describe_error_item(item: &Value) -> String {
    match item {
        Value::String(s) => s.clone(),
        Value::Object(map) => {
            if let Some(m) = map.get("message").and_then(Value::as_str) {
                return m.to_string();
            }
            let field = map.get("field").and_then(Value::as_str);
            let code = map.get("code").and_then(Value::as_str);
            match (field, code) {
                (Some(f), Some(c)) => format!("`{f}` {c}"),
                (Some(f), None) => format!("`{f}`"),
                (None, Some(c)) => c.to_string(),
                (None, None) => item.to_string(),
            }
        }
        other => other.to_string(),
    }
}

/// The two octocrab clients, the retry policy and the write lanes.
pub(crate) struct Transport {
    /// Follows redirects (GitHub redirects renamed repositories).
    pub api: Octocrab,
    /// Does not: `tarball_url` wants the `Location`, not the tarball.
    pub raw: Octocrab,
    pub policy: RetryPolicy,
    /// Shared by the clones of a client, so that all its writes count together.
    pub writes: Arc<WriteGates>,
}

/// Why an attempt got no answer, and whether the request may have reached GitHub.
struct Failure {
    detail: String,
    /// `false` only when the connection could not be made: GitHub saw nothing.
    sent: bool,
}

impl Transport {
    /// Sends `call` with `authorization`, retrying 5xx, network errors and short rate
    /// limits. Any other answer (2xx, 3xx, 4xx) is returned for the caller to judge.
    ///
    /// Writes go through the lane of `gate` (one at a time, spaced); a call that is
    /// not [`Call::idempotent`] is not retried after a 5xx or a lost answer.
    pub async fn request(
        &self,
        creds: &Credentials,
        call: &Call,
        authorization: &HeaderValue,
        gate: Gate,
    ) -> Result<Reply, CallError> {
        let mut lane = match call.is_write() {
            true => Some(self.writes.lane(gate).lock_owned().await),
            false => None,
        };
        let attempts = self.policy.attempts.max(1);
        let mut delay = self.policy.base_delay;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= attempts;
            if let Some(Some(ended)) = lane.as_deref() {
                let ready = *ended + self.writes.spacing;
                if ready > tokio::time::Instant::now() {
                    tracing::debug!(call = %call.describe(), ?gate, "spacing writes to GitHub");
                    tokio::time::sleep_until(ready).await;
                }
            }
            let result = self.attempt(call, authorization).await;
            if let Some(ended) = lane.as_deref_mut() {
                *ended = Some(tokio::time::Instant::now());
            }
            match result {
                Ok(reply) if reply.status.is_server_error() => {
                    let message = reply.github_message();
                    tracing::warn!(
                        call = %call.describe(),
                        status = reply.status.as_u16(),
                        attempt,
                        %message,
                        "GitHub answered with a server error"
                    );
                    let retry_after = reply
                        .header("retry-after")
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    if !call.idempotent {
                        return Err(CallError {
                            error: GitHubError::unavailable(format!(
                                "GitHub answered {} ({message}) to {}",
                                reply.status.as_u16(),
                                call.describe()
                            )),
                            retry_after,
                            rate_limited: false,
                            ambiguous: true,
                        });
                    }
                    if last {
                        return Err(CallError {
                            error: GitHubError::unavailable(format!(
                                "GitHub answered {} ({message}) to {} {attempt} times",
                                reply.status.as_u16(),
                                call.describe()
                            )),
                            retry_after,
                            rate_limited: false,
                            ambiguous: false,
                        });
                    }
                }
                Ok(reply) => match reply.rate_limit_wait() {
                    None => return Ok(reply),
                    Some(wait) => {
                        tracing::warn!(
                            call = %call.describe(),
                            status = reply.status.as_u16(),
                            wait_secs = wait.as_secs(),
                            attempt,
                            "GitHub rate limit"
                        );
                        if last || wait > self.policy.max_inline_wait {
                            let until = chrono::Utc::now()
                                + chrono::Duration::from_std(wait).unwrap_or_default();
                            return Err(CallError {
                                error: GitHubError::unavailable(format!(
                                    "GitHub's rate limit for {} is exhausted until {} ({}: {})",
                                    creds.who(&call.auth),
                                    until.format("%H:%M:%S UTC"),
                                    call.describe(),
                                    reply.github_message()
                                )),
                                retry_after: Some(wait),
                                rate_limited: true,
                                ambiguous: false,
                            });
                        }
                        // A rate-limited request was refused, not carried out: sending
                        // it again after the wait is safe, even for a create.
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                },
                Err(failure) => {
                    let detail = &failure.detail;
                    tracing::warn!(
                        call = %call.describe(),
                        attempt,
                        sent = failure.sent,
                        %detail,
                        "GitHub request failed"
                    );
                    if failure.sent && !call.idempotent {
                        return Err(CallError {
                            error: GitHubError::unavailable(format!(
                                "{} got no answer: {detail}",
                                call.describe()
                            )),
                            retry_after: None,
                            rate_limited: false,
                            ambiguous: true,
                        });
                    }
                    if last {
                        return Err(CallError::new(GitHubError::unavailable(format!(
                            "{} failed {attempt} times: {detail}",
                            call.describe()
                        ))));
                    }
                }
            }
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
        }
    }

    /// One attempt: send, read the whole answer. `Err` is a transport failure, as text
    /// (octocrab's errors name the URL and the cause, never the headers).
    async fn attempt(&self, call: &Call, authorization: &HeaderValue) -> Result<Reply, Failure> {
        let client = if call.follow_redirects {
            &self.api
        } else {
            &self.raw
        };
        let builder = Builder::new()
            .method(call.method.clone())
            .uri(call.path.as_str())
            .header(header::ACCEPT, "application/vnd.github+json")
            .header(header::AUTHORIZATION, authorization.clone());
        let request = client
            .build_request(builder, call.body.as_ref())
            .map_err(|e| Failure {
                detail: chain(&e),
                sent: false,
            })?;
        let exchange = async {
            let response = client.execute(request).await.map_err(|e| Failure {
                detail: chain(&e),
                sent: !is_connect_error(&e),
            })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| Failure {
                    detail: format!("reading the answer: {}", chain(&*e)),
                    sent: true,
                })?
                .to_bytes();
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(self.policy.request_timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Failure {
                detail: format!(
                    "no complete answer within {}s",
                    self.policy.request_timeout.as_secs_f32()
                ),
                sent: true,
            }),
        }
    }
}

/// Whether the connection itself failed (refused, unreachable, TLS handshake): then
/// the request never reached GitHub and sending it again cannot make a second one.
fn is_connect_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(err) = cause {
        if let Some(hyper_error) = err.downcast_ref::<hyper_util::client::legacy::Error>() {
            return hyper_error.is_connect();
        }
        cause = err.source();
    }
    false
}

/// The `rel="next"` target of one `Link` header value: `<url>; rel="next", ...`.
/// Written out rather than split on commas, which a URL may hold.
fn next_in_link(value: &str) -> Option<String> {
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let close = after.find('>')?;
        let url = &after[..close];
        let params_end = after[close..].find('<').map_or(after.len(), |i| close + i);
        // `; rel="next", ` up to the next entry: the separating comma is not the rel's.
        let params = after[close + 1..params_end].trim().trim_end_matches(',');
        let is_next = params.split(';').any(|p| {
            let Some((name, value)) = p.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(url.trim().to_string());
        }
        rest = &after[params_end..];
    }
    None
}

/// An error and its causes on one line.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    // octocrab appends a backtrace to some messages; it is noise in a chat reply.
    match text.find("\n") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Turns a non-2xx answer into the error that says what to fix.
pub(crate) fn refusal(creds: &Credentials, call: &Call, reply: &Reply) -> CallError {
    let status = reply.status.as_u16();
    let message = reply.github_message();
    let who = creds.who(&call.auth);
    let repo = match &call.auth {
        As::Repo(r) => r.clone(),
        As::App => call.target.clone(),
    };
    let error = match status {
        401 => GitHubError::Unauthorized {
            message: format!(
                "GitHub answered 401 ({message}) to {}: {}",
                call.describe(),
                creds.unauthorized_hint(&call.auth)
            ),
        },
        403 => {
            let mut text = format!(
                "GitHub answered 403 ({message}) to {}: {}",
                call.describe(),
                creds.forbidden_hint(&call.auth, call.needs, &repo)
            );
            if let Some(accepted) = reply.header("x-accepted-github-permissions") {
                text.push_str(&format!(" (GitHub accepts: {accepted})"));
            }
            if let Some(accepted) = reply.header("x-accepted-oauth-scopes")
                && !accepted.trim().is_empty()
            {
                text.push_str(&format!(" (scopes accepted: {accepted})"));
            }
            GitHubError::Forbidden { message: text }
        }
        404 => GitHubError::NotFound {
            what: format!(
                "{} ({} answered 404: {message}): it does not exist, or {who} cannot see it{}",
                call.target,
                call.describe(),
                creds.not_found_hint(&call.auth)
            ),
        },
        s if (500..600).contains(&s) => GitHubError::unavailable(format!(
            "GitHub answered {s} ({message}) to {}",
            call.describe()
        )),
        s => GitHubError::Rejected {
            status: s,
            message: format!("{message} ({})", call.describe()),
        },
    };
    CallError::new(error)
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

    fn reply(status: u16, headers: &[(&'static str, &str)], body: &str) -> Reply {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                *k,
                HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
            );
        }
        Reply {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
            headers: map,
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn rate_limits_are_told_from_refusals() {
        assert_eq!(
            reply(403, &[], r#"{"message":"Resource not accessible"}"#).rate_limit_wait(),
            None
        );
        assert_eq!(
            reply(429, &[("retry-after", "3")], "{}").rate_limit_wait(),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            reply(403, &[("retry-after", "7")], "{}").rate_limit_wait(),
            Some(Duration::from_secs(7))
        );
        let reset = (chrono::Utc::now().timestamp() + 10).to_string();
        let wait = reply(
            403,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", &reset),
            ],
            r#"{"message":"API rate limit exceeded"}"#,
        )
        .rate_limit_wait()
        .unwrap_or_default();
        assert!(
            wait >= Duration::from_secs(9) && wait <= Duration::from_secs(12),
            "{wait:?}"
        );
        assert_eq!(
            reply(
                403,
                &[],
                r#"{"message":"You have exceeded a secondary rate limit."}"#
            )
            .rate_limit_wait(),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            reply(500, &[("retry-after", "1")], "").rate_limit_wait(),
            None
        );
    }

    #[test]
    fn github_messages_include_the_errors() {
        let r = reply(
            422,
            &[],
            r#"{"message":"Validation Failed","errors":[{"resource":"Deployment","field":"ref","code":"invalid"},"plain", {"message":"No ref found for: nope"}]}"#,
        );
        assert_eq!(
            r.github_message(),
            "Validation Failed (`ref` invalid; plain; No ref found for: nope)"
        );
        assert_eq!(reply(502, &[], "").github_message(), "Bad Gateway");
        assert_eq!(
            reply(502, &[], "<html>bad gateway</html>").github_message(),
            "<html>bad gateway</html>"
        );
    }

    #[test]
    fn the_next_link_is_found_among_the_others() {
        // GitHub's example (using-pagination-in-the-rest-api).
        let header = r#"<https://api.github.com/repositories/1300192/issues?page=2>; rel="prev", <https://api.github.com/repositories/1300192/issues?page=4>; rel="next", <https://api.github.com/repositories/1300192/issues?page=515>; rel="last", <https://api.github.com/repositories/1300192/issues?page=1>; rel="first""#;
        assert_eq!(
            next_in_link(header).as_deref(),
            Some("https://api.github.com/repositories/1300192/issues?page=4")
        );
        assert_eq!(
            next_in_link(r#"<https://x/a?labels=a,b&page=2>; rel=next"#).as_deref(),
            Some("https://x/a?labels=a,b&page=2"),
            "a comma inside the URL, rel without quotes"
        );
        assert_eq!(next_in_link(r#"<https://x/a?page=1>; rel="first""#), None);
        assert_eq!(next_in_link("garbage"), None);
        assert_eq!(next_in_link("<unclosed; rel=\"next\""), None);
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("feature/x#1"), "feature%2Fx%231");
        assert_eq!(segment("v1.2.3_rc-1~"), "v1.2.3_rc-1~");
        assert_eq!(segment("é"), "%C3%A9");
    }
}
