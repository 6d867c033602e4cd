//! What the bench deploys: a git repository with three deploy scripts, the
//! app.json naming it, and `deployment` webhooks in GitHub's shape.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{Value, json};

use crate::util::{Delivery, run};

pub const REPO: &str = "bench/app";
pub const APP: &str = "bench";
pub const SECRET: &str = "bench-webhook-secret";

/// The bench repository: its path and commit.
pub struct Repo {
    pub path: PathBuf,
    pub sha: String,
    /// Where `script/mark` appends `<DEPLOY_ID> <unix time>` when it starts.
    pub marks: PathBuf,
}

/// Which script a deployment runs.
#[derive(Debug, Clone, Copy)]
pub enum Script {
    /// `exit 0`: the provider does nothing.
    Noop,
    /// Writes its deployment id and the time it started, then exits 0.
    Mark,
    /// `seq 1 <n>`: n log lines.
    Lines,
}

impl Script {
    pub fn path(self) -> &'static str {
        match self {
            Script::Noop => "script/noop",
            Script::Mark => "script/mark",
            Script::Lines => "script/lines",
        }
    }
}

/// Creates the repository under `dir`.
pub fn repo(dir: &Path, log_lines: u64) -> anyhow::Result<Repo> {
    let path = dir.join("repo");
    let marks = dir.join("marks.txt");
    std::fs::create_dir_all(path.join("script"))?;
    let scripts = [
        (Script::Noop, "#!/bin/sh\nexit 0\n".to_string()),
        (
            Script::Mark,
            // `date` runs first: the time is the provider's start, give or take the
            // fork of `date` itself (about a millisecond).
            format!(
                "#!/bin/sh\nprintf '%s %s\\n' \"$DEPLOY_ID\" \"$(date +%s.%N)\" >> '{}'\n",
                marks.display()
            ),
        ),
        (
            Script::Lines,
            format!("#!/bin/sh\nexec seq 1 {log_lines}\n"),
        ),
    ];
    for (script, text) in scripts {
        let p = path.join(script.path());
        std::fs::write(&p, text)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
    }
    let p = path.to_string_lossy().to_string();
    run("git", &["init", "-q", "--initial-branch=main", &p], None)?;
    run("git", &["-C", &p, "add", "-A"], None)?;
    run(
        "git",
        &[
            "-C",
            &p,
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.com",
            "commit",
            "-qm",
            "bench",
        ],
        None,
    )?;
    let sha = run("git", &["-C", &p, "rev-parse", "HEAD"], None)?
        .trim()
        .to_string();
    Ok(Repo { path, sha, marks })
}

/// faseng's app.json: the bench app, for deployments that carry no config.
pub fn apps_json(dir: &Path, repo: &Repo) -> anyhow::Result<PathBuf> {
    let path = dir.join("app.json");
    let apps = json!({
        APP: {
            "provider": "shell",
            "repository": REPO,
            "environments": ["production", "staging"],
            "default_environment": "staging",
            "default_ref": "main",
            "clone_url": repo.path.to_string_lossy(),
            "deploy_script": Script::Noop.path(),
        }
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&apps)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The payload chima puts in a GitHub deployment (hubot-deploy's shape), for
/// the bench app running `script`.
pub fn payload(clone_url: &str, script: Script) -> Value {
    json!({
        "name": APP,
        "robotName": "chima",
        "hosts": "",
        "notify": {"adapter": "shell", "room": "", "user": "bench", "user_name": "bench", "thread_ts": null},
        "config": {
            "provider": "shell",
            "repository": REPO,
            "clone_url": clone_url,
            "deploy_script": script.path(),
        }
    })
}

/// A signed `deployment` delivery of GitHub deployment `github_id` to `env`.
pub fn delivery(repo: &Repo, github_id: i64, env: &str, script: Script) -> Delivery {
    let body = chima_testkit::github::deployment_event(
        REPO,
        &repo.path.to_string_lossy(),
        github_id,
        &repo.sha,
        "main",
        env,
        "deploy",
        payload(&repo.path.to_string_lossy(), script),
    );
    Delivery::new(
        github_id,
        format!("bench-{github_id}"),
        SECRET.as_bytes(),
        body.to_string().into_bytes(),
    )
}
