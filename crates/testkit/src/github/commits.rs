//! What a commit carries (commit statuses and check runs) as GitHub reports
//! it, and the tarball of a commit.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::http::header::{self, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Recorded;
use super::answers::{encode_segment, github_error, paged_response, paging, repo_json};
use super::state::{Repo, Shared, lock, now_rfc3339, resolve};

/// What a ref's commit carries in `map` (statuses or check runs): those set for the
/// ref, else those set for another ref on the same commit (GitHub keeps both per
/// commit, not per ref).
pub(super) fn of_commit<T: Clone>(
    r: &Repo,
    map: &HashMap<String, Vec<T>>,
    git_ref: &str,
) -> Vec<T> {
    if let Some(v) = map.get(git_ref) {
        return v.clone();
    }
    let sha = resolve(Some(r), git_ref);
    map.iter()
        .find(|(k, _)| resolve(Some(r), k) == sha)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// Every context of a ref's commit and its state: commit statuses as they are, check
/// runs as `success` (completed: success, neutral, skipped), `failure` (completed
/// otherwise) or `pending` (not completed).
pub(super) fn contexts_of(r: &Repo, git_ref: &str) -> Vec<(String, String)> {
    let statuses = of_commit(r, &r.statuses, git_ref)
        .into_iter()
        .map(|s| (s.context, s.state));
    let checks = of_commit(r, &r.checks, git_ref).into_iter().map(|c| {
        let state = match (c.status.as_str(), c.conclusion.as_deref()) {
            ("completed", Some("success" | "neutral" | "skipped")) => "success",
            ("completed", _) => "failure",
            _ => "pending",
        };
        (c.name, state.to_string())
    });
    statuses.chain(checks).collect()
}

/// `GET /repos/{o}/{r}/commits/{ref}/status`: the combined state over every context,
/// and the statuses paged ("This field paginates if there are over 100 contexts",
/// `per_page` 30 by default, at most 100), with `total_count` and a `Link` header
/// (https://docs.github.com/en/rest/commits/statuses#get-the-combined-status-for-a-specific-reference).
pub(super) fn combined_status(
    state: &Shared,
    api: &str,
    repo: &str,
    git_ref: &str,
    req: &Recorded,
) -> Response {
    let st = lock(state);
    let Some(r) = st.repos.get(repo) else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let sha = resolve(Some(r), git_ref);
    let statuses = of_commit(r, &r.statuses, git_ref);
    let (per_page, page) = paging(req);
    let combined = if statuses
        .iter()
        .any(|s| s.state == "failure" || s.state == "error")
    {
        "failure"
    } else if statuses.is_empty() || statuses.iter().any(|s| s.state == "pending") {
        "pending"
    } else {
        "success"
    };
    let items: Vec<Value> = statuses
        .iter()
        .enumerate()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|(i, s)| {
            json!({
                "url": format!("{api}/repos/{}/statuses/{sha}", r.full_name),
                "avatar_url": "https://github.com/images/error/hubot_happy.gif",
                "id": 700 + i,
                "node_id": format!("MDY6U3RhdHVz{i}"),
                "state": s.state,
                "description": s.description,
                "target_url": s.target_url,
                "context": s.context,
                "created_at": now_rfc3339(),
                "updated_at": now_rfc3339(),
            })
        })
        .collect();
    let url = format!(
        "{api}/repositories/{}/commits/{}/status",
        r.id,
        encode_segment(git_ref)
    );
    paged_response(
        &json!({
            "state": combined,
            "statuses": items,
            "sha": sha,
            "total_count": statuses.len(),
            "repository": repo_json(r, api),
            "commit_url": format!("{api}/repos/{}/commits/{sha}", r.full_name),
            "url": format!("{api}/repos/{}/commits/{sha}/status", r.full_name),
        }),
        &url,
        req,
        statuses.len(),
    )
}

/// `GET /repos/{o}/{r}/commits/{ref}/check-runs`: paged (`per_page` 30 by default, at
/// most 100) with `total_count` over all pages and a `Link` header
/// (https://docs.github.com/en/rest/checks/runs#list-check-runs-for-a-git-reference).
pub(super) fn check_runs(
    state: &Shared,
    api: &str,
    repo: &str,
    git_ref: &str,
    req: &Recorded,
) -> Response {
    let st = lock(state);
    let Some(r) = st.repos.get(repo) else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let sha = resolve(Some(r), git_ref);
    let runs = of_commit(r, &r.checks, git_ref);
    let (per_page, page) = paging(req);
    let items: Vec<Value> = runs
        .iter()
        .enumerate()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|(i, c)| {
            json!({
                "id": 900 + i,
                "head_sha": sha,
                "node_id": format!("MDg6Q2hlY2tSdW4{i}"),
                "external_id": "",
                "url": format!("https://api.github.com/repos/{}/check-runs/{}", r.full_name, 900 + i),
                "html_url": c.html_url,
                "details_url": c.html_url,
                "status": c.status,
                "conclusion": c.conclusion,
                "started_at": now_rfc3339(),
                "completed_at": if c.status == "completed" { Value::from(now_rfc3339()) } else { Value::Null },
                "output": {"title": null, "summary": null, "text": null, "annotations_count": 0, "annotations_url": ""},
                "name": c.name,
                "check_suite": {"id": 5},
                "app": {"id": 15368, "slug": "github-actions", "name": "GitHub Actions"},
                "pull_requests": [],
            })
        })
        .collect();
    let url = format!(
        "{api}/repositories/{}/commits/{}/check-runs",
        r.id,
        encode_segment(git_ref)
    );
    paged_response(
        &json!({"total_count": runs.len(), "check_runs": items}),
        &url,
        req,
        runs.len(),
    )
}

pub(super) fn tarball(state: &Shared, base: &str, repo: &str, sha: &str) -> Response {
    let st = lock(state);
    let Some(r) = st.repos.get(repo) else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let location = format!(
        "{base}/_codeload/{}/legacy.tar.gz/{sha}?token=AAAAtestkitCODELOAD",
        r.full_name
    );
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}
