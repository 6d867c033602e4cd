//! Auto-deploy on green CI, as heaven did and better: when the head of an
//! app's configured ref has every required context green (commit statuses and
//! check runs both), faseng creates a GitHub deployment of that exact sha to
//! the environment, which then runs through the normal path.
//!
//! Never when a required context failed or is pending, when the sha is not the
//! head of the ref, when the environment is locked, frozen or outside its deploy
//! windows (said once per sha in the app's channel) or auto-deploy is paused there, when that sha or a newer one
//! was already deployed there, or when the sha is behind the last deployed one.
//! The store's claim makes it one deployment per sha and environment, however
//! many green events arrive and however many faseng processes take them.

use std::sync::Arc;
use std::time::Duration;

use chima_config::{App, AutoDeployRule};
use chima_github::{CiState, CreateOutcome, DeploymentBody, GitHub};
use chima_store::Store;
use serde_json::Value;

/// What auto-deploy needs.
#[derive(Clone)]
pub struct AutoDeployer {
    pub store: Arc<dyn Store>,
    pub apps: Arc<chima_config::Apps>,
    pub github: GitHub,
    pub slack: Option<chima_slack::SlackApi>,
    /// Signs auto-deploy's requests, so that faseng's intake knows them for its own
    /// (identity `auto-deploy`, allowed by app.json's `auto_deploy`). Without a key an
    /// auto-deploy counts as faseng's GitHub login, which `allowed_users` must list.
    pub signing_key: Option<chima_payload::SigningKey>,
}

/// The events that can make a commit green or move a branch head.
pub const EVENTS: &[&str] = &["status", "check_run", "check_suite", "push"];

/// The most branches a `status` event lists: "An array of branch objects containing
/// the status' SHA. Each branch contains the given SHA, but the SHA may or may not be
/// the head of the branch. The array includes a maximum of 10 branches."
/// (<https://docs.github.com/en/webhooks/webhook-events-and-payloads#status>).
pub const STATUS_EVENT_MAX_BRANCHES: usize = 10;

/// How old a claim whose GitHub deployment was never recorded must be before a green
/// event may take it over ([`Store::claim_auto_deploy`]): its claimer died between the
/// claim and the record, or the sha could never ship.
///
/// It must outlast the longest GitHub create, or a slow but living claimer would see
/// its sha deployed twice. With the client's default [`chima_github::RetryPolicy`]
/// (3 attempts of at most 30 s each, rate-limit waits of at most 20 s done inline, a
/// 0.5 s backoff doubled), one request ends within 3 × 30 + 2 × 20 = 130 s; a create
/// whose answer is lost sends at most two creates, each followed by one listing to look
/// for it ([`GitHub::create_deployment`]): 4 × 130 s + 2 × 0.5 s, under 9 minutes in
/// the very worst case, and seconds in practice. Fifteen minutes leaves room for
/// queueing behind other writes on the same credential (spaced by a second).
pub const AUTO_DEPLOY_CLAIM_STALE_AFTER: Duration = Duration::from_secs(15 * 60);

/// What one event says: the repository, the commit, and the branches it is on
/// (empty when the event does not say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub repository: String,
    pub sha: String,
    pub branches: Vec<String>,
}

/// Reads the trigger out of an event body, or `None` when the event cannot
/// make anything deployable (a check still running, a deleted branch...).
pub fn trigger(event: &str, body: &Value) -> Option<Trigger> {
    let repository = body.pointer("/repository/full_name")?.as_str()?.to_string();
    let s = |p: &str| body.pointer(p).and_then(Value::as_str).map(str::to_string);
    let (sha, branches) = match event {
        "status" => (
            s("/sha")?,
            body.get("branches")
                .and_then(Value::as_array)
                .map(|b| {
                    b.iter()
                        .filter_map(|x| x.get("name").and_then(Value::as_str).map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        "check_run" if s("/action").as_deref() == Some("completed") => (
            s("/check_run/head_sha")?,
            s("/check_run/check_suite/head_branch")
                .into_iter()
                .collect(),
        ),
        "check_suite" if s("/action").as_deref() == Some("completed") => (
            s("/check_suite/head_sha")?,
            s("/check_suite/head_branch").into_iter().collect(),
        ),
        "push" => {
            let after = s("/after")?;
            if after.bytes().all(|b| b == b'0') {
                return None;
            }
            let branch = s("/ref")?.strip_prefix("refs/heads/")?.to_string();
            (after, vec![branch])
        }
        _ => return None,
    };
    if sha.len() < 7 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(Trigger {
        repository,
        sha,
        branches,
    })
}

/// Why a commit was not deployed (for the log and the tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    OtherBranch,
    NotHead,
    NoContexts,
    NotGreen(String),
    Paused,
    Locked(String),
    /// Frozen, or outside its deploy windows: the claim is left alone, so that the sha
    /// ships at the next green event once the environment is open again.
    Blocked(String),
    AlreadyDeployed,
    Behind(String),
    Claimed,
}

impl AutoDeployer {
    /// The payload of an auto-deploy: hubot-deploy's shape, with faseng's own signed
    /// request (adapter `auto-deploy`) when it has a key.
    fn payload(
        &self,
        app: &chima_config::App,
        env: &str,
        sha: &str,
        git_ref: &str,
        contexts: &[String],
    ) -> serde_json::Value {
        let chima = self.signing_key.as_ref().map(|key| {
            key.sign(chima_payload::ChimaRequest {
                version: chima_payload::REQUEST_VERSION,
                nonce: chima_payload::new_nonce(),
                issued_at: chrono::Utc::now().timestamp(),
                adapter: crate::intake::AUTO_DEPLOY_ADAPTER.to_string(),
                user_id: None,
                user_name: "auto-deploy".to_string(),
                room: app.notify_room.clone(),
                thread_ts: None,
                app: app.name.clone(),
                environment: env.to_string(),
                git_ref: sha.to_string(),
                task: "deploy".to_string(),
                hosts: None,
                emergency: None,
            })
        });
        chima_payload::DeploymentPayload {
            name: Some(app.name.clone()),
            robot_name: Some("faseng".to_string()),
            hosts: String::new(),
            notify: Some(chima_payload::Notify {
                adapter: Some(
                    if app.notify_room.is_some() {
                        "slack"
                    } else {
                        ""
                    }
                    .to_string(),
                ),
                room: app.notify_room.clone(),
                user: Some("auto-deploy".to_string()),
                user_name: Some("auto-deploy".to_string()),
                thread_ts: None,
            }),
            config: Some(app.public_config()),
            chima,
            auto_deploy: Some(chima_payload::AutoDeployNote {
                git_ref: Some(git_ref.to_string()),
                contexts: contexts.to_vec(),
            }),
            ..Default::default()
        }
        .to_value()
    }

    /// Considers every app and environment the trigger may concern.
    pub async fn consider(&self, t: Trigger) {
        for app in self.apps.iter() {
            if !app.repository.eq_ignore_ascii_case(&t.repository) {
                continue;
            }
            for (env, rule) in &app.auto_deploy {
                match self.evaluate(app, env, rule, &t).await {
                    Ok(Ok(id)) => {
                        tracing::info!(app = %app.name, env = %env, sha = %t.sha, github = id, "auto-deploy created")
                    }
                    Ok(Err(skip)) => {
                        tracing::debug!(app = %app.name, env = %env, sha = %t.sha, ?skip, "no auto-deploy")
                    }
                    Err(e) => {
                        tracing::warn!(app = %app.name, env = %env, sha = %t.sha, error = %e, "auto-deploy check failed")
                    }
                }
            }
        }
    }

    async fn evaluate(
        &self,
        app: &App,
        env: &str,
        rule: &AutoDeployRule,
        t: &Trigger,
    ) -> anyhow::Result<Result<i64, Skip>> {
        let repo = &app.repository;
        let git_ref = match &rule.git_ref {
            Some(r) => r.clone(),
            None => self.github.default_branch(repo).await?,
        };
        // The event's branches are a hint: a `status` event lists at most
        // STATUS_EVENT_MAX_BRANCHES of the branches holding the commit, so a full list
        // without the ref proves nothing; GitHub is asked below whether the sha is the
        // ref's head.
        if !t.branches.is_empty()
            && t.branches.len() < STATUS_EVENT_MAX_BRANCHES
            && !t.branches.contains(&git_ref)
        {
            return Ok(Err(Skip::OtherBranch));
        }
        // The state of the ref's head: its sha must be the event's. Every page of its
        // statuses and check runs is read (chima-github follows GitHub's `Link`
        // pages), so a failing check run on page 2 blocks as one on page 1 does.
        let ci = self.github.ci_state(repo, &git_ref).await?;
        if ci.sha != t.sha {
            return Ok(Err(Skip::NotHead));
        }
        let required = match &rule.required_contexts {
            Some(r) => r.clone(),
            None => reported(&ci),
        };
        if required.is_empty() {
            return Ok(Err(Skip::NoContexts));
        }
        if let Some(bad) = required.iter().find(|c| !green(&ci, c)) {
            return Ok(Err(Skip::NotGreen(bad.clone())));
        }
        if self
            .store
            .auto_deploy_pause(&app.name, env)
            .await?
            .is_some()
        {
            return Ok(Err(Skip::Paused));
        }
        if let Some(lock) = self.store.get_lock(&app.name, env).await? {
            let text = format!(
                "Not auto-deploying {}/{} ({}) to {env}: {env} is locked by {}: {}.",
                app.name,
                git_ref,
                &t.sha[..7],
                lock.holder,
                lock.reason.as_deref().unwrap_or("no reason given")
            );
            let first = self
                .store
                .record_delivery(
                    &format!("autodeploy-locked:{}:{env}:{}", app.name, t.sha),
                    "autodeploy-notice",
                )
                .await?;
            if first {
                self.say(app, &text).await;
            }
            return Ok(Err(Skip::Locked(lock.holder)));
        }
        // A freeze or a closed window: checked before the claim, so that nothing is
        // spent and the sha ships once the environment opens (at its next green
        // event). Said once per sha and reason in the app's channel.
        if let Some(blocked) =
            chima_engine::policy::check(self.store.as_ref(), app, env, "deploy").await?
        {
            let kind = if blocked.is_freeze() {
                "frozen"
            } else {
                "closed"
            };
            let text = format!(
                "Not auto-deploying {}/{} ({}) to {env}: {blocked}.",
                app.name,
                git_ref,
                &t.sha[..7]
            );
            let first = self
                .store
                .record_delivery(
                    &format!("autodeploy-{kind}:{}:{env}:{}", app.name, t.sha),
                    "autodeploy-notice",
                )
                .await?;
            if first {
                self.say(app, &text).await;
            }
            return Ok(Err(Skip::Blocked(blocked.to_string())));
        }
        // Never the same sha twice, never backwards; counting real deploys only (a dry
        // run, `deploy:noop`, deployed nothing: its sha is still to ship).
        let existing = self
            .github
            .list_deployments_of_task(repo, Some(env), Some("deploy"), 10)
            .await?;
        if existing.iter().any(|d| d.sha == t.sha) {
            return Ok(Err(Skip::AlreadyDeployed));
        }
        if let Some(last) = existing.first() {
            let status = self.github.compare(repo, &last.sha, &t.sha).await?;
            if matches!(status.as_str(), "behind" | "identical") {
                return Ok(Err(Skip::Behind(status)));
            }
        }
        let contexts = required.join(", ");
        if !self
            .store
            .claim_auto_deploy(
                &app.name,
                env,
                &t.sha,
                &contexts,
                AUTO_DEPLOY_CLAIM_STALE_AFTER,
            )
            .await?
        {
            return Ok(Err(Skip::Claimed));
        }
        let body = DeploymentBody {
            git_ref: t.sha.clone(),
            task: "deploy".to_string(),
            auto_merge: false,
            // faseng checked the contexts itself, against this exact sha.
            required_contexts: Some(Vec::new()),
            environment: env.to_string(),
            description: "auto-deploy".to_string(),
            production_environment: app.is_production(env),
            transient_environment: None,
            payload: self.payload(app, env, &t.sha, &git_ref, &required),
        };
        match self.github.create_deployment(repo, &body).await {
            Ok(CreateOutcome::Created { id, .. }) => {
                self.store
                    .set_auto_deploy_github_id(&app.name, env, &t.sha, id)
                    .await?;
                Ok(Ok(id))
            }
            Ok(other) => {
                self.store
                    .release_auto_deploy(&app.name, env, &t.sha)
                    .await?;
                anyhow::bail!("GitHub did not create the deployment: {other:?}")
            }
            Err(e) => {
                self.store
                    .release_auto_deploy(&app.name, env, &t.sha)
                    .await?;
                Err(e.into())
            }
        }
    }

    async fn say(&self, app: &App, text: &str) {
        let (Some(slack), Some(room)) = (&self.slack, &app.notify_room) else {
            tracing::info!(app = %app.name, "{text}");
            return;
        };
        if let Err(e) = slack
            // A lock reason is chat text: `&`, `<`, `>` escaped, as Slack expects.
            .post_message(
                room,
                None,
                &chima_slack::Message::text(chima_slack::escape(text)),
            )
            .await
        {
            tracing::warn!(error = %e, "cannot tell the channel about a skipped auto-deploy");
        }
    }
}

/// Every context reported on the commit: statuses and check runs.
fn reported(ci: &CiState) -> Vec<String> {
    let mut names: Vec<String> = ci
        .statuses
        .iter()
        .map(|s| s.context.clone())
        .chain(ci.check_runs.iter().map(|c| c.name.clone()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Green: a commit status `success`, or a completed check run that succeeded
/// (or was neutral or skipped). Anything missing, pending or failed is not.
fn green(ci: &CiState, context: &str) -> bool {
    let statuses: Vec<_> = ci
        .statuses
        .iter()
        .filter(|s| s.context == context)
        .collect();
    let runs: Vec<_> = ci.check_runs.iter().filter(|c| c.name == context).collect();
    if statuses.is_empty() && runs.is_empty() {
        return false;
    }
    statuses.iter().all(|s| s.state == "success")
        && runs.iter().all(|c| {
            c.status == "completed"
                && matches!(
                    c.conclusion.as_deref(),
                    Some("success" | "neutral" | "skipped")
                )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn triggers_from_each_event() {
        let repo = json!({"full_name": "o/r"});
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let t = trigger(
            "status",
            &json!({"repository": repo, "sha": sha, "branches": [{"name": "main"}]}),
        )
        .unwrap();
        assert_eq!(t.branches, vec!["main"]);
        assert!(
            trigger(
                "check_run",
                &json!({"repository": repo, "action": "created", "check_run": {"head_sha": sha}})
            )
            .is_none()
        );
        let t = trigger("check_suite", &json!({"repository": repo, "action": "completed", "check_suite": {"head_sha": sha, "head_branch": "main"}})).unwrap();
        assert_eq!(t.sha, sha);
        let t = trigger(
            "push",
            &json!({"repository": repo, "after": sha, "ref": "refs/heads/main"}),
        )
        .unwrap();
        assert_eq!(t.branches, vec!["main"]);
        assert!(trigger("push", &json!({"repository": repo, "after": "0000000000000000000000000000000000000000", "ref": "refs/heads/x"})).is_none());
        assert!(
            trigger(
                "push",
                &json!({"repository": repo, "after": sha, "ref": "refs/tags/v1"})
            )
            .is_none()
        );
        assert!(trigger("status", &json!({"repository": repo, "sha": "$(id)"})).is_none());
        assert!(trigger("issues", &json!({"repository": repo})).is_none());
    }
}
