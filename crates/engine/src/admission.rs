//! What may run: the checks a job passes before anything runs, all against this
//! process's own app.json and the verified identity (never the payload): which app,
//! which task, who may deploy there, heaven's lock tasks, and where to clone from.

use std::sync::Arc;

use chima_config::{App, Apps};
use chima_payload::{Identity, IdentitySource};
use chima_store::{Deployment, Outcome, Store};

use crate::EngineConfig;
use crate::checkout::Source;

pub(crate) async fn lock_task(
    store: &dyn Store,
    d: &Deployment,
    identity: Option<&Identity>,
) -> Option<Outcome> {
    let done = |reason: String| Outcome {
        state: chima_store::DeploymentState::Succeeded,
        exit_code: None,
        reason: Some(reason),
    };
    let (holder, holder_id) = match identity {
        Some(i) => (i.display(), Some(i.key())),
        None => (d.requester.clone(), None),
    };
    match d.task.as_str() {
        "deploy:lock" => {
            let reason = d
                .payload
                .get("reason")
                .and_then(|v| v.as_str())
                .map(|r| r.chars().take(500).collect::<String>())
                .unwrap_or_else(|| "locked with deploy:lock".to_string());
            Some(
                match store
                    .lock_by(
                        &d.app,
                        &d.environment,
                        &holder,
                        holder_id.as_deref(),
                        Some(&reason),
                        None,
                    )
                    .await
                {
                    Ok(chima_store::LockResult::Acquired(_)) => {
                        done(format!("{} locked by {holder}", d.environment))
                    }
                    Ok(chima_store::LockResult::HeldBy(l)) => Outcome::errored(format!(
                        "{} is already locked by {}",
                        d.environment, l.holder
                    )),
                    Err(e) => Outcome::errored(format!("cannot lock: {e}")),
                },
            )
        }
        "deploy:unlock" => Some(match store.unlock(&d.app, &d.environment).await {
            Ok(Some(l)) => done(format!(
                "{} unlocked by {holder} (it was locked by {})",
                d.environment, l.holder
            )),
            Ok(None) => done(format!("{} was not locked", d.environment)),
            Err(e) => Outcome::errored(format!("cannot unlock: {e}")),
        }),
        _ => None,
    }
}

/// Whether the verified identity (else, for deployments from before identities were
/// recorded, the requester's name) holds `lock`.
pub(crate) fn holds(
    lock: &chima_store::Lock,
    identity: Option<&Identity>,
    requester: &str,
) -> bool {
    match identity {
        Some(i) => lock.held_by(&i.key(), &i.display()),
        None => lock.holder_id.is_none() && lock.holder.eq_ignore_ascii_case(requester),
    }
}

/// Checks `allowed_users` of the environment (from this process's app.json) against
/// the verified identity. faseng checks this for every deployment, whoever created it:
/// chima checks too, but a GitHub Deployment can be created without chima.
pub(crate) fn permitted(app: &App, env: &str, identity: Option<&Identity>) -> Result<(), String> {
    let listed = app.allowed_users.get(env);
    match identity {
        Some(i) if i.source == IdentitySource::AutoDeploy => {
            if app.auto_deploy.contains_key(env) {
                Ok(())
            } else {
                Err(format!(
                    "auto-deploy is not configured for {} in {env} in faseng's app.json; nothing was run",
                    app.name
                ))
            }
        }
        _ if listed.is_none() => Ok(()),
        Some(i) if listed.is_some_and(|l| i.is_listed(l)) => Ok(()),
        who => Err(format!(
            "{} may not deploy {} to {env}: faseng's app.json allows only {}; nothing was run",
            who.map(Identity::display)
                .unwrap_or_else(|| "a requester nobody verified".to_string()),
            app.name,
            listed.map(|l| l.join(", ")).unwrap_or_default()
        )),
    }
}

/// This process's app.json, in force now (a reload replaces it for the next job).
pub(crate) fn apps_for(cfg: &EngineConfig, d: &Deployment) -> Result<Arc<Apps>, String> {
    cfg.apps.current().ok_or_else(|| {
        format!(
            "faseng has no app.json (APPS_JSON), so it has no app for {}; nothing was run",
            d.repository
        )
    })
}

/// The app: from this process's app.json, found by the deployment's repository. When
/// several apps deploy that repository, the deployment's app name (its payload's
/// `name`) chooses among those only. Borrowed, not copied: an app.json may list
/// thousands of environments, and a copy per job was most of a worker's own
/// allocations (bench/run, `perf`).
pub(crate) fn app_for<'a>(apps: &'a Apps, d: &Deployment) -> Result<&'a App, String> {
    let candidates = apps.for_repository(&d.repository);
    if let Some(app) = candidates.iter().find(|a| a.name == d.app) {
        return Ok(app);
    }
    let names: Vec<&str> = candidates.iter().map(|a| a.name.as_str()).collect();
    Err(match names.as_slice() {
        [] => format!(
            "faseng has no app for {} in its app.json; nothing was run",
            d.repository
        ),
        [one] => format!(
            "payload.name `{}` is not an app of {} in faseng's app.json (its app is {one}); nothing was run",
            d.app.chars().take(60).collect::<String>(),
            d.repository
        ),
        many => format!(
            "several apps deploy {} in faseng's app.json ({}); payload.name must name one of them; nothing was run",
            d.repository,
            many.join(", ")
        ),
    })
}

/// The clone source, from the app entry only: its `clone_url` (a relative path is
/// taken from the folder of app.json), else the repository under `clone_base` (the
/// GitHub web host that belongs to `GITHUB_API_URL`, or `FASENG_CLONE_BASE`).
pub(crate) fn source_for(cfg: &EngineConfig, app: &App, d: &Deployment) -> Source {
    let url = match &app.clone_url {
        Some(u) if is_local_path(u) && !std::path::Path::new(u).is_absolute() => {
            cfg.apps_dir.join(u).to_string_lossy().into_owned()
        }
        Some(u) => u.clone(),
        None => format!(
            "{}/{}.git",
            cfg.clone_base.trim_end_matches('/'),
            d.repository
        ),
    };
    Source {
        url,
        auth_header: None,
        token_scope: Some(cfg.github_api_url.clone()),
        priority: cfg.priority,
    }
}

pub(crate) fn is_local_path(u: &str) -> bool {
    !u.contains("://") && !u.contains('@')
}

/// Tasks reach providers as arguments: only `deploy` and `deploy:<word>` pass (a word
/// of letters, digits and `_`), as hubot-deploy's grammar makes them.
pub(crate) fn check_task(task: &str) -> Result<(), String> {
    let ok = match task.strip_prefix("deploy") {
        Some("") => true,
        Some(rest) => rest.strip_prefix(':').is_some_and(|word| {
            !word.is_empty()
                && word.len() <= 64
                && word.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        }),
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "task `{}` is not one I will run: tasks are `deploy` or `deploy:<word>`, like `deploy:migrate`; nothing was run",
            task.chars().take(60).collect::<String>()
        ))
    }
}
