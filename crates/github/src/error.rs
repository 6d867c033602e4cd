//! What can go wrong talking to GitHub, sorted by what the operator must do about it.

use std::time::Duration;

/// A failed GitHub call. Each variant is a different fix for the operator, and each
/// message says which setting, scope or permission is involved, so that a chat reply
/// or a log line built from it is enough to act on.
///
/// Messages never contain a token: they are built from GitHub's own message (which
/// never echoes credentials), the method and path, and the names of our settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitHubError {
    /// 401: the token is wrong or expired (the message names `GITHUB_TOKEN`, or
    /// `GITHUB_APP_ID` / `GITHUB_APP_PRIVATE_KEY`).
    #[error("GitHub refused the credentials: {message}")]
    Unauthorized {
        /// GitHub's message, and which credentials to check.
        message: String,
    },
    /// 403: the token lacks a scope or the App a permission (the message names it:
    /// `repo_deployment`, Deployments: write...).
    #[error("GitHub denied access: {message}")]
    Forbidden {
        /// GitHub's message, and the scope or permission that is missing.
        message: String,
    },
    /// 404: the repository (or deployment, or ref) does not exist or is not visible
    /// to these credentials; GitHub does not tell the two apart, so neither can we.
    #[error("not found on GitHub: {what}")]
    NotFound {
        /// What was looked for, with the call and how GitHub answered it.
        what: String,
    },
    /// 422 and other 4xx: GitHub's message and its `errors`.
    #[error("GitHub rejected the request ({status}): {message}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// GitHub's message and its `errors`.
        message: String,
    },
    /// 5xx or rate limit after retries, network failures, answers we cannot read.
    #[error("GitHub is unavailable: {message}")]
    Unavailable {
        /// What failed: GitHub's status and message, or the network error, and the call.
        message: String,
    },
    /// Our own bad input or settings (a repository that is not `owner/name`, an
    /// `api_url` that is not a URL, a private key that is not PEM...).
    #[error("invalid GitHub request: {message}")]
    Invalid {
        /// What is wrong, and which setting holds it.
        message: String,
    },
}

impl GitHubError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        GitHubError::Invalid {
            message: message.into(),
        }
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        GitHubError::Unavailable {
            message: message.into(),
        }
    }
}

/// A [`GitHubError`] with what the retry logic learned about when to try again. The
/// public calls drop the hints; the status sender uses them to reschedule (a rate
/// limit says exactly when it lifts, and waiting less is wasted work).
#[derive(Debug, Clone)]
pub(crate) struct CallError {
    pub error: GitHubError,
    /// When GitHub said to come back (`Retry-After` or `x-ratelimit-reset`).
    pub retry_after: Option<Duration>,
    /// The failure was a rate limit (403 or 429), not a refusal.
    pub rate_limited: bool,
    /// The request was sent and may have been carried out: a 5xx, a timeout, or a
    /// connection lost after sending. Only calls that are not retried blindly (a
    /// deployment create) end with this set; the caller finds out what happened.
    pub ambiguous: bool,
}

impl CallError {
    pub(crate) fn new(error: GitHubError) -> Self {
        CallError {
            error,
            retry_after: None,
            rate_limited: false,
            ambiguous: false,
        }
    }
}

impl From<GitHubError> for CallError {
    fn from(error: GitHubError) -> Self {
        CallError::new(error)
    }
}

impl From<CallError> for GitHubError {
    fn from(e: CallError) -> Self {
        e.error
    }
}
