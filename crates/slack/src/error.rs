//! Errors of the Slack layer. None of them ever holds a token: they are built from
//! Slack's error codes, HTTP statuses and our own words, never from a request.

use std::time::Duration;

/// A Slack Web API call (or the setup for one) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackError {
    /// Slack answered 429: wait `retry_after` (its `Retry-After`) before calling again.
    #[error("Slack rate-limited {method}{}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// The Web API method called, e.g. `chat.postMessage`.
        method: String,
        /// Slack's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },

    /// Slack answered `{"ok": false, "error": "<code>"}`: `channel_not_found`,
    /// `not_in_channel`, `invalid_auth`, `missing_scope`, ...
    #[error("Slack refused {method}: {error}")]
    Api {
        /// The Web API method called.
        method: String,
        /// Slack's error code.
        error: String,
    },

    /// Slack could not be reached or answered with a server error: try again later.
    #[error("Slack is unavailable ({method}): {message}")]
    Unavailable {
        /// The Web API method called.
        method: String,
        /// What failed: the HTTP status, the network error or the timeout.
        message: String,
    },

    /// Slack answered something we cannot read (not the documented shape).
    #[error("unexpected answer from Slack to {method}: {message}")]
    Protocol {
        /// The Web API method called.
        method: String,
        /// What could not be read.
        message: String,
    },

    /// Our own settings are wrong (an empty token, an unusable URL, no TLS roots).
    #[error("Slack settings: {0}")]
    Config(String),
}

impl SlackError {
    /// The Slack error code of an [`SlackError::Api`] answer.
    pub fn api_code(&self) -> Option<&str> {
        match self {
            SlackError::Api { error, .. } => Some(error),
            _ => None,
        }
    }

    /// `true` when trying the same call again later may work (rate limits, outages,
    /// Slack's own transient error codes).
    pub fn is_transient(&self) -> bool {
        match self {
            SlackError::RateLimited { .. } | SlackError::Unavailable { .. } => true,
            SlackError::Api { error, .. } => TRANSIENT_CODES.contains(&error.as_str()),
            SlackError::Protocol { .. } | SlackError::Config(_) => false,
        }
    }

    /// `true` when the same call can never work as it is: the channel is gone, the bot
    /// is not in it, the token is revoked or lacks a scope. Retrying would only delay
    /// the deployment's later messages.
    pub fn is_permanent(&self) -> bool {
        match self {
            SlackError::Api { error, .. } => PERMANENT_CODES.contains(&error.as_str()),
            SlackError::Config(_) => true,
            _ => false,
        }
    }
}

/// Error codes that say "try again later".
const TRANSIENT_CODES: &[&str] = &[
    "ratelimited",
    "rate_limited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
    "team_added_to_org",
];

/// Error codes that say "this will never work as it is".
const PERMANENT_CODES: &[&str] = &[
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "no_permission",
    "missing_scope",
    "not_allowed_token_type",
    "ekm_access_denied",
    "restricted_action",
    "restricted_action_read_only_channel",
    "restricted_action_thread_only_channel",
    "restricted_action_non_threadable_channel",
    "cant_update_message",
    "edit_window_closed",
    "message_not_found",
    "msg_too_long",
    "no_text",
    "too_many_attachments",
    "invalid_blocks",
    "invalid_blocks_format",
    "msg_blocks_too_long",
    "invalid_arguments",
    "invalid_arg_name",
    "channel_is_archived",
    "team_access_not_granted",
    "access_denied",
    "org_login_required",
    "two_factor_setup_required",
    "user_is_bot",
    "deprecated_endpoint",
];

/// Why a request did not pass Slack's signature check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `X-Slack-Request-Timestamp` or `X-Slack-Signature` header.
    #[error("the request carries no Slack signature headers")]
    Missing,
    /// The timestamp is not a number of seconds.
    #[error("the Slack request timestamp {0:?} is not a number")]
    BadTimestamp(String),
    /// The timestamp is more than five minutes away from now: a replay, or a clock
    /// that is badly off.
    #[error("the Slack request timestamp is {age_secs}s away from now (at most 300s allowed)")]
    Stale {
        /// How far the timestamp is from now, in seconds.
        age_secs: i64,
    },
    /// The signature is not `v0=<64 hex digits>`.
    #[error("the Slack signature is not of the form v0=<hex>")]
    Malformed,
    /// The signature does not match the body (wrong signing secret, or a changed body).
    #[error("the Slack signature does not match the request")]
    Mismatch,
}
