//! The calls chima and faseng make, one method each.

use chima_config::Secret;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::client::{self, As, Call, Needs, query_value, segment};
use crate::error::{CallError, GitHubError};
use crate::types::{
    CheckRun, CiState, CommitStatus, ContextState, CreateOutcome, DeploymentBody,
    DeploymentSummary, StatusBody, truncate_description,
};
use crate::{GitHub, base64};

/// How many latest-status look-ups `list_deployments` runs at once.
const STATUS_LOOKUPS_AT_ONCE: usize = 8;

impl GitHub {
    /// `POST /repos/{repo}/deployments` with `body`.
    ///
    /// A raw request, branching on the status: GitHub's 202 (it auto-merged the default
    /// branch into the ref) carries no deployment, and its 409s carry either the failing
    /// contexts or a merge conflict; each is a different reply in chat.
    pub async fn create_deployment(
        &self,
        repo: &str,
        body: &DeploymentBody,
    ) -> Result<CreateOutcome, GitHubError> {
        let repo = check_repo(repo)?;
        let body = serde_json::to_value(body).map_err(|e| {
            GitHubError::invalid(format!("the deployment body cannot be serialised: {e}"))
        })?;
        let call = Call::post(
            format!("/repos/{repo}/deployments"),
            body,
            As::Repo(repo.to_string()),
            format!("repository {repo}"),
            Needs::DEPLOYMENTS_WRITE,
        );
        let reply = self.send(&call).await?;
        match reply.status.as_u16() {
            202 => Ok(CreateOutcome::AutoMerged {
                message: reply.github_message(),
            }),
            200 | 201 => {
                #[derive(Deserialize)]
                struct Created {
                    id: i64,
                    sha: String,
                    url: String,
                }
                let created: Created = reply.json(&call)?;
                Ok(CreateOutcome::Created {
                    id: created.id,
                    sha: created.sha,
                    url: created.url,
                })
            }
            409 => Ok(conflict(&reply.body).ok_or_else(|| GitHubError::Rejected {
                status: 409,
                message: format!("{} ({})", reply.github_message(), call.describe()),
            })?),
            _ => Err(client::refusal(&self.inner.creds, &call, &reply).into()),
        }
    }

    /// The latest deployments of `repo` (newest first), optionally of one environment,
    /// each with the state of its latest status. `limit` is capped at 100 (one page).
    pub async fn list_deployments(
        &self,
        repo: &str,
        environment: Option<&str>,
        limit: u8,
    ) -> Result<Vec<DeploymentSummary>, GitHubError> {
        let repo = check_repo(repo)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let per_page = limit.min(100);
        let mut path = format!("/repos/{repo}/deployments?per_page={per_page}");
        if let Some(env) = environment {
            path.push_str("&environment=");
            path.push_str(&query_value(env));
        }
        let call = Call::get(
            path,
            As::Repo(repo.to_string()),
            format!("repository {repo}"),
            Needs::DEPLOYMENTS_READ,
        );
        #[derive(Deserialize)]
        struct Creator {
            login: String,
        }
        #[derive(Deserialize)]
        struct Listed {
            id: i64,
            sha: String,
            #[serde(rename = "ref")]
            git_ref: String,
            task: Option<String>,
            environment: String,
            description: Option<String>,
            creator: Option<Creator>,
            created_at: DateTime<Utc>,
        }
        let listed: Vec<Listed> = self.send_ok(&call).await?.json(&call)?;

        // One look-up per deployment for its latest status, a few at a time, in order.
        let mut states: Vec<Option<String>> = vec![None; listed.len()];
        let ids: Vec<i64> = listed.iter().map(|d| d.id).collect();
        for (chunk_index, chunk) in ids.chunks(STATUS_LOOKUPS_AT_ONCE).enumerate() {
            let mut set = tokio::task::JoinSet::new();
            for (i, id) in chunk.iter().enumerate() {
                let gh = self.clone();
                let repo = repo.to_string();
                let id = *id;
                let index = chunk_index * STATUS_LOOKUPS_AT_ONCE + i;
                set.spawn(async move { (index, gh.latest_status(&repo, id).await) });
            }
            while let Some(joined) = set.join_next().await {
                let (index, state) = joined.map_err(|e| {
                    GitHubError::unavailable(format!("a status look-up stopped: {e}"))
                })?;
                if let Some(slot) = states.get_mut(index) {
                    *slot = state?;
                }
            }
        }

        Ok(listed
            .into_iter()
            .zip(states)
            .map(|(d, state)| DeploymentSummary {
                id: d.id,
                sha: d.sha,
                git_ref: d.git_ref,
                task: d.task.unwrap_or_else(|| "deploy".to_string()),
                environment: d.environment,
                creator: d.creator.map(|c| c.login).unwrap_or_default(),
                created_at: d.created_at,
                state,
                description: d.description.filter(|s| !s.is_empty()),
            })
            .collect())
    }

    /// The state of the newest status of a deployment (GitHub lists newest first).
    async fn latest_status(&self, repo: &str, id: i64) -> Result<Option<String>, GitHubError> {
        #[derive(Deserialize)]
        struct Status {
            state: String,
        }
        let call = Call::get(
            format!("/repos/{repo}/deployments/{id}/statuses?per_page=1"),
            As::Repo(repo.to_string()),
            format!("deployment {id} of repository {repo}"),
            Needs::DEPLOYMENTS_READ,
        );
        let statuses: Vec<Status> = self.send_ok(&call).await?.json(&call)?;
        Ok(statuses.into_iter().next().map(|s| s.state))
    }

    /// `POST /repos/{repo}/deployments/{id}/statuses`. The description is cut to 140
    /// characters (GitHub refuses longer ones).
    pub async fn create_status(
        &self,
        repo: &str,
        deployment_id: i64,
        status: &StatusBody,
    ) -> Result<(), GitHubError> {
        Ok(self.post_status(repo, deployment_id, status).await?)
    }

    /// [`GitHub::create_status`] keeping the retry hints, for the status sender.
    pub(crate) async fn post_status(
        &self,
        repo: &str,
        deployment_id: i64,
        status: &StatusBody,
    ) -> Result<(), CallError> {
        let repo = check_repo(repo)?;
        let mut body = json!({ "state": status.state.as_str() });
        if let Some(url) = &status.log_url {
            body["log_url"] = json!(url);
        }
        if let Some(url) = &status.environment_url {
            body["environment_url"] = json!(url);
        }
        if let Some(text) = &status.description {
            body["description"] = json!(truncate_description(text));
        }
        if let Some(flag) = status.auto_inactive {
            body["auto_inactive"] = json!(flag);
        }
        let call = Call::post(
            format!("/repos/{repo}/deployments/{deployment_id}/statuses"),
            body,
            As::Repo(repo.to_string()),
            format!("deployment {deployment_id} of repository {repo}"),
            Needs::DEPLOYMENTS_WRITE,
        );
        self.send_ok(&call).await?;
        Ok(())
    }

    /// How `head` relates to `base` (GitHub's compare API): `ahead`, `behind`,
    /// `identical` or `diverged`. Auto-deploy never ships a commit behind the
    /// last one deployed.
    pub async fn compare(&self, repo: &str, base: &str, head: &str) -> Result<String, GitHubError> {
        let repo = check_repo(repo)?;
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 255
                && !s.starts_with('-')
                && !s.contains("..")
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/_-.".contains(&b))
        };
        if !ok(base) || !ok(head) {
            return Err(GitHubError::invalid(format!(
                "cannot compare `{base}` with `{head}`"
            )));
        }
        #[derive(Deserialize)]
        struct Comparison {
            status: String,
        }
        let call = Call::get(
            format!("/repos/{repo}/compare/{base}...{head}"),
            As::Repo(repo.to_string()),
            format!("comparison of {base} and {head} in {repo}"),
            Needs::CONTENTS_READ,
        );
        let found: Comparison = self.send_ok(&call).await?.json(&call)?;
        Ok(found.status)
    }

    /// The repository's default branch (the ref when neither chat nor app.json names one).
    pub async fn default_branch(&self, repo: &str) -> Result<String, GitHubError> {
        let repo = check_repo(repo)?;
        #[derive(Deserialize)]
        struct Repository {
            default_branch: Option<String>,
        }
        let call = Call::get(
            format!("/repos/{repo}"),
            As::Repo(repo.to_string()),
            format!("repository {repo}"),
            Needs::METADATA_READ,
        );
        let found: Repository = self.send_ok(&call).await?.json(&call)?;
        found
            .default_branch
            .filter(|b| !b.is_empty())
            .ok_or_else(|| GitHubError::Rejected {
                status: 200,
                message: format!(
                    "repository {repo} has no default branch (is it empty?) ({})",
                    call.describe()
                ),
            })
    }

    /// The commit statuses and check runs of `git_ref`, and one state over both.
    ///
    /// GitHub's combined status covers commit statuses only, and says `pending` when
    /// there are none; a repository on GitHub Actions has check runs instead. The
    /// `state` here is: `failure` if any status failed or errored or any completed check
    /// run did not succeed (`failure`, `timed_out`, `cancelled`, `action_required`,
    /// `startup_failure`, `stale`); else `pending` if any is still running; else
    /// `success` when there is at least one; else GitHub's combined state as is.
    pub async fn ci_state(&self, repo: &str, git_ref: &str) -> Result<CiState, GitHubError> {
        let repo = check_repo(repo)?;
        if git_ref.trim().is_empty() {
            return Err(GitHubError::invalid("an empty ref has no CI state"));
        }
        let target = format!("ref `{git_ref}` of repository {repo}");
        let status_call = Call::get(
            format!(
                "/repos/{repo}/commits/{}/status?per_page=100",
                segment(git_ref)
            ),
            As::Repo(repo.to_string()),
            target.clone(),
            Needs::STATUSES_READ,
        );
        let checks_call = Call::get(
            format!(
                "/repos/{repo}/commits/{}/check-runs?per_page=100",
                segment(git_ref)
            ),
            As::Repo(repo.to_string()),
            target,
            Needs::CHECKS_READ,
        );
        let (status_reply, checks_reply) =
            tokio::join!(self.send_ok(&status_call), self.send_ok(&checks_call));

        #[derive(Deserialize)]
        struct RawStatus {
            context: String,
            state: String,
            target_url: Option<String>,
            description: Option<String>,
        }
        #[derive(Deserialize)]
        struct Combined {
            state: String,
            sha: String,
            #[serde(default)]
            statuses: Vec<RawStatus>,
        }
        #[derive(Deserialize)]
        struct RawCheck {
            name: String,
            status: String,
            conclusion: Option<String>,
            html_url: Option<String>,
        }
        #[derive(Deserialize)]
        struct Checks {
            #[serde(default)]
            check_runs: Vec<RawCheck>,
        }
        let combined: Combined = status_reply?.json(&status_call)?;
        let checks: Checks = checks_reply?.json(&checks_call)?;

        let statuses: Vec<CommitStatus> = combined
            .statuses
            .into_iter()
            .map(|s| CommitStatus {
                context: s.context,
                state: s.state,
                target_url: s.target_url.filter(|u| !u.is_empty()),
                description: s.description.filter(|d| !d.is_empty()),
            })
            .collect();
        let check_runs: Vec<CheckRun> = checks
            .check_runs
            .into_iter()
            .map(|c| CheckRun {
                name: c.name,
                status: c.status,
                conclusion: c.conclusion,
                html_url: c.html_url,
            })
            .collect();
        let state = overall_state(&combined.state, &statuses, &check_runs);
        Ok(CiState {
            sha: combined.sha,
            state,
            statuses,
            check_runs,
        })
    }

    /// Where Heroku can download the commit's tarball: the `Location` of
    /// `GET /repos/{repo}/tarball/{sha}`, not followed. It is a short-lived URL with its
    /// own token, so it works for private repositories without giving Heroku ours;
    /// it is not logged.
    pub async fn tarball_url(&self, repo: &str, sha: &str) -> Result<String, GitHubError> {
        let repo = check_repo(repo)?;
        if sha.trim().is_empty() {
            return Err(GitHubError::invalid("an empty sha has no tarball"));
        }
        let mut call = Call::get(
            format!("/repos/{repo}/tarball/{}", segment(sha)),
            As::Repo(repo.to_string()),
            format!("commit {sha} of repository {repo}"),
            Needs::CONTENTS_READ,
        );
        call.follow_redirects = false;
        let reply = self.send(&call).await?;
        if reply.status.is_redirection() {
            let location = reply
                .headers
                .get(hyper::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|l| !l.is_empty());
            let Some(location) = location else {
                return Err(GitHubError::unavailable(format!(
                    "GitHub answered {} without a Location to {}",
                    reply.status.as_u16(),
                    call.describe()
                )));
            };
            return Ok(absolute(self.api_url(), location));
        }
        if reply.status.is_success() {
            return Err(GitHubError::unavailable(format!(
                "GitHub sent the tarball itself instead of its address ({}): a proxy in \
                 between follows redirects",
                call.describe()
            )));
        }
        Err(client::refusal(&self.inner.creds, &call, &reply).into())
    }

    /// An `Authorization` header value for `git clone` over https of `repo`:
    /// `Basic base64(x-access-token:<token>)`, which GitHub accepts for personal tokens
    /// and installation tokens alike (git's own way, as `actions/checkout` does). With an
    /// App the installation token is fresh for at least five minutes.
    pub async fn git_auth_header(&self, repo: &str) -> Result<Secret, GitHubError> {
        let repo = check_repo(repo)?;
        let token = self.token_for(repo).await?;
        let pair = format!("x-access-token:{}", token.expose());
        Ok(Secret::new(format!(
            "Basic {}",
            base64::encode(pair.as_bytes())
        )))
    }
}

/// Checks `owner/name` (GitHub's characters: letters, digits, `-`, `_`, `.`).
pub(crate) fn check_repo(repo: &str) -> Result<&str, GitHubError> {
    let repo = repo.trim();
    let valid_part = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    match repo.split_once('/') {
        Some((owner, name)) if valid_part(owner) && valid_part(name) => Ok(repo),
        _ => Err(GitHubError::invalid(format!(
            "`{repo}` is not a GitHub repository in owner/name form"
        ))),
    }
}

/// Reads a 409 answer: failing contexts or a merge conflict; `None` for neither.
fn conflict(body: &[u8]) -> Option<CreateOutcome> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let message = v
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("Conflict")
        .to_string();
    let errors = v
        .get("errors")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let contexts: Vec<ContextState> = errors
        .iter()
        .filter_map(|e| e.get("contexts").and_then(Value::as_array))
        .flatten()
        .filter_map(|c| {
            Some(ContextState {
                context: c.get("context")?.as_str()?.to_string(),
                state: c
                    .get("state")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_string(),
            })
        })
        .collect();
    let about_contexts = errors
        .iter()
        .any(|e| e.get("field").and_then(Value::as_str) == Some("required_contexts"));
    let lower = message.to_ascii_lowercase();
    if !contexts.is_empty()
        || about_contexts
        || lower.contains("status check")
        || lower.contains("commit status")
    {
        Some(CreateOutcome::FailingContexts { message, contexts })
    } else if lower.contains("merg") {
        Some(CreateOutcome::MergeConflict { message })
    } else {
        None
    }
}

/// One state over commit statuses and check runs (see [`GitHub::ci_state`]).
fn overall_state(combined: &str, statuses: &[CommitStatus], checks: &[CheckRun]) -> String {
    if checks.is_empty() {
        return combined.to_string();
    }
    let mut failed = false;
    let mut pending = false;
    for s in statuses {
        match s.state.as_str() {
            "failure" | "error" => failed = true,
            "pending" => pending = true,
            _ => {}
        }
    }
    for c in checks {
        if c.status != "completed" {
            pending = true;
            continue;
        }
        match c.conclusion.as_deref() {
            Some("success") | Some("neutral") | Some("skipped") => {}
            None => pending = true,
            Some(_) => failed = true,
        }
    }
    if failed {
        "failure".to_string()
    } else if pending {
        "pending".to_string()
    } else {
        "success".to_string()
    }
}

/// A `Location` made absolute against the API's scheme and host.
fn absolute(api_url: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let origin_end = api_url
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| api_url[start..].find('/').map(|j| start + j))
        .unwrap_or(api_url.len());
    format!(
        "{}/{}",
        &api_url[..origin_end],
        location.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_must_be_owner_slash_name() {
        for ok in ["o/r", "acme-inc/web.app", "A_b/c-d.e"] {
            assert!(check_repo(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "o", "o/", "/r", "o/r/x", "o/r?x", "../r", "o/..", "o r/x", "o/r#",
        ] {
            assert!(
                matches!(check_repo(bad), Err(GitHubError::Invalid { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn conflicts_are_told_apart() {
        let contexts = br#"{"message": "Conflict: Commit status checks failed for master.", "errors": [{"contexts": [{"context": "ci/build", "state": "failure"}, {"context": "ci/lint", "state": "pending"}], "resource": "Deployment", "field": "required_contexts", "code": "invalid"}]}"#;
        match conflict(contexts) {
            Some(CreateOutcome::FailingContexts { message, contexts }) => {
                assert!(message.contains("status checks failed"));
                assert_eq!(contexts.len(), 2);
                assert_eq!(contexts[0].context, "ci/build");
                assert_eq!(contexts[1].state, "pending");
            }
            other => panic!("{other:?}"),
        }
        let merge = br#"{"message": "Conflict merging master into topic-branch."}"#;
        assert!(matches!(
            conflict(merge),
            Some(CreateOutcome::MergeConflict { .. })
        ));
        assert_eq!(conflict(br#"{"message": "Something else"}"#), None);
        assert_eq!(conflict(b"not json"), None);
    }

    #[test]
    fn check_runs_join_the_combined_state() {
        let check = |status: &str, conclusion: Option<&str>| CheckRun {
            name: "build".into(),
            status: status.into(),
            conclusion: conclusion.map(String::from),
            html_url: None,
        };
        let status = |state: &str| CommitStatus {
            context: "ci".into(),
            state: state.into(),
            target_url: None,
            description: None,
        };
        assert_eq!(overall_state("pending", &[], &[]), "pending");
        assert_eq!(
            overall_state("success", &[status("success")], &[]),
            "success"
        );
        assert_eq!(
            overall_state("pending", &[], &[check("completed", Some("success"))]),
            "success"
        );
        assert_eq!(
            overall_state("pending", &[], &[check("in_progress", None)]),
            "pending"
        );
        assert_eq!(
            overall_state(
                "success",
                &[status("success")],
                &[check("completed", Some("timed_out"))]
            ),
            "failure"
        );
        assert_eq!(
            overall_state(
                "failure",
                &[status("failure")],
                &[check("completed", Some("skipped"))]
            ),
            "failure"
        );
    }

    #[test]
    fn locations_are_made_absolute() {
        assert_eq!(
            absolute("https://ghe.example.com/api/v3", "/_codeload/x"),
            "https://ghe.example.com/_codeload/x"
        );
        assert_eq!(
            absolute("https://api.github.com", "https://codeload.github.com/o/r"),
            "https://codeload.github.com/o/r"
        );
        assert_eq!(absolute("http://127.0.0.1:9", "/a"), "http://127.0.0.1:9/a");
    }
}
