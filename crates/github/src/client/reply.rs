//! GitHub's answers: their JSON, messages, `Link` pagination and rate-limit waits,
//! and a refusal (401, 403, 404, ...) turned into an error that says what to fix.

use std::time::Duration;

use hyper::StatusCode;
use hyper::body::Bytes;
use hyper::header::{self, HeaderMap};
use serde_json::Value;

use crate::auth::Credentials;
use crate::error::{CallError, GitHubError};

use super::{As, Call};

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

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

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
}
