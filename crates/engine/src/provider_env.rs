//! What a provider starts with: the variables every provider gets, those it
//! may take from faseng's environment, and what the engine asks the installed
//! Fabric before planning a Fabric deploy.

use std::time::Duration;

use chima_config::App;
use chima_store::Deployment;

use crate::EngineConfig;
use crate::providers;

/// The variables the provider gets from faseng's own environment: the engine's
/// `passthrough_env` (an ssh-agent's `SSH_AUTH_SOCK`) and the app's `env_passthrough`
/// names (never one of faseng's secrets: app.json refuses those).
pub(crate) fn passthrough(cfg: &EngineConfig, app: &App) -> Vec<(String, String)> {
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
pub(crate) async fn fabric_info(
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
pub(crate) fn common_env(d: &Deployment, sha: &str) -> Vec<(String, String)> {
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
