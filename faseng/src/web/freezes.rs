//! `/api/freezes`: deploy freezes for chima in GitHub mode and for scripts. The
//! token holder is trusted to say who freezes (as for locks); the scope must be
//! faseng's own app.json's: an app and one of its environments, or `*` for every app
//! or every environment.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chima_api_types::{FreezeRequest, Freezes, Frozen, Unfrozen};
use chima_command::{MAX_FREEZE, MAX_REASON_CHARS};
use chima_store::EVERY;

use super::AppState;
use super::error::ApiError;

fn refused(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
}

/// The scope as stored: app and environment (aliases followed), each a name from
/// faseng's app.json or `*`.
fn scope(
    state: &AppState,
    app: &str,
    env: Option<&str>,
) -> Result<(String, Option<String>), ApiError> {
    let Some(apps) = state.apps.as_ref() else {
        return Err(refused(
            "faseng has no app.json (APPS_JSON), so it has nothing to freeze",
        ));
    };
    if app == EVERY {
        return match env {
            None | Some(EVERY) => Ok((EVERY.to_string(), env.map(str::to_string))),
            // An environment's own name: aliases differ from app to app.
            Some(e)
                if apps
                    .iter()
                    .any(|a| a.environment(&e.to_ascii_lowercase()).is_some()) =>
            {
                Ok((EVERY.to_string(), Some(e.to_ascii_lowercase())))
            }
            Some(e) => Err(refused(format!(
                "no app of faseng's app.json has an environment `{}`",
                e.chars().take(60).collect::<String>()
            ))),
        };
    }
    let a = apps.app(app).map_err(|r| refused(r.to_string()))?;
    let env = match env {
        None => None,
        Some(EVERY) => Some(EVERY.to_string()),
        Some(e) => Some(
            apps.target(app, Some(e), e)
                .map_err(|r| refused(r.to_string()))?
                .environment
                .to_string(),
        ),
    };
    Ok((a.name.clone(), env))
}

pub async fn list(State(state): State<AppState>) -> Result<Response, ApiError> {
    let freezes = state.store.list_freezes().await?;
    Ok(Json(Freezes { freezes }).into_response())
}

pub async fn freeze(
    State(state): State<AppState>,
    Path((app, env)): Path<(String, String)>,
    body: Result<Json<FreezeRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body?;
    let (app, env) = scope(&state, &app, Some(&env))?;
    let env = env.unwrap_or_else(|| EVERY.to_string());
    if body.by.trim().is_empty() || body.by.len() > 200 {
        return Err(refused("`by` is required (1-200 characters)"));
    }
    if body
        .by_id
        .as_ref()
        .is_some_and(|h| h.is_empty() || h.len() > 200)
    {
        return Err(refused("`by_id` must be 1-200 characters"));
    }
    if body
        .reason
        .as_ref()
        .is_some_and(|r| r.chars().count() > MAX_REASON_CHARS)
    {
        return Err(refused(format!(
            "`reason` is longer than {MAX_REASON_CHARS} characters"
        )));
    }
    let now = chrono::Utc::now();
    let longest = chrono::Duration::from_std(MAX_FREEZE).unwrap_or(chrono::Duration::days(90));
    if body.ends_at <= now || body.ends_at > now + longest + chrono::Duration::minutes(5) {
        return Err(refused(
            "`ends_at` must be in the future and at most 90 days away: a freeze ends by itself",
        ));
    }
    let freeze = state
        .store
        .freeze(
            &app,
            &env,
            &body.by,
            body.by_id.as_deref(),
            body.reason.as_deref(),
            body.ends_at,
        )
        .await?;
    tracing::info!(app = %app, env = %env, by = %body.by, until = %body.ends_at, "frozen");
    Ok((StatusCode::CREATED, Json(Frozen { freeze })).into_response())
}

/// `DELETE /api/freezes/{app}`: the app's freezes, in every environment.
pub async fn unfreeze_app(
    State(state): State<AppState>,
    Path(app): Path<String>,
) -> Result<Response, ApiError> {
    let (app, _) = scope(&state, &app, None)?;
    let lifted = state.store.unfreeze(&app, None).await?;
    Ok(Json(Unfrozen { lifted }).into_response())
}

/// `DELETE /api/freezes/{app}/{env}`: the freeze of exactly that scope.
pub async fn unfreeze_scope(
    State(state): State<AppState>,
    Path((app, env)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (app, env) = scope(&state, &app, Some(&env))?;
    let lifted = state.store.unfreeze(&app, env.as_deref()).await?;
    Ok(Json(Unfrozen { lifted }).into_response())
}
