//! Sending a call: octocrab's two clients, the write lanes, retries with backoff
//! for 5xx, network errors and short rate limits.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::header::{self, HeaderValue};
use hyper::http::request::Builder;
use octocrab::Octocrab;

use crate::auth::Credentials;
use crate::error::{CallError, GitHubError};

use super::{Call, Gate, Reply, RetryPolicy, WriteGates};

/// Largest answer read from GitHub. Lists are paged, so a real answer is far smaller;
/// the cap keeps a misbehaving proxy from filling memory.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

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
