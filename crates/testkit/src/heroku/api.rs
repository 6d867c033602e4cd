//! The build endpoints of the Platform API (`POST /apps/{app}/builds`,
//! `GET /apps/{app}/builds/{id}`), behind Heroku's version and key checks, and
//! the Build and error objects they answer with.

use std::time::Instant;

use axum::body::Bytes;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::fake::{Build, Shared, State, lock};
use super::stream::stream;
use super::{Create, Outcome, Recorded};

pub(super) async fn handle(
    axum::extract::State(state): axum::extract::State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let text = String::from_utf8_lossy(&body).into_owned();
    lock(&state).requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        json: serde_json::from_slice(&body).ok(),
        body: text,
    });

    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["streams", id]) => stream(&state, id, &headers),
        (m, ["apps", ..]) => {
            if let Some(refused) = check_api_headers(&state, &headers) {
                return refused;
            }
            match (m, segments.as_slice()) {
                ("POST", ["apps", app, "builds"]) => create(&state, app, &body),
                ("GET", ["apps", app, "builds", id]) => info(&state, app, id),
                _ => error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "The requested API endpoint was not found.",
                ),
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "The requested API endpoint was not found.",
        ),
    }
}

/// Heroku's checks before any endpoint: API version, then the key.
pub(super) fn check_api_headers(state: &Shared, headers: &HeaderMap) -> Option<Response> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !accept.contains("application/vnd.heroku+json") || !accept.contains("version=3") {
        return Some(error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Please specify a version along with Heroku's API MIME type. For example, `Accept: application/vnd.heroku+json; version=3`.",
        ));
    }
    let key = lock(state).behaviour.api_key.clone();
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {key}"));
    if !authorized {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Invalid credentials provided.",
        ));
    }
    None
}

pub(super) fn create(state: &Shared, app: &str, body: &[u8]) -> Response {
    let mut st = lock(state);
    match st.behaviour.create.clone() {
        Create::Created | Create::NotJson | Create::Huge(_) => {}
        Create::Unauthorized => {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Invalid credentials provided.",
            );
        }
        Create::Forbidden => {
            return error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "You do not have access to the app.",
            );
        }
        Create::AppNotFound => {
            return app_not_found();
        }
        Create::Errors {
            status,
            times,
            retry_after,
        } => {
            if st.create_errors_sent < times {
                st.create_errors_sent += 1;
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                let (id, message) = if status == StatusCode::TOO_MANY_REQUESTS {
                    (
                        "rate_limit",
                        "Your account reached the API rate limit. Please wait a few minutes before making new requests.",
                    )
                } else {
                    ("unavailable", "The service is temporarily unavailable.")
                };
                let mut resp = error(status, id, message);
                if let Some(secs) = retry_after {
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                if status == StatusCode::TOO_MANY_REQUESTS {
                    resp.headers_mut()
                        .insert("ratelimit-remaining", HeaderValue::from(0));
                }
                return resp;
            }
        }
    }
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let Some(source_blob) = parsed
        .as_ref()
        .and_then(|v| v.get("source_blob"))
        .filter(|b| b.get("url").and_then(Value::as_str).is_some())
        .cloned()
    else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_params",
            "source_blob.url is required.",
        );
    };
    let id = format!("01234567-89ab-cdef-0123-{:012x}", st.builds.len() + 1);
    st.builds.insert(
        id.clone(),
        Build {
            app: app.to_string(),
            source_blob,
            polls: 0,
            created: Instant::now(),
        },
    );
    let created = build_json(&st, &id, "pending");
    match st.behaviour.create {
        Create::NotJson => (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
            .into_response(),
        Create::Huge(bytes) => {
            let mut big = created;
            big["padding"] = Value::String("x".repeat(bytes));
            json_response(StatusCode::CREATED, &big)
        }
        _ => json_response(StatusCode::CREATED, &created),
    }
}

pub(super) fn info(state: &Shared, app: &str, id: &str) -> Response {
    let mut st = lock(state);
    if st.poll_errors_sent < st.behaviour.poll_errors {
        st.poll_errors_sent += 1;
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "The service is temporarily unavailable.",
        );
    }
    if st.poll_429s_sent < st.behaviour.poll_rate_limited {
        st.poll_429s_sent += 1;
        let mut resp = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit",
            "Your account reached the API rate limit. Please wait a few minutes before making new requests.",
        );
        resp.headers_mut()
            .insert("ratelimit-remaining", HeaderValue::from(0));
        if let Some(secs) = st.behaviour.poll_retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        return resp;
    }
    let pending_polls = st.behaviour.pending_polls;
    let duration = st.behaviour.build_duration.unwrap_or_default();
    let outcome = st.behaviour.outcome;
    let Some(build) = st.builds.get_mut(id).filter(|b| b.app == app) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "Couldn't find that build.",
        );
    };
    build.polls += 1;
    let status = match outcome {
        _ if build.polls <= pending_polls => "pending",
        _ if build.created.elapsed() < duration => "pending",
        Outcome::Pending => "pending",
        Outcome::Succeeded => "succeeded",
        Outcome::Failed => "failed",
    };
    json_response(StatusCode::OK, &build_json(&st, id, status))
}

/// A Build object as the Platform API returns it.
pub(super) fn build_json(st: &State, id: &str, status: &str) -> Value {
    let Some(build) = st.builds.get(id) else {
        return Value::Null;
    };
    let done = status == "succeeded";
    json!({
        "app": {"id": "6789abcd-ef01-2345-6789-abcdef012345", "name": build.app},
        "buildpacks": [{"url": "heroku/nodejs", "name": "heroku/nodejs"}],
        "created_at": "2026-11-01T12:00:00Z",
        "id": id,
        "output_stream_url": format!("{}/streams/{id}", st.url),
        "source_blob": {
            "checksum": build.source_blob.get("checksum").cloned().unwrap_or(Value::Null),
            "url": build.source_blob.get("url").cloned().unwrap_or(Value::Null),
            "version": build.source_blob.get("version").cloned().unwrap_or(Value::Null),
            "version_description": null,
        },
        "release": if done { json!({"id": "abcdef01-2345-6789-abcd-ef0123456789", "version": 42}) } else { Value::Null },
        "slug": if done { json!({"id": "fedcba98-7654-3210-fedc-ba9876543210"}) } else { Value::Null },
        "stack": "heroku-24",
        "status": status,
        "updated_at": "2026-11-01T12:00:05Z",
        "user": {"email": "deployer@example.com", "id": "01234567-0000-0000-0000-000000000001"},
    })
}

pub(super) fn app_not_found() -> Response {
    let mut body = json!({"id": "not_found", "message": "Couldn't find that app."});
    body["resource"] = Value::String("app".to_string());
    json_response(StatusCode::NOT_FOUND, &body)
}

pub(super) fn error(status: StatusCode, id: &str, message: &str) -> Response {
    json_response(status, &json!({"id": id, "message": message}))
}

pub(super) fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}
