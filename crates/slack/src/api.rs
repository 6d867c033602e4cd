//! The Web API calls chima and faseng make, through slack-morphism's hyper client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use slack_morphism::api::{
    SlackApiAppsConnectionOpenRequest, SlackApiChatPostMessageRequest, SlackApiChatUpdateRequest,
};
use slack_morphism::blocks::SlackBlock;
use slack_morphism::errors::SlackClientError;
use slack_morphism::hyper_tokio::{SlackClientHyperHttpsConnector, SlackHyperClient};
use slack_morphism::{SlackApiToken, SlackApiTokenValue, SlackClient, SlackMessageContent};

use crate::SlackConfig;
use crate::error::SlackError;
use crate::manifest;

/// How long one Web API call may take before it counts as Slack being unavailable.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a looked-up channel or user name is trusted (channels get renamed).
const NAME_TTL: Duration = Duration::from_secs(10 * 60);

/// Cached names at most; the cache starts over beyond this.
const NAME_CACHE_MAX: usize = 10_000;

/// A message to post or to put in place of an earlier one.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The plain text: what notifications, screen readers and old clients show, and
    /// what the message is when `blocks` is `None`. Slack reads it as mrkdwn, so user
    /// text in it must be escaped (`&`, `<`, `>`).
    pub text: String,
    /// Block Kit blocks (a JSON array), shown instead of `text` by Slack's clients.
    pub blocks: Option<serde_json::Value>,
}

impl Message {
    /// A text-only message.
    pub fn text(text: impl Into<String>) -> Message {
        Message {
            text: text.into(),
            blocks: None,
        }
    }
}

/// Who the bot token belongs to (`auth.test`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotIdentity {
    /// The bot's user id (`U...`): mentions of the bot are `<@user_id>`.
    pub user_id: String,
    /// The bot user's name.
    pub name: String,
    /// The bot id (`B...`) its own messages carry, when Slack says.
    pub bot_id: Option<String>,
}

/// A posted message: the channel id Slack answered with (a message posted to a channel
/// name is edited through the id) and its timestamp id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    /// The channel id (`C...`), even when the message was posted to a name.
    pub channel: String,
    /// The message's timestamp id, which edits address.
    pub ts: String,
}

/// The Slack Web API client of chima and faseng. Cheap to clone (one connection pool).
#[derive(Clone)]
pub struct SlackApi {
    inner: Arc<Inner>,
}

struct Inner {
    client: Arc<SlackHyperClient>,
    token: SlackApiToken,
    api_url: String,
    channel_names: Mutex<HashMap<String, (Option<String>, Instant)>>,
    user_names: Mutex<HashMap<String, (Option<String>, Instant)>>,
}

impl std::fmt::Debug for SlackApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackApi")
            .field("api_url", &self.inner.api_url)
            .finish_non_exhaustive()
    }
}

impl SlackApi {
    /// A client for `cfg.api_url` with `cfg.bot_token`. Accepts `https://` and, for
    /// local fakes, `http://` URLs. Makes no call.
    pub fn new(cfg: &SlackConfig) -> Result<SlackApi, SlackError> {
        let api_url = normalise_api_url(&cfg.api_url)?;
        if cfg.bot_token.expose().trim().is_empty() {
            return Err(SlackError::Config(
                "SLACK_BOT_TOKEN is empty: set it to the bot token (xoxb-...)".to_owned(),
            ));
        }
        let client = Arc::new(SlackClient::new(connector(&api_url)?));
        Ok(SlackApi {
            inner: Arc::new(Inner {
                client,
                token: token(cfg.bot_token.expose()),
                api_url,
                channel_names: Mutex::new(HashMap::new()),
                user_names: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The Web API base URL in use.
    pub fn api_url(&self) -> &str {
        &self.inner.api_url
    }

    /// Who the bot token belongs to; fails with `invalid_auth` for a bad token.
    pub async fn auth_test(&self) -> Result<BotIdentity, SlackError> {
        const METHOD: &str = manifest::AUTH_TEST;
        #[derive(Deserialize)]
        struct Answer {
            user_id: String,
            user: Option<String>,
            bot_id: Option<String>,
        }
        let session = self.inner.client.open_session(&self.inner.token);
        let answer: Answer = call(
            METHOD,
            session.http_session_api.http_get(METHOD, &NO_PARAMS, None),
        )
        .await?;
        Ok(BotIdentity {
            name: answer.user.unwrap_or_else(|| answer.user_id.clone()),
            user_id: answer.user_id,
            bot_id: answer.bot_id,
        })
    }

    /// Posts `msg` in `channel` (an id, or a name Slack resolves), in the thread of
    /// `thread_ts` when given; returns the new message's ts.
    pub async fn post_message(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        msg: &Message,
    ) -> Result<String, SlackError> {
        self.post(channel, thread_ts, msg).await.map(|p| p.ts)
    }

    /// Like [`SlackApi::post_message`], also returning the channel id Slack answered
    /// with (needed to edit the message later).
    pub async fn post(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        msg: &Message,
    ) -> Result<Posted, SlackError> {
        const METHOD: &str = manifest::CHAT_POST_MESSAGE;
        #[derive(Deserialize)]
        struct Answer {
            channel: String,
            ts: String,
        }
        let request = SlackApiChatPostMessageRequest::new(channel.into(), content(msg))
            .opt_thread_ts(thread_ts.filter(|t| !t.is_empty()).map(Into::into))
            .with_unfurl_links(false)
            .with_unfurl_media(false);
        let session = self.inner.client.open_session(&self.inner.token);
        let answer: Answer = call(
            METHOD,
            session.http_session_api.http_post(METHOD, &request, None),
        )
        .await?;
        Ok(Posted {
            channel: answer.channel,
            ts: answer.ts,
        })
    }

    /// Posts `msg` to a slash command's `response_url`, seen by the whole channel
    /// (`response_type: in_channel`), replacing the message posted there before when
    /// `replace_original` (<https://api.slack.com/interactivity/handling#message_responses>).
    /// Works in DMs and private channels the bot is not in; Slack takes up to 5 posts
    /// within 30 minutes and answers `used_url` / `expired_url` (HTTP 404) after that,
    /// returned as [`SlackError::Api`] codes. The URL is a credential: it never appears
    /// in errors or logs.
    pub async fn respond(
        &self,
        response_url: &str,
        msg: &Message,
        replace_original: bool,
    ) -> Result<(), SlackError> {
        self.respond_as(response_url, msg, replace_original, "in_channel")
            .await
    }

    /// Posts `msg` to an interaction's `response_url` for the person who clicked only
    /// (`response_type: ephemeral`), leaving the message clicked as it is
    /// (<https://api.slack.com/interactivity/handling#message_responses>).
    pub async fn respond_to_clicker(
        &self,
        response_url: &str,
        msg: &Message,
    ) -> Result<(), SlackError> {
        self.respond_as(response_url, msg, false, "ephemeral").await
    }

    async fn respond_as(
        &self,
        response_url: &str,
        msg: &Message,
        replace_original: bool,
        response_type: &str,
    ) -> Result<(), SlackError> {
        use slack_morphism::{SlackClientApiCallContext, SlackClientHttpConnector};
        const METHOD: &str = "response_url";
        let url: slack_morphism::SlackResponseUrl =
            serde_json::from_value(serde_json::Value::String(response_url.to_owned()))
                .map_err(|_| SlackError::Config("the response_url is not a URL".to_owned()))?;
        let mut body = serde_json::json!({
            "text": msg.text,
            "response_type": response_type,
            "replace_original": replace_original,
        });
        if let Some(blocks) = &msg.blocks {
            body["blocks"] = blocks.clone();
        }
        let span = tracing::debug_span!("Slack response_url");
        let context = SlackClientApiCallContext {
            rate_control_params: None,
            token: None,
            tracing_span: &span,
            is_sensitive_url: true,
        };
        let connector = self.inner.client.http_api.connector.clone();
        let request =
            connector.http_post_uri::<_, serde::de::IgnoredAny>(url.0.clone(), &body, context);
        match tokio::time::timeout(CALL_TIMEOUT, request).await {
            Ok(Ok(_)) => Ok(()),
            // Slack answers a spent or stale URL with 404 and the reason as text.
            Ok(Err(SlackClientError::HttpError(e)))
                if e.status_code.is_client_error() && e.status_code.as_u16() != 429 =>
            {
                let code = e
                    .http_response_body
                    .as_deref()
                    .map(str::trim)
                    .filter(|b| {
                        !b.is_empty()
                            && b.len() <= 64
                            && b.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    })
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("http_{}", e.status_code.as_u16()));
                Err(SlackError::Api {
                    method: METHOD.to_owned(),
                    error: code,
                })
            }
            Ok(Err(e)) => Err(map_error(METHOD, e)),
            Err(_) => Err(SlackError::Unavailable {
                method: METHOD.to_owned(),
                message: format!("no answer within {}s", CALL_TIMEOUT.as_secs()),
            }),
        }
    }

    /// Replaces the text and blocks of the message `ts` in `channel` (a channel id).
    pub async fn update_message(
        &self,
        channel: &str,
        ts: &str,
        msg: &Message,
    ) -> Result<(), SlackError> {
        const METHOD: &str = manifest::CHAT_UPDATE;
        let request = SlackApiChatUpdateRequest::new(channel.into(), content(msg), ts.into());
        let session = self.inner.client.open_session(&self.inner.token);
        let _: serde::de::IgnoredAny = call(
            METHOD,
            session.http_session_api.http_post(METHOD, &request, None),
        )
        .await?;
        Ok(())
    }

    /// The name of a channel (`conversations.info`), cached for ten minutes. `None` for
    /// conversations without a name (direct messages) and channels the bot cannot see.
    pub async fn channel_name(&self, channel_id: &str) -> Result<Option<String>, SlackError> {
        const METHOD: &str = manifest::CONVERSATIONS_INFO;
        #[derive(Deserialize)]
        struct Answer {
            channel: Channel,
        }
        #[derive(Deserialize)]
        struct Channel {
            name: Option<String>,
        }
        if let Some(name) = cached(&self.inner.channel_names, channel_id) {
            return Ok(name);
        }
        let session = self.inner.client.open_session(&self.inner.token);
        let params = [("channel", Some(channel_id))];
        let name = match call::<Answer>(
            METHOD,
            session.http_session_api.http_get(METHOD, &params, None),
        )
        .await
        {
            Ok(answer) => answer.channel.name.filter(|n| !n.is_empty()),
            Err(SlackError::Api { error, .. }) if error == "channel_not_found" => None,
            Err(e) => return Err(e),
        };
        remember(&self.inner.channel_names, channel_id, name.clone());
        Ok(name)
    }

    /// The user name of a user id (`users.info`), cached for ten minutes. `None` for an
    /// unknown user.
    pub async fn user_name(&self, user_id: &str) -> Result<Option<String>, SlackError> {
        const METHOD: &str = manifest::USERS_INFO;
        #[derive(Deserialize)]
        struct Answer {
            user: User,
        }
        #[derive(Deserialize)]
        struct User {
            name: Option<String>,
        }
        if let Some(name) = cached(&self.inner.user_names, user_id) {
            return Ok(name);
        }
        let session = self.inner.client.open_session(&self.inner.token);
        let params = [("user", Some(user_id))];
        let name = match call::<Answer>(
            METHOD,
            session.http_session_api.http_get(METHOD, &params, None),
        )
        .await
        {
            Ok(answer) => answer.user.name.filter(|n| !n.is_empty()),
            Err(SlackError::Api { error, .. }) if error == "user_not_found" => None,
            Err(e) => return Err(e),
        };
        remember(&self.inner.user_names, user_id, name.clone());
        Ok(name)
    }

    /// Every user's id by name (`users.list`, all pages), lowercase names. chima reads it
    /// once, to turn the user names in app.json into ids: permissions then compare ids,
    /// so a user who renames themselves to an allowed name gains nothing.
    pub async fn user_ids_by_name(&self) -> Result<HashMap<String, String>, SlackError> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            members: Vec<Member>,
            response_metadata: Option<Meta>,
        }
        #[derive(Deserialize)]
        struct Member {
            id: String,
            name: Option<String>,
            #[serde(default)]
            deleted: bool,
        }
        let mut out = HashMap::new();
        let mut cursor = String::new();
        for _ in 0..MAX_PAGES {
            let answer: Answer = self.list_page(manifest::USERS_LIST, &cursor).await?;
            for m in answer.members.into_iter().filter(|m| !m.deleted) {
                if let Some(name) = m.name.filter(|n| !n.is_empty()) {
                    out.insert(name.to_ascii_lowercase(), m.id);
                }
            }
            match answer.response_metadata.map(|m| m.next_cursor) {
                Some(next) if !next.is_empty() => cursor = next,
                _ => return Ok(out),
            }
        }
        Ok(out)
    }

    /// Every channel's id by name (`conversations.list`, public and private channels the
    /// bot can see, all pages), lowercase names without `#`.
    pub async fn channel_ids_by_name(&self) -> Result<HashMap<String, String>, SlackError> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            channels: Vec<Channel>,
            response_metadata: Option<Meta>,
        }
        #[derive(Deserialize)]
        struct Channel {
            id: String,
            name: Option<String>,
        }
        let mut out = HashMap::new();
        let mut cursor = String::new();
        for _ in 0..MAX_PAGES {
            let answer: Answer = self
                .list_page(manifest::CONVERSATIONS_LIST, &cursor)
                .await?;
            for c in answer.channels {
                if let Some(name) = c.name.filter(|n| !n.is_empty()) {
                    out.insert(name.to_ascii_lowercase(), c.id);
                }
            }
            match answer.response_metadata.map(|m| m.next_cursor) {
                Some(next) if !next.is_empty() => cursor = next,
                _ => return Ok(out),
            }
        }
        Ok(out)
    }

    async fn list_page<T: serde::de::DeserializeOwned + Send>(
        &self,
        method: &'static str,
        cursor: &str,
    ) -> Result<T, SlackError> {
        let session = self.inner.client.open_session(&self.inner.token);
        let mut params = vec![("limit", Some("200"))];
        if method == manifest::CONVERSATIONS_LIST {
            params.push(("types", Some("public_channel,private_channel")));
            params.push(("exclude_archived", Some("true")));
        }
        if !cursor.is_empty() {
            params.push(("cursor", Some(cursor)));
        }
        call::<T>(
            method,
            session.http_session_api.http_get(method, &params, None),
        )
        .await
    }

    /// Opens one Socket Mode connection URL with the app-level token
    /// (`apps.connections.open`, <https://api.slack.com/methods/apps.connections.open>).
    /// Tier 1 (<https://api.slack.com/apis/rate-limits>): one call per connection attempt,
    /// never one to check the token and another to connect.
    pub(crate) async fn open_connection(
        &self,
        app_token: &SlackApiToken,
    ) -> Result<String, SlackError> {
        const METHOD: &str = manifest::APPS_CONNECTIONS_OPEN;
        let session = self.inner.client.open_session(app_token);
        call(
            METHOD,
            session.apps_connections_open(&SlackApiAppsConnectionOpenRequest::new()),
        )
        .await
        .map(|answer| answer.url.0.to_string())
    }
}

const NO_PARAMS: [(&str, Option<&str>); 0] = [];

/// A bound on pages of a list method: 200 per page, 100 pages is 20,000 users or
/// channels, far past any workspace chima serves, and a loop that cannot run away.
const MAX_PAGES: usize = 100;

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    next_cursor: String,
}

/// A slack-morphism token from a secret.
pub(crate) fn token(value: &str) -> SlackApiToken {
    SlackApiToken::new(SlackApiTokenValue(value.trim().to_owned()))
}

fn normalise_api_url(url: &str) -> Result<String, SlackError> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.contains(char::is_whitespace) => Ok(url.to_owned()),
        _ => Err(SlackError::Config(format!(
            "SLACK_API_URL {url:?} is not an http(s) URL (e.g. https://slack.com/api)"
        ))),
    }
}

/// Plain `http://` is allowed so that tests can use a local fake; `https://` uses the
/// system's root certificates.
pub(crate) fn connector(api_url: &str) -> Result<SlackClientHyperHttpsConnector, SlackError> {
    let tls = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| {
            SlackError::Config(format!(
                "cannot load the system's root certificates for {api_url}: {e}"
            ))
        })?;
    let https = tls.https_or_http().enable_http1().build();
    Ok(SlackClientHyperHttpsConnector::with_connector(https).with_slack_api_url(api_url))
}

fn content(msg: &Message) -> SlackMessageContent {
    let content = SlackMessageContent::new().with_text(msg.text.clone());
    match msg.blocks.as_ref().map(blocks) {
        Some(Some(blocks)) => content.with_blocks(blocks),
        _ => content,
    }
}

/// Our JSON blocks as slack-morphism's typed blocks; `None` (text only) when they do
/// not fit its model, which a unit test rules out for the blocks we render.
fn blocks(value: &serde_json::Value) -> Option<Vec<SlackBlock>> {
    match serde_json::from_value(value.clone()) {
        Ok(blocks) => Some(blocks),
        Err(e) => {
            tracing::warn!(error = %e, "message blocks do not fit Block Kit; sending the text only");
            None
        }
    }
}

async fn call<T>(
    method: &str,
    request: impl std::future::Future<Output = Result<T, SlackClientError>>,
) -> Result<T, SlackError> {
    match tokio::time::timeout(CALL_TIMEOUT, request).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(map_error(method, e)),
        Err(_) => Err(SlackError::Unavailable {
            method: method.to_owned(),
            message: format!("no answer within {}s", CALL_TIMEOUT.as_secs()),
        }),
    }
}

/// slack-morphism's error as ours, keeping only codes, statuses and causes (never a
/// response body in full, never a request).
pub(crate) fn map_error(method: &str, error: SlackClientError) -> SlackError {
    let method = method.to_owned();
    match error {
        SlackClientError::ApiError(e) => SlackError::Api {
            method,
            error: e.code,
        },
        SlackClientError::RateLimitError(e) => SlackError::RateLimited {
            method,
            retry_after: e.retry_after,
        },
        SlackClientError::HttpError(e) => {
            let status = e.status_code;
            if status.is_server_error() || status.as_u16() == 408 {
                SlackError::Unavailable {
                    method,
                    message: format!("HTTP {status}"),
                }
            } else {
                SlackError::Protocol {
                    method,
                    message: format!("HTTP {status}"),
                }
            }
        }
        SlackClientError::HttpProtocolError(e) => SlackError::Unavailable {
            method,
            message: e
                .cause
                .as_deref()
                .map(error_chain)
                .unwrap_or_else(|| "connection failed".to_owned()),
        },
        SlackClientError::EndOfStream(_) => SlackError::Unavailable {
            method,
            message: "the connection ended early".to_owned(),
        },
        SlackClientError::ProtocolError(e) => SlackError::Protocol {
            method,
            message: e.json_error.to_string(),
        },
        SlackClientError::SystemError(e) => SlackError::Protocol {
            method,
            message: e.message.unwrap_or_else(|| "client error".to_owned()),
        },
        SlackClientError::SocketModeProtocolError(e) => SlackError::Protocol {
            method,
            message: e.message,
        },
    }
}

/// "outer: inner: innermost", the way people read a chain of causes.
fn error_chain(error: &(dyn std::error::Error + Send + Sync + 'static)) -> String {
    let error: &(dyn std::error::Error + 'static) = error;
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

fn cached(
    cache: &Mutex<HashMap<String, (Option<String>, Instant)>>,
    key: &str,
) -> Option<Option<String>> {
    let guard = cache.lock().unwrap_or_else(|e| e.into_inner());
    guard
        .get(key)
        .filter(|(_, at)| at.elapsed() < NAME_TTL)
        .map(|(name, _)| name.clone())
}

fn remember(
    cache: &Mutex<HashMap<String, (Option<String>, Instant)>>,
    key: &str,
    name: Option<String>,
) {
    let mut guard = cache.lock().unwrap_or_else(|e| e.into_inner());
    if guard.len() >= NAME_CACHE_MAX {
        guard.clear();
    }
    guard.insert(key.to_owned(), (name, Instant::now()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use chima_config::Secret;

    fn config(url: &str, token: &str) -> SlackConfig {
        SlackConfig {
            api_url: url.to_owned(),
            bot_token: Secret::new(token),
            app_token: None,
            signing_secret: None,
        }
    }

    #[test]
    fn urls_are_checked_and_normalised() {
        let api = SlackApi::new(&config("http://127.0.0.1:9/api/", "xoxb-1")).expect("http");
        assert_eq!(api.api_url(), "http://127.0.0.1:9/api");
        let api = SlackApi::new(&config(crate::DEFAULT_API_URL, "xoxb-1")).expect("https");
        assert_eq!(api.api_url(), "https://slack.com/api");
        for bad in ["", "slack.com/api", "ftp://x", "http://", "http://a b"] {
            let err = SlackApi::new(&config(bad, "xoxb-1")).expect_err(bad);
            assert!(matches!(err, SlackError::Config(_)), "{bad}: {err:?}");
        }
    }

    #[test]
    fn an_empty_token_is_refused_and_tokens_never_show() {
        let err = SlackApi::new(&config(crate::DEFAULT_API_URL, " ")).expect_err("empty");
        assert!(err.to_string().contains("SLACK_BOT_TOKEN"), "{err}");
        let api =
            SlackApi::new(&config(crate::DEFAULT_API_URL, "xoxb-very-secret")).expect("client");
        assert!(!format!("{api:?}").contains("very-secret"));
    }

    #[test]
    fn errors_keep_codes_and_statuses() {
        use slack_morphism::errors::*;
        let api = map_error(
            "chat.postMessage",
            SlackClientError::ApiError(
                SlackClientApiError::new("channel_not_found".to_owned())
                    .with_http_response_body("{\"ok\":false}".to_owned()),
            ),
        );
        assert_eq!(api.api_code(), Some("channel_not_found"));
        assert!(api.is_permanent() && !api.is_transient());
        assert_eq!(
            api.to_string(),
            "Slack refused chat.postMessage: channel_not_found"
        );

        let limited = map_error(
            "chat.update",
            SlackClientError::RateLimitError(
                SlackRateLimitError::new().with_retry_after(Duration::from_secs(7)),
            ),
        );
        assert_eq!(
            limited,
            SlackError::RateLimited {
                method: "chat.update".to_owned(),
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert!(limited.is_transient());
        assert!(limited.to_string().contains("retry after 7s"), "{limited}");

        let outage = map_error(
            "chat.update",
            SlackClientError::HttpError(SlackClientHttpError::new(http_status(503))),
        );
        assert!(outage.is_transient(), "{outage:?}");
        let not_found = map_error(
            "chat.update",
            SlackClientError::HttpError(SlackClientHttpError::new(http_status(404))),
        );
        assert!(!not_found.is_transient() && !not_found.is_permanent());
    }

    fn http_status(code: u16) -> axum::http::StatusCode {
        axum::http::StatusCode::from_u16(code).expect("status")
    }
}
