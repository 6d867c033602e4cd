//! The JSON API under `/api/`, for chima (`FASENG_URL`) and for setups
//! without GitHub. Every call needs `Authorization: Bearer <FASENG_API_TOKEN>`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chima_engine::ops::{self, Cancelled, NoRollback};
use chima_store::{DeploymentFilter, DeploymentState, LockResult, NewDeployment};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

use super::AppState;
use super::error::ApiError;

/// Checks the bearer token in constant time before any `/api/` handler runs.
pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(token) = state.api_token.as_ref() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "FASENG_API_TOKEN is not set, so the API is off",
        )
        .into_response();
    };
    if !bearer_matches(req.headers(), token) {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token: send Authorization: Bearer <FASENG_API_TOKEN>",
        )
        .into_response();
    }
    next.run(req).await
}

/// Whether the request's `Authorization: Bearer` is `token` (constant time).
pub fn bearer_matches(headers: &axum::http::HeaderMap, token: &chima_config::Secret) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    same(token.expose(), given)
}

/// Constant-time comparison through HMAC, so that neither length nor content
/// leaks through timing.
fn same(expected: &str, given: &str) -> bool {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(b"faseng-api-token") else {
        return false;
    };
    mac.update(expected.as_bytes());
    let want = mac.finalize().into_bytes();
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(b"faseng-api-token") else {
        return false;
    };
    mac.update(given.as_bytes());
    mac.verify_slice(&want).is_ok()
}

fn with_link(state: &AppState, d: &chima_store::Deployment) -> Value {
    let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert(
            "log_url".to_string(),
            json!(state.links.url(&state.public_url, d.id)),
        );
    }
    v
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    app: Option<String>,
    environment: Option<String>,
    state: Option<String>,
    before: Option<i64>,
    limit: Option<i64>,
    /// `history`: queued and running first, then recent (as `deploys` shows).
    view: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let wanted = match q.state.as_deref().map(str::parse::<DeploymentState>) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => return Err(ApiError::new(StatusCode::BAD_REQUEST, e.to_string())),
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let result = match (q.view.as_deref(), &q.app) {
        (Some("history"), Some(app)) => {
            ops::history(state.store.as_ref(), app, q.environment.as_deref(), limit).await
        }
        (Some("history"), None) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "view=history needs app=",
            ));
        }
        _ => {
            state
                .store
                .list_deployments(&DeploymentFilter {
                    app: q.app.clone(),
                    environment: q.environment.clone(),
                    state: wanted,
                    before_id: q.before,
                    limit,
                })
                .await
        }
    };
    Ok(match result {
        Ok(list) => Json(json!({
            "deployments": list.iter().map(|d| with_link(&state, d)).collect::<Vec<_>>()
        }))
        .into_response(),
        Err(e) => return Err(e.into()),
    })
}

pub async fn get(State(state): State<AppState>, Path(id): Path<i64>) -> Result<Response, ApiError> {
    Ok(match state.store.get_deployment(id).await {
        Ok(Some(d)) => Json(with_link(&state, &d)).into_response(),
        Ok(None) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no deployment #{id}"),
            ));
        }
        Err(e) => return Err(e.into()),
    })
}

/// A deployment created directly (no GitHub): the app must be in faseng's
/// app.json; `key` makes the call idempotent.
#[derive(Debug, Deserialize)]
pub struct CreateBody {
    app: String,
    environment: String,
    #[serde(rename = "ref")]
    git_ref: String,
    #[serde(default)]
    sha: Option<String>,
    #[serde(default = "default_task")]
    task: String,
    #[serde(default)]
    hosts: Option<String>,
    requester: String,
    /// The requester's identity key (`chat:<id>`), as the token holder vouches for it.
    #[serde(default)]
    requester_id: Option<String>,
    key: String,
    #[serde(default)]
    payload: Option<Value>,
}

fn default_task() -> String {
    "deploy".to_string()
}

pub async fn create(
    State(state): State<AppState>,
    body: Result<Json<CreateBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let Some(apps) = state.apps.as_ref() else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "faseng has no app.json (APPS_JSON), so it cannot create deployments itself",
        ));
    };
    let target = match apps.target(&body.app, Some(&body.environment), &body.environment) {
        Ok(t) => t,
        Err(r) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                r.to_string(),
            ));
        }
    };
    if let Err(why) = chima_command::check_ref(&body.git_ref) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("ref `{}` refused: {why}", body.git_ref),
        ));
    }
    if body.key.is_empty() || body.key.len() > 200 || body.requester.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`key` (1-200 characters) and `requester` are required",
        ));
    }
    // The caller holds FASENG_API_TOKEN, so it may say who asked (as chima does); where
    // messages go follows the same rule as for webhooks.
    let sent = body.payload.unwrap_or_else(|| json!({}));
    let (read, mut notes) = chima_payload::DeploymentPayload::read(&sent);
    let chat = crate::intake::chat_target(Some(target.app), None, &read, &mut notes);
    let identity = chima_payload::Identity::chat(
        chima_payload::IdentitySource::Trusted,
        body.requester_id
            .as_deref()
            .and_then(|k| k.strip_prefix("chat:"))
            .map(str::to_string),
        body.requester.clone(),
    );
    let payload = chima_payload::DeploymentPayload::with_notes(
        &sent,
        &chima_payload::FasengNotes {
            delivery: None,
            identity,
            chat,
            notes,
        },
    );
    let new = NewDeployment {
        source_key: format!("api:{}", body.key),
        requester: body.requester,
        app: target.app.name.clone(),
        environment: target.environment.to_string(),
        repository: target.app.repository.clone(),
        git_ref: body.git_ref,
        sha: body.sha,
        task: body.task,
        hosts: body.hosts,
        provider: target.app.provider.to_string(),
        payload,
        github_deployment_id: None,
        notify: vec!["chat".to_string()],
        timeout_secs: None,
    };
    Ok(match state.store.create_deployment(new).await {
        Ok(c) => {
            let status = if c.already_existed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            (status, Json(json!({"already_existed": c.already_existed, "deployment": with_link(&state, &c.deployment)}))).into_response()
        }
        Err(e) => return Err(e.into()),
    })
}

#[derive(Debug, Deserialize)]
pub struct ByBody {
    by: String,
}

/// Cancels one deployment by id.
pub async fn cancel_one(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    body: Result<Json<ByBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    Ok(match state.store.request_cancel(id, &body.by).await {
        Ok(chima_store::CancelResult::Cancelled(d)) => {
            Json(json!({"result": "cancelled", "deployment": with_link(&state, &d)}))
                .into_response()
        }
        Ok(chima_store::CancelResult::Requested(d)) => {
            Json(json!({"result": "stopping", "deployment": with_link(&state, &d)})).into_response()
        }
        Ok(chima_store::CancelResult::AlreadyFinished(d)) => (
            StatusCode::CONFLICT,
            Json(json!({"result": "finished", "deployment": with_link(&state, &d)})),
        )
            .into_response(),
        Err(e) => return Err(e.into()),
    })
}

/// Cancels what runs (or waits) in app+environment.
pub async fn cancel_env(
    State(state): State<AppState>,
    Path((app, env)): Path<(String, String)>,
    body: Result<Json<ByBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    Ok(
        match ops::cancel(state.store.as_ref(), &app, &env, &body.by).await {
            Ok(Cancelled::Dequeued(d)) => {
                Json(json!({"result": "cancelled", "deployment": with_link(&state, &d)}))
                    .into_response()
            }
            Ok(Cancelled::Stopping(d)) => {
                Json(json!({"result": "stopping", "deployment": with_link(&state, &d)}))
                    .into_response()
            }
            Ok(Cancelled::Nothing) => Json(json!({"result": "nothing"})).into_response(),
            Err(e) => return Err(e.into()),
        },
    )
}

/// What a rollback of app+environment would deploy.
pub async fn rollback_target(
    State(state): State<AppState>,
    Path((app, env)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(match ops::rollback_target(state.store.as_ref(), &app, &env).await {
        Ok(Ok(r)) => Json(json!({"current": with_link(&state, &r.current), "target": with_link(&state, &r.target)})).into_response(),
        Ok(Err(NoRollback::NeverDeployed)) => Json(json!({"target": null, "why": "never_deployed"})).into_response(),
        Ok(Err(NoRollback::NothingBefore(c))) => Json(json!({"target": null, "why": "nothing_before", "current": with_link(&state, &c)})).into_response(),
        Err(e) => return Err(e.into()),
    })
}

#[derive(Debug, Deserialize)]
pub struct LogQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

pub async fn log(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    Ok(
        match state
            .store
            .read_logs(
                id,
                q.after.unwrap_or(0),
                q.limit.unwrap_or(1000).clamp(1, 10_000),
            )
            .await
        {
            Ok(lines) => Json(json!({"lines": lines})).into_response(),
            Err(e) => return Err(e.into()),
        },
    )
}

pub async fn locks(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(match state.store.list_locks().await {
        Ok(l) => Json(json!({"locks": l})).into_response(),
        Err(e) => return Err(e.into()),
    })
}

#[derive(Debug, Deserialize)]
pub struct LockBody {
    holder: String,
    /// The holder's identity key (`chat:<id>`, `github:<login>`): the lock yields to
    /// that identity only.
    #[serde(default)]
    holder_id: Option<String>,
    reason: Option<String>,
    /// Seconds until the lock lapses by itself.
    expires_in: Option<i64>,
}

pub async fn lock(
    State(state): State<AppState>,
    Path((app, env)): Path<(String, String)>,
    body: Result<Json<LockBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    if body.holder.is_empty() || body.holder.len() > 200 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`holder` is required",
        ));
    }
    if body
        .holder_id
        .as_ref()
        .is_some_and(|h| h.is_empty() || h.len() > 200)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`holder_id` must be 1-200 characters",
        ));
    }
    let expires = match body.expires_in {
        Some(s) if s <= 0 || s > 366 * 24 * 3600 => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "`expires_in` must be 1 second to a year",
            ));
        }
        Some(s) => Some(chrono::Utc::now() + chrono::TimeDelta::seconds(s)),
        None => None,
    };
    Ok(
        match state
            .store
            .lock_by(
                &app,
                &env,
                &body.holder,
                body.holder_id.as_deref(),
                body.reason.as_deref(),
                expires,
            )
            .await
        {
            Ok(LockResult::Acquired(l)) => (
                StatusCode::CREATED,
                Json(json!({"result": "locked", "lock": l})),
            )
                .into_response(),
            Ok(LockResult::HeldBy(l)) => (
                StatusCode::CONFLICT,
                Json(json!({"result": "held", "lock": l})),
            )
                .into_response(),
            Err(e) => return Err(e.into()),
        },
    )
}

pub async fn unlock(
    State(state): State<AppState>,
    Path((app, env)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(match state.store.unlock(&app, &env).await {
        Ok(Some(l)) => Json(json!({"result": "unlocked", "lock": l})).into_response(),
        Ok(None) => Json(json!({"result": "not_locked"})).into_response(),
        Err(e) => return Err(e.into()),
    })
}

#[derive(Debug, Deserialize)]
pub struct ChatRouteBody {
    /// A slash command's `response_url`: Slack's (`https://hooks.slack.com/...`) or on
    /// the host of `SLACK_API_URL`.
    response_url: String,
    /// Seconds it stays usable: Slack's 30 minutes at most.
    expires_in_secs: i64,
    /// Posts left: Slack's 5 at most, less those chima used.
    uses_left: i32,
}

/// Slack's limits on a response_url
/// (https://api.slack.com/interactivity/handling#message_responses).
const MAX_ROUTE_SECS: i64 = 30 * 60;
const MAX_ROUTE_USES: i32 = 5;

/// `PUT /api/chat-routes/{source_key}`: where the deployment with this source key
/// (`github:<id>`) posts its chat messages while the route lasts, instead of the
/// command's channel (where the bot may not be). Kept in the store, never in a GitHub
/// payload (which anyone who can read the repository can read). 422 for a URL that is
/// not Slack's: faseng posts to it.
pub async fn set_chat_route(
    State(state): State<AppState>,
    Path(source_key): Path<String>,
    body: Result<Json<ChatRouteBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    if source_key.trim().is_empty() || source_key.len() > 200 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the source key must be 1-200 characters",
        ));
    }
    if body.response_url.len() > 2000
        || !chima_slack::response_url_allowed(&body.response_url, &state.slack_api_url)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`response_url` must be a Slack response URL (https://hooks.slack.com/...)",
        ));
    }
    if body.expires_in_secs <= 0 || body.expires_in_secs > MAX_ROUTE_SECS {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`expires_in_secs` must be 1 second to 30 minutes",
        ));
    }
    if !(0..=MAX_ROUTE_USES).contains(&body.uses_left) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`uses_left` must be 0-5",
        ));
    }
    let expires_at = chrono::Utc::now() + chrono::TimeDelta::seconds(body.expires_in_secs);
    Ok(
        match state
            .store
            .set_chat_route(&source_key, &body.response_url, expires_at, body.uses_left)
            .await
        {
            Ok(()) => Json(
                json!({"result": "routed", "source_key": source_key, "uses_left": body.uses_left}),
            )
            .into_response(),
            Err(e) => return Err(e.into()),
        },
    )
}

/// `DELETE /api/chat-routes/{source_key}`.
pub async fn drop_chat_route(
    State(state): State<AppState>,
    Path(source_key): Path<String>,
) -> Result<Response, ApiError> {
    Ok(match state.store.drop_chat_route(&source_key).await {
        Ok(()) => Json(json!({"result": "dropped"})).into_response(),
        Err(e) => return Err(e.into()),
    })
}

pub async fn autodeploy_state(
    State(state): State<AppState>,
    Path((app, env)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let pause = state.store.auto_deploy_pause(&app, &env).await;
    let last = state.store.last_auto_deploy(&app, &env).await;
    Ok(match (pause, last) {
        (Ok(pause), Ok(last)) => Json(json!({"pause": pause, "last": last})).into_response(),
        (Err(e), _) | (_, Err(e)) => return Err(e.into()),
    })
}

#[derive(Debug, Deserialize)]
pub struct PauseBody {
    by: String,
    reason: Option<String>,
}

pub async fn autodeploy_pause(
    State(state): State<AppState>,
    Path((app, env)): Path<(String, String)>,
    body: Result<Json<PauseBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    if body.by.is_empty() || body.by.len() > 200 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`by` is required",
        ));
    }
    Ok(
        match state
            .store
            .pause_auto_deploy(&app, &env, &body.by, body.reason.as_deref())
            .await
        {
            Ok(p) => Json(json!({"pause": p})).into_response(),
            Err(e) => return Err(e.into()),
        },
    )
}

pub async fn autodeploy_resume(
    State(state): State<AppState>,
    Path((app, env)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(match state.store.resume_auto_deploy(&app, &env).await {
        Ok(p) => Json(json!({"resumed": p})).into_response(),
        Err(e) => return Err(e.into()),
    })
}
