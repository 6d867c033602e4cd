//! The one outbox loop: delivers the store's notification outbox through a
//! [`Deliver`]er, whatever the service.
//!
//! The store writes one outbox event per state change and target in the transaction of
//! the change, and hands out, per deployment, only its oldest undelivered event of a
//! target: so a deployment's notifications go out in order, and one whose deliveries
//! keep failing is retried on its own schedule while the others go on (deliveries run
//! concurrently; none waits for another). What a delivery means (a GitHub status, a
//! Slack message) is the deliverer's business; this loop reads the deployment, calls
//! the deliverer inside a `deployment` span (fields `id`, `app`, `env`) and records its
//! [`Outcome`]: delivered, retried with backoff (the service's own wait honoured), or
//! given up.

#![warn(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chima_deliver::{ChatMessage, ChatRecords, Deliver, Event, Outcome, RecordError};
use chima_store::{OutboxEntry, Store};
use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

pub use chima_deliver as deliver;

/// Tuning of [`run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxOptions {
    /// How often the outbox is read when nothing is happening.
    pub poll_interval: Duration,
    /// Wait after the first failed delivery of an event; doubled per failure.
    pub base_backoff: Duration,
    /// The longest backoff (a rate limit's reset may be later and is honoured).
    pub max_backoff: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// On shutdown, how long deliveries in flight may finish; the rest are dropped
    /// unmarked and come back to a loop after the store's in-flight delay.
    pub shutdown_grace: Duration,
    /// Told how long each call to the deliverer took (faseng's `/metrics`).
    pub timing: Timing,
}

/// What is told how long each delivery took: one call to the deliverer, one
/// attempt (nothing by default).
#[derive(Clone, Default)]
pub struct Timing(Option<Arc<dyn Fn(Duration) + Send + Sync>>);

impl Timing {
    /// Calls `observe` with the duration of every delivery.
    pub fn new(observe: impl Fn(Duration) + Send + Sync + 'static) -> Timing {
        Timing(Some(Arc::new(observe)))
    }

    fn observe(&self, took: Duration) {
        if let Some(f) = &self.0 {
            f(took);
        }
    }
}

impl std::fmt::Debug for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Timing(observed)"
        } else {
            "Timing(none)"
        })
    }
}

/// Two timings are the same when they call the same function.
impl PartialEq for Timing {
    fn eq(&self, other: &Timing) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl Eq for Timing {}

impl Default for OutboxOptions {
    /// GitHub statuses' tuning: a poll a second, 1 s to 5 minutes of backoff, 8 at once.
    fn default() -> Self {
        OutboxOptions {
            poll_interval: Duration::from_secs(1),
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5 * 60),
            concurrency: 8,
            shutdown_grace: Duration::from_secs(5),
            timing: Timing::default(),
        }
    }
}

impl OutboxOptions {
    /// Chat messages' tuning: as [`Default`], polled every 250 ms (people watch them).
    pub fn chat() -> Self {
        OutboxOptions {
            poll_interval: Duration::from_millis(250),
            ..OutboxOptions::default()
        }
    }
}

/// The longest wait between reads of an outbox the store cannot read.
const MAX_STORE_BACKOFF: Duration = Duration::from_secs(30);

/// Delivers the store's outbox events of `deliverer.target()` until `shutdown` becomes
/// true (or its sender is dropped); then lets deliveries in flight finish within
/// `options.shutdown_grace`.
///
/// * An event whose deployment no longer exists is marked delivered.
/// * [`Outcome::Delivered`], [`Outcome::Skipped`]: marked delivered.
/// * [`Outcome::Retry`]: rescheduled with the error after `base * 2^attempts` (at most
///   `max_backoff`), or the service's wait when that is later.
/// * [`Outcome::GaveUp`]: marked delivered (with `record`, the error is kept on it first).
pub async fn run(
    store: Arc<dyn Store>,
    deliverer: Arc<dyn Deliver>,
    mut shutdown: watch::Receiver<bool>,
    options: OutboxOptions,
) {
    let target = deliverer.target().to_owned();
    let concurrency = options.concurrency.max(1);
    let mut inflight: JoinSet<()> = JoinSet::new();
    let mut pause = options.poll_interval;
    tracing::info!(%target, "outbox delivery started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        let mut unreadable = false;
        let free = concurrency.saturating_sub(inflight.len());
        if free > 0 {
            match store.take_due_outbox(&target, free as i64).await {
                Ok(entries) => {
                    pause = options.poll_interval;
                    for entry in entries {
                        let store = store.clone();
                        let deliverer = deliverer.clone();
                        let options = options.clone();
                        let span = tracing::info_span!(
                            "deployment",
                            id = entry.deployment_id,
                            app = tracing::field::Empty,
                            env = tracing::field::Empty,
                        );
                        inflight.spawn(
                            async move { deliver(&*store, &*deliverer, entry, &options).await }
                                .instrument(span),
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(%target, error = %e, "cannot read the outbox; retrying in {pause:?}");
                    unreadable = true;
                }
            }
        }
        tokio::select! {
            Some(joined) = inflight.join_next(), if !inflight.is_empty() => {
                if let Err(e) = joined {
                    tracing::error!(%target, error = %e, "an outbox delivery stopped");
                }
            }
            _ = tokio::time::sleep(pause) => {}
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
        if unreadable {
            pause = (pause * 2).min(MAX_STORE_BACKOFF.max(options.poll_interval));
        }
    }
    let drain = async { while inflight.join_next().await.is_some() {} };
    if tokio::time::timeout(options.shutdown_grace, drain)
        .await
        .is_err()
    {
        tracing::warn!(%target, "outbox deliveries still running at shutdown were dropped");
    }
    inflight.abort_all();
    tracing::info!(%target, "outbox delivery stopped");
}

/// Delivers one event and records what became of it.
async fn deliver(
    store: &dyn Store,
    deliverer: &dyn Deliver,
    entry: OutboxEntry,
    options: &OutboxOptions,
) {
    let id = entry.id;
    let target = deliverer.target();
    let event = entry.event;
    let outcome = match store.get_deployment(entry.deployment_id).await {
        Ok(Some(d)) => {
            let span = tracing::Span::current();
            span.record("app", d.app.as_str());
            span.record("env", d.environment.as_str());
            let started = std::time::Instant::now();
            let outcome = deliverer
                .deliver(&plain_event(&entry), &deployment(&d))
                .await;
            options.timing.observe(started.elapsed());
            outcome
        }
        Ok(None) => Outcome::Skipped("the deployment no longer exists".to_owned()),
        Err(e) => Outcome::Retry {
            error: format!("reading the deployment: {e}"),
            after: None,
        },
    };
    let result = match outcome {
        Outcome::Delivered => {
            tracing::debug!(target, %event, "notification delivered");
            store.mark_delivered(id).await
        }
        Outcome::Skipped(why) => {
            tracing::debug!(target, %event, %why, "no notification to deliver");
            store.mark_delivered(id).await
        }
        Outcome::GaveUp { error, record } => {
            tracing::warn!(target, %event, %error, "notification refused; not retrying");
            if record {
                // Keep the error on the event for the admin pages, then close it.
                match store.reschedule_outbox(id, &error, Utc::now()).await {
                    Ok(()) => store.mark_delivered(id).await,
                    Err(e) => Err(e),
                }
            } else {
                store.mark_delivered(id).await
            }
        }
        Outcome::Retry { error, after } => {
            let mut wait = backoff(entry.attempts, options);
            if let Some(after) = after {
                wait = wait.max(after);
            }
            let at = Utc::now() + to_chrono(wait);
            tracing::warn!(
                target,
                %event,
                attempts = entry.attempts + 1,
                retry_at = %at,
                %error,
                "notification not delivered; will retry in {wait:?}"
            );
            store.reschedule_outbox(id, &error, at).await
        }
    };
    if let Err(e) = result {
        // The event comes back after the store's in-flight delay.
        tracing::warn!(target, outbox_id = id, error = %e, "cannot record an outbox delivery");
    }
}

/// `base * 2^attempts`, at most `max_backoff`.
pub fn backoff(attempts: i32, options: &OutboxOptions) -> Duration {
    let exp = attempts.clamp(0, 20) as u32;
    options
        .base_backoff
        .saturating_mul(1u32 << exp)
        .min(options.max_backoff)
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or_else(|_| chrono::Duration::minutes(5))
}

/// The store's state as the services see it.
pub fn state(s: chima_store::DeploymentState) -> chima_deliver::DeploymentState {
    use chima_deliver::DeploymentState as D;
    use chima_store::DeploymentState as S;
    match s {
        S::AwaitingApproval => D::AwaitingApproval,
        S::Queued => D::Queued,
        S::Running => D::Running,
        S::Succeeded => D::Succeeded,
        S::Failed => D::Failed,
        S::Errored => D::Errored,
        S::Cancelled => D::Cancelled,
        S::Rejected => D::Rejected,
    }
}

/// The store's deployment as the services see it.
pub fn deployment(d: &chima_store::Deployment) -> chima_deliver::Deployment {
    chima_deliver::Deployment {
        id: d.id,
        source_key: d.source_key.clone(),
        github_deployment_id: d.github_deployment_id,
        state: state(d.state),
        requester: d.requester.clone(),
        app: d.app.clone(),
        environment: d.environment.clone(),
        repository: d.repository.clone(),
        git_ref: d.git_ref.clone(),
        sha: d.sha.clone(),
        task: d.task.clone(),
        hosts: d.hosts.clone(),
        payload: d.payload.clone(),
        created_at: d.created_at,
        started_at: d.started_at,
        finished_at: d.finished_at,
        exit_code: d.exit_code,
        reason: d.reason.clone(),
    }
}

/// The store's outbox entry as the services see it.
pub fn plain_event(e: &OutboxEntry) -> Event {
    Event {
        id: e.id,
        deployment_id: e.deployment_id,
        target: e.target.clone(),
        state: state(e.event),
        payload: e.payload.clone(),
        attempts: e.attempts,
    }
}

/// [`ChatRecords`] kept in the store: its chat messages, chat routes and logs.
#[derive(Clone)]
pub struct StoreChatRecords(pub Arc<dyn Store>);

fn record_error(e: chima_store::StoreError) -> RecordError {
    RecordError(format!("store: {e}"))
}

#[async_trait]
impl ChatRecords for StoreChatRecords {
    async fn chat_message(&self, deployment_id: i64) -> Result<Option<ChatMessage>, RecordError> {
        Ok(self
            .0
            .chat_message(deployment_id)
            .await
            .map_err(record_error)?
            .map(|m| ChatMessage {
                channel: m.channel,
                ts: m.ts,
            }))
    }

    async fn set_chat_message(
        &self,
        deployment_id: i64,
        channel: &str,
        ts: &str,
    ) -> Result<(), RecordError> {
        self.0
            .set_chat_message(deployment_id, channel, ts)
            .await
            .map_err(record_error)
    }

    async fn use_chat_route(&self, source_key: &str) -> Result<Option<String>, RecordError> {
        self.0
            .use_chat_route(source_key)
            .await
            .map_err(record_error)
    }

    async fn drop_chat_route(&self, source_key: &str) -> Result<(), RecordError> {
        self.0
            .drop_chat_route(source_key)
            .await
            .map_err(record_error)
    }

    async fn last_log_lines(
        &self,
        deployment_id: i64,
        limit: usize,
    ) -> Result<Vec<String>, RecordError> {
        let count = self
            .0
            .log_count(deployment_id)
            .await
            .map_err(record_error)?;
        let after = (count - limit as i64).max(0);
        let lines = self
            .0
            .read_logs(deployment_id, after, limit as i64)
            .await
            .map_err(record_error)?;
        Ok(lines.into_iter().map(|l| l.line).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let o = OutboxOptions::default();
        assert_eq!(backoff(0, &o), Duration::from_secs(1));
        assert_eq!(backoff(1, &o), Duration::from_secs(2));
        assert_eq!(backoff(2, &o), Duration::from_secs(4));
        assert_eq!(backoff(8, &o), Duration::from_secs(256));
        assert_eq!(backoff(9, &o), Duration::from_secs(300));
        assert_eq!(backoff(1000, &o), Duration::from_secs(300));
        assert_eq!(backoff(-1, &o), Duration::from_secs(1));
    }

    #[test]
    fn every_store_state_has_a_delivery_state() {
        for s in chima_store::DeploymentState::ALL {
            assert_eq!(state(s).as_str(), s.as_str());
            assert_eq!(state(s).is_terminal(), s.is_terminal());
        }
    }
}
