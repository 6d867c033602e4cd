//! The shapes of GitHub's answers: paged lists with their `Link` header, the
//! JSON of users, repositories, deployments and statuses, rate limit headers
//! and error bodies.

use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Value, json};

use super::state::{Repo, rfc3339};
use super::{FakeDeployment, FakeDeploymentStatus, Recorded, TOKEN_LOGIN};

/// A page of a list as GitHub answers it: 200, the JSON, and the `Link` header to the
/// other pages when there are more than one.
pub(super) fn paged_response(body: &Value, url: &str, req: &Recorded, total: usize) -> Response {
    let mut response = json_response(StatusCode::OK, body);
    if let Some(link) = link_header(url, req, total) {
        response.headers_mut().insert(header::LINK, link);
    }
    response
}

/// GitHub's `Link` header for the page `req` asked of a list of `total` entries at
/// `url`: `<url?per_page=N&page=2>; rel="next", <...>; rel="last"`, and `first` and
/// `prev` after page 1, keeping the request's other query parameters; no header when
/// everything fits on one page. Clients are to follow `rel="next"` rather than build
/// page URLs (https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api).
pub(super) fn link_header(url: &str, req: &Recorded, total: usize) -> Option<HeaderValue> {
    let (per_page, page) = paging(req);
    let pages = total.div_ceil(per_page).max(1);
    if pages == 1 && page == 1 {
        return None;
    }
    let kept: Vec<&str> = req
        .query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("page=") && !p.starts_with("per_page="))
        .collect();
    let at = |n: usize| {
        let mut params = kept.clone();
        let per_page = format!("per_page={per_page}");
        let page = format!("page={n}");
        params.push(&per_page);
        params.push(&page);
        format!("<{url}?{}>", params.join("&"))
    };
    let mut parts = Vec::new();
    if page < pages {
        parts.push(format!("{}; rel=\"next\"", at(page + 1)));
        parts.push(format!("{}; rel=\"last\"", at(pages)));
    }
    if page > 1 {
        parts.push(format!("{}; rel=\"first\"", at(1)));
        parts.push(format!("{}; rel=\"prev\"", at((page - 1).min(pages))));
    }
    HeaderValue::from_str(&parts.join(", ")).ok()
}

/// Percent-encodes one path segment, as GitHub writes a ref into its links.
pub(super) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `per_page` (30 unless asked, at most 100) and `page` (from 1) of a list request, as
/// GitHub reads them (https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api).
pub(super) fn paging(req: &Recorded) -> (usize, usize) {
    let per_page = req
        .query_param("per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30usize)
        .clamp(1, 100);
    let page = req
        .query_param("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1usize)
        .max(1);
    (per_page, page)
}

pub(super) fn user_json(login: &str) -> Value {
    let u = format!("https://api.github.com/users/{login}");
    json!({
        "login": login,
        "id": 1000 + login.len() as i64,
        "node_id": "MDQ6VXNlcjE=",
        "avatar_url": "https://avatars.githubusercontent.com/u/1?v=4",
        "gravatar_id": "",
        "url": u,
        "html_url": format!("https://github.com/{login}"),
        "followers_url": format!("{u}/followers"),
        "following_url": format!("{u}/following{{/other_user}}"),
        "gists_url": format!("{u}/gists{{/gist_id}}"),
        "starred_url": format!("{u}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{u}/subscriptions"),
        "organizations_url": format!("{u}/orgs"),
        "repos_url": format!("{u}/repos"),
        "events_url": format!("{u}/events{{/privacy}}"),
        "received_events_url": format!("{u}/received_events"),
        "type": "User",
        "site_admin": false,
    })
}

pub(super) fn repo_json(r: &Repo, api: &str) -> Value {
    let owner = r.full_name.split('/').next().unwrap_or_default();
    let name = r.full_name.split('/').nth(1).unwrap_or_default();
    json!({
        "id": r.id,
        "node_id": format!("MDEwOlJlcG9zaXRvcnk{}", r.id),
        "name": name,
        "full_name": r.full_name,
        "private": r.private,
        "owner": user_json(owner),
        "html_url": format!("https://github.com/{}", r.full_name),
        "description": null,
        "fork": false,
        "url": format!("{api}/repos/{}", r.full_name),
        "clone_url": format!("https://github.com/{}.git", r.full_name),
        "git_url": format!("git://github.com/{}.git", r.full_name),
        "ssh_url": format!("git@github.com:{}.git", r.full_name),
        "default_branch": r.default_branch,
        "visibility": if r.private { "private" } else { "public" },
        "archived": false,
        "disabled": false,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "pushed_at": "2026-01-01T00:00:00Z",
    })
}

pub(super) fn deployment_json(d: &FakeDeployment, api: &str) -> Value {
    let url = format!("{api}/repos/{}/deployments/{}", d.repo, d.id);
    json!({
        "url": url,
        "id": d.id,
        "node_id": format!("MDEwOkRlcGxveW1lbnQ{}", d.id),
        "sha": d.sha,
        "ref": d.git_ref,
        "task": d.task,
        "payload": d.payload,
        "original_environment": d.environment,
        "environment": d.environment,
        "description": d.description,
        "creator": user_json(&d.creator),
        "created_at": rfc3339(d.created_at),
        "updated_at": rfc3339(d.created_at),
        "statuses_url": format!("{url}/statuses"),
        "repository_url": format!("{api}/repos/{}", d.repo),
        "transient_environment": d.transient_environment,
        "production_environment": d.production_environment,
        "performed_via_github_app": null,
    })
}

pub(super) fn status_json(s: &FakeDeploymentStatus, d: &FakeDeployment, api: &str) -> Value {
    let deployment_url = format!("{api}/repos/{}/deployments/{}", d.repo, d.id);
    json!({
        "url": format!("{deployment_url}/statuses/{}", s.id),
        "id": s.id,
        "node_id": format!("MDE2OkRlcGxveW1lbnRTdGF0dXM{}", s.id),
        "state": s.state,
        "creator": user_json(TOKEN_LOGIN),
        "description": s.description.clone().unwrap_or_default(),
        "environment": d.environment,
        "target_url": s.log_url.clone().unwrap_or_default(),
        "log_url": s.log_url.clone().unwrap_or_default(),
        "environment_url": s.environment_url.clone().unwrap_or_default(),
        "created_at": rfc3339(s.created_at),
        "updated_at": rfc3339(s.created_at),
        "deployment_url": deployment_url,
        "repository_url": format!("{api}/repos/{}", d.repo),
        "performed_via_github_app": null,
    })
}

pub(super) fn add_rate_limit_headers(headers: &mut HeaderMap) {
    let reset = Utc::now().timestamp() + 3600;
    let defaults = [
        ("x-ratelimit-limit", HeaderValue::from(5000)),
        ("x-ratelimit-remaining", HeaderValue::from(4999)),
        ("x-ratelimit-reset", HeaderValue::from(reset)),
        ("x-ratelimit-used", HeaderValue::from(1)),
        ("x-ratelimit-resource", HeaderValue::from_static("core")),
        (
            "x-github-media-type",
            HeaderValue::from_static("github.v3; format=json"),
        ),
    ];
    for (name, value) in defaults {
        if !headers.contains_key(name) {
            headers.insert(name, value);
        }
    }
}

pub(super) fn validation_failed(
    resource: &str,
    field: &str,
    code: &str,
    message: &str,
) -> Response {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        &json!({
            "message": "Validation Failed",
            "errors": [{"resource": resource, "field": field, "code": code, "message": message}],
            "documentation_url": "https://docs.github.com/rest",
            "status": "422",
        }),
    )
}

pub(super) fn github_error(status: StatusCode, message: &str) -> Response {
    json_response(
        status,
        &json!({
            "message": message,
            "documentation_url": "https://docs.github.com/rest",
            "status": status.as_u16().to_string(),
        }),
    )
}

pub(super) fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}
