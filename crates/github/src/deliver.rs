//! GitHub's side of the notification outbox: a [`Deliver`]er that posts the `github`
//! outbox events as deployment statuses. The loop that takes the events from the store,
//! keeps each deployment's statuses in order and retries with backoff is
//! `chima-outbox`'s; this only turns one event into one status and judges the answer.

use std::sync::Arc;

use async_trait::async_trait;
use chima_deliver::{Deliver, Deployment, DeploymentState, Event, Outcome};
use serde_json::Value;

use crate::GitHub;
use crate::error::{CallError, GitHubError};
use crate::types::{StatusBody, StatusState, truncate_description};

/// The outbox target this deliverer serves.
pub const TARGET: &str = "github";

/// Posts deployment statuses for the outbox's `github` events:
///
/// | store state | GitHub status |
/// |---|---|
/// | awaiting_approval, queued | `queued` (the description says who may approve) |
/// | running | `in_progress` |
/// | succeeded | `success` |
/// | failed | `failure` |
/// | errored, cancelled, rejected | `error` |
///
/// Every status carries `log_url` = `log_url(deployment id)` (faseng's log page), the
/// deployment's reason as description (cut to 140 characters), and the app's
/// `<env>_url` from `payload.config` as `environment_url` when there is one.
/// Deployments without a `github_deployment_id` get no status ([`Outcome::Skipped`]).
///
/// A dry run (`deploy:noop`, issue 18) deployed nothing, and GitHub must not come to
/// think the environment runs its commit (see [`dry_run_status`]).
/// A failed call is retried (a rate limit's reset is waited for); a refusal that
/// retrying cannot fix (403, 404, 422...) is given up with the error recorded, except
/// 401, which is retried because a token can be fixed without a restart of GitHub's side.
#[derive(Clone)]
pub struct StatusDeliverer {
    gh: GitHub,
    log_url: Arc<dyn Fn(i64) -> String + Send + Sync>,
}

impl StatusDeliverer {
    /// A deliverer posting through `gh`; `log_url` gives faseng's log page of a deployment
    /// id.
    pub fn new(gh: GitHub, log_url: Arc<dyn Fn(i64) -> String + Send + Sync>) -> Self {
        StatusDeliverer { gh, log_url }
    }

    /// The status an event of `deployment` posts, if any.
    fn status(&self, event: &Event, deployment: &Deployment) -> StatusBody {
        let body = self.deploy_status(event, deployment);
        if chima_config::is_dry_run(&deployment.task) {
            dry_run_status(body)
        } else {
            body
        }
    }

    /// The status of a deploy (any task but the dry run).
    fn deploy_status(&self, event: &Event, deployment: &Deployment) -> StatusBody {
        let state = status_state(event.state);
        let reason = event
            .payload
            .get("reason")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| {
                event
                    .state
                    .is_terminal()
                    .then(|| deployment.reason.clone())
                    .flatten()
            })
            .filter(|r| !r.trim().is_empty());
        let config = deployment.payload.get("config");
        StatusBody {
            state,
            log_url: Some((self.log_url)(deployment.id)),
            environment_url: config
                .and_then(|c| c.get(format!("{}_url", deployment.environment)))
                .and_then(Value::as_str)
                .filter(|u| !u.trim().is_empty())
                .map(str::to_string),
            description: reason.as_deref().map(truncate_description),
            auto_inactive: if state == StatusState::Success {
                config.and_then(|c| auto_inactive(c, &deployment.environment))
            } else {
                None
            },
        }
    }
}

#[async_trait]
impl Deliver for StatusDeliverer {
    fn target(&self) -> &str {
        TARGET
    }

    async fn deliver(&self, event: &Event, deployment: &Deployment) -> Outcome {
        let Some(github_id) = deployment.github_deployment_id else {
            return Outcome::Skipped("the deployment is not a GitHub deployment".to_owned());
        };
        let body = self.status(event, deployment);
        match self
            .gh
            .post_status(&deployment.repository, github_id, &body)
            .await
        {
            Ok(()) => {
                tracing::debug!(event = %event.state, "GitHub deployment status sent");
                Outcome::Delivered
            }
            Err(e) => judge(e),
        }
    }
}

/// Retry or give up, by what failed.
fn judge(e: CallError) -> Outcome {
    let retry = match &e.error {
        GitHubError::Unavailable { .. } | GitHubError::Unauthorized { .. } => true,
        GitHubError::Forbidden { .. } => e.rate_limited,
        GitHubError::NotFound { .. }
        | GitHubError::Rejected { .. }
        | GitHubError::Invalid { .. } => false,
    };
    let error = e.error.to_string();
    if !retry {
        tracing::error!(%error, "GitHub refused the deployment status; not retrying");
        return Outcome::GaveUp {
            error,
            record: true,
        };
    }
    Outcome::Retry {
        error,
        after: e.retry_after,
    }
}

/// A dry run's status, made from what a deploy would post. GitHub's REST reference,
/// "Create a deployment status"
/// (<https://docs.github.com/en/rest/deployments/statuses#create-a-deployment-status>):
/// `auto_inactive` (default `true`) "adds a new `inactive` status to all prior
/// non-transient, non-production environment deployments with the same repository and
/// environment name as the created status's deployment", and only to those that had a
/// `success` state; GitHub's environment pages show the newest `success` as what is
/// deployed, and `environment_url` sets the environment's link. So a dry run:
///
/// * never posts `success`: one that succeeded ends `inactive` ("dry run succeeded;
///   nothing was deployed"), which no page shows as deployed and which marks nothing
///   else inactive (`failure` and `error` stay, they mark nothing either);
/// * says `auto_inactive: false` on every status, so the real deployment before it
///   stays the active one whatever state a later version posts;
/// * sets no `environment_url`;
/// * says "dry run" first in every description.
///
/// `transient_environment` is left as the environment says (chima creates the dry run
/// in the real environment, whose name locks and permissions go by): a transient
/// deployment set `inactive` shows as "destroyed".
fn dry_run_status(mut body: StatusBody) -> StatusBody {
    let said = body.description.take();
    body.description = Some(truncate_description(&match (body.state, said) {
        (StatusState::Success, _) => "dry run succeeded; nothing was deployed".to_owned(),
        (_, Some(why)) => format!("dry run: {why}"),
        (StatusState::Queued, None) => "dry run queued".to_owned(),
        (StatusState::InProgress, None) => "dry run running; nothing will change".to_owned(),
        (_, None) => "dry run".to_owned(),
    }));
    if body.state == StatusState::Success {
        body.state = StatusState::Inactive;
    }
    body.environment_url = None;
    body.auto_inactive = Some(false);
    body
}

fn status_state(event: DeploymentState) -> StatusState {
    match event {
        // GitHub has no state for "waiting for approval": `queued`, whose description
        // (the deployment's reason) says who may approve.
        DeploymentState::AwaitingApproval | DeploymentState::Queued => StatusState::Queued,
        DeploymentState::Running => StatusState::InProgress,
        DeploymentState::Succeeded => StatusState::Success,
        DeploymentState::Failed => StatusState::Failure,
        DeploymentState::Errored | DeploymentState::Cancelled | DeploymentState::Rejected => {
            StatusState::Error
        }
    }
}

/// `auto_inactive` of the environment in the app's config, when it sets one
/// (environments written as objects, as hubot-deploy's apps.json allows).
fn auto_inactive(config: &Value, environment: &str) -> Option<bool> {
    config
        .get("environments")?
        .as_array()?
        .iter()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(environment))?
        .get("auto_inactive")?
        .as_bool()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn every_store_state_has_a_github_state() {
        assert_eq!(
            status_state(DeploymentState::Running),
            StatusState::InProgress
        );
        assert_eq!(status_state(DeploymentState::Cancelled), StatusState::Error);
        assert_eq!(status_state(DeploymentState::Failed), StatusState::Failure);
        assert_eq!(
            status_state(DeploymentState::AwaitingApproval),
            StatusState::Queued
        );
        assert_eq!(status_state(DeploymentState::Rejected), StatusState::Error);
    }

    #[test]
    fn a_dry_run_never_posts_success_nor_marks_others_inactive() {
        let deploy = StatusBody {
            state: StatusState::Success,
            log_url: Some("https://faseng.example/deployments/7".into()),
            environment_url: Some("https://app.example".into()),
            description: None,
            auto_inactive: None,
        };
        let done = dry_run_status(deploy.clone());
        assert_eq!(done.state, StatusState::Inactive);
        assert_eq!(done.auto_inactive, Some(false));
        assert_eq!(done.environment_url, None);
        assert_eq!(done.log_url, deploy.log_url);
        assert_eq!(
            done.description.as_deref(),
            Some("dry run succeeded; nothing was deployed")
        );
        let failed = dry_run_status(StatusBody {
            state: StatusState::Failure,
            description: Some("x".repeat(200)),
            ..deploy
        });
        assert_eq!(failed.state, StatusState::Failure);
        assert_eq!(failed.auto_inactive, Some(false));
        let text = failed.description.unwrap_or_default();
        assert!(text.starts_with("dry run: xxx"), "{text}");
        assert!(text.chars().count() <= 140, "{text}");
    }

    #[test]
    fn auto_inactive_comes_from_the_environment_object() {
        let config = serde_json::json!({"environments": ["staging", {"name": "review", "auto_inactive": false}]});
        assert_eq!(auto_inactive(&config, "review"), Some(false));
        assert_eq!(auto_inactive(&config, "staging"), None);
        assert_eq!(auto_inactive(&serde_json::json!({}), "x"), None);
    }

    #[test]
    fn refusals_are_not_retried_but_401_and_rate_limits_are() {
        let e = |error| CallError::new(error);
        let gave_up = |o: Outcome| matches!(o, Outcome::GaveUp { record: true, .. });
        assert!(gave_up(judge(e(GitHubError::NotFound {
            what: "x".into()
        }))));
        assert!(gave_up(judge(e(GitHubError::Rejected {
            status: 422,
            message: "x".into()
        }))));
        assert!(gave_up(judge(e(GitHubError::Forbidden {
            message: "x".into()
        }))));
        assert!(matches!(
            judge(e(GitHubError::Unauthorized {
                message: "x".into()
            })),
            Outcome::Retry { .. }
        ));
        let limited = CallError {
            error: GitHubError::Unavailable {
                message: "x".into(),
            },
            retry_after: Some(Duration::from_secs(600)),
            rate_limited: true,
            ambiguous: false,
        };
        match judge(limited) {
            Outcome::Retry { after, .. } => assert_eq!(after, Some(Duration::from_secs(600))),
            other => panic!("a rate limit is retried: {other:?}"),
        }
    }
}
