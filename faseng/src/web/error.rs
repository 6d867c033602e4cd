//! The API's one error type: every handler returns `Result<_, ApiError>`, and the
//! status says what went wrong, so that a client never reads a refusal as "the
//! database is away" or an outage as "nothing there".
//!
//! | cause | status |
//! | --- | --- |
//! | malformed request (query, JSON syntax) | 400 |
//! | missing or wrong token | 401 |
//! | no such deployment | 404 |
//! | the change collides with the current state (already ended, held by another) | 409 |
//! | the request is well-formed but refused (unknown app, bad ref, out-of-range value) | 422 |
//! | the database cannot be reached, or the API is off | 503 |
//! | stored data cannot be read, or another bug | 500 |
//!
//! The body is always JSON: `{"error": "<what happened and what to do>"}`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chima_store::StoreError;
use serde_json::json;

/// An API call that did not succeed: a status and a message for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status it answers with.
    pub status: StatusCode,
    /// What happened, for the caller (never a secret).
    pub message: String,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400: the request cannot be read.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: nothing by that name or id.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 422: well-formed, but refused.
    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let status = match &e {
            StoreError::NotFound { .. } => StatusCode::NOT_FOUND,
            StoreError::InvalidTransition { .. } | StoreError::Conflict { .. } => {
                StatusCode::CONFLICT
            }
            StoreError::InvalidInput { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            StoreError::Connect { .. } | StoreError::Database { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            StoreError::Corrupt { .. }
            | StoreError::Migrate { .. }
            | StoreError::NewerMigrations { .. }
            | StoreError::InvalidUrl { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::warn!(error = %e, "API call failed in the store");
        }
        let message = match status {
            // The details name the database's host; the caller needs only the gist.
            StatusCode::SERVICE_UNAVAILABLE => {
                "the database does not answer; try again shortly".to_string()
            }
            StatusCode::INTERNAL_SERVER_ERROR => {
                "faseng could not read its own data; see faseng's log".to_string()
            }
            _ => e.to_string(),
        };
        ApiError::new(status, message)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> ApiError {
        let status = match e {
            JsonRejection::JsonDataError(_) => StatusCode::UNPROCESSABLE_ENTITY,
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}
