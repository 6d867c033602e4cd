//! Starts the real faseng on a fresh PostgreSQL database and a free port, and
//! gives tests a store handle on the same database to assert from.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chima_store::{Deployment, DeploymentFilter, Store};
use sqlx::Connection;

pub const SECRET: &str = "webhook-secret-for-tests";

/// The key chima and faseng share in these tests (CHIMA_SIGNING_KEY).
pub const SIGNING_KEY: &str = "chima-signing-key-for-tests-0001";

/// The payload chima writes for a deploy typed in Slack by `user` (`U0ALICE` ->
/// `alice`) in `room`, thread `thread`: hubot-deploy's fields plus chima's request,
/// signed with [`SIGNING_KEY`] for `app` to `env` at `git_ref`, task `deploy`.
pub fn signed_payload(
    app: &str,
    env: &str,
    git_ref: &str,
    room: &str,
    thread: &str,
) -> serde_json::Value {
    signed_payload_by(
        app,
        env,
        git_ref,
        "deploy",
        ("U0ALICE", "alice"),
        room,
        thread,
    )
}

/// [`signed_payload`] for another user and task.
pub fn signed_payload_by(
    app: &str,
    env: &str,
    git_ref: &str,
    task: &str,
    (user_id, user_name): (&str, &str),
    room: &str,
    thread: &str,
) -> serde_json::Value {
    let key = chima_payload::SigningKey::new(SIGNING_KEY.as_bytes());
    let request = chima_payload::ChimaRequest {
        version: chima_payload::REQUEST_VERSION,
        nonce: chima_payload::new_nonce(),
        issued_at: chrono::Utc::now().timestamp(),
        adapter: "slack".into(),
        user_id: Some(user_id.into()),
        user_name: user_name.into(),
        room: Some(room.into()),
        thread_ts: Some(thread.into()),
        app: app.into(),
        environment: env.into(),
        git_ref: git_ref.into(),
        task: task.into(),
        hosts: None,
        emergency: None,
    };
    chima_payload::DeploymentPayload {
        name: Some(app.into()),
        robot_name: Some("chima".into()),
        notify: Some(chima_payload::Notify {
            adapter: Some("slack".into()),
            room: Some(room.into()),
            user: Some(user_id.into()),
            user_name: Some(user_name.into()),
            thread_ts: Some(thread.into()),
        }),
        chima: Some(key.sign(request)),
        ..Default::default()
    }
    .to_value()
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh database on the server in DATABASE_URL, dropped with the guard.
pub struct Database {
    pub url: String,
    admin: String,
    name: String,
}

impl Database {
    pub async fn create() -> Database {
        let admin = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
            panic!(
                "DATABASE_URL is not set. Start PostgreSQL (pg_ctlcluster 15 main start) and \
                 export DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres"
            )
        });
        let name = format!(
            "faseng_it_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            chrono::Utc::now().timestamp_micros() % 1_000_000
        );
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("cannot reach PostgreSQL at DATABASE_URL ({e}); start it with pg_ctlcluster 15 main start")
        });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = match admin.rfind('/') {
            Some(i) => &admin[..i],
            None => admin.as_str(),
        };
        Database {
            url: format!("{base}/{name}"),
            admin,
            name,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Best effort, outside the test's runtime.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Runtime::new() {
                rt.block_on(async {
                    if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .execute(&mut c)
                        .await;
                    }
                });
            }
        })
        .join();
    }
}

/// A running faseng.
pub struct Faseng {
    pub url: String,
    pub store: Arc<dyn Store>,
    /// Killed when the test ends (kill_on_drop).
    child: tokio::process::Child,
    pub dir: tempfile::TempDir,
    _db: Database,
}

/// A listening socket on 127.0.0.1, bound before the process starts and handed to it
/// at fd 3 (`LISTEN_FDS=1`, as systemd's socket activation does): no other test can
/// take the port between the bind and faseng's start. Drop the returned socket once
/// the process is spawned (the process keeps its own copy).
pub fn hand_listener(cmd: &mut tokio::process::Command) -> (u16, std::net::TcpListener) {
    use std::os::fd::AsRawFd;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fd = listener.as_raw_fd();
    cmd.env("LISTEN_FDS", "1").env_remove("LISTEN_PID");
    // SAFETY: between fork and exec only dup2 and fcntl run, both async-signal-safe.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                // dup2 onto itself keeps close-on-exec: clear it instead.
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    (port, listener)
}

impl Faseng {
    /// Starts faseng with `apps_json` as its app.json and GitHub at `github_url`.
    pub async fn start(apps_json: &str, github_url: Option<(&str, &str)>) -> Faseng {
        Faseng::start_with(apps_json, github_url, &[]).await
    }

    /// The same, with extra environment variables.
    pub async fn start_with(
        apps_json: &str,
        github_url: Option<(&str, &str)>,
        env: &[(&str, &str)],
    ) -> Faseng {
        Faseng::start_without(apps_json, github_url, env, &[]).await
    }

    /// The same, without the variables in `remove` (of the harness's defaults).
    pub async fn start_without(
        apps_json: &str,
        github_url: Option<(&str, &str)>,
        env: &[(&str, &str)],
        remove: &[&str],
    ) -> Faseng {
        let db = Database::create().await;
        let dir = tempfile::tempdir().unwrap();
        let apps = dir.path().join("app.json");
        std::fs::write(&apps, apps_json).unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_faseng"));
        let (port, listener) = hand_listener(&mut cmd);
        cmd.arg("serve")
            .env("FASENG_SHUTDOWN_GRACE", "2")
            .env("DATABASE_URL", &db.url)
            .env("APPS_JSON", &apps)
            .env("FASENG_LISTEN", format!("127.0.0.1:{port}"))
            .env("FASENG_WORKERS", "2")
            .env("FASENG_WORKDIR", dir.path().join("work"))
            .env("FASENG_CLONE_BASE", dir.path().join("git"))
            .env("GITHUB_WEBHOOK_SECRET", SECRET)
            .env("CHIMA_SIGNING_KEY", SIGNING_KEY)
            .env("RUST_LOG", "info")
            .env_remove("GITHUB_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("faseng.log")).unwrap(),
            ))
            .kill_on_drop(true);
        if let Some((url, token)) = github_url {
            cmd.env("GITHUB_API_URL", url).env("GITHUB_TOKEN", token);
        }
        cmd.env_remove("SLACK_BOT_TOKEN");
        for (k, v) in env {
            cmd.env(k, v);
        }
        for k in remove {
            cmd.env_remove(k);
        }
        let child = cmd.spawn().unwrap();
        drop(listener);
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if get(&format!("{url}/healthz")).await.0 == 200 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "faseng did not start: {}",
                std::fs::read_to_string(dir.path().join("faseng.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let store = chima_store::open(&db.url).await.unwrap();
        Faseng {
            url,
            store,
            child,
            dir,
            _db: db,
        }
    }

    /// Sends SIGTERM and waits (up to `limit`) for faseng to exit; its exit code.
    pub async fn terminate(&mut self, limit: Duration) -> Option<i32> {
        let pid = self.child.id()?;
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => None,
        }
    }

    /// The database this faseng uses (to start a second process on it).
    pub fn database_url(&self) -> &str {
        &self._db.url
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("faseng.log")).unwrap_or_default()
    }

    pub async fn count(&self) -> usize {
        self.store
            .list_deployments(&DeploymentFilter {
                limit: 1000,
                ..DeploymentFilter::default()
            })
            .await
            .unwrap()
            .len()
    }

    pub async fn wait_done(&self, id: i64) -> Deployment {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let d = self.store.get_deployment(id).await.unwrap().unwrap();
            if d.state.is_terminal() {
                return d;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "#{id} still {}:\n{}",
                d.state,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A GET over plain HTTP: status and body (status 0 when unreachable).
pub async fn get(url: &str) -> (u16, String) {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Empty<hyper::body::Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let Ok(uri) = url.parse::<hyper::Uri>() else {
        return (0, String::new());
    };
    match client.get(uri).await {
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
        Err(_) => (0, String::new()),
    }
}

/// Commits `script` as `script/deploy` of `example/app`, the repository the test
/// apps deploy, kept under `<dir>/git` (faseng's FASENG_CLONE_BASE in these tests, so
/// faseng clones it as it would clone from GitHub); returns (path, sha of the commit).
/// Each call is a new commit: deployments pick theirs by sha.
pub fn repo(dir: &Path, script: &str) -> (PathBuf, String) {
    repo_of(dir, "example/app", script)
}

/// [`repo`] for another repository.
pub fn repo_of(dir: &Path, repository: &str, script: &str) -> (PathBuf, String) {
    let repo = dir.join("git").join(format!("{repository}.git"));
    let fresh = !repo.exists();
    std::fs::create_dir_all(repo.join("script")).unwrap();
    let path = repo.join("script/deploy");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut steps = vec![
        vec!["add", "-A"],
        vec![
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-qm",
            "x",
            "--allow-empty",
        ],
    ];
    if fresh {
        steps.insert(0, vec!["init", "-q", "--initial-branch=main"]);
    }
    for args in steps {
        assert!(
            std::process::Command::new("git")
                .arg("-C")
                .arg(&repo)
                .args(&args)
                .status()
                .unwrap()
                .success()
        );
    }
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["rev-parse", "HEAD"])
        .output()
        .unwrap();
    (
        repo,
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

/// Another faseng process on the database of `f`: a second instance (scale
/// out) or a restart after a crash. Its own port and work folder, its log in
/// `<f.dir>/<name>.log`, the same settings as [`Faseng::start_with`] plus
/// `env`; killed when dropped.
pub struct Peer {
    pub url: String,
    pub log_path: PathBuf,
    pub child: tokio::process::Child,
}

impl Peer {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

pub async fn start_peer(
    f: &Faseng,
    name: &str,
    github_url: Option<(&str, &str)>,
    env: &[(&str, &str)],
) -> Peer {
    let log_path = f.dir.path().join(format!("{name}.log"));
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_faseng"));
    let (port, listener) = hand_listener(&mut cmd);
    cmd.arg("serve")
        .env("FASENG_SHUTDOWN_GRACE", "2")
        .env("DATABASE_URL", &f._db.url)
        .env("APPS_JSON", f.dir.path().join("app.json"))
        .env("FASENG_LISTEN", format!("127.0.0.1:{port}"))
        .env("FASENG_WORKERS", "2")
        .env("FASENG_WORKDIR", f.dir.path().join(format!("{name}-work")))
        .env("FASENG_CLONE_BASE", f.dir.path().join("git"))
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env("CHIMA_SIGNING_KEY", SIGNING_KEY)
        .env("RUST_LOG", "info")
        .env_remove("GITHUB_TOKEN")
        .env_remove("SLACK_BOT_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log_path).unwrap()))
        .kill_on_drop(true);
    if let Some((url, token)) = github_url {
        cmd.env("GITHUB_API_URL", url).env("GITHUB_TOKEN", token);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    drop(listener);
    let peer = Peer {
        url: format!("http://127.0.0.1:{port}"),
        log_path,
        child,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while get(&format!("{}/healthz", peer.url)).await.0 != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "faseng `{name}` did not start: {}",
            peer.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    peer
}

/// Kills the faseng `f` started with SIGKILL, as a crash or the OOM killer
/// would, and waits until it is gone. Its database stays.
pub async fn kill9(f: &mut Faseng) {
    f.child.start_kill().unwrap();
    let _ = f.child.wait().await;
}
