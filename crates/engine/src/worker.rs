//! One job, start to end: claim, lock check, app settings, checkout, provider,
//! log, result. Every way a job can end writes a terminal state with a reason
//! (and, through the store's outbox, its notifications): nothing ends silently.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chima_config::App;
use chima_payload::DeploymentPayload;
use chima_store::{Deployment, Outcome, Store};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::EngineConfig;
use crate::admission::{app_for, check_task, holds, lock_task, permitted};
use crate::jobtree;
use crate::lease::{
    AbortOnDrop, Keeper, fence_margin, finish_patiently, keep_lease, record_guards,
};
use crate::logsink::LogSink;
use crate::process::{self, Exit, Spec};
use crate::providers::{self, Job, Plan};
use crate::redact::Redactor;

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
    if let Err(e) = store.record_runner(id, &worker_id, &runner).await {
        tracing::warn!(deployment = id, error = %e, "cannot record where the deployment runs");
    }
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
    if workdir.exists()
        && let Err(e) = tokio::fs::remove_dir_all(&workdir).await
    {
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

/// Everything between the claim and the result.
#[allow(clippy::too_many_arguments)]
async fn execute(
    store: &Arc<dyn Store>,
    cfg: &EngineConfig,
    d: &Deployment,
    worker_id: &str,
    log: &LogSink,
    cancel: watch::Receiver<Option<String>>,
    workdir: &std::path::Path,
    guard: Option<&process::Guarded>,
) -> Outcome {
    // What faseng's intake (or chima in-process, or faseng's API) decided about the
    // request: who asked, verified, and what was set aside from the payload.
    let notes = DeploymentPayload::notes_of(&d.payload);
    for n in notes.iter().flat_map(|n| n.notes.iter()) {
        log.note(format!("==> note: {n}")).await;
    }
    let identity = notes.map(|n| n.identity);
    // Everything that runs comes from this process's own app.json, found by the
    // deployment's repository; the payload chose at most which of its apps.
    let app = match app_for(cfg, d) {
        Ok(app) => app,
        Err(why) => return Outcome::errored(why),
    };
    if app.canonical_environment(&d.environment) != Some(d.environment.as_str()) {
        return Outcome::errored(format!(
            "environment `{}` is not one of {}'s environments in faseng's app.json ({}); nothing was run",
            d.environment.chars().take(60).collect::<String>(),
            app.name,
            app.environment_names().join(", ")
        ));
    }
    if let Err(why) = check_task(&d.task) {
        return Outcome::errored(why);
    }
    if let Err(why) = permitted(&app, &d.environment, identity.as_ref()) {
        return Outcome::errored(why);
    }
    // heaven's lock tasks: a deployment whose task is `deploy:lock` or
    // `deploy:unlock` changes the environment's lock and runs nothing. They need
    // the same permission as deploying there (checked just above).
    if let Some(outcome) = lock_task(store.as_ref(), d, identity.as_ref()).await {
        return outcome;
    }
    // A lock held by someone else stops the deployment before anything runs; the
    // holder's own deployments go through, compared by verified identity.
    match store.get_lock(&d.app, &d.environment).await {
        Ok(Some(lock)) if !holds(&lock, identity.as_ref(), &d.requester) => {
            let why = lock.reason.as_deref().unwrap_or("no reason given");
            return Outcome::errored(format!(
                "{} is locked by {}: {why}",
                d.environment, lock.holder
            ));
        }
        Ok(_) => {}
        Err(e) => return Outcome::errored(format!("cannot check the lock: {e}")),
    }
    if let Some(hosts) = &d.hosts
        && let Err(why) = chima_command::check_hosts(hosts)
    {
        return Outcome::errored(format!("hosts `{hosts}` refused: {why}"));
    }
    let timeout = d
        .timeout_secs
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
        .or(app.timeout)
        .unwrap_or(cfg.default_timeout);
    let deadline = Instant::now() + timeout;

    let mut sha = d.sha.clone().unwrap_or_default();
    if providers::needs_checkout(&app) {
        let step = jobtree::Step {
            cfg,
            app: &app,
            d,
            log,
            dir: workdir,
        };
        match step.run(deadline, timeout, cancel.clone()).await {
            Ok(resolved) => sha = resolved,
            Err(outcome) => return outcome,
        }
        if d.sha.is_none()
            && let Err(e) = store.record_sha(d.id, worker_id, &sha).await
        {
            tracing::warn!(deployment = d.id, error = %e, "cannot record the resolved sha");
        }
    }
    // What every provider gets: nothing of faseng's own, the deploy variables, and the
    // variables the app lets through (an ssh-agent's socket, its `env_passthrough`).
    let mut full_env = cfg.base_env(workdir);
    full_env.extend(common_env(d, &sha));
    full_env.extend(passthrough(cfg, &app));
    let fabric = if app.provider == chima_config::Provider::Fabric && app.command.is_none() {
        match fabric_info(cfg, &app, d, workdir, &full_env).await {
            Ok(info) => Some(info),
            Err(why) => return Outcome::errored(why),
        }
    } else {
        None
    };
    let job = Job {
        deployment: d,
        app: &app,
        checkout: workdir,
        sha: &sha,
        fabric: fabric.as_ref(),
    };
    let heroku_source = if app.provider == chima_config::Provider::Heroku && app.command.is_none() {
        if sha.is_empty() {
            return Outcome::errored(
                "a Heroku build needs the commit sha, and this deployment has none",
            );
        }
        match cfg.heroku_source_url(&d.repository, &sha).await {
            Ok(url) => url,
            Err(why) => {
                return Outcome::errored(format!(
                    "cannot get the source tarball for Heroku: {why}"
                ));
            }
        }
    } else {
        String::new()
    };
    let plan = match providers::plan(job, || heroku_source) {
        Ok(p) => p,
        Err(why) => return Outcome::errored(why),
    };
    let redactor = Redactor::new(cfg.secrets.iter().cloned());
    let killed = matches!(plan, Plan::Command { .. });
    let provider_started = Instant::now();
    let (finished, ran) = match plan {
        Plan::Command { argv, env, setup } => {
            if let Some(who) = &cfg.run_as {
                // The provider works in its checkout as its own user; the folders
                // above it only let it pass (0711), never list.
                let handed = ensure_workdir(cfg)
                    .and_then(|()| crate::workdir::prepare(workdir).map_err(|e| e.to_string()))
                    .and_then(|()| who.give(workdir).map_err(|e| e.to_string()));
                if let Err(e) = handed {
                    return Outcome::errored(format!(
                        "cannot hand the checkout to {} (FASENG_RUN_AS): {e}",
                        who.name
                    ));
                }
            }
            full_env.extend(env.iter().cloned());
            for step in &setup {
                if let Err(outcome) = run_setup(
                    step, workdir, &full_env, deadline, cfg, log, &cancel, &redactor, guard,
                )
                .await
                {
                    return outcome;
                }
            }
            log.note(format!("==> running {}", shown(&argv, &env)))
                .await;
            let spec = Spec {
                argv: &argv,
                dir: workdir,
                env: &full_env,
                deadline,
                run_as: cfg.run_as.as_ref(),
                guard,
            };
            match process::run(spec, log.sender(), cancel).await {
                Ok(finished) => (finished, shown(&argv, &[])),
                Err(e) => return Outcome::errored(e.to_string()),
            }
        }
        Plan::Heroku(plan) => {
            let Some(api) = &cfg.heroku else {
                return Outcome::errored("HEROKU_API_KEY is not set, so Heroku deploys cannot run");
            };
            log.note(format!(
                "==> building {} on Heroku app {}",
                plan.version, plan.app_name
            ))
            .await;
            match providers::heroku::run(&plan, api, log.sender(), cancel, deadline).await {
                Ok(exit) => (
                    process::Finished {
                        exit,
                        last_stderr: None,
                    },
                    String::new(),
                ),
                Err(why) => return Outcome::errored(why),
            }
        }
    };
    cfg.metrics
        .provider
        .observe(provider_started.elapsed().as_secs_f64());
    let said = finished
        .last_stderr
        .as_deref()
        .map(|l| redactor.redact(l.trim()));
    match finished.exit {
        Exit::Exited(Some(0)) => Outcome::succeeded(0),
        Exit::Exited(Some(code)) => {
            let reason = match (&said, &fabric) {
                // Fabric's "No idea what 'x' is!": say which Fabric and what was run,
                // the usual cause being a fabfile for another Fabric.
                (Some(line), Some(info)) if line.contains("No idea what") => format!(
                    "exited with code {code}: {line} (Fabric {} ran `{ran}`; set `fabric_task`, or `fabric_version` if this fabfile is for another Fabric)",
                    info.major
                ),
                (Some(line), _) => format!("exited with code {code}: {line}"),
                (None, _) => format!("exited with code {code}"),
            };
            Outcome::failed(Some(code), reason)
        }
        Exit::Exited(None) => Outcome::failed(None, "killed by a signal"),
        Exit::TimedOut if killed => Outcome::failed(
            None,
            format!(
                "timed out after {}; the process group was killed",
                human(timeout)
            ),
        ),
        Exit::TimedOut => Outcome::failed(
            None,
            format!(
                "timed out after {}; the Heroku build could not be stopped and may still release",
                human(timeout)
            ),
        ),
        Exit::Cancelled(by) => Outcome::cancelled(None, format!("cancelled by {by}")),
        Exit::Fenced(why) => Outcome::errored(format!("lost its lease: {why}")),
    }
}

/// One setup step (`bundle install`): its attempts in order until one exits 0.
#[allow(clippy::too_many_arguments)]
async fn run_setup(
    step: &providers::Setup,
    dir: &std::path::Path,
    env: &[(String, String)],
    deadline: Instant,
    cfg: &EngineConfig,
    log: &LogSink,
    cancel: &watch::Receiver<Option<String>>,
    redactor: &Redactor,
    guard: Option<&process::Guarded>,
) -> Result<(), Outcome> {
    let mut why = String::from("nothing was tried");
    for argv in &step.attempts {
        log.note(format!("==> running {}", shown(argv, &[]))).await;
        let spec = Spec {
            argv,
            dir,
            env,
            deadline,
            run_as: cfg.run_as.as_ref(),
            guard,
        };
        match process::run(spec, log.sender(), cancel.clone()).await {
            Ok(f) => match f.exit {
                Exit::Exited(Some(0)) => return Ok(()),
                Exit::Cancelled(by) => {
                    return Err(Outcome::cancelled(None, format!("cancelled by {by}")));
                }
                Exit::Fenced(why) => {
                    return Err(Outcome::errored(format!("lost its lease: {why}")));
                }
                Exit::TimedOut => {
                    return Err(Outcome::failed(
                        None,
                        format!("timed out during {}", step.what),
                    ));
                }
                Exit::Exited(code) => {
                    why = format!(
                        "`{}` exited with {}{}",
                        shown(argv, &[]),
                        code.map(|c| format!("code {c}"))
                            .unwrap_or("a signal".into()),
                        f.last_stderr
                            .map(|l| format!(": {}", redactor.redact(l.trim())))
                            .unwrap_or_default()
                    );
                }
            },
            Err(e) => why = e.to_string(),
        }
    }
    Err(Outcome::failed(
        None,
        format!("{} failed: {why}", step.what),
    ))
}

/// `K=V ... argv` as a person would type it, for the log: the variables the
/// provider sets (`BRANCH=`, `HOSTS=`), so that a host filter that matched nothing is
/// visible, and arguments with spaces quoted.
fn shown(argv: &[String], env: &[(String, String)]) -> String {
    let quote = |s: &str| {
        if !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@+%".contains(&b))
        {
            s.to_string()
        } else {
            format!("'{}'", s.replace('\'', "'\\''"))
        }
    };
    env.iter()
        .map(|(k, v)| format!("{k}={}", quote(v)))
        .chain(argv.iter().map(|a| quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The variables the provider gets from faseng's own environment: the engine's
/// `passthrough_env` (an ssh-agent's `SSH_AUTH_SOCK`) and the app's `env_passthrough`
/// names (never one of faseng's secrets: app.json refuses those).
fn passthrough(cfg: &EngineConfig, app: &App) -> Vec<(String, String)> {
    let mut out = cfg.passthrough_env.clone();
    for name in &app.env_passthrough {
        if let Ok(value) = std::env::var(name) {
            out.retain(|(k, _)| k != name);
            out.push((name.clone(), value));
        }
    }
    out
}

/// The Fabric the provider will run: its major version (app.json's
/// `fabric_version`, else `fab --version` once per engine), and, when the task is
/// namespaced (`deploy:migrate`), the fabfile's tasks (`fab --list` in the checkout,
/// as the provider's user: it runs the fabfile).
async fn fabric_info(
    cfg: &EngineConfig,
    app: &App,
    d: &Deployment,
    dir: &std::path::Path,
    env: &[(String, String)],
) -> Result<providers::fabric::FabricInfo, String> {
    let major = match app.fabric_version {
        Some(v) => v,
        None => cfg
            .fabric_major
            .get_or_init(|| async {
                let (ok, out) = capture(&["fab", "--version"], std::path::Path::new("/"), env, None).await?;
                providers::fabric::parse_version(&out)
                    .filter(|_| ok)
                    .ok_or_else(|| format!("`fab --version` did not name a Fabric version: {}", out.lines().next().unwrap_or("").chars().take(200).collect::<String>()))
            })
            .await
            .clone()
            .map_err(|why| format!("cannot tell which Fabric is installed ({why}); install Fabric, or set `fabric_version` in app.json"))?,
    };
    let tasks = if major >= 2 && app.fabric_task.is_none() && d.task.contains(':') {
        match capture(&["fab", "--list"], dir, env, cfg.run_as.as_ref()).await {
            Ok((true, out)) => providers::fabric::parse_list(&out),
            _ => Vec::new(),
        }
    } else {
        Vec::new()
    };
    Ok(providers::fabric::FabricInfo { major, tasks })
}

/// Runs a short command (at most 60 s) and returns whether it exited 0, and its
/// stdout and stderr together.
async fn capture(
    argv: &[&str],
    dir: &std::path::Path,
    env: &[(String, String)],
    run_as: Option<&crate::runas::RunAs>,
) -> Result<(bool, String), String> {
    let (program, args) = argv.split_first().ok_or("no command")?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(who) = run_as {
        cmd.uid(who.uid).gid(who.gid);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .map_err(|_| format!("`{}` did not finish in 60 s", argv.join(" ")))?
        .map_err(|e| format!("cannot run `{}`: {e}", argv.join(" ")))?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

/// The variables every provider gets (ARCHITECTURE.md, "Providers").
fn common_env(d: &Deployment, sha: &str) -> Vec<(String, String)> {
    let mut env = vec![
        ("DEPLOY_ID".to_string(), d.id.to_string()),
        ("DEPLOY_APP".to_string(), d.app.clone()),
        ("DEPLOY_ENV".to_string(), d.environment.clone()),
        ("DEPLOY_TASK".to_string(), d.task.clone()),
        ("DEPLOY_REF".to_string(), d.git_ref.clone()),
        ("BRANCH".to_string(), d.git_ref.clone()),
        ("DEPLOY_SHA".to_string(), sha.to_string()),
        ("SHA".to_string(), sha.to_string()),
        ("DEPLOY_USER".to_string(), d.requester.clone()),
    ];
    env.push((
        "DEPLOY_HOSTS".to_string(),
        d.hosts.clone().unwrap_or_default(),
    ));
    env
}

pub(crate) fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

/// The work folder, private (see `workdir::prepare`) and made once: when providers
/// run as another user it is 0711, so that they can reach their own job folder
/// (0700, theirs) without listing the others.
pub(crate) fn ensure_workdir(cfg: &EngineConfig) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = if cfg.run_as.is_some() { 0o711 } else { 0o700 };
    let current = std::fs::symlink_metadata(&cfg.workdir)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| m.permissions().mode() & 0o777);
    if current == Some(mode) {
        return Ok(());
    }
    crate::workdir::prepare(&cfg.workdir).map_err(|e| e.to_string())?;
    if mode != 0o700 {
        std::fs::set_permissions(&cfg.workdir, std::fs::Permissions::from_mode(mode)).map_err(
            |e| {
                format!(
                    "cannot open {} to FASENG_RUN_AS: {e}",
                    cfg.workdir.display()
                )
            },
        )?;
    }
    Ok(())
}
