//! Holding a claim while its job runs: the lease keeper (renewals every tenth of the
//! lease, the guard's deadline moved after each one that reached the database, the
//! fence when none does), and recording the result patiently when the database is
//! away. See README "Reliability" and `Store::renew_lease` for the invariant.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chima_store::{Deployment, Outcome, Store};
use tokio::sync::watch;
use tokio::time::Instant;

/// The margin between the guard's deadline and the lease's expiry, and the time
/// between renewals: a tenth of the lease each (6 s of the default 60 s). The margin
/// covers killing the provider's group and waiting for it, and the drift between
/// this host's clock and the database's; renewing that often lets a database outage
/// of up to 80% of the lease (48 s by default) pass without fencing anything.
pub(crate) fn fence_margin(lease: Duration) -> Duration {
    lease / 10
}

/// Aborts a task when dropped: the lease keeper ends with its job, however the
/// job ends (a panic included).
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long a result waits for the database to come back before it is given up
/// (the lease lapses meanwhile and whichever process reaps it ends it `errored`).
const FINISH_PATIENCE: Duration = Duration::from_secs(10 * 60);

/// Records the result, retrying while the database cannot be reached: an outcome is
/// recorded as it happened once the database answers again. A refusal (another
/// process reaped the lease and ended it) is final: it is never overwritten.
pub(crate) async fn finish_patiently(
    store: &Arc<dyn Store>,
    id: i64,
    worker_id: &str,
    outcome: Outcome,
) -> Option<Deployment> {
    let give_up = Instant::now() + FINISH_PATIENCE;
    let mut wait = Duration::from_millis(200);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match store.finish(id, worker_id, outcome.clone()).await {
            Ok(done) => return Some(done),
            Err(e) if e.is_unavailable() && Instant::now() < give_up => {
                if attempt == 1 || attempt.is_multiple_of(10) {
                    tracing::warn!(deployment = id, attempt, error = %e, "recording the result failed; retrying");
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                tracing::error!(deployment = id, error = %e, "result not recorded");
                return None;
            }
        }
    }
}

/// Records where the job runs (host, boot, faseng's pid), then each guard the job
/// starts (pid and start time), next to the claim, so that a restarted faseng on
/// this host can make sure they are gone. In its own task, one write after the
/// other, so that the job does not wait for a commit before its checkout (bench/run's
/// pickup latency) and a later record never loses to an earlier one. A faseng that
/// dies before the first write leaves nothing to find: its guards see their pipe
/// close and stop their providers themselves.
pub(crate) async fn record_guards(
    store: Arc<dyn Store>,
    id: i64,
    worker_id: String,
    mut runner: chima_store::Runner,
    mut started: tokio::sync::mpsc::UnboundedReceiver<(u32, u64)>,
) {
    if let Err(e) = store.record_runner(id, &worker_id, &runner).await {
        tracing::warn!(deployment = id, error = %e, "cannot record where the deployment runs");
    }
    while let Some((pid, start)) = started.recv().await {
        runner.guard_pid = Some(pid);
        runner.guard_start = Some(start);
        if let Err(e) = store.record_runner(id, &worker_id, &runner).await {
            tracing::warn!(deployment = id, error = %e, "cannot record the guard");
        }
    }
}

/// What the lease keeper of one job works with.
pub(crate) struct Keeper {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) id: i64,
    pub(crate) worker_id: String,
    pub(crate) lease: Duration,
    pub(crate) cancel: watch::Sender<Option<String>>,
    /// The store says the lease is gone: the result must not be recorded.
    pub(crate) lost: Arc<AtomicBool>,
    /// No renewal reached the database before the guard's deadline: the provider was
    /// stopped, and the deployment ends `errored` "lost its lease".
    pub(crate) fenced: Arc<AtomicBool>,
    /// The guard's deadline, moved forward after each renewal.
    pub(crate) fence: watch::Sender<Instant>,
    pub(crate) abort: watch::Receiver<bool>,
    pub(crate) claimed_at: Instant,
}

/// Renews the lease every tenth of its length, and after each renewal that reached
/// the database moves the guard's deadline to a margin before the new expiry (both
/// measured from just before the renewal was sent). A renewal that fails is retried
/// quickly until the deadline; past it, the deployment is fenced: the guard stops
/// the provider and in-process steps are cancelled. Turns a cancel request or a lost
/// lease into a cancel of the running process.
pub(crate) async fn keep_lease(mut k: Keeper) {
    let every = fence_margin(k.lease).max(Duration::from_millis(50));
    let retry = (every / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let margin = fence_margin(k.lease);
    let mut next = k.claimed_at + every;
    let mut cancelled = false;
    let mut failing_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            changed = k.abort.wait_for(|a| *a), if !cancelled => {
                if changed.is_ok() {
                    cancelled = true;
                    let _ = k.cancel.send(Some("faseng (shutting down; the grace period ended)".into()));
                }
                continue;
            }
        }
        let sent = Instant::now();
        // A slow renewal still counts until the guard's deadline: giving up on it
        // earlier would only queue another behind it (SQLite's single writer).
        let patience = (*k.fence.borrow()).max(sent + every);
        let renewed =
            tokio::time::timeout_at(patience, k.store.renew_lease(k.id, &k.worker_id, k.lease))
                .await;
        match renewed {
            Ok(Ok(status)) if !status.held => {
                k.lost.store(true, Ordering::SeqCst);
                let _ = k.cancel.send(Some("faseng (the lease was lost)".into()));
                return;
            }
            Ok(Ok(status)) => {
                if let Some(since) = failing_since.take() {
                    tracing::info!(deployment = k.id, after = ?since.elapsed(), "lease renewed again");
                }
                if !k.fenced.load(Ordering::SeqCst) {
                    let _ = k.fence.send(sent + k.lease - margin);
                }
                if let (Some(by), false) = (status.cancel_requested_by, cancelled) {
                    cancelled = true;
                    let _ = k.cancel.send(Some(by));
                }
                next = sent + every;
            }
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no answer before the guard's deadline".to_string(),
                };
                if failing_since.is_none() {
                    failing_since = Some(sent);
                    tracing::warn!(deployment = k.id, error = %why, "renewing the lease failed; retrying until the guard's deadline");
                }
                if Instant::now() >= *k.fence.borrow() && !k.fenced.swap(true, Ordering::SeqCst) {
                    tracing::error!(deployment = k.id, error = %why, "lost its lease: no renewal reached the database in time; the deploy is stopped");
                    let _ = k.cancel.send(Some(
                        "faseng (it lost its lease: no renewal reached the database)".into(),
                    ));
                }
                next = Instant::now() + retry;
            }
        }
    }
}
