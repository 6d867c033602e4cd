//! A temp git repository with scripts, a store, an engine, and helpers to wait
//! for a deployment to end.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chima_engine::{AppsHandle, Engine, EngineConfig};
use chima_store::{Deployment, DeploymentState, NewDeployment, Store};
use serde_json::json;

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub bin: PathBuf,
    pub store: Arc<dyn Store>,
    pub engine: Option<Engine>,
    /// The engine's app.json: each config a test queues becomes an app of
    /// `example/app` here (the engine runs only what its own app.json says).
    pub apps: AppsHandle,
    registered: std::sync::Mutex<Vec<serde_json::Value>>,
}

pub fn write_exec(path: &Path, body: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

pub fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Rig {
    /// A repository whose `script/deploy` is `script`, plus any extra files.
    pub async fn new(script: &str, extra: &[(&str, &str)]) -> Rig {
        Rig::on(script, extra, None).await
    }

    /// The same on a given store (PostgreSQL); SQLite on a temp file otherwise.
    pub async fn on(script: &str, extra: &[(&str, &str)], store: Option<Arc<dyn Store>>) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        git(&repo, &["init", "--quiet", "--initial-branch=main"]);
        write_exec(&repo.join("script/deploy"), script);
        for (path, body) in extra {
            write_exec(&repo.join(path), body);
        }
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "--quiet", "-m", "first"]);
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let store = match store {
            Some(s) => s,
            None => {
                let url = format!("sqlite://{}", dir.path().join("store.db").display());
                chima_store::open(&url).await.unwrap()
            }
        };
        Rig {
            dir,
            repo,
            bin,
            store,
            engine: None,
            apps: AppsHandle::default(),
            registered: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn config(&self) -> EngineConfig {
        let mut cfg = EngineConfig::new(None, self.dir.path());
        cfg.apps = self.apps.clone();
        cfg.workers = 2;
        cfg.workdir = self.dir.path().join("work");
        // Long enough that a loaded CI machine never fences a healthy job (the fence
        // comes a tenth of it early); no engine test waits for a lease to lapse.
        cfg.lease = Duration::from_secs(10);
        cfg.path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cfg
    }

    pub fn start(&mut self, cfg: EngineConfig) {
        self.engine = Some(Engine::start(self.store.clone(), cfg));
    }

    pub fn head(&self) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(&self.repo)
            .args(["rev-parse", "HEAD"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Queues a deployment at `git_ref` of an app whose app.json entry is `config`
    /// (registered in the engine's app.json first, as `app`, `app-2`, ...).
    pub async fn queue(&self, key: &str, git_ref: &str, config: serde_json::Value) -> Deployment {
        self.queue_with(key, git_ref, config, |_| {}).await
    }

    /// Registers `config` as an app of `example/app` in the engine's app.json and
    /// returns its name: the same config is the same app.
    pub fn register(&self, mut config: serde_json::Value) -> String {
        if config.get("clone_url").is_none() {
            config["clone_url"] = json!(self.repo.to_string_lossy());
        }
        config["repository"] = json!("example/app");
        if config.get("environments").is_none() {
            config["environments"] = json!(["staging", "production"]);
        }
        let mut registered = self.registered.lock().unwrap();
        let n = match registered.iter().position(|c| *c == config) {
            Some(n) => n,
            None => {
                registered.push(config);
                registered.len() - 1
            }
        };
        let name = |i: usize| {
            if i == 0 {
                "app".to_string()
            } else {
                format!("app-{}", i + 1)
            }
        };
        let all: serde_json::Map<String, serde_json::Value> = registered
            .iter()
            .enumerate()
            .map(|(i, c)| (name(i), c.clone()))
            .collect();
        let text = serde_json::Value::Object(all).to_string();
        let apps = chima_config::Apps::parse(&text, &self.dir.path().join("app.json"))
            .unwrap_or_else(|e| panic!("the test's app entry does not load: {e}"));
        self.apps.replace(Some(Arc::new(apps)));
        name(n)
    }

    pub async fn queue_with(
        &self,
        key: &str,
        git_ref: &str,
        config: serde_json::Value,
        edit: impl FnOnce(&mut NewDeployment),
    ) -> Deployment {
        let provider = config["provider"].as_str().unwrap_or("shell").to_string();
        let app = self.register(config);
        let mut new = NewDeployment {
            source_key: key.to_string(),
            requester: "alice".to_string(),
            app,
            environment: "staging".to_string(),
            repository: "example/app".to_string(),
            git_ref: git_ref.to_string(),
            sha: None,
            task: "deploy".to_string(),
            hosts: None,
            provider,
            payload: json!({}),
            github_deployment_id: None,
            notify: vec!["chat".to_string()],
            timeout_secs: None,
        };
        edit(&mut new);
        self.store.create_deployment(new).await.unwrap().deployment
    }

    /// Waits (up to 60 s) until the deployment is in a terminal state.
    pub async fn wait_done(&self, id: i64) -> Deployment {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let d = self.store.get_deployment(id).await.unwrap().unwrap();
            if d.state.is_terminal() {
                return d;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "deployment {id} still {}",
                d.state
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the deployment is running.
    pub async fn wait_running(&self, id: i64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let d = self.store.get_deployment(id).await.unwrap().unwrap();
            if d.state == chima_store::DeploymentState::Running {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "deployment {id} never ran: {}",
                d.state
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for deployment `id` to end, asserts that it succeeded (saying why not,
    /// with its log), and returns its log as one text.
    pub async fn succeeded_log(&self, id: i64) -> String {
        let done = self.wait_done(id).await;
        let log = self.log(id).await.join("\n");
        assert_eq!(
            done.state,
            DeploymentState::Succeeded,
            "{:?}\n{log}",
            done.reason
        );
        log
    }

    pub async fn log(&self, id: i64) -> Vec<String> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let batch = self.store.read_logs(id, after, 5_000).await.unwrap();
            let Some(last) = batch.last() else { break };
            after = last.seq;
            out.extend(batch.into_iter().map(|l| l.line));
        }
        out
    }
}

pub fn shell_config() -> serde_json::Value {
    json!({ "provider": "shell", "repository": "example/app", "environments": ["staging", "production"] })
}
