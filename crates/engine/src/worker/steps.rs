//! The pieces a job's steps share: setup commands with their attempts, the
//! environment a command gets and how it is shown in the log, fabric's host list,
//! durations, and the working directory.

use std::time::Duration;

use chima_config::App;
use chima_store::{Deployment, Outcome};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::EngineConfig;
use crate::logsink::LogSink;
use crate::process::{self, Exit, Spec};
use crate::providers;
use crate::redact::Redactor;

/// One setup step (`bundle install`): its attempts in order until one exits 0.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run_setup(
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
            priority: cfg.priority,
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
pub(super) fn shown(argv: &[String], env: &[(String, String)]) -> String {
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
pub(super) fn passthrough(cfg: &EngineConfig, app: &App) -> Vec<(String, String)> {
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
pub(super) async fn fabric_info(
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
    let tasks = if major >= 2
        && app.fabric_task.is_none()
        && d.task.contains(':')
        && !chima_config::is_dry_run(&d.task)
    {
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
pub(super) fn common_env(d: &Deployment, sha: &str) -> Vec<(String, String)> {
    let mut env = vec![
        ("DEPLOY_ID".to_string(), d.id.to_string()),
        ("DEPLOY_APP".to_string(), d.app.clone()),
        ("DEPLOY_ENV".to_string(), d.environment.clone()),
        // A dry run is the `deploy` task with `DEPLOY_NOOP=1` (providers/mod.rs).
        (
            "DEPLOY_TASK".to_string(),
            if chima_config::is_dry_run(&d.task) {
                "deploy".to_string()
            } else {
                d.task.clone()
            },
        ),
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
