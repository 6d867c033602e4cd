//! The repository, deployment and deployment status endpoints, with GitHub's
//! checks on a deployment create (required contexts, auto-merge, conflicts).

use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use serde_json::{Value, json};

use super::answers::{
    deployment_json, github_error, json_response, paged_response, paging, repo_json, status_json,
    validation_failed,
};
use super::commits::contexts_of;
use super::server::percent_decode;
use super::state::{Shared, State, lock, resolve};
use super::{FakeDeployment, FakeDeploymentStatus, Recorded, TOKEN_LOGIN};

pub(super) fn get_repo(state: &Shared, api: &str, repo: &str) -> Response {
    let st = lock(state);
    match st.repos.get(repo) {
        Some(r) => json_response(StatusCode::OK, &repo_json(r, api)),
        None => github_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

pub(super) fn create_deployment(state: &Shared, api: &str, repo: &str, req: &Recorded) -> Response {
    let Some(body) = req.json.clone().filter(Value::is_object) else {
        return github_error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let Some(git_ref) = body.get("ref").and_then(Value::as_str).map(str::to_string) else {
        return validation_failed(
            "Deployment",
            "ref",
            "missing_field",
            "\"ref\" wasn't supplied.",
        );
    };
    let mut st = lock(state);
    let Some(r) = st.repos.get(repo) else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let sha = resolve(Some(r), &git_ref);
    let full_name = r.full_name.clone();

    // Required contexts, as GitHub checks them: "If you omit this parameter, GitHub
    // verifies all unique contexts before creating a deployment"; an empty list skips
    // the check (https://docs.github.com/en/rest/deployments/deployments#create-a-deployment).
    // A context is a commit status context or a check run name: GitHub counts check
    // runs too, so a failing GitHub Actions job refuses the deployment (409).
    let contexts = contexts_of(r, &git_ref);
    let required: Option<Vec<String>> = body.get("required_contexts").and_then(|v| {
        v.as_array().map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect()
        })
    });
    let considered: Vec<(String, String)> = match &required {
        Some(names) => names
            .iter()
            .map(|n| {
                let state = contexts
                    .iter()
                    .filter(|(c, _)| c == n)
                    .map(|(_, s)| s.clone())
                    .reduce(|worst, s| if s == "success" { worst } else { s })
                    .unwrap_or_else(|| "missing".to_string());
                (n.clone(), state)
            })
            .collect(),
        None => contexts,
    };
    if considered.iter().any(|(_, s)| s != "success") {
        return json_response(
            StatusCode::CONFLICT,
            &json!({
                "message": format!("Conflict: Commit status checks failed for {git_ref}."),
                "errors": [{
                    "contexts": considered.iter().filter(|(_, s)| s != "success").map(|(c, s)| json!({"context": c, "state": s})).collect::<Vec<_>>(),
                    "resource": "Deployment",
                    "field": "required_contexts",
                    "code": "invalid",
                }],
                "documentation_url": "https://docs.github.com/rest/deployments/deployments#create-a-deployment",
            }),
        );
    }

    let environment = body
        .get("environment")
        .and_then(Value::as_str)
        .unwrap_or("production")
        .to_string();
    let id = st.next_deployment;
    st.next_deployment += 1;
    let deployment = FakeDeployment {
        id,
        repo: full_name,
        sha,
        git_ref,
        task: body
            .get("task")
            .and_then(Value::as_str)
            .unwrap_or("deploy")
            .to_string(),
        production_environment: body
            .get("production_environment")
            .and_then(Value::as_bool)
            .unwrap_or(environment == "production"),
        transient_environment: body
            .get("transient_environment")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        environment,
        description: body
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string),
        payload: match body.get("payload") {
            None | Some(Value::Null) => json!({}),
            Some(p) => p.clone(),
        },
        creator: TOKEN_LOGIN.to_string(),
        created_at: Utc::now(),
        body,
    };
    let out = deployment_json(&deployment, api);
    st.deployments.push(deployment);
    json_response(StatusCode::CREATED, &out)
}

pub(super) fn list_deployments(state: &Shared, api: &str, repo: &str, req: &Recorded) -> Response {
    let st = lock(state);
    let Some(r) = st.repos.get(repo) else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let filter = |name: &str| req.query_param(name).map(|v| percent_decode(&v));
    let (sha, git_ref, task, env) = (
        filter("sha"),
        filter("ref"),
        filter("task"),
        filter("environment"),
    );
    let (per_page, page) = paging(req);
    let matching: Vec<&FakeDeployment> = st
        .deployments
        .iter()
        .rev()
        .filter(|d| d.repo.eq_ignore_ascii_case(repo))
        .filter(|d| sha.as_ref().is_none_or(|s| &d.sha == s))
        .filter(|d| git_ref.as_ref().is_none_or(|r| &d.git_ref == r))
        .filter(|d| task.as_ref().is_none_or(|t| &d.task == t))
        .filter(|d| env.as_ref().is_none_or(|e| &d.environment == e))
        .collect();
    let list: Vec<Value> = matching
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|d| deployment_json(d, api))
        .collect();
    let url = format!("{api}/repositories/{}/deployments", r.id);
    paged_response(&Value::Array(list), &url, req, matching.len())
}

pub(super) fn find_deployment<'a>(
    st: &'a State,
    repo: &str,
    id: &str,
) -> Option<&'a FakeDeployment> {
    let id: i64 = id.parse().ok()?;
    st.deployments
        .iter()
        .find(|d| d.id == id && d.repo.eq_ignore_ascii_case(repo))
}

pub(super) const STATUS_STATES: [&str; 7] = [
    "error",
    "failure",
    "inactive",
    "in_progress",
    "queued",
    "pending",
    "success",
];

pub(super) fn create_status(
    state: &Shared,
    api: &str,
    repo: &str,
    id: &str,
    req: &Recorded,
) -> Response {
    let Some(body) = req.json.clone().filter(Value::is_object) else {
        return github_error(StatusCode::BAD_REQUEST, "Problems parsing JSON");
    };
    let mut st = lock(state);
    let Some(deployment) = find_deployment(&st, repo, id).cloned() else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let status_state = body
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if !STATUS_STATES.contains(&status_state.as_str()) {
        return validation_failed(
            "DeploymentStatus",
            "state",
            "custom",
            "state is not included in the list",
        );
    }
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let description = text("description");
    if description
        .as_ref()
        .is_some_and(|d| d.chars().count() > 140)
    {
        return validation_failed(
            "DeploymentStatus",
            "description",
            "custom",
            "description is too long (maximum is 140 characters)",
        );
    }
    let status_id = st.next_status;
    st.next_status += 1;
    let status = FakeDeploymentStatus {
        id: status_id,
        deployment_id: deployment.id,
        state: status_state,
        log_url: text("log_url").or_else(|| text("target_url")),
        environment_url: text("environment_url"),
        description,
        auto_inactive: body.get("auto_inactive").and_then(Value::as_bool),
        created_at: Utc::now(),
        body,
    };
    let out = status_json(&status, &deployment, api);
    let deactivate = status.state == "success" && status.auto_inactive != Some(false);
    st.statuses.push(status);
    if deactivate {
        auto_inactive(&mut st, &deployment);
    }
    json_response(StatusCode::CREATED, &out)
}

/// `auto_inactive` (default true) of a `success` status, as GitHub's "Create a
/// deployment status" describes it
/// (<https://docs.github.com/en/rest/deployments/statuses#create-a-deployment-status>):
/// "Adds a new `inactive` status to all prior non-transient, non-production environment
/// deployments with the same repository and environment name as the created status's
/// deployment. An `inactive` status is only added to deployments that had a `success`
/// state." The statuses it adds have no body (GitHub made them, nobody posted them).
fn auto_inactive(st: &mut super::state::State, of: &FakeDeployment) {
    let latest = |st: &super::state::State, id: i64| {
        st.statuses
            .iter()
            .rev()
            .find(|s| s.deployment_id == id)
            .map(|s| s.state.clone())
    };
    let prior: Vec<i64> = st
        .deployments
        .iter()
        .filter(|d| {
            d.id < of.id
                && d.repo.eq_ignore_ascii_case(&of.repo)
                && d.environment == of.environment
                && !d.transient_environment
                && !d.production_environment
        })
        .map(|d| d.id)
        .collect();
    for id in prior {
        if latest(st, id).as_deref() != Some("success") {
            continue;
        }
        let status_id = st.next_status;
        st.next_status += 1;
        st.statuses.push(FakeDeploymentStatus {
            id: status_id,
            deployment_id: id,
            state: "inactive".to_string(),
            log_url: None,
            environment_url: None,
            description: None,
            auto_inactive: None,
            created_at: Utc::now(),
            body: Value::Null,
        });
    }
}

pub(super) fn list_statuses(
    state: &Shared,
    api: &str,
    repo: &str,
    id: &str,
    req: &Recorded,
) -> Response {
    let st = lock(state);
    let Some(deployment) = find_deployment(&st, repo, id) else {
        return github_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let (per_page, page) = paging(req);
    let all: Vec<&FakeDeploymentStatus> = st
        .statuses
        .iter()
        .rev()
        .filter(|s| s.deployment_id == deployment.id)
        .collect();
    let list: Vec<Value> = all
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|s| status_json(s, deployment, api))
        .collect();
    let repo_id = st.repos.get(repo).map_or(0, |r| r.id);
    let url = format!(
        "{api}/repositories/{repo_id}/deployments/{}/statuses",
        deployment.id
    );
    paged_response(&Value::Array(list), &url, req, all.len())
}
