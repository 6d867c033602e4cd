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
            let intake =
                crate::intake::Intake::read(state.apps.as_deref(), state.signing_key.as_ref(), &ev);
            let replayed = match replayed(&state, &ev, intake.nonce()).await {
                Ok(r) => r,
                Err(e) => {
                    state.metrics.webhook_rejected("store");
                    tracing::error!(error = %e, "cannot check the request's nonce");
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "faseng cannot store the deployment right now; nothing was queued, redeliver it from GitHub\n",
                    )
                        .into_response();
                }
            };
            let new = crate::intake::decide(intake, delivery, replayed);
            // A deployment to an environment with `approvals` waits for them, whoever
            // created it (chat, GitHub, auto-deploy).
            match chima_engine::approval::create(state.store.as_ref(), state.apps.as_deref(), new)
                .await
            {
                Ok(created) => {
                    // No separate delivery record: the delivery id is in the job's
                    // payload (`_faseng`), and the job's idempotency rests on the
                    // GitHub deployment id. A second commit per webhook would halve
                    // what intake takes a second.
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

/// Whether the deployment carries a signed chima request whose nonce another
/// deployment already used (a copied signature). Two records make that exact: the
/// nonce alone (first use anywhere) and the nonce with this deployment's id (first
/// use by this deployment). A redelivery, even after a failed first attempt, finds
/// both and is not a replay; another deployment with the same nonce finds only the
/// first.
async fn replayed(
    state: &AppState,
    ev: &DeploymentEvent,
    nonce: Option<&str>,
) -> Result<bool, chima_store::StoreError> {
    let Some(nonce) = nonce else {
        return Ok(false);
    };
    let mine = state
        .store
        .record_delivery(
            &format!("chima-request:{nonce}:github:{}", ev.deployment_id),
            "chima-request",
        )
        .await?;
    let anywhere = state
        .store
        .record_delivery(&format!("chima-request:{nonce}"), "chima-request")
        .await?;
    Ok(mine && !anywhere)
}
