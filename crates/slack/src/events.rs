//! The Events API, slash commands and interactivity over HTTP (README, "Slack";
//! chima's own surface): for a chima reachable from Slack, with the signing secret.
//!
//! Every request's signature and timestamp are checked on the raw body before anything
//! else is read; a bad one is 401 and goes no further. Slack is answered before the
//! handler runs (it waits 3 seconds at most, then retries), and a retried event is
//! handled once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chima_config::Secret;
use tokio::sync::Mutex;

use crate::api::SlackApi;
use crate::error::SignatureError;
use crate::incoming::{
    Handler, Incoming, IncomingKind, Payload, SEEN_CAPACITY, Seen, parse_form, parse_payload,
    parse_slash_command_form,
};
use crate::manifest;
use crate::signature::verify_signature;
use crate::socket::working_on_it;

/// The largest request body accepted (larger: 413).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// After a failed `auth.test`, how long before trying again.
const AUTH_RETRY: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct Events {
    inner: Arc<Inner>,
}

struct Inner {
    signing_secret: Secret,
    api: SlackApi,
    handler: Arc<dyn Handler>,
    seen: Arc<Seen>,
    /// The bot's user id once known, or when it was last looked up in vain.
    bot_user_id: Mutex<(Option<String>, Option<Instant>)>,
}

/// The routes of chima's HTTP surface for Slack:
///
/// * `POST /slack/events`: the Events API. `url_verification` is answered with its
///   challenge; an `event_callback` carrying a chat line goes to the handler.
/// * `POST /slack/commands`: slash commands (`/deploy <args>`), answered at once with an
///   ephemeral "working on it"; the line goes to the handler as
///   [`IncomingKind::SlashCommand`].
/// * `POST /slack/interactive`: button clicks (`payload=` form field, `block_actions`):
///   an Approve or Reject click goes to the handler as [`IncomingKind::Button`], by the
///   clicker Slack's signed payload names; other clicks are acknowledged.
/// * `GET /healthz`.
///
/// Bodies over [`BODY_LIMIT`]: 413. Bad or missing signature, or a timestamp more than
/// five minutes off: 401. A body that is not what Slack sends: 400. Each request gets
/// a tracing span with its method and path only.
pub fn events_router(signing_secret: Secret, api: SlackApi, handler: Arc<dyn Handler>) -> Router {
    let state = Events {
        inner: Arc::new(Inner {
            signing_secret,
            api,
            handler,
            seen: Seen::new(SEEN_CAPACITY),
            bot_user_id: Mutex::new((None, None)),
        }),
    };
    Router::new()
        .route(manifest::EVENTS_PATH, post(events))
        .route(manifest::COMMANDS_PATH, post(commands))
        .route(manifest::INTERACTIVE_PATH, post(interactive))
        .route("/healthz", get(healthz))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(trace_layer())
        .with_state(state)
}

/// A span per request with the method and path only, and the status and latency at
/// debug level. Never the headers or the body: they carry Slack's request signature,
/// slash commands' response URLs and the text people typed.
fn trace_layer() -> tower_http::trace::TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    impl Fn(&axum::http::Request<axum::body::Body>) -> tracing::Span + Clone,
> {
    tower_http::trace::TraceLayer::new_for_http().make_span_with(
        |req: &axum::http::Request<axum::body::Body>| {
            tracing::debug_span!("http", method = %req.method(), path = %req.uri().path())
        },
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn events(State(events): State<Events>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = events.check(&headers, &body) {
        return refused(manifest::EVENTS_PATH, &e);
    }
    let payload = match parse_payload(&body, None) {
        Ok(payload) => payload,
        Err(e) => return bad_request(&e.to_string()),
    };
    match payload {
        Payload::UrlVerification { challenge } => {
            tracing::info!("Slack Events API URL verified");
            axum::Json(serde_json::json!({ "challenge": challenge })).into_response()
        }
        Payload::Line { incoming, event_id } => {
            let retry = header(&headers, "x-slack-retry-num");
            if events
                .inner
                .seen
                .first_delivery(event_id.as_deref(), &incoming)
            {
                events.spawn_handle(incoming);
            } else {
                tracing::debug!(
                    event_id = event_id.as_deref().unwrap_or(""),
                    retry = retry.unwrap_or(""),
                    "Slack redelivered an event already handled"
                );
            }
            StatusCode::OK.into_response()
        }
        Payload::Ignored { why, .. } => {
            tracing::trace!(%why, "Slack event ignored");
            StatusCode::OK.into_response()
        }
    }
}

async fn commands(State(events): State<Events>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = events.check(&headers, &body) {
        return refused(manifest::COMMANDS_PATH, &e);
    }
    let incoming = match parse_slash_command_form(&body) {
        Ok(incoming) => incoming,
        Err(e) => return bad_request(&e.to_string()),
    };
    let answer = match &incoming.kind {
        IncomingKind::SlashCommand { command, .. } => working_on_it(command, &incoming.text),
        _ => working_on_it("", &incoming.text),
    };
    events.spawn_handle(incoming);
    match serde_json::to_value(&answer) {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(_) => StatusCode::OK.into_response(),
    }
}

async fn interactive(State(events): State<Events>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = events.check(&headers, &body) {
        return refused(manifest::INTERACTIVE_PATH, &e);
    }
    let fields = match parse_form(&body) {
        Ok(fields) => fields,
        Err(e) => return bad_request(&e.to_string()),
    };
    let Some((_, payload)) = fields.iter().find(|(k, _)| k == "payload") else {
        return bad_request("an interaction without a payload field");
    };
    match parse_payload(payload.as_bytes(), None) {
        // An Approve or Reject click: the clicker's line, handled after the 200
        // (Slack waits 3 seconds at most).
        Ok(Payload::Line { incoming, .. }) => {
            events.spawn_handle(incoming);
            StatusCode::OK.into_response()
        }
        // A link button ("View log"): the click only needs the 200.
        Ok(payload) => {
            tracing::debug!(?payload, "Slack interaction acknowledged");
            StatusCode::OK.into_response()
        }
        Err(e) => bad_request(&e.to_string()),
    }
}

impl Events {
    /// Checks the request's signature and timestamp.
    fn check(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), SignatureError> {
        match (
            header(headers, "x-slack-request-timestamp"),
            header(headers, "x-slack-signature"),
        ) {
            (Some(timestamp), Some(signature)) => verify_signature(
                self.inner.signing_secret.expose().as_bytes(),
                timestamp,
                body,
                signature,
                chrono::Utc::now().timestamp(),
            ),
            _ => Err(SignatureError::Missing),
        }
    }

    /// Hands the line to the handler in a task of its own, after setting the bot's own
    /// messages aside.
    fn spawn_handle(&self, incoming: Incoming) {
        let events = self.clone();
        tokio::spawn(async move {
            if incoming.kind != IncomingKind::Message && incoming.kind != IncomingKind::Mention {
                events.inner.handler.handle(incoming).await;
                return;
            }
            if let Some(bot) = events.bot_user_id().await
                && bot == incoming.user_id
            {
                tracing::trace!("the bot's own message ignored");
                return;
            }
            events.inner.handler.handle(incoming).await;
        });
    }

    async fn bot_user_id(&self) -> Option<String> {
        let mut guard = self.inner.bot_user_id.lock().await;
        if guard.0.is_none() && guard.1.is_none_or(|at| at.elapsed() >= AUTH_RETRY) {
            match self.inner.api.auth_test().await {
                Ok(bot) => guard.0 = Some(bot.user_id),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot ask Slack who the bot is (auth.test)");
                    guard.1 = Some(Instant::now());
                }
            }
        }
        guard.0.clone()
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The 401 for a request whose signature or timestamp is wrong.
fn refused(path: &str, e: &SignatureError) -> Response {
    tracing::warn!(path, error = %e, "request to the Slack endpoint refused");
    (
        StatusCode::UNAUTHORIZED,
        format!("This request is not signed by Slack: {e}.\n"),
    )
        .into_response()
}

fn bad_request(why: &str) -> Response {
    tracing::warn!(why, "malformed request to the Slack endpoint");
    (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response()
}
