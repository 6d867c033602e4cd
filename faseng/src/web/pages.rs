//! The deployment page that `log_url` and chat messages link to: state, who,
//! what, and the log. Reached only with a signed link.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::AppState;

#[derive(Debug, Deserialize)]
pub struct Signed {
    sig: Option<String>,
}

/// The most log lines one page shows.
const PAGE_LINES: i64 = 20_000;

pub async fn deployment(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    Query(q): Query<Signed>,
) -> Response {
    if !q.sig.as_deref().is_some_and(|s| state.links.verify(id, s)) {
        return (
            StatusCode::FORBIDDEN,
            "this log needs a signed link: use the one in the deployment's GitHub status or chat message\n",
        )
            .into_response();
    }
    let d = match state.store.get_deployment(id).await {
        Ok(Some(d)) => d,
        Ok(None) => return (StatusCode::NOT_FOUND, "no such deployment\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "reading a deployment failed");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the database does not answer\n",
            )
                .into_response();
        }
    };
    let lines = match state.store.read_logs(id, 0, PAGE_LINES).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "reading a log failed");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the database does not answer\n",
            )
                .into_response();
        }
    };
    let duration = match (d.started_at, d.finished_at) {
        (Some(s), Some(f)) => format!("{:.1}s", (f - s).num_milliseconds() as f64 / 1000.0),
        (Some(_), None) => "running".to_string(),
        _ => "-".to_string(),
    };
    let mut body = String::with_capacity(4096 + lines.len() * 64);
    body.push_str(&format!(
        "<!doctype html><meta charset=utf-8><title>#{id} {app} to {env}: {state}</title>\n\
         <h1>Deployment #{id}: {app}/{git_ref} to {env}</h1>\n\
         <p>state <b id=state>{state}</b>{reason} &middot; by {who} &middot; sha <code>{sha}</code> &middot; task {task} &middot; {duration}</p>\n<pre id=log>",
        id = d.id,
        app = esc(&d.app),
        env = esc(&d.environment),
        git_ref = esc(&d.git_ref),
        state = d.state,
        reason = d.reason.as_deref().map(|r| format!(": {}", esc(r))).unwrap_or_default(),
        who = esc(&d.requester),
        sha = esc(d.sha.as_deref().unwrap_or("-")),
        task = esc(&d.task),
    ));
    for l in &lines {
        body.push_str(&esc(&l.line));
        body.push('\n');
    }
    body.push_str("</pre>\n");
    Html(body).into_response()
}

/// HTML-escapes text from deployments and logs.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The index: each app and environment with its current and last deployment
/// and lock. (Being written.)
pub async fn index(State(_state): State<AppState>) -> Response {
    (
        StatusCode::NOT_IMPLEMENTED,
        "the index page is being written\n",
    )
        .into_response()
}

/// Server-sent events of a deployment's new log lines and state. (Being written.)
pub async fn events(State(_state): State<AppState>, Path(_id): Path<i64>) -> Response {
    (StatusCode::NOT_IMPLEMENTED, "live logs are being written\n").into_response()
}
