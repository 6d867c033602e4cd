//! Slack for chima and faseng (README, "Slack" and "Configuration").
//!
//! * [`SlackApi`]: the Web API calls both binaries make (`auth.test`,
//!   `chat.postMessage`, `chat.update`, `conversations.info`, `users.info`), through
//!   slack-morphism's hyper client. Its base URL is `SLACK_API_URL`, plain `http://`
//!   included, so tests point it at the fake Slack of `chima-testkit`.
//! * Two ways for chat lines to reach chima, both ending in the same [`Incoming`] given to
//!   a [`Handler`]: [`run_socket_mode`] (the default: no public URL needed) and
//!   [`events_router`] (the Events API, slash commands and interactivity over HTTP, with
//!   Slack's request signature checked by [`verify_signature`]).
//! * [`render`]: the deployment messages of section 8, as plain text and Block Kit, within
//!   Slack's limits.
//! * [`decode`] and [`escape`]: Slack's text format, read from what Slack sends (every
//!   [`Incoming`] is already decoded) and written into what is posted.
//! * [`manifest`]: the table of Web API methods (with their scopes), events, slash
//!   command and routes the code uses, and [`slack_manifest`], the app manifest built
//!   from it.
//! * [`ChatDeliverer`]: the `chat` outbox's deliverer (a `chima_deliver::Deliver`, run by
//!   `chima-outbox`'s loop): one message per deployment, posted in the thread of the
//!   command and edited in place afterwards.
//!
//! Tokens and secrets are [`chima_config::Secret`]s: no error, log line or `Debug`
//! output of this crate contains one.

#![warn(missing_docs)]

mod api;
mod deliver;
mod error;
mod events;
mod incoming;
pub mod manifest;
mod mrkdwn;
mod render;
mod signature;
mod socket;

pub use api::{BotIdentity, Message, Posted, SlackApi};
pub use deliver::{CHAT_TARGET, ChatDeliverer, FallbackChannel, LogUrl};
pub use error::{SignatureError, SlackError};
pub use events::{BODY_LIMIT, events_router};
pub use incoming::{
    Handler, Incoming, IncomingKind, Payload, PayloadError, parse_form, parse_payload,
    parse_slash_command_form,
};
pub use manifest::slack_manifest;
pub use mrkdwn::{MAX_BLOCKS, MAX_SECTION_CHARS, MAX_TEXT_CHARS, cap, decode, escape};
pub use render::{DeploymentView, MAX_LOG_LINE_CHARS, MAX_LOG_LINES, render};
pub use signature::{MAX_CLOCK_SKEW_SECS, sign, verify_signature};
pub use socket::run_socket_mode;

use chima_config::Secret;

/// Slack's Web API, the default of `SLACK_API_URL`.
pub const DEFAULT_API_URL: &str = "https://slack.com/api";

/// Where Slack's response URLs live (<https://api.slack.com/interactivity/handling#message_responses>).
pub const RESPONSE_URL_ORIGIN: &str = "https://hooks.slack.com";

/// Whether `response_url` may be posted to: Slack's own (`https://hooks.slack.com/...`)
/// or one on the scheme, host and port of `api_url` (`SLACK_API_URL`: a fake Slack in
/// tests). Anything else is refused, so that a stored route cannot make faseng post
/// (its messages, from its network) to an address of someone's choosing.
pub fn response_url_allowed(response_url: &str, api_url: &str) -> bool {
    let parse = |u: &str| {
        serde_json::from_value::<slack_morphism::SlackResponseUrl>(serde_json::Value::String(
            u.to_owned(),
        ))
        .ok()
        .map(|u| u.0)
    };
    let origin = |u: &slack_morphism::SlackResponseUrl| {
        (
            u.0.scheme().to_owned(),
            u.0.host_str().map(str::to_ascii_lowercase),
            u.0.port_or_known_default(),
        )
    };
    let Some(url) = parse(response_url) else {
        return false;
    };
    if !url.username().is_empty() || url.password().is_some() {
        return false;
    }
    let url = slack_morphism::SlackResponseUrl(url);
    [RESPONSE_URL_ORIGIN, api_url]
        .into_iter()
        .filter_map(parse)
        .any(|allowed| origin(&url) == origin(&slack_morphism::SlackResponseUrl(allowed)))
}

/// How chima and faseng reach Slack (README, "Configuration").
#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// `SLACK_API_URL`: the Web API base, without a trailing slash
    /// (default [`DEFAULT_API_URL`]).
    pub api_url: String,
    /// `SLACK_BOT_TOKEN` (`xoxb-...`): every Web API call.
    pub bot_token: Secret,
    /// `SLACK_APP_TOKEN` (`xapp-...`): Socket Mode only.
    pub app_token: Option<Secret>,
    /// `SLACK_SIGNING_SECRET`: the Events API over HTTP only.
    pub signing_secret: Option<Secret>,
}

impl SlackConfig {
    /// A config with the default API URL and only a bot token.
    pub fn new(bot_token: Secret) -> SlackConfig {
        SlackConfig {
            api_url: DEFAULT_API_URL.to_owned(),
            bot_token,
            app_token: None,
            signing_secret: None,
        }
    }
}

#[cfg(test)]
mod response_url_tests {
    use super::response_url_allowed;

    #[test]
    fn only_slack_and_the_configured_api_host_are_allowed() {
        let api = "http://127.0.0.1:4000/api";
        assert!(response_url_allowed(
            "https://hooks.slack.com/commands/T1/2/abc",
            "https://slack.com/api"
        ));
        assert!(response_url_allowed(
            "http://127.0.0.1:4000/response/1",
            api
        ));
        for bad in [
            "http://hooks.slack.com/commands/T1/2/abc",
            "https://hooks.slack.com.evil.example/x",
            "https://evil.example/hooks.slack.com",
            "https://user@hooks.slack.com/x",
            "http://127.0.0.1:4001/response/1",
            "http://169.254.169.254/latest/meta-data",
            "not a url",
            "",
        ] {
            assert!(!response_url_allowed(bad, api), "{bad}");
        }
    }
}
