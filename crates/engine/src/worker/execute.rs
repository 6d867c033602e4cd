//! Everything between a job's claim and its result: lock check, app settings,
//! checkout, the provider's setup and deploy commands, and the log of each.

use std::sync::Arc;
use std::time::Duration;

use chima_payload::DeploymentPayload;
use chima_store::{Deployment, Outcome, Store};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::EngineConfig;
use crate::admission::{app_for, apps_for, check_task, holds, lock_task, permitted};
use crate::jobtree;
use crate::logsink::LogSink;
use crate::process::{self, Exit, Spec};
use crate::providers::{self, Job, Plan};
use crate::redact::Redactor;

use super::steps::{common_env, ensure_workdir, fabric_info, human, passthrough, run_setup, shown};

/// Everything between the claim and the result.
#[allow(clippy::too_many_arguments)]
pub(super) async fn execute(
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
    let identity = notes.as_ref().map(|n| n.identity.clone());
    // Everything that runs comes from this process's own app.json, found by the
    // deployment's repository; the payload chose at most which of its apps.
    let apps = match apps_for(cfg, d) {
        Ok(apps) => apps,
        Err(why) => return Outcome::errored(why),
    };
    let app = match app_for(&apps, d) {
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
    if let Err(why) = permitted(app, &d.environment, identity.as_ref()) {
        return Outcome::errored(why);
    }
    // A dry run (`deploy:noop`, issue 18) is checked like a deploy (app, environment,
    // permission, hosts) and then changes nothing: it takes no lock and passes another
    // user's lock (the store lets it run beside the environment's deploys).
    let dry_run = chima_config::is_dry_run(&d.task);
    if dry_run && app.command.is_none() && app.provider == chima_config::Provider::Heroku {
        return Outcome::errored(providers::heroku::NO_DRY_RUN);
    }
    // heaven's lock tasks: a deployment whose task is `deploy:lock` or
    // `deploy:unlock` changes the environment's lock and runs nothing. They need
    // the same permission as deploying there (checked just above).
    if let Some(outcome) = lock_task(store.as_ref(), d, identity.as_ref()).await {
        return outcome;
    }
    // Deploy windows and freezes, from this process's app.json and the store. A
    // break-glass deployment passes them when a verified request made it one (the
    // notes are written by faseng's intake, its API and chima's embedded engine only;
    // a sender's `_faseng` is replaced); permissions were checked above all the same.
    let emergency = notes.as_ref().and_then(|n| n.emergency.clone());
    match crate::policy::check(store.as_ref(), app, &d.environment, &d.task).await {
        Ok(None) => {}
        Ok(Some(blocked)) => match &emergency {
            Some(why) => {
                log.note(format!(
                    "==> break-glass by {}: {why}; it passes: {blocked}",
                    d.requester
                ))
                .await;
            }
            None => {
                return Outcome::errored(format!(
                    "{blocked}; nothing was run (break-glass: `deploy!! {} to {} <reason>`)",
                    app.name, d.environment
                ));
            }
        },
        Err(e) => return Outcome::errored(format!("cannot check the freezes: {e}")),
    }
    // Approvals: the store never hands out a deployment awaiting approval, and every
    // creator here makes one wait when app.json asks; this is the last check, should a
    // deployment ever reach a worker without them (made before the rule, or by hand).
    if app.approval_for(&d.environment, &d.task).is_some() {
        let approvals = match store.approvals(d.id).await {
            Ok(a) => a,
            Err(e) => return Outcome::errored(format!("cannot read the approvals: {e}")),
        };
        if let Err(why) = crate::approval::check_approved(app, d, &approvals) {
            return Outcome::errored(why);
        }
        let names: Vec<&str> = approvals.iter().map(|a| a.approver.as_str()).collect();
        log.note(format!("==> approved by {}", names.join(", ")))
            .await;
    }
    // A lock held by someone else stops the deployment before anything runs; the
    // holder's own deployments go through, compared by verified identity.
    match store.get_lock(&d.app, &d.environment).await {
        Ok(Some(lock)) if dry_run && !holds(&lock, identity.as_ref(), &d.requester) => {
            log.note(format!(
                "==> {} is locked by {}; a dry run changes nothing, so it runs anyway",
                d.environment, lock.holder
            ))
            .await;
        }
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
    if dry_run {
        log.note("==> dry run: nothing will change").await;
    }

    let mut sha = d.sha.clone().unwrap_or_default();
    if providers::needs_checkout(app) {
        let step = jobtree::Step {
            cfg,
            app,
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
    full_env.extend(passthrough(cfg, app));
    let fabric = if app.provider == chima_config::Provider::Fabric && app.command.is_none() {
        match fabric_info(cfg, app, d, workdir, &full_env).await {
            Ok(info) => Some(info),
            Err(why) => return Outcome::errored(why),
        }
    } else {
        None
    };
    let job = Job {
        deployment: d,
        app,
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
                priority: cfg.priority,
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
