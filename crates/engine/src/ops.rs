//! What operators do to deployments (lock, cancel, roll back, look back), once,
//! over the store: faseng's API serves these, and chima's embedded mode calls
//! them directly, so both behave the same.

use chima_store::{CancelResult, Deployment, DeploymentFilter, DeploymentState, Store, StoreError};

/// What `cancel` found and did.
#[derive(Debug, Clone, PartialEq)]
pub enum Cancelled {
    /// A queued deployment, now cancelled.
    Dequeued(Deployment),
    /// A running deployment, asked to stop (its process group is killed).
    Stopping(Deployment),
    /// Nothing queued or running there.
    Nothing,
}

/// Cancels the running deployment of app+environment, else the oldest queued
/// one, else the oldest one waiting for approval. A dry run may run beside a deploy
/// (issue 18): the deploy is the one cancelled, the oldest dry run only when no deploy
/// runs.
pub async fn cancel(
    store: &dyn Store,
    app: &str,
    environment: &str,
    by: &str,
) -> Result<Cancelled, StoreError> {
    for state in [
        DeploymentState::Running,
        DeploymentState::Queued,
        DeploymentState::AwaitingApproval,
    ] {
        let filter = DeploymentFilter {
            app: Some(app.to_string()),
            environment: Some(environment.to_string()),
            state: Some(state),
            limit: 100,
            ..DeploymentFilter::default()
        };
        // Newest first: the oldest is the last.
        let mut list = store.list_deployments(&filter).await?;
        let real = list
            .iter()
            .rposition(|d| !chima_config::is_dry_run(&d.task));
        let Some(d) = (match real {
            Some(i) => Some(list.swap_remove(i)),
            None => list.pop(),
        }) else {
            continue;
        };
        return Ok(match store.request_cancel(d.id, by).await? {
            CancelResult::Cancelled(d) => Cancelled::Dequeued(d),
            CancelResult::Requested(d) => Cancelled::Stopping(d),
            CancelResult::AlreadyFinished(_) => Cancelled::Nothing,
        });
    }
    Ok(Cancelled::Nothing)
}

/// Where a rollback goes: the deployment that is live (the newest success)
/// and the newest earlier success of another commit.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollback {
    /// The live deployment: the newest success.
    pub current: Deployment,
    /// The newest earlier success of another commit: what a rollback deploys.
    pub target: Deployment,
}

/// Why there is nothing to roll back to.
#[derive(Debug, Clone, PartialEq)]
pub enum NoRollback {
    /// Nothing ever succeeded there.
    NeverDeployed,
    /// Only one commit ever succeeded there.
    NothingBefore(Box<Deployment>),
}

/// `rollback`: where a rollback of app+environment would go, or why there is nowhere.
pub async fn rollback_target(
    store: &dyn Store,
    app: &str,
    environment: &str,
) -> Result<Result<Rollback, NoRollback>, StoreError> {
    let Some(current) = store.last_succeeded(app, environment, None).await? else {
        return Ok(Err(NoRollback::NeverDeployed));
    };
    let mut before = Some(current.id);
    loop {
        match store.last_succeeded(app, environment, before).await? {
            None => return Ok(Err(NoRollback::NothingBefore(Box::new(current)))),
            Some(d) if d.sha.is_some() && d.sha != current.sha => {
                return Ok(Ok(Rollback { current, target: d }));
            }
            Some(d) => before = Some(d.id),
        }
    }
}

/// `deploys`: queued and running ones first (oldest first, the order they run
/// in), then the most recent finished ones.
pub async fn history(
    store: &dyn Store,
    app: &str,
    environment: Option<&str>,
    limit: i64,
) -> Result<Vec<Deployment>, StoreError> {
    let mut out = Vec::new();
    for state in [
        DeploymentState::Running,
        DeploymentState::Queued,
        DeploymentState::AwaitingApproval,
    ] {
        let mut active = store
            .list_deployments(&DeploymentFilter {
                app: Some(app.to_string()),
                environment: environment.map(str::to_string),
                state: Some(state),
                limit: 50,
                ..DeploymentFilter::default()
            })
            .await?;
        active.reverse();
        out.extend(active);
    }
    let recent = store
        .list_deployments(&DeploymentFilter {
            app: Some(app.to_string()),
            environment: environment.map(str::to_string),
            limit: limit + out.len() as i64,
            ..DeploymentFilter::default()
        })
        .await?;
    out.extend(
        recent
            .into_iter()
            .filter(|d| d.state.is_terminal())
            .take(limit.max(0) as usize),
    );
    Ok(out)
}
