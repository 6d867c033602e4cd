//! Socket Mode: chima keeps a WebSocket open to Slack (no public URL needed) with the
//! app-level token, through slack-morphism's listener, which acknowledges envelopes and
//! reconnects on `disconnect` frames and lost connections.
//!
//! The callbacks only read the payload and hand it to the [`Handler`] in a task of its
//! own, so that every envelope is acknowledged at once (Slack redelivers what is not
//! acknowledged within 3 seconds).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use slack_morphism::SlackClient;
use slack_morphism::errors::SlackClientError;
use slack_morphism::events::{
    SlackCommandEvent, SlackCommandEventResponse, SlackInteractionEvent, SlackPushEventCallback,
};
use slack_morphism::hyper_tokio::SlackHyperClient;
use slack_morphism::listener::{SlackClientEventsListenerEnvironment, SlackClientEventsUserState};
use slack_morphism::socket_mode::{
    SlackClientSocketModeConfig, SlackClientSocketModeListener, SlackSocketModeListenerCallbacks,
};
use slack_morphism::{
    SlackApiToken, SlackMessageContent, SlackMessageResponseType, UserCallbackResult,
};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::SlackConfig;
use crate::api::{SlackApi, connector, token};
use crate::error::SlackError;
use crate::incoming::{Handler, Payload, SEEN_CAPACITY, Seen, dispatch, parse_value};

/// Seconds between attempts to reconnect when Slack cannot be reached.
const RECONNECT_SECS: u64 = 5;

/// What the callbacks (plain `fn`s) find in the listener's user state.
struct Context {
    handler: Arc<dyn Handler>,
    bot_user_id: String,
    seen: Arc<Seen>,
    /// Set once `run_socket_mode` is returning: late events are dropped.
    stopped: AtomicBool,
    hellos: AtomicU64,
}

impl Context {
    /// Reads a payload (an `event_callback` or a whole frame) and dispatches its line.
    fn accept(&self, value: &serde_json::Value) {
        if self.stopped.load(Ordering::Relaxed) {
            return;
        }
        match parse_value(value, Some(&self.bot_user_id)) {
            Ok(Payload::Line { incoming, event_id }) => {
                if self.seen.first_delivery(event_id.as_deref(), &incoming) {
                    dispatch(&self.handler, incoming);
                } else {
                    tracing::debug!(
                        event_id = event_id.as_deref().unwrap_or(""),
                        "Slack redelivered an event already handled"
                    );
                }
            }
            Ok(Payload::Ignored { why, .. }) => {
                tracing::trace!(%why, "Socket Mode payload ignored")
            }
            Ok(Payload::UrlVerification { .. }) => {}
            Err(e) => tracing::warn!(error = %e, "unreadable Socket Mode payload"),
        }
    }
}

/// Runs Socket Mode until `shutdown` turns true.
///
/// Checks both tokens first (`auth.test` with the bot token, `apps.connections.open`
/// with the app token, whose URL the first connection then uses) and fails at once when
/// one is wrong. Then: one connection,
/// re-opened on `disconnect` frames and on network loss; every envelope acknowledged
/// at once; the bot's own messages, other bots' messages, edits and events the bot does
/// not use ignored; a redelivered event (same `event_id`, `retry_attempt` > 0) handled
/// once; `handler.handle` called in a task of its own. Slash commands are answered with
/// an ephemeral "working on it".
pub async fn run_socket_mode(
    cfg: SlackConfig,
    api: SlackApi,
    handler: Arc<dyn Handler>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SlackError> {
    let Some(app_token) = cfg
        .app_token
        .as_ref()
        .filter(|t| !t.expose().trim().is_empty())
    else {
        return Err(SlackError::Config(
            "SLACK_APP_TOKEN is not set: Socket Mode needs an app-level token (xapp-...) \
             with the connections:write scope"
                .to_owned(),
        ));
    };
    let app_token = token(app_token.expose());
    let bot = api.auth_test().await?;
    let first_url = api.open_connection(&app_token).await?;
    if *shutdown.borrow() {
        return Ok(());
    }
    let opener = Arc::new(Opener {
        api: api.clone(),
        app_token: app_token.clone(),
        state: Mutex::new(OpenerState {
            first: Some((first_url, Instant::now())),
            not_before: None,
        }),
    });
    let relay = Relay::start(opener, app_token.token_value.0.as_bytes()).await?;
    let listener_client = Arc::new(SlackClient::new(connector(&relay.url)?));

    let context = Arc::new(Context {
        handler,
        bot_user_id: bot.user_id.clone(),
        seen: Seen::new(SEEN_CAPACITY),
        stopped: AtomicBool::new(false),
        hellos: AtomicU64::new(0),
    });
    let environment = Arc::new(
        SlackClientEventsListenerEnvironment::new(listener_client)
            .with_error_handler(on_error)
            .with_user_state(Arc::clone(&context)),
    );
    let callbacks = SlackSocketModeListenerCallbacks::new()
        .with_hello_events(on_hello)
        .with_push_events(on_push)
        .with_command_events(on_command)
        .with_interaction_events(on_interaction);
    let config = SlackClientSocketModeConfig::new()
        .with_max_connections_count(1)
        .with_initial_backoff_in_seconds(0)
        .with_reconnect_timeout_in_seconds(RECONNECT_SECS);
    let listener = SlackClientSocketModeListener::new(&config, environment, callbacks);
    listener
        .listen_for(&relay.token())
        .await
        .map_err(|e| crate::api::map_error(crate::manifest::APPS_CONNECTIONS_OPEN, e))?;
    listener.start().await;
    tracing::info!(bot = %bot.name, bot_user_id = %bot.user_id, "Slack Socket Mode started");

    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            break;
        }
    }
    context.stopped.store(true, Ordering::Relaxed);
    listener.shutdown().await;
    drop(relay);
    tracing::info!(
        connections = context.hellos.load(Ordering::Relaxed),
        "Slack Socket Mode stopped"
    );
    Ok(())
}

/// The start's URL is used for the first connection only this soon after Slack gave it:
/// a URL from `apps.connections.open` is for one connection made right away
/// (https://api.slack.com/apis/socket-mode), so an older one is not trusted and a fresh
/// call is made instead.
const FIRST_URL_TTL: Duration = Duration::from_secs(20);

/// How long to wait after a 429 on `apps.connections.open` without a `Retry-After`:
/// Tier 1 allows about one call a minute (https://api.slack.com/apis/rate-limits#tiers).
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Makes the `apps.connections.open` calls of Socket Mode: one per connection attempt.
struct Opener {
    api: SlackApi,
    app_token: SlackApiToken,
    /// Held while a call is made (or waited for): attempts are one after the other.
    state: Mutex<OpenerState>,
}

struct OpenerState {
    /// The URL of the call made at start, for the first connection.
    first: Option<(String, Instant)>,
    /// Slack's `Retry-After`: no call before this.
    not_before: Option<tokio::time::Instant>,
}

impl Opener {
    /// A URL for one connection attempt: the start's while it is fresh, else one call.
    async fn open(&self) -> Result<String, SlackError> {
        let mut state = self.state.lock().await;
        if let Some((url, at)) = state.first.take()
            && at.elapsed() < FIRST_URL_TTL
        {
            return Ok(url);
        }
        if let Some(at) = state.not_before.take() {
            tokio::time::sleep_until(at).await;
        }
        let result = self.api.open_connection(&self.app_token).await;
        match &result {
            Ok(_) => tracing::debug!("Socket Mode connection URL opened"),
            Err(SlackError::RateLimited { retry_after, .. }) => {
                let wait = retry_after
                    .unwrap_or(DEFAULT_RETRY_AFTER)
                    .max(Duration::from_secs(1));
                state.not_before = Some(tokio::time::Instant::now() + wait);
                tracing::warn!(
                    "Slack rate-limited apps.connections.open: the next Socket Mode connection attempt waits {wait:?}"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot open a Socket Mode connection; trying again in {RECONNECT_SECS}s")
            }
        }
        result
    }
}

/// slack-morphism's `SLACK_API_URL` for the listener: `apps.connections.open` answered by
/// the [`Opener`], in Slack's shapes (https://api.slack.com/methods/apps.connections.open:
/// `{"ok": true, "url": ...}`; `{"ok": false, "error": ...}`; 429 with `Retry-After`).
/// Loopback only; the listener authenticates with a token derived for this run, never
/// with the app token, which does not leave the [`Opener`]. Stops when dropped.
struct Relay {
    url: String,
    token: String,
    task: JoinHandle<()>,
}

#[derive(Clone)]
struct RelayState {
    opener: Arc<Opener>,
    token: Arc<str>,
}

impl Relay {
    async fn start(opener: Arc<Opener>, key: &[u8]) -> Result<Relay, SlackError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| {
                SlackError::Config(format!(
                    "cannot listen on 127.0.0.1 for Socket Mode's connection URLs: {e}"
                ))
            })?;
        let address = listener.local_addr().map_err(|e| {
            SlackError::Config(format!(
                "no local address for Socket Mode's connection URLs: {e}"
            ))
        })?;
        // Unguessable without the app token; new for each run.
        let nonce = format!(
            "{}:{}:{address}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        );
        let token = crate::signature::sign(key, &nonce, b"socket-mode-relay");
        let state = RelayState {
            opener,
            token: Arc::from(token.as_str()),
        };
        let router = Router::new()
            .route("/apps.connections.open", post(relay_open))
            .with_state(state);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::warn!(error = %e, "Socket Mode's connection URL relay stopped");
            }
        });
        Ok(Relay {
            url: format!("http://{address}"),
            token,
            task,
        })
    }

    /// The token slack-morphism's listener presents to the relay.
    fn token(&self) -> SlackApiToken {
        token(&self.token)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay_open(State(relay): State<RelayState>, headers: HeaderMap) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !same(presented.as_bytes(), relay.token.as_bytes()) {
        return slack_answer(
            StatusCode::OK,
            serde_json::json!({"ok": false, "error": "invalid_auth"}),
        );
    }
    match relay.opener.open().await {
        Ok(url) => slack_answer(StatusCode::OK, serde_json::json!({"ok": true, "url": url})),
        Err(SlackError::RateLimited { retry_after, .. }) => {
            let mut answer = slack_answer(
                StatusCode::TOO_MANY_REQUESTS,
                serde_json::json!({"ok": false, "error": "ratelimited"}),
            );
            let secs = retry_after.unwrap_or(DEFAULT_RETRY_AFTER).as_secs().max(1);
            answer
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            answer
        }
        Err(SlackError::Api { error, .. }) => slack_answer(
            StatusCode::OK,
            serde_json::json!({"ok": false, "error": error}),
        ),
        Err(_) => slack_answer(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"ok": false, "error": "service_unavailable"}),
        ),
    }
}

fn slack_answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Equal, in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn context_of(states: &SlackClientEventsUserState) -> Option<Arc<Context>> {
    let guard = states.read().await;
    guard.get_user_state::<Arc<Context>>().cloned()
}

/// Generic only because slack-morphism does not export the hello event's type.
async fn on_hello<E: Send + 'static>(
    _event: E,
    _client: Arc<SlackHyperClient>,
    states: SlackClientEventsUserState,
) {
    if let Some(context) = context_of(&states).await {
        context.hellos.fetch_add(1, Ordering::Relaxed);
    }
    tracing::debug!("Slack Socket Mode connected");
}

async fn on_push(
    event: SlackPushEventCallback,
    _client: Arc<SlackHyperClient>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let Some(context) = context_of(&states).await else {
        return Ok(());
    };
    // Our own reading of the payload (see `incoming`): back to JSON first.
    match serde_json::to_value(&event) {
        Ok(mut value) => {
            if let Some(object) = value.as_object_mut() {
                object.insert("type".to_owned(), "event_callback".into());
            }
            context.accept(&value);
        }
        Err(e) => tracing::warn!(error = %e, "cannot read a Socket Mode event"),
    }
    Ok(())
}

async fn on_command(
    event: SlackCommandEvent,
    _client: Arc<SlackHyperClient>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    let command = event.command.0.clone();
    if let Some(context) = context_of(&states).await {
        match serde_json::to_value(&event) {
            Ok(payload) => context.accept(&serde_json::json!({
                "type": "slash_commands",
                "payload": payload,
            })),
            Err(e) => tracing::warn!(error = %e, "cannot read a Socket Mode slash command"),
        }
    }
    // Echoed as typed: decoded, then escaped once by `working_on_it`.
    Ok(working_on_it(
        &command,
        &crate::mrkdwn::decode(event.text.as_deref().unwrap_or("")),
    ))
}

/// The immediate, ephemeral answer to a slash command.
pub(crate) fn working_on_it(command: &str, text: &str) -> SlackCommandEventResponse {
    let line = format!("{command} {text}");
    let line: String = line.trim().chars().take(200).collect();
    SlackCommandEventResponse::new(
        SlackMessageContent::new().with_text(format!("Working on `{}`…", escape_code(&line))),
    )
    .with_response_type(SlackMessageResponseType::Ephemeral)
}

fn escape_code(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('`', "'")
}

async fn on_interaction(
    event: SlackInteractionEvent,
    _client: Arc<SlackHyperClient>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    // Approve and Reject clicks are lines (see `incoming`); a click on a link button
    // ("View log") only needs the acknowledgement, which the listener sends.
    let Some(context) = context_of(&states).await else {
        return Ok(());
    };
    match serde_json::to_value(&event) {
        Ok(payload) => context.accept(&serde_json::json!({
            "type": "interactive",
            "payload": payload,
        })),
        Err(e) => tracing::warn!(error = %e, "cannot read a Socket Mode interaction"),
    }
    Ok(())
}

/// slack-morphism's error handler: logs (never a payload: it may carry the
/// verification token) and, for a frame its models could not read, reads it ourselves
/// so that the line is not lost.
fn on_error(
    error: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<SlackHyperClient>,
    states: SlackClientEventsUserState,
) -> StatusCode {
    match error.downcast_ref::<SlackClientError>() {
        Some(SlackClientError::ProtocolError(e)) => {
            tracing::debug!(error = %e.json_error, "slack-morphism could not read a Socket Mode frame; reading it ourselves");
            if let Some(body) = e.json_body.clone() {
                tokio::spawn(async move {
                    let Some(context) = context_of(&states).await else {
                        return;
                    };
                    match serde_json::from_str::<serde_json::Value>(&body) {
                        Ok(frame) => context.accept(&frame),
                        Err(e) => tracing::warn!(error = %e, "a Socket Mode frame is not JSON"),
                    }
                });
            }
        }
        Some(SlackClientError::SocketModeProtocolError(e)) => {
            tracing::info!(error = %e.message, "Slack Socket Mode connection problem; reconnecting");
        }
        Some(other) => {
            let error = crate::api::map_error("socket mode", describe(other));
            tracing::warn!(%error, "Slack Socket Mode error");
        }
        None => tracing::warn!(%error, "Slack Socket Mode error"),
    }
    StatusCode::OK
}

/// A copy of the parts of an error that `map_error` keeps (it takes ownership).
fn describe(error: &SlackClientError) -> SlackClientError {
    use slack_morphism::errors::*;
    match error {
        SlackClientError::ApiError(e) => {
            SlackClientError::ApiError(SlackClientApiError::new(e.code.clone()))
        }
        SlackClientError::RateLimitError(e) => SlackClientError::RateLimitError(
            SlackRateLimitError::new().opt_retry_after(e.retry_after),
        ),
        SlackClientError::HttpError(e) => {
            SlackClientError::HttpError(SlackClientHttpError::new(e.status_code))
        }
        other => SlackClientError::SocketModeProtocolError(
            SlackClientSocketModeProtocolError::new(match other {
                SlackClientError::HttpProtocolError(_) => "connection failed".to_owned(),
                SlackClientError::EndOfStream(_) => "the connection ended".to_owned(),
                SlackClientError::SystemError(e) => e
                    .message
                    .clone()
                    .unwrap_or_else(|| "client error".to_owned()),
                _ => "protocol error".to_owned(),
            }),
        ),
    }
}
