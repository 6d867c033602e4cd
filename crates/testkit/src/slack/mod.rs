//! A fake Slack: the Web API methods chima and faseng call, and a Socket Mode
//! WebSocket, on 127.0.0.1.
//!
//! Shapes follow Slack's documentation (`{"ok": true, ...}` answers,
//! `{"ok": false, "error": "<code>"}` refusals with HTTP 200, 429 with `Retry-After`,
//! Socket Mode's `hello` / `disconnect` frames and envelopes acknowledged by
//! `{"envelope_id": ...}`). It records every call (method, body, `Authorization`) and
//! every acknowledgement, so tests can assert what the real client sent, and it can be
//! told to fail the next calls to a method (429, 5xx, or an error code).
//!
//! It is as strict as Slack where chima and faseng could get Slack wrong:
//!
//! * text reaches the app as Slack encodes it ([`encode`]: entities, links, mentions),
//!   in events and slash commands alike;
//! * `chat.postMessage` refuses channels the bot is not in (`not_in_channel`) and ids it
//!   does not know (`channel_not_found`);
//! * posts and edits over Slack's size limits are refused with Slack's codes
//!   (`msg_too_long`, `invalid_blocks`);
//! * slash commands made with [`FakeSlack::slash_command`] carry a `response_url` of the
//!   fake (`/response/<n>`), which takes 5 posts within 30 minutes in any channel and
//!   answers 404 `used_url` / `expired_url` after that
//!   (<https://api.slack.com/interactivity/handling#message_responses>); a DM or private
//!   channel the bot is not in is [`FakeSlack::set_channel_without_bot`].
//!
//! ```no_run
//! # async fn demo() {
//! use chima_testkit::slack::{self, FakeSlack};
//! let fake = FakeSlack::start().await;
//! // SLACK_API_URL = fake.url, SLACK_BOT_TOKEN = slack::BOT_TOKEN, SLACK_APP_TOKEN = slack::APP_TOKEN
//! fake.push_event(slack::events_api_message("chima deploy web", "C1", "U1", "1.2", "Ev1", 0));
//! # }
//! ```
//!
//! The fake is split by seam: this file holds what tests name (the tokens and
//! ids, [`Failure`], the records of calls and posts); `fake` the running
//! [`FakeSlack`] and the calls tests make on it; `state` what it holds;
//! `web_api` the Web API methods; `response_url` slash commands' response URLs;
//! `wire` Slack's size limits, answers and form encoding; `socket` Socket Mode;
//! `payloads` the events, slash commands and signatures Slack sends to the app;
//! `text` how Slack encodes the text people type.

mod fake;
mod payloads;
mod response_url;
mod socket;
mod state;
mod text;
mod web_api;
mod wire;

pub use fake::FakeSlack;
pub use payloads::{
    bot_message, envelope_id, event_callback_message, event_callback_raw, events_api_envelope,
    events_api_message, sign, signed_headers, slash_command, slash_command_fields,
    slash_command_form,
};
pub use text::encode;
pub use wire::{MAX_BLOCKS, MAX_SECTION_CHARS, MAX_TEXT_CHARS, form_encode, form_pairs};

use std::time::{Duration, Instant};

use serde_json::Value;

/// The bot token the fake accepts (`Authorization: Bearer ...`).
pub const BOT_TOKEN: &str = "xoxb-1111111111-2222222222-testkitBotToken0123456789";
/// The app-level token the fake accepts for `apps.connections.open`.
pub const APP_TOKEN: &str = "xapp-1-A0TESTKIT-3333333333-testkitAppToken0123456789abcdef";
/// The bot's user id (`auth.test`).
pub const BOT_USER_ID: &str = "U0CHIMA";
/// The bot's user name (`auth.test`).
pub const BOT_NAME: &str = "chima";
/// The bot id its own messages carry.
pub const BOT_ID: &str = "B0CHIMA";
pub const TEAM_ID: &str = "T0TESTKIT";
pub const APP_ID: &str = "A0TESTKIT";

/// How the fake answers the next calls to a method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// HTTP 429 with `Retry-After: <secs>` and `{"ok": false, "error": "ratelimited"}`.
    RateLimited { retry_after_secs: u64 },
    /// This HTTP status (500, 502, 503...) with an HTML body, as a proxy would send.
    Status(u16),
    /// HTTP 200 with `{"ok": false, "error": <code>}`.
    Error(String),
}

/// One Web API call the fake received.
#[derive(Debug, Clone)]
pub struct ApiCall {
    /// `chat.postMessage`, `auth.test`...
    pub method: String,
    /// `GET` or `POST`.
    pub http_method: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    /// The arguments as one JSON object: the JSON body, or the form body, plus the
    /// query string.
    pub args: Value,
    /// When the fake received it.
    pub at: Instant,
}

impl ApiCall {
    /// An argument as text.
    pub fn arg(&self, name: &str) -> Option<&str> {
        self.args.get(name).and_then(Value::as_str)
    }
}

/// A message posted with `chat.postMessage`.
#[derive(Debug, Clone, PartialEq)]
pub struct PostedMessage {
    pub channel: String,
    pub thread_ts: Option<String>,
    pub text: Option<String>,
    pub blocks: Option<Value>,
    /// The ts the fake gave it.
    pub ts: String,
}

/// An edit with `chat.update`.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdatedMessage {
    pub channel: String,
    pub ts: String,
    pub text: Option<String>,
    pub blocks: Option<Value>,
}

/// Slack takes 5 posts to one response URL within 30 minutes
/// (<https://api.slack.com/interactivity/handling#message_responses>).
pub const RESPONSE_URL_USES: u32 = 5;
/// See [`RESPONSE_URL_USES`].
pub const RESPONSE_URL_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// A message posted to a slash command's response URL and accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Responded {
    /// `n` of `/response/<n>`.
    pub url: usize,
    /// The channel of the command (where Slack shows the message).
    pub channel: String,
    pub text: Option<String>,
    pub blocks: Option<Value>,
    /// `in_channel` or `ephemeral` (Slack's default when absent).
    pub response_type: Option<String>,
    pub replace_original: bool,
}
