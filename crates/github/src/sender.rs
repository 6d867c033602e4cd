//! Delivers the store's `github` outbox events as deployment statuses.
//!
//! The store writes one outbox event per state change in the transaction of the change
//! and hands out, per deployment, only its oldest undelivered event: so statuses reach
//! GitHub in order, and a deployment whose statuses fail is retried on its own schedule
//! while the others go on (deliveries run concurrently; none waits for another).

use std::sync::Arc;
use std::time::Duration;

use chima_store::{DeploymentState, OutboxEntry, Store};
use chrono::Utc;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::GitHub;
use crate::error::{CallError, GitHubError};
use crate::types::{StatusBody, StatusState, truncate_description};

/// The outbox target this sender serves.
pub const TARGET: &str = "github";

/// Tuning of [`run_status_sender_with`]; the defaults are what faseng uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderOptions {
    /// How often the outbox is read when nothing is happening.
    pub poll_interval: Duration,
    /// Wait after the first failed delivery of an event; doubled per failure.
    pub base_backoff: Duration,
    /// The longest backoff (a rate limit's reset may be later and is honoured).
    pub max_backoff: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// On shutdown, how long deliveries in flight may finish; the rest are dropped
    /// unmarked and come back to a sender after the store's in-flight delay.
    pub shutdown_grace: Duration,
}

impl Default for SenderOptions {
    fn default() -> Self {
        SenderOptions {
            poll_interval: Duration::from_secs(1),
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5 * 60),
            concurrency: 8,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Delivers the store's outbox entries for target `github` as deployment statuses,
/// until `shutdown` becomes true (or its sender is dropped):
///
/// | store state | GitHub status |
/// |---|---|
/// | queued | `queued` |
/// | running | `in_progress` |
/// | succeeded | `success` |
/// | failed | `failure` |
/// | errored, cancelled | `error` |
///
/// Every status carries `log_url` = `log_url(deployment id)` (faseng's log page), the
/// deployment's reason as description (cut to 140 characters), and the app's
/// `<env>_url` from `payload.config` as `environment_url` when there is one.
/// Deployments without a `github_deployment_id` get no status (their events are
/// marked delivered). A failed delivery is rescheduled with backoff (1 s, 2 s, 4 s...
/// at most 5 minutes; a rate limit's reset is waited for); a refusal that retrying
/// cannot fix (403, 404, 422...) is logged and marked delivered, except 401, which is
/// retried because a token can be fixed without a restart of GitHub's side.
pub async fn run_status_sender(
    store: Arc<dyn Store>,
    gh: GitHub,
    log_url: Arc<dyn Fn(i64) -> String + Send + Sync>,
    shutdown: watch::Receiver<bool>,
) {
    run_status_sender_with(store, gh, log_url, shutdown, SenderOptions::default()).await
}

/// [`run_status_sender`] with other tuning.
pub async fn run_status_sender_with(
    store: Arc<dyn Store>,
    gh: GitHub,
    log_url: Arc<dyn Fn(i64) -> String + Send + Sync>,
    mut shutdown: watch::Receiver<bool>,
    options: SenderOptions,
) {
    let concurrency = options.concurrency.max(1);
    let mut inflight: JoinSet<()> = JoinSet::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let free = concurrency.saturating_sub(inflight.len());
        if free > 0 {
            match store.take_due_outbox(TARGET, free as i64).await {
                Ok(entries) => {
                    for entry in entries {
                        let store = store.clone();
                        let gh = gh.clone();
                        let log_url = log_url.clone();
                        let options = options.clone();
                        inflight.spawn(async move {
                            deliver(&*store, &gh, &*log_url, entry, &options).await;
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the GitHub status outbox");
                }
            }
        }
        tokio::select! {
            Some(joined) = inflight.join_next(), if !inflight.is_empty() => {
                if let Err(e) = joined {
                    tracing::error!(error = %e, "a GitHub status delivery stopped");
                }
            }
            _ = tokio::time::sleep(options.poll_interval) => {}
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    let drain = async { while inflight.join_next().await.is_some() {} };
    if tokio::time::timeout(options.shutdown_grace, drain)
        .await
        .is_err()
    {
        tracing::warn!("GitHub status deliveries still running at shutdown were dropped");
    }
    inflight.abort_all();
}

/// What became of one event.
enum Delivery {
    Sent,
    /// Nothing to send (no GitHub deployment, deployment gone).
    Skipped(&'static str),
    /// Retrying cannot help.
    GaveUp(String),
    /// Try again at this time.
    Retry {
        error: String,
        at: chrono::DateTime<Utc>,
    },
}

async fn deliver(
    store: &dyn Store,
    gh: &GitHub,
    log_url: &(dyn Fn(i64) -> String + Send + Sync),
    entry: OutboxEntry,
    options: &SenderOptions,
) {
    let outcome = attempt(store, gh, log_url, &entry, options).await;
    let id = entry.id;
    let deployment = entry.deployment_id;
    let result = match outcome {
        Delivery::Sent => {
            tracing::debug!(deployment, event = %entry.event, "GitHub deployment status sent");
            store.mark_delivered(id).await
        }
        Delivery::Skipped(why) => {
            tracing::debug!(deployment, event = %entry.event, why, "no GitHub status to send");
            store.mark_delivered(id).await
        }
        Delivery::GaveUp(error) => {
            tracing::error!(
                deployment,
                event = %entry.event,
                %error,
                "GitHub refused the deployment status; not retrying"
            );
            // Keep the error on the event for the admin pages, then close it.
            match store.reschedule_outbox(id, &error, Utc::now()).await {
                Ok(()) => store.mark_delivered(id).await,
                Err(e) => Err(e),
            }
        }
        Delivery::Retry { error, at } => {
            tracing::warn!(
                deployment,
                event = %entry.event,
                attempts = entry.attempts + 1,
                retry_at = %at,
                %error,
                "GitHub deployment status not delivered; will retry"
            );
            store.reschedule_outbox(id, &error, at).await
        }
    };
    if let Err(e) = result {
        // The event comes back after the store's in-flight delay.
        tracing::warn!(deployment, outbox_id = id, error = %e, "cannot record a GitHub status delivery");
    }
}

async fn attempt(
    store: &dyn Store,
    gh: &GitHub,
    log_url: &(dyn Fn(i64) -> String + Send + Sync),
    entry: &OutboxEntry,
    options: &SenderOptions,
) -> Delivery {
    let deployment = match store.get_deployment(entry.deployment_id).await {
        Ok(Some(d)) => d,
        Ok(None) => return Delivery::Skipped("the deployment no longer exists"),
        Err(e) => {
            return Delivery::Retry {
                error: format!("reading the deployment: {e}"),
                at: Utc::now() + to_chrono(backoff(entry.attempts, options)),
            };
        }
    };
    let Some(github_id) = deployment.github_deployment_id else {
        return Delivery::Skipped("the deployment is not a GitHub deployment");
    };
    let state = status_state(entry.event);
    let reason = entry
        .payload
        .get("reason")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            entry
                .event
                .is_terminal()
                .then(|| deployment.reason.clone())
                .flatten()
        })
        .filter(|r| !r.trim().is_empty());
    let config = deployment.payload.get("config");
    let body = StatusBody {
        state,
        log_url: Some(log_url(deployment.id)),
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
    };
    match gh
        .post_status(&deployment.repository, github_id, &body)
        .await
    {
        Ok(()) => Delivery::Sent,
        Err(e) => judge(e, entry, options),
    }
}

/// Retry or give up, by what failed.
fn judge(e: CallError, entry: &OutboxEntry, options: &SenderOptions) -> Delivery {
    let retry = match &e.error {
        GitHubError::Unavailable { .. } | GitHubError::Unauthorized { .. } => true,
        GitHubError::Forbidden { .. } => e.rate_limited,
        GitHubError::NotFound { .. }
        | GitHubError::Rejected { .. }
        | GitHubError::Invalid { .. } => false,
    };
    let error = e.error.to_string();
    if !retry {
        return Delivery::GaveUp(error);
    }
    let mut wait = backoff(entry.attempts, options);
    if let Some(after) = e.retry_after {
        wait = wait.max(after);
    }
    Delivery::Retry {
        error,
        at: Utc::now() + to_chrono(wait),
    }
}

/// `base * 2^attempts`, at most `max_backoff`.
fn backoff(attempts: i32, options: &SenderOptions) -> Duration {
    let exp = attempts.clamp(0, 20) as u32;
    options
        .base_backoff
        .saturating_mul(1u32 << exp)
        .min(options.max_backoff)
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or_else(|_| chrono::Duration::minutes(5))
}

fn status_state(event: DeploymentState) -> StatusState {
    match event {
        DeploymentState::Queued => StatusState::Queued,
        DeploymentState::Running => StatusState::InProgress,
        DeploymentState::Succeeded => StatusState::Success,
        DeploymentState::Failed => StatusState::Failure,
        DeploymentState::Errored | DeploymentState::Cancelled => StatusState::Error,
    }
}

/// `auto_inactive` of the environment in the app's config, when it sets one
/// (environments written as objects, DESIGN.md section 4).
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
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let o = SenderOptions::default();
        assert_eq!(backoff(0, &o), Duration::from_secs(1));
        assert_eq!(backoff(1, &o), Duration::from_secs(2));
        assert_eq!(backoff(2, &o), Duration::from_secs(4));
        assert_eq!(backoff(8, &o), Duration::from_secs(256));
        assert_eq!(backoff(9, &o), Duration::from_secs(300));
        assert_eq!(backoff(1000, &o), Duration::from_secs(300));
        assert_eq!(backoff(-1, &o), Duration::from_secs(1));
    }

    #[test]
    fn every_store_state_has_a_github_state() {
        assert_eq!(
            status_state(DeploymentState::Running),
            StatusState::InProgress
        );
        assert_eq!(status_state(DeploymentState::Cancelled), StatusState::Error);
        assert_eq!(status_state(DeploymentState::Failed), StatusState::Failure);
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
        let entry = OutboxEntry {
            id: 1,
            deployment_id: 1,
            target: TARGET.into(),
            event: DeploymentState::Running,
            payload: serde_json::json!({}),
            created_at: Utc::now(),
            due_at: Utc::now(),
            attempts: 0,
            last_error: None,
            delivered_at: None,
        };
        let o = SenderOptions::default();
        let e = |error| CallError::new(error);
        assert!(matches!(
            judge(e(GitHubError::NotFound { what: "x".into() }), &entry, &o),
            Delivery::GaveUp(_)
        ));
        assert!(matches!(
            judge(
                e(GitHubError::Rejected {
                    status: 422,
                    message: "x".into()
                }),
                &entry,
                &o
            ),
            Delivery::GaveUp(_)
        ));
        assert!(matches!(
            judge(
                e(GitHubError::Forbidden {
                    message: "x".into()
                }),
                &entry,
                &o
            ),
            Delivery::GaveUp(_)
        ));
        assert!(matches!(
            judge(
                e(GitHubError::Unauthorized {
                    message: "x".into()
                }),
                &entry,
                &o
            ),
            Delivery::Retry { .. }
        ));
        let limited = CallError {
            error: GitHubError::Unavailable {
                message: "x".into(),
            },
            retry_after: Some(Duration::from_secs(600)),
            rate_limited: true,
            ambiguous: false,
        };
        match judge(limited, &entry, &o) {
            Delivery::Retry { at, .. } => {
                assert!(at > Utc::now() + chrono::Duration::seconds(590));
            }
            _ => panic!("a rate limit is retried"),
        }
    }
}
