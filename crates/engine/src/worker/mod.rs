//! One job, start to end: claim, lock check, app settings, checkout, provider,
//! log, result. Every way a job can end writes a terminal state with a reason
//! (and, through the store's outbox, its notifications): nothing ends silently.
//!
//! This module holds the worker loop and a job's lifecycle (claim, panic, result);
//! `execute` runs the steps between the claim and the result, `steps` the helpers
//! those steps share (setup commands, environment, working directory).

mod execute;
mod steps;

pub(crate) use steps::{ensure_workdir, human};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chima_store::{Deployment, Outcome, Store};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::EngineConfig;
use crate::lease::{
    AbortOnDrop, Keeper, fence_margin, finish_patiently, keep_lease, record_guards,
};
use crate::logsink::LogSink;
use crate::process;
use crate::redact::Redactor;

use execute::execute;

/// Runs worker `n` once the restart sweep is done, and again if it ever panics
/// outside a job (a job's own panic is caught in [`worker_loop`]).
pub(crate) async fn supervise(
    n: usize,
    store: Arc<dyn Store>,
    cfg: Arc<EngineConfig>,
    mut shutdown: watch::Receiver<bool>,
    abort: watch::Receiver<bool>,
    mut swept: watch::Receiver<bool>,
) {
    tokio::select! {
        _ = swept.wait_for(|s| *s) => {}
        _ = shutdown.wait_for(|s| *s) => return,
    }
    loop {
        let run = tokio::spawn(worker_loop(
            n,
            store.clone(),
            cfg.clone(),
            shutdown.clone(),
            abort.clone(),
        ));
        match run.await {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(worker = n, error = %e, "worker panicked; restarting it");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Runs worker `n` until `shutdown` turns true. Between jobs it waits for work
/// (LISTEN/NOTIFY on PostgreSQL, a short poll on SQLite). Each job runs in a task of
/// its own: a panic in it fails that deployment, is logged, and the worker goes on.
pub(crate) async fn worker_loop(
    n: usize,
    store: Arc<dyn Store>,
    cfg: Arc<EngineConfig>,
    mut shutdown: watch::Receiver<bool>,
    abort: watch::Receiver<bool>,
) {
    let worker_id = format!("{}:{}:{n}", cfg.instance, std::process::id());
    tracing::info!(worker = %worker_id, "worker started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        // Measured before the claim is sent: the lease the database grants runs from
        // a later instant, so a guard deadline counted from here comes first.
        let claimed_at = Instant::now();
        match store.claim(&worker_id, cfg.lease).await {
            Ok(Some(d)) => {
                let id = d.id;
                // Every line any crate logs while this job runs carries its id, app and
                // environment.
                let span = tracing::info_span!(
                    "deployment",
                    id = d.id,
                    app = %d.app,
                    env = %d.environment
                );
                let job = tokio::spawn(tracing::Instrument::instrument(
                    run_job(
                        store.clone(),
                        cfg.clone(),
                        worker_id.clone(),
                        d,
                        abort.clone(),
                        claimed_at,
                    ),
                    span,
                ));
                if let Err(e) = job.await {
                    job_panicked(&store, &cfg, &worker_id, id, e).await;
                }
            }
            Ok(None) => {
                tokio::select! {
                    r = store.wait_for_work(Duration::from_secs(2)) => {
                        if let Err(e) = r {
                            tracing::warn!(error = %e, "waiting for work failed");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                    _ = shutdown.changed() => {}
                }
            }
            Err(e) => {
                tracing::warn!(worker = %worker_id, error = %e, "claiming failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    tracing::info!(worker = %worker_id, "worker stopped");
}

/// A job's task ended without recording a result (a panic: a bug). Its guard saw
/// its pipe close and stopped the provider; the deployment ends `errored` here.
async fn job_panicked(
    store: &Arc<dyn Store>,
    cfg: &EngineConfig,
    worker_id: &str,
    id: i64,
    e: tokio::task::JoinError,
) {
    tracing::error!(deployment = id, error = %e, "the job's task panicked; failing the deployment");
    let outcome = Outcome::errored(
        "faseng hit an internal error while running it (a bug: see faseng's log); its provider was stopped",
    );
    cfg.mirrors()
        .release(&crate::workdir::job_dir(&cfg.workdir, id))
        .await;
    if let Some(done) = finish_patiently(store, id, worker_id, outcome).await {
        cfg.metrics.finished(done.state);
    }
}

/// Runs one claimed deployment to its end.
async fn run_job(
    store: Arc<dyn Store>,
    cfg: Arc<EngineConfig>,
    worker_id: String,
    d: Deployment,
    abort: watch::Receiver<bool>,
    claimed_at: Instant,
) {
    let id = d.id;
    tracing::info!(deployment = id, app = %d.app, env = %d.environment, "deployment started");
    let workdir = crate::workdir::job_dir(&cfg.workdir, id);
    let log = LogSink::start(
        store.clone(),
        id,
        Redactor::new(cfg.secrets.iter().cloned()),
        crate::logsink::spill_path(&workdir),
    );
    let (cancel_tx, cancel_rx) = watch::channel(None);
    let lost = Arc::new(AtomicBool::new(false));
    let fenced = Arc::new(AtomicBool::new(false));
    if let Some(started_at) = d.started_at {
        let waited = (started_at - d.created_at).num_milliseconds() as f64 / 1000.0;
        cfg.metrics.queue_wait.observe(waited);
    }
    let (fence_tx, fence_rx) = watch::channel(claimed_at + cfg.lease - fence_margin(cfg.lease));
    let runner = crate::hygiene::runner_here();
    let (started_tx, started_rx) = tokio::sync::mpsc::unbounded_channel();
    let _keeper = AbortOnDrop(tokio::spawn(keep_lease(Keeper {
        store: store.clone(),
        id,
        worker_id: worker_id.clone(),
        lease: cfg.lease,
        cancel: cancel_tx,
        lost: lost.clone(),
        fenced: fenced.clone(),
        fence: fence_tx,
        abort,
        claimed_at,
    })));
    let _recorder = AbortOnDrop(tokio::spawn(record_guards(
        store.clone(),
        id,
        worker_id.clone(),
        runner,
        started_rx,
    )));
    let guarded = cfg.guard.as_ref().map(|g| process::Guarded {
        program: g.program.clone(),
        prefix: g.prefix.clone(),
        status_dir: cfg.workdir.clone(),
        label: workdir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("job-{id}")),
        deadline: fence_rx,
        started: Some(started_tx),
        seq: Arc::default(),
    });
    let started = Instant::now();
    let mut outcome = execute(
        &store,
        &cfg,
        &d,
        &worker_id,
        &log,
        cancel_rx,
        &workdir,
        guarded.as_ref(),
    )
    .await;
    if fenced.load(Ordering::SeqCst) && outcome.state != chima_store::DeploymentState::Succeeded {
        outcome = Outcome::errored(match outcome.reason.as_deref() {
            Some(r) if r.starts_with("lost its lease") => r.to_string(),
            _ => "lost its lease: no renewal reached the database before the guard's deadline; \
                  the deploy was stopped before the lease could lapse"
                .to_string(),
        });
    }
    cfg.metrics
        .run_time
        .observe(started.elapsed().as_secs_f64());
    log.note(format!(
        "==> {} after {:.1}s{}",
        outcome.state,
        started.elapsed().as_secs_f64(),
        outcome
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    ))
    .await;
    log.close().await;
    cfg.mirrors().release(&workdir).await;
    // Below the control plane, as the tree was made (`lowfs.rs`).
    let removing = workdir.clone();
    let removed = crate::lowfs::below(cfg.priority, move || {
        if std::fs::symlink_metadata(&removing).is_ok() {
            std::fs::remove_dir_all(&removing)
        } else {
            Ok(())
        }
    })
    .await
    .and_then(|removed| removed);
    if let Err(e) = removed {
        tracing::warn!(deployment = id, error = %e, "could not remove the checkout");
    }
    if lost.load(Ordering::SeqCst) {
        tracing::error!(
            deployment = id,
            "lease lost while running; the store ended it as worker lost"
        );
        return;
    }
    if let Some(done) = finish_patiently(&store, id, &worker_id, outcome).await {
        cfg.metrics.finished(done.state);
        tracing::info!(deployment = id, state = %done.state, "deployment finished");
    }
}
