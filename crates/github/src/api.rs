//! The calls chima and faseng make, one method each.

use chima_config::Secret;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::client::{self, As, Call, Needs, query_value, segment};
use crate::error::{CallError, GitHubError};
use crate::types::{
    CheckRun, CiState, CommitStatus, ContextState, CreateOutcome, DeploymentBody,
    DeploymentSummary, RequestId, StatusBody, truncate_description,
};
use crate::{GitHub, base64};

/// The most pages read of one list (commit statuses, check runs): 1,000 entries at
/// 100 a page. A bound, so that a runaway `Link` chain cannot hold a deploy forever.
pub const MAX_PAGES: usize = 10;

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
    ///
    /// Both lists are paged by GitHub (30 a page unless asked, at most 100): every
    /// page is read, following `Link: rel="next"` (or `total_count` when a proxy
    /// dropped the header), up to [`MAX_PAGES`] each, one request after the other. A
    /// failing check run on page 2 counts as much as one on page 1.
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

        let status_pages = self.read_pages(&status_call, "statuses").await?;
        let checks_pages = self.read_pages(&checks_call, "check_runs").await?;
        let (status_truncated, checks_truncated) = (status_pages.truncated, checks_pages.truncated);

        let mut state = None;
        let mut sha = None;
        let mut statuses: Vec<CommitStatus> = Vec::new();
        for (page, call) in status_pages.bodies.into_iter().zip(&status_pages.calls) {
            let combined: Combined = from_page(page, call)?;
            state.get_or_insert(combined.state);
            sha.get_or_insert(combined.sha);
            statuses.extend(combined.statuses.into_iter().map(|s| CommitStatus {
                context: s.context,
                state: s.state,
                target_url: s.target_url.filter(|u| !u.is_empty()),
                description: s.description.filter(|d| !d.is_empty()),
            }));
        }
        let mut check_runs: Vec<CheckRun> = Vec::new();
        for (page, call) in checks_pages.bodies.into_iter().zip(&checks_pages.calls) {
            let checks: Checks = from_page(page, call)?;
            check_runs.extend(checks.check_runs.into_iter().map(|c| CheckRun {
                name: c.name,
                status: c.status,
                conclusion: c.conclusion,
                html_url: c.html_url,
            }));
        }
        let (Some(combined_state), Some(sha)) = (state, sha) else {
            return Err(GitHubError::unavailable(format!(
                "GitHub's answer to {} had no page",
                status_call.describe()
            )));
        };
        let mut state = overall_state(&combined_state, &statuses, &check_runs);
        if (status_truncated || checks_truncated) && state == "success" {
            // Unread pages may hold a failure: not green, whatever the pages read say.
            state = "pending".to_string();
        }
        Ok(CiState {
            sha,
            state,
            statuses,
            check_runs,
        })
    }

    /// Every page of a list, up to [`MAX_PAGES`], one request after the other. `items`
    /// names the array each page's object holds (for `total_count`).
    ///
    /// The next page is where `Link: rel="next"` says (GitHub's pagination guide:
    /// follow the header rather than build the URL,
    /// <https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api>);
    /// a link outside `GITHUB_API_URL` is not followed with our credentials. Without
    /// a header, `total_count` above what was read asks for `page=N+1`.
    async fn read_pages(&self, first: &Call, items: &str) -> Result<Pages, CallError> {
        let mut pages = Pages {
            bodies: Vec::new(),
            calls: Vec::new(),
            truncated: false,
        };
        let mut call = first.clone();
        let mut seen = 0usize;
        for page in 1..=MAX_PAGES {
            let reply = self.send_ok(&call).await?;
            let body: Value = reply.json(&call)?;
            let count = body
                .get(items)
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            seen += count;
            let total = body
                .get("total_count")
                .and_then(Value::as_u64)
                .and_then(|t| usize::try_from(t).ok());
            let next = match reply.next_link() {
                Some(link) => Some(self.api_path(&link, &call)?),
                None if count > 0 && total.is_some_and(|t| seen < t) => {
                    Some(with_page(&first.path, page + 1))
                }
                None => None,
            };
            pages.bodies.push(body);
            pages.calls.push(call.clone());
            match next {
                Some(path) => call.path = path,
                None => return Ok(pages),
            }
        }
        tracing::warn!(
            call = %first.describe(),
            pages = MAX_PAGES,
            "GitHub has more pages than are read; the rest is not counted"
        );
        pages.truncated = true;
        Ok(pages)
    }

    /// A `Link` target as a path under `api_url`.
    fn api_path(&self, link: &str, call: &Call) -> Result<String, CallError> {
        match link.strip_prefix(self.api_url()) {
            Some(rest) if rest.starts_with('/') => Ok(rest.to_string()),
            _ => Err(GitHubError::unavailable(format!(
                "GitHub's next page of {} is at {link}, outside GITHUB_API_URL ({}): not \
                 following it with our credentials",
                call.describe(),
                self.api_url()
            ))
            .into()),
        }
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

/// The answers of a paged list, with the call each answered (for error messages).
struct Pages {
    bodies: Vec<Value>,
    calls: Vec<Call>,
    /// More pages than [`MAX_PAGES`]: some were not read.
    truncated: bool,
}

/// The failures of a create's attempts, each said once: "X, both times", or "X; then Y".
fn describe_failures(failures: &[String]) -> String {
    match failures {
        [a, b] if a == b => format!("{a}, both times"),
        _ => failures.join("; then "),
    }
}

/// One page's JSON as `T`, or an error that says which call answered what.
fn from_page<T: serde::de::DeserializeOwned>(page: Value, call: &Call) -> Result<T, GitHubError> {
    serde_json::from_value(page).map_err(|e| {
        GitHubError::unavailable(format!(
            "GitHub's answer to {} could not be read: {e}",
            call.describe()
        ))
    })
}

/// `path` with its `page` query parameter set to `page`.
fn with_page(path: &str, page: usize) -> String {
    let (base, query) = path.split_once('?').unwrap_or((path, ""));
    let mut params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("page="))
        .collect();
    let page = format!("page={page}");
    params.push(&page);
    format!("{base}?{}", params.join("&"))
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
