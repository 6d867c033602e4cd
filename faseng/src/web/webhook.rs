//! `POST /webhooks/github`: the signature is checked over the raw body before
//! anything is read; a `deployment` becomes a job (once, however often it is
//! delivered); everything else is acknowledged. The answer goes out before any
//! deploy work starts: a worker is woken through the store.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chima_github::webhook::{self, DeploymentEvent, Event};
use chima_store::NewDeployment;
use serde_json::{Value, json};

use super::AppState;

/// GitHub's limit for webhook payloads is 25 MB, but deployments are small;
/// anything over this is refused with 413 before it is read.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub async fn github(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(secret) = state.webhook_secret.as_ref() else {
        state.metrics.webhook_rejected("not_configured");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "GITHUB_WEBHOOK_SECRET is not set, so faseng takes no webhooks\n",
        )
            .into_response();
    };
    let signature = header(&headers, "x-hub-signature-256");
    if let Err(e) = webhook::verify_signature(secret.expose().as_bytes(), &body, signature) {
        state.metrics.webhook_rejected("signature");
        tracing::warn!(error = %e, "webhook refused: bad signature");
        return (StatusCode::UNAUTHORIZED, format!("{e}\n")).into_response();
    }
    let Some(event) = header(&headers, "x-github-event") else {
        state.metrics.webhook_rejected("malformed");
        return (StatusCode::BAD_REQUEST, "X-GitHub-Event is missing\n").into_response();
    };
    let Some(delivery) = header(&headers, "x-github-delivery").filter(|d| d.len() <= 200) else {
        state.metrics.webhook_rejected("malformed");
        return (StatusCode::BAD_REQUEST, "X-GitHub-Delivery is missing\n").into_response();
    };
    let parsed = match webhook::parse_event(event, &body) {
        Ok(e) => e,
        Err(e) => {
            state.metrics.webhook_rejected("malformed");
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };
    state.metrics.webhook_received(event);
    match parsed {
        Event::Ping { .. } => {
            remember(&state, delivery, event).await;
            (StatusCode::OK, "pong\n").into_response()
        }
        Event::Other { event } => {
            let auto = state
                .autodeploy
                .as_ref()
                .filter(|_| crate::autodeploy::EVENTS.contains(&event.as_str()));
            let Some(auto) = auto else {
                remember(&state, delivery, &event).await;
                return (
                    StatusCode::ACCEPTED,
                    format!("ignored: faseng does not act on `{event}` events\n"),
                )
                    .into_response();
            };
            // Same dedupe as deployments: a redelivered event is considered once.
            match state.store.record_delivery(delivery, &event).await {
                Ok(false) => return (StatusCode::OK, "already seen\n").into_response(),
                Ok(true) => {}
                Err(e) => {
                    tracing::error!(error = %e, "cannot record a delivery");
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "faseng cannot record the delivery right now; redeliver it\n",
                    )
                        .into_response();
                }
            }
            let trigger = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| crate::autodeploy::trigger(&event, &v));
            match trigger {
                Some(t) => {
                    let auto = auto.clone();
                    tokio::spawn(async move { auto.consider(t).await });
                    (StatusCode::ACCEPTED, "considering auto-deploy\n").into_response()
                }
                None => (
                    StatusCode::ACCEPTED,
                    "nothing to auto-deploy in this event\n",
                )
                    .into_response(),
            }
        }
        Event::Deployment(ev) => {
            let new = new_deployment(&state, &ev, delivery);
            match state.store.create_deployment(new).await {
                Ok(created) => {
                    // The delivery id is also in the job's payload (`_faseng`), and the
                    // job's idempotency rests on the deployment id: the separate record
                    // need not delay the answer by a second commit.
                    let (st, delivery, event) =
                        (state.clone(), delivery.to_owned(), event.to_owned());
                    tokio::spawn(async move { remember(&st, &delivery, &event).await });
                    let d = created.deployment;
                    tracing::info!(
                        deployment = d.id,
                        github = ev.deployment_id,
                        repo = %ev.repository,
                        already = created.already_existed,
                        "deployment webhook"
                    );
                    let status = if created.already_existed {
                        StatusCode::OK
                    } else {
                        StatusCode::CREATED
                    };
                    let body = json!({
                        "deployment": d.id,
                        "already_existed": created.already_existed,
                        "log_url": state.links.url(&state.public_url, d.id),
                    });
                    (status, Json(body)).into_response()
                }
                Err(e) => {
                    state.metrics.webhook_rejected("store");
                    tracing::error!(error = %e, "cannot store a deployment");
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "faseng cannot store the deployment right now; nothing was queued, redeliver it from GitHub\n",
                    )
                        .into_response()
                }
            }
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Records the delivery id (for the record and metrics; idempotency itself
/// rests on the GitHub deployment id, so a failure here loses nothing).
async fn remember(state: &AppState, delivery: &str, event: &str) {
    if let Err(e) = state.store.record_delivery(delivery, event).await {
        tracing::warn!(error = %e, "cannot record the delivery");
    }
}

/// The job for a `deployment` event. Provider and settings come from
/// `payload.config` (chima and hubot-deploy put the app entry there), else from
/// faseng's app.json entry for the repository; the engine decides, so that a
/// deployment it cannot run still gets an `error` status saying why.
fn new_deployment(state: &AppState, ev: &DeploymentEvent, delivery: &str) -> NewDeployment {
    let app_entry = state
        .apps
        .as_ref()
        .and_then(|apps| apps.by_repository(&ev.repository));
    let payload = &ev.payload;
    let app = payload
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| chima_command::is_slug(n))
        .map(str::to_ascii_lowercase)
        .or_else(|| app_entry.map(|a| a.name.clone()))
        .unwrap_or_else(|| {
            ev.repository
                .rsplit('/')
                .next()
                .unwrap_or(&ev.repository)
                .to_ascii_lowercase()
        });
    let requester = payload
        .pointer("/notify/user_name")
        .or_else(|| payload.pointer("/notify/user"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(&ev.creator)
        .to_string();
    let provider = payload
        .pointer("/config/provider")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| app_entry.map(|a| a.provider.to_string()))
        .unwrap_or_else(|| "unknown".to_string());
    let hosts = payload
        .get("hosts")
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty())
        .map(str::to_string);
    let mut notify = vec!["github".to_string()];
    if payload
        .pointer("/notify/room")
        .and_then(Value::as_str)
        .is_some_and(|r| !r.is_empty())
    {
        notify.push("chat".to_string());
    }
    // faseng's own notes about the delivery go under `_faseng`, overwriting
    // whatever the sender put there. A payload that is not an object (hubot-
    // deploy's encrypted string) is kept as is: the engine refuses it clearly.
    let mut stored = payload.clone();
    if let Value::Object(map) = &mut stored {
        map.insert(
            "_faseng".to_string(),
            json!({ "clone_url": ev.clone_url, "delivery": delivery }),
        );
    }
    NewDeployment {
        source_key: format!("github:{}", ev.deployment_id),
        requester,
        app,
        environment: ev.environment.clone(),
        repository: ev.repository.clone(),
        git_ref: ev.git_ref.clone(),
        sha: Some(ev.sha.clone()),
        task: ev.task.clone(),
        hosts,
        provider,
        payload: stored,
        github_deployment_id: Some(ev.deployment_id),
        notify,
        timeout_secs: None,
    }
}
