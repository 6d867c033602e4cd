//! Deployments: created never twice blindly (a lost answer is looked up before a
//! second create), listed with their latest state, and their statuses posted.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::GitHub;
use crate::client::{self, As, Call, Needs, query_value};
use crate::error::{CallError, GitHubError};
use crate::types::{
    ContextState, CreateOutcome, DeploymentBody, DeploymentSummary, RequestId, StatusBody,
    truncate_description,
};

use super::check_repo;

/// How far before our request a deployment recognised by [`RequestId::SamePayload`]
/// may have been created (GitHub's clock and ours differ a little).
const SAME_PAYLOAD_WINDOW_SECS: i64 = 60;

/// The fields of a listed deployment that tell whose it is.
#[derive(Deserialize)]
struct ListedDeployment {
    id: i64,
    sha: String,
    url: String,
    description: Option<String>,
    #[serde(default)]
    payload: Value,
    created_at: DateTime<Utc>,
}

impl GitHub {
    /// `POST /repos/{repo}/deployments` with `body`, recognised after a lost answer by
    /// [`RequestId::of`] `body` (its signed request's nonce, else its whole payload).
    /// See [`GitHub::create_deployment_with`].
    pub async fn create_deployment(
        &self,
        repo: &str,
        body: &DeploymentBody,
    ) -> Result<CreateOutcome, GitHubError> {
        self.create_deployment_with(repo, body, &RequestId::of(body))
            .await
    }

    /// `POST /repos/{repo}/deployments` with `body`, never sent twice blindly.
    ///
    /// Creating a deployment is not idempotent: when GitHub answers 5xx, or the answer
    /// is lost (a timeout, a connection reset after sending), GitHub may have created
    /// it, and a second create would run the deploy twice. So after such a failure the
    /// ref's deployments in that environment are listed and the one carrying `id` is
    /// adopted (reported as [`CreateOutcome::Created`]); only when none does is the
    /// create sent once more. Two failures with nothing created are
    /// [`CreateOutcome::NotCreated`]; a failure whose outcome cannot be checked
    /// because the list fails too is [`CreateOutcome::Unconfirmed`]. Failures before
    /// sending (connection refused) and rate limits (GitHub refused the request) are
    /// retried as usual.
    ///
    /// Our per-attempt timeout (30 s by default) is longer than the 10 s after which
    /// GitHub ends a request itself
    /// (<https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api#timeouts>),
    /// so by the time an answer is given up for lost, GitHub has finished with it and
    /// the list shows what it did.
    ///
    /// The answers GitHub gives a create that it carried out or refused: 201 with the
    /// deployment; 202 when it auto-merged the default branch into the ref (no
    /// deployment); 409 with the failing contexts or a merge conflict; each is a
    /// different reply in chat.
    pub async fn create_deployment_with(
        &self,
        repo: &str,
        body: &DeploymentBody,
        id: &RequestId,
    ) -> Result<CreateOutcome, GitHubError> {
        let repo = check_repo(repo)?;
        let json_body = serde_json::to_value(body).map_err(|e| {
            GitHubError::invalid(format!("the deployment body cannot be serialised: {e}"))
        })?;
        let mut call = Call::post(
            format!("/repos/{repo}/deployments"),
            json_body,
            As::Repo(repo.to_string()),
            format!("repository {repo}"),
            Needs::DEPLOYMENTS_WRITE,
        );
        call.idempotent = false;
        let first_sent = Utc::now();
        let mut failures: Vec<String> = Vec::new();
        for attempt in 1..=2 {
            let lost = match self.send(&call).await {
                Ok(reply) => return self.create_answer(&call, &reply),
                Err(e) if e.ambiguous => e.error,
                Err(e) => return Err(e.error),
            };
            let lost = match lost {
                GitHubError::Unavailable { message } => message,
                other => other.to_string(),
            };
            tracing::warn!(
                %repo,
                git_ref = %body.git_ref,
                environment = %body.environment,
                attempt,
                error = %lost,
                "the answer to a deployment create was lost: looking for the deployment"
            );
            failures.push(lost);
            // A moment for GitHub to finish what it may have started.
            tokio::time::sleep(self.policy().base_delay).await;
            match self.find_created(repo, body, id, first_sent).await {
                Ok(Some(found)) => {
                    tracing::warn!(
                        %repo,
                        deployment = found.id,
                        attempt,
                        "GitHub created the deployment before failing: adopting it"
                    );
                    return Ok(CreateOutcome::Created {
                        id: found.id,
                        sha: found.sha,
                        url: found.url,
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    return Ok(CreateOutcome::Unconfirmed {
                        message: format!(
                            "{}; listing the deployments of {} in {} to check failed too: {e}",
                            describe_failures(&failures),
                            body.git_ref,
                            body.environment
                        ),
                    });
                }
            }
        }
        Ok(CreateOutcome::NotCreated {
            message: format!(
                "{}; GitHub lists no deployment from this request",
                describe_failures(&failures)
            ),
        })
    }

    /// What a create's answer (not a 5xx) means.
    fn create_answer(
        &self,
        call: &Call,
        reply: &client::Reply,
    ) -> Result<CreateOutcome, GitHubError> {
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
                let created: Created = reply.json(call)?;
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
            _ => Err(client::refusal(&self.inner.creds, call, reply).into()),
        }
    }

    /// The deployment `id` identifies among the newest 100 of the body's ref,
    /// environment and task (`GET /repos/{repo}/deployments?ref=&environment=&task=`,
    /// newest first: one page reaches back far enough for a request just made).
    async fn find_created(
        &self,
        repo: &str,
        body: &DeploymentBody,
        id: &RequestId,
        sent: DateTime<Utc>,
    ) -> Result<Option<ListedDeployment>, GitHubError> {
        let call = Call::get(
            format!(
                "/repos/{repo}/deployments?ref={}&environment={}&task={}&per_page=100",
                query_value(&body.git_ref),
                query_value(&body.environment),
                query_value(&body.task)
            ),
            As::Repo(repo.to_string()),
            format!("repository {repo}"),
            Needs::DEPLOYMENTS_READ,
        );
        let listed: Vec<ListedDeployment> = self.send_ok(&call).await?.json(&call)?;
        let since = sent - chrono::Duration::seconds(SAME_PAYLOAD_WINDOW_SECS);
        Ok(listed.into_iter().find(|d| match id {
            RequestId::InPayload { pointer, value } => {
                d.payload.pointer(pointer).and_then(Value::as_str) == Some(value.as_str())
            }
            RequestId::SamePayload => {
                d.payload == body.payload
                    && d.description.as_deref().unwrap_or_default() == body.description
                    && d.created_at >= since
            }
        }))
    }

    /// The latest deployments of `repo` (newest first), optionally of one environment,
    /// each with the state of its latest status. `limit` is capped at 100 (one page).
    pub async fn list_deployments(
        &self,
        repo: &str,
        environment: Option<&str>,
        limit: u8,
    ) -> Result<Vec<DeploymentSummary>, GitHubError> {
        self.list_deployments_of_task(repo, environment, None, limit)
            .await
    }

    /// [`GitHub::list_deployments`], of one task only when `task` is given (GitHub's
    /// `task` filter): auto-deploy asks for `deploy` so that dry runs (`deploy:noop`)
    /// and other tasks never count as what an environment runs.
    pub async fn list_deployments_of_task(
        &self,
        repo: &str,
        environment: Option<&str>,
        task: Option<&str>,
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
        if let Some(task) = task {
            path.push_str("&task=");
            path.push_str(&query_value(task));
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

        // One look-up per deployment for its latest status, one after the other:
        // GitHub asks for serial requests rather than concurrent ones (secondary rate
        // limits, https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api).
        let mut states: Vec<Option<String>> = Vec::with_capacity(listed.len());
        for d in &listed {
            states.push(self.latest_status(repo, d.id).await?);
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
}

/// The failures of a create's attempts, each said once: "X, both times", or "X; then Y".
fn describe_failures(failures: &[String]) -> String {
    match failures {
        [a, b] if a == b => format!("{a}, both times"),
        _ => failures.join("; then "),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
