//! The JSON API under `/api/`, for chima (`FASENG_URL`) and for setups
//! without GitHub. Every call needs `Authorization: Bearer <FASENG_API_TOKEN>`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chima_api_types::{
    AutoDeployState, By, CancelAnswer, ChatRouteAnswer, ChatRouteRequest, CreateDeployment,
    Created, DecisionAnswer, DecisionRequest, DeploymentList, LinkedDeployment, LockAnswer,
    LockRequest, Locks, LogLines, NoRollbackWhy, PauseRequest, Paused, Resumed, RollbackTarget,
    UnlockAnswer,
};
use chima_engine::ops::{self, Cancelled, NoRollback};
use chima_store::{DeploymentFilter, DeploymentState, LockResult, NewDeployment};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::json;
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

fn with_link(state: &AppState, d: &chima_store::Deployment) -> LinkedDeployment {
    LinkedDeployment {
        log_url: state.links.url(&state.public_url, d.id),
        deployment: d.clone(),
    }
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
        Ok(list) => Json(DeploymentList {
            deployments: list.iter().map(|d| with_link(&state, d)).collect(),
        })
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

pub async fn create(
    State(state): State<AppState>,
    body: Result<Json<CreateDeployment>, JsonRejection>,
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
    let emergency = match body.emergency.as_deref().map(str::trim) {
        None => None,
        Some("") => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "`emergency` needs a reason: it is announced and recorded",
            ));
        }
        Some(r) if r.chars().count() > chima_command::MAX_REASON_CHARS => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "`emergency` is longer than {} characters",
                    chima_command::MAX_REASON_CHARS
                ),
            ));
        }
        Some(r) => Some(r.to_string()),
    };
    // A closed or frozen environment is refused before anything is created (the
    // engine would end it `errored` for the same reason); break-glass passes.
    if emergency.is_none()
        && let Some(blocked) = chima_engine::policy::check(
            state.store.as_ref(),
            target.app,
            target.environment,
            &body.task,
        )
        .await?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "{blocked}; nothing was created (break-glass: send `emergency` with the reason)"
            ),
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
            emergency,
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
    Ok(
        match chima_engine::approval::create(state.store.as_ref(), Some(apps), new).await {
            Ok(c) => {
                let status = if c.already_existed {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                };
                let created = Created {
                    already_existed: c.already_existed,
                    deployment: with_link(&state, &c.deployment),
                };
                (status, Json(created)).into_response()
            }
            Err(e) => return Err(e.into()),
        },
    )
}

/// Cancels one deployment by id.
pub async fn cancel_one(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    body: Result<Json<By>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    Ok(match state.store.request_cancel(id, &body.by).await {
        Ok(chima_store::CancelResult::Cancelled(d)) => Json(CancelAnswer::Cancelled {
            deployment: with_link(&state, &d),
        })
        .into_response(),
        Ok(chima_store::CancelResult::Requested(d)) => Json(CancelAnswer::Stopping {
            deployment: with_link(&state, &d),
        })
        .into_response(),
        Ok(chima_store::CancelResult::AlreadyFinished(d)) => (
            StatusCode::CONFLICT,
            Json(CancelAnswer::Finished {
                deployment: with_link(&state, &d),
            }),
        )
            .into_response(),
        Err(e) => return Err(e.into()),
    })
}

/// Approves a deployment waiting for approval, for the approver the caller names.
pub async fn approve(
    state: State<AppState>,
    id: Path<String>,
    body: Result<Json<DecisionRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    decide(state, id, body, chima_store::Decision::Approve).await
}

/// Rejects a deployment waiting for approval.
pub async fn reject(
    state: State<AppState>,
    id: Path<String>,
    body: Result<Json<DecisionRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    decide(state, id, body, chima_store::Decision::Reject).await
}

/// The approve or reject of `id`: the caller holds FASENG_API_TOKEN, so it may say who
/// decides (as it may say who asked for a deployment); whether they may is faseng's
/// own app.json's `approvals` (in `from`, not the requester), never the caller's.
async fn decide(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<DecisionRequest>, JsonRejection>,
    decision: chima_store::Decision,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let refused = |status: StatusCode, error: String| {
        (status, Json(DecisionAnswer::Refused { error })).into_response()
    };
    let Some(id) = id.parse::<i64>().ok().filter(|id| *id > 0) else {
        return Ok(refused(
            StatusCode::NOT_FOUND,
            format!(
                "`{}` is not a deployment number.",
                id.chars().take(40).collect::<String>()
            ),
        ));
    };
    let Some(apps) = state.apps.as_ref() else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "faseng has no app.json (APPS_JSON), so it has no approvals to check",
        ));
    };
    let approver = body.approver.trim();
    if approver.is_empty() || approver.chars().count() > 200 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`approver` (1-200 characters) is required",
        ));
    }
    if body
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > chima_command::MAX_REJECT_REASON)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "`reason` is longer than {} characters",
                chima_command::MAX_REJECT_REASON
            ),
        ));
    }
    let who = chima_payload::Identity::chat(
        chima_payload::IdentitySource::Trusted,
        body.approver_id
            .as_deref()
            .map(|k| k.strip_prefix("chat:").unwrap_or(k).to_string()),
        approver.to_string(),
    );
    use chima_engine::approval::Refusal;
    Ok(
        match chima_engine::approval::decide(
            state.store.as_ref(),
            apps,
            id,
            &who,
            decision,
            body.reason.as_deref(),
        )
        .await
        {
            Ok(decided) => Json(DecisionAnswer::Decided {
                decided: Box::new(decided),
            })
            .into_response(),
            Err(r @ Refusal::Unknown(_)) => refused(StatusCode::NOT_FOUND, r.to_string()),
            Err(r @ (Refusal::OwnRequest { .. } | Refusal::NotAnApprover { .. })) => {
                refused(StatusCode::FORBIDDEN, r.to_string())
            }
            Err(Refusal::Store(e)) => {
                tracing::error!(error = %e, deployment = id, "cannot record an approval");
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "faseng cannot record the decision right now; try again",
                ));
            }
            Err(r) => refused(StatusCode::CONFLICT, r.to_string()),
        },
    )
}

/// Cancels what runs (or waits) in app+environment.
pub async fn cancel_env(
    State(state): State<AppState>,
    Path((app, env)): Path<(String, String)>,
    body: Result<Json<By>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    Ok(
        match ops::cancel(state.store.as_ref(), &app, &env, &body.by).await {
            Ok(Cancelled::Dequeued(d)) => Json(CancelAnswer::Cancelled {
                deployment: with_link(&state, &d),
            })
            .into_response(),
            Ok(Cancelled::Stopping(d)) => Json(CancelAnswer::Stopping {
                deployment: with_link(&state, &d),
            })
            .into_response(),
            Ok(Cancelled::Nothing) => Json(CancelAnswer::Nothing).into_response(),
            Err(e) => return Err(e.into()),
        },
    )
}

/// What a rollback of app+environment would deploy.
pub async fn rollback_target(
    State(state): State<AppState>,
    Path((app, env)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let answer = match ops::rollback_target(state.store.as_ref(), &app, &env).await? {
        Ok(r) => RollbackTarget {
            current: Some(with_link(&state, &r.current)),
            target: Some(with_link(&state, &r.target)),
            why: None,
        },
        Err(NoRollback::NeverDeployed) => RollbackTarget {
            current: None,
            target: None,
            why: Some(NoRollbackWhy::NeverDeployed),
        },
        Err(NoRollback::NothingBefore(c)) => RollbackTarget {
            current: Some(with_link(&state, &c)),
            target: None,
            why: Some(NoRollbackWhy::NothingBefore),
        },
    };
    Ok(Json(answer).into_response())
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
            Ok(lines) => Json(LogLines { lines }).into_response(),
            Err(e) => return Err(e.into()),
        },
    )
}

pub async fn locks(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(match state.store.list_locks().await {
        Ok(locks) => Json(Locks { locks }).into_response(),
        Err(e) => return Err(e.into()),
    })
}

pub async fn lock(
    State(state): State<AppState>,
    Path((app, env)): Path<(String, String)>,
    body: Result<Json<LockRequest>, JsonRejection>,
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
            Ok(LockResult::Acquired(lock)) => {
                (StatusCode::CREATED, Json(LockAnswer::Locked { lock })).into_response()
            }
            Ok(LockResult::HeldBy(lock)) => {
                (StatusCode::CONFLICT, Json(LockAnswer::Held { lock })).into_response()
            }
            Err(e) => return Err(e.into()),
        },
    )
}

pub async fn unlock(
    State(state): State<AppState>,
    Path((app, env)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(match state.store.unlock(&app, &env).await {
        Ok(Some(lock)) => Json(UnlockAnswer::Unlocked { lock }).into_response(),
        Ok(None) => Json(UnlockAnswer::NotLocked).into_response(),
        Err(e) => return Err(e.into()),
    })
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
    body: Result<Json<ChatRouteRequest>, JsonRejection>,
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
            Ok(()) => Json(ChatRouteAnswer::Routed {
                source_key,
                uses_left: body.uses_left,
            })
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
        Ok(()) => Json(ChatRouteAnswer::Dropped).into_response(),
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
        (Ok(pause), Ok(last)) => Json(AutoDeployState { pause, last }).into_response(),
        (Err(e), _) | (_, Err(e)) => return Err(e.into()),
    })
}

pub async fn autodeploy_pause(
    State(state): State<AppState>,
    Path((app, env)): Path<(String, String)>,
    body: Result<Json<PauseRequest>, JsonRejection>,
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
            Ok(pause) => Json(Paused { pause }).into_response(),
            Err(e) => return Err(e.into()),
        },
    )
}

pub async fn autodeploy_resume(
    State(state): State<AppState>,
    Path((app, env)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(match state.store.resume_auto_deploy(&app, &env).await {
        Ok(resumed) => Json(Resumed { resumed }).into_response(),
        Err(e) => return Err(e.into()),
    })
}
