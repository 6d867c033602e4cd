//! What the bench deploys: a git repository with three deploy scripts, the
//! app.json naming it, and `deployment` webhooks in GitHub's shape.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{Value, json};

use crate::util::{Delivery, run};

pub const REPO: &str = "bench/app";
pub const APP: &str = "bench";
pub const SECRET: &str = "bench-webhook-secret-0001";

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
    /// Every script, each an app of the bench repository in app.json.
    pub const ALL: [Script; 3] = [Script::Noop, Script::Mark, Script::Lines];

    /// The app that runs this script: faseng runs only what its own app.json says,
    /// so each script is an app of `REPO`, chosen by `payload.name`.
    pub fn app(self) -> &'static str {
        match self {
            Script::Noop => APP,
            Script::Mark => "bench-mark",
            Script::Lines => "bench-lines",
        }
    }

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

/// The environments the bench deploys to: faseng runs a deployment only to an
/// environment its app.json lists, so every name the bench generates is listed
/// (`<prefix><n>` for n below `count`).
pub fn environments(prefixes: &[&str], count: usize) -> Vec<String> {
    let mut envs: Vec<String> = ["production", "staging", "pickup", "pickup-tmpfs", "logs"]
        .iter()
        .map(|e| e.to_string())
        .collect();
    for prefix in prefixes {
        envs.extend((0..count).map(|n| format!("{prefix}{n}")));
    }
    envs
}

/// faseng's app.json: one app of the bench repository per script, each with
/// `environments`.
pub fn apps_json(dir: &Path, repo: &Repo, environments: &[String]) -> anyhow::Result<PathBuf> {
    let path = dir.join("app.json");
    let apps: serde_json::Map<String, Value> = Script::ALL
        .iter()
        .map(|script| {
            let entry = json!({
                "provider": "shell",
                "repository": REPO,
                "environments": environments,
                "default_environment": "staging",
                "default_ref": "main",
                "clone_url": repo.path.to_string_lossy(),
                "deploy_script": script.path(),
            });
            (script.app().to_string(), entry)
        })
        .collect();
    std::fs::write(&path, serde_json::to_vec_pretty(&apps)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The payload chima puts in a GitHub deployment (hubot-deploy's shape), for
/// the bench app running `script` (its name chooses the app; `config` is kept for
/// the record only).
pub fn payload(clone_url: &str, script: Script) -> Value {
    json!({
        "name": script.app(),
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
