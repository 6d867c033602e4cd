//! The embedded default end to end: the real `chima` binary, the shipped
//! config and the demo app, a real deploy of this repository.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chima(db: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_chima"));
    c.current_dir(root())
        .env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .env("USER", "tester")
        .env_remove("APPS_JSON")
        .env_remove("CHIMA_NAME");
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The README's first command, as `chima run`: a real deploy of this
/// repository's demo app, with its log and notifications, exit 0.
#[test]
fn the_demo_deploy_runs_on_the_shipped_config() {
    let dir = tempfile::tempdir().unwrap();
    let o = chima(&dir.path().join("faseng.db"))
        .args(["run", "chima deploy demo to staging"])
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains("Deployment #1 of demo/HEAD to staging is queued."),
        "{t}"
    );
    assert!(
        t.contains("tester's deployment #1 of demo/HEAD to staging is running."),
        "{t}"
    );
    assert!(
        t.contains("| demo is live on staging: file:///tmp/chima-demo/staging/index.html"),
        "{t}"
    );
    assert!(
        t.contains("tester's deployment #1 of demo/HEAD to staging was successful."),
        "{t}"
    );
    // The deployment is in the store for later commands.
    let o = chima(&dir.path().join("faseng.db"))
        .args(["run", "chima deploys demo"])
        .output()
        .unwrap();
    assert!(
        text(&o).contains("#1 succeeded demo/HEAD to staging by tester"),
        "{}",
        text(&o)
    );
}

fn write_exec(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// An app.json next to a fresh git repository whose deploy script is `script`.
fn project(dir: &Path, script: &str) -> PathBuf {
    let repo = dir.join("repo");
    write_exec(&repo.join("script/deploy"), script);
    for args in [
        vec!["init", "-q", "--initial-branch=main"],
        vec!["add", "-A"],
        vec![
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-qm",
            "x",
        ],
    ] {
        assert!(
            Command::new("git")
                .arg("-C")
                .arg(&repo)
                .args(&args)
                .status()
                .unwrap()
                .success()
        );
    }
    let apps = dir.join("app.json");
    std::fs::write(
        &apps,
        r#"{"app": {"provider": "shell", "repository": "example/app", "environments": ["staging"],
            "default_environment": "staging", "clone_url": "repo", "default_ref": "main"}}"#,
    )
    .unwrap();
    apps
}

#[test]
fn a_failing_deploy_exits_1_and_a_bad_line_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let apps = project(dir.path(), "#!/bin/sh\necho broken >&2\nexit 4\n");
    let db = dir.path().join("s.db");
    let o = chima(&db)
        .arg("--apps")
        .arg(&apps)
        .args(["run", "chima deploy app"])
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("| broken"), "{t}");
    assert!(t.contains("tester's deployment #1 of app/main to staging failed (exit code 4): exited with code 4."), "{t}");

    for line in [
        "chima deploy app to nowhere",
        "chima deploy app/-x",
        "chima deplyo app",
    ] {
        let o = chima(&db)
            .arg("--apps")
            .arg(&apps)
            .args(["run", line])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{line}: {}", text(&o));
        assert!(!o.stdout.is_empty(), "{line}: no reply");
    }
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"app\": {}}").unwrap();
    let o = chima(&db)
        .arg("--apps")
        .arg(&broken)
        .args(["run", "chima help"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("missing field `provider`"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_lock_by_someone_else_refuses_the_deploy() {
    let dir = tempfile::tempdir().unwrap();
    let apps = project(dir.path(), "#!/bin/sh\necho ran\n");
    let db = dir.path().join("s.db");
    let o = chima(&db)
        .env("USER", "bob")
        .arg("--apps")
        .arg(&apps)
        .args(["run", "chima lock app in staging db migration"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = chima(&db)
        .arg("--apps")
        .arg(&apps)
        .args(["run", "chima deploy app"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("staging is locked by bob: db migration. Nothing was deployed."),
        "{}",
        text(&o)
    );
}

/// The process running a deploy is killed: once its lease lapses, the
/// deployment ends `errored` "worker lost" (and is not run again).
#[test]
fn a_killed_process_leaves_a_deployment_that_ends_worker_lost() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("script.pid");
    let apps = project(
        dir.path(),
        &format!(
            "#!/bin/sh\necho $$ > {}\necho started\nexec sleep 300\n",
            pidfile.display()
        ),
    );
    let db = dir.path().join("s.db");
    let mut child = chima(&db)
        .env("FASENG_LEASE_SECS", "2")
        .arg("--apps")
        .arg(&apps)
        .args(["run", "chima deploy app"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !pidfile.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the deploy never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL: no cleanup runs.
    child.wait().unwrap();
    // The provider's own process group outlives the kill; end it for tidiness.
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let _ = Command::new("kill").args(["-9", pid.trim()]).status();
    std::thread::sleep(Duration::from_secs(3));
    // The next chima on this store reaps the lapsed lease when it claims.
    let o = chima(&db)
        .arg("--apps")
        .arg(&apps)
        .args(["run", "chima deploys app"])
        .output()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut t = text(&o);
    while !(t.contains("#1 errored app/main to staging by tester") && t.contains("): worker lost")) {
        assert!(std::time::Instant::now() < deadline, "{t}");
        std::thread::sleep(Duration::from_millis(200));
        t = text(
            &chima(&db)
                .arg("--apps")
                .arg(&apps)
                .args(["run", "chima deploys app"])
                .output()
                .unwrap(),
        );
    }
}
