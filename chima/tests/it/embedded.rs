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
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        .args(["run", "chima deploy demo to staging"])
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    // The summary comes after the last log line, and nothing but the repository's
    // mirror is left in the work folder (a private one next to the database file,
    // made 0700).
    let last_line = t
        .find("| ==> succeeded after")
        .expect("the summary log line");
    let success = t.find("was successful.").expect("the success notification");
    assert!(last_line < success, "{t}");
    let work = dir.path().join("faseng-work");
    let left: Vec<_> = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["mirrors"], "{left:?}");
    assert!(
        !dir.path().join("cache/faseng/work").exists(),
        "the work folder is not next to the database file"
    );
    assert_eq!(
        std::fs::metadata(&work).unwrap().permissions().mode() & 0o777,
        0o700
    );
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

/// A fresh git repository in `dir/repo`, one commit on `main`, whose
/// `script/deploy` is `script`: what every process test deploys.
pub(crate) fn repo_with_deploy_script(dir: &Path, script: &str) {
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
}

/// An app.json next to a fresh git repository whose deploy script is `script`.
fn project(dir: &Path, script: &str) -> PathBuf {
    repo_with_deploy_script(dir, script);
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
    // The reason quotes what the script said last on stderr; the ending comes after
    // the log, the start before it.
    let ended = "tester's deployment #1 of app/main to staging failed (exit code 4): exited with code 4: broken.";
    assert!(t.contains(ended), "{t}");
    let running = t.find("is running.").unwrap_or(usize::MAX);
    assert!(running < t.find("| broken").unwrap_or(0), "{t}");
    assert!(
        t.find("| broken").unwrap_or(usize::MAX) < t.find(ended).unwrap_or(0),
        "{t}"
    );

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
    while !(t.contains("#1 errored app/main to staging by tester") && t.contains("): worker lost"))
    {
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

fn run_as(db: &Path, apps: &Path, user: &str, line: &str) -> (i32, String) {
    let o = chima(db)
        .env("USER", user)
        .arg("--apps")
        .arg(apps)
        .args(["run", line])
        .output()
        .unwrap();
    (o.status.code().unwrap_or(-1), text(&o))
}

/// Every operator command in the embedded mode, with its refusals.
#[test]
fn operator_commands_and_their_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let apps = project(dir.path(), "#!/bin/sh\necho deployed $DEPLOY_SHA\n");
    let db = dir.path().join("s.db");

    // Nothing to cancel, nothing to roll back to.
    let (code, t) = run_as(&db, &apps, "alice", "chima cancel app in staging");
    assert_eq!(code, 1, "{t}");
    assert!(
        t.contains("Nothing is running or queued for app in staging; nothing to cancel."),
        "{t}"
    );
    let (code, t) = run_as(&db, &apps, "alice", "chima rollback app in staging");
    assert_eq!(code, 1);
    assert!(
        // One text in both modes (faseng's tests read the GitHub mode's).
        t.contains("Cannot roll back app in staging: nothing ever deployed there successfully."),
        "{t}"
    );

    // Two deploys of two commits; rollback goes back to the first.
    let (code, t) = run_as(&db, &apps, "alice", "chima deploy app");
    assert_eq!(code, 0, "{t}");
    let (code, t) = run_as(&db, &apps, "alice", "chima rollback app in staging");
    assert_eq!(code, 1);
    assert!(
        t.contains("there is nothing before it to roll back to"),
        "{t}"
    );
    let repo = dir.path().join("repo");
    std::fs::write(repo.join("NEW"), "x").unwrap();
    for args in [
        vec!["add", "-A"],
        vec![
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-qm",
            "second",
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
    let (code, _) = run_as(&db, &apps, "alice", "chima deploy app");
    assert_eq!(code, 0);
    // A newer commit run through another task (`deploy:migrate`, #3) is not what is
    // live: a rollback goes from the last `deploy` (#2), back to #1.
    std::fs::write(repo.join("NEWER"), "y").unwrap();
    for args in [
        vec!["add", "-A"],
        vec![
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit",
            "-qm",
            "third",
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
    let (code, t) = run_as(&db, &apps, "alice", "chima deploy:migrate app");
    assert_eq!(code, 0, "{t}");
    let (code, t) = run_as(&db, &apps, "bob", "chima rollback app in staging");
    assert_eq!(code, 0, "{t}");
    assert!(t.contains("Rolling back app in staging from "), "{t}");
    assert!(t.contains(" (#2) to "), "from the last deploy, not #3: {t}");
    assert!(t.contains(" UTC by alice as #1."), "{t}");
    // The rollback deployment runs; `deploys` shows it with what ran.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, t) = run_as(&db, &apps, "bob", "chima deploys app in staging");
        if t.contains("#4 succeeded") {
            assert!(t.contains("by bob"), "{t}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{t}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Locks: with expiry, refused to others, lifted by anyone with the locker told.
    let (code, t) = run_as(
        &db,
        &apps,
        "alice",
        "chima lock app in staging for 2h release freeze",
    );
    assert_eq!(code, 0, "{t}");
    assert!(
        t.contains("Locked app in staging: release freeze (until "),
        "{t}"
    );
    let (code, t) = run_as(&db, &apps, "bob", "chima lock app in staging mine");
    assert_eq!(code, 1);
    assert!(
        t.contains("app in staging is already locked by alice: release freeze."),
        "{t}"
    );
    let (_, t) = run_as(&db, &apps, "bob", "chima where can i deploy app?");
    assert!(
        t.contains("staging (locked by alice: release freeze)"),
        "{t}"
    );
    let (code, t) = run_as(&db, &apps, "bob", "chima deploy app");
    assert_eq!(code, 1);
    assert!(
        t.contains("staging is locked by alice: release freeze. Nothing was deployed."),
        "{t}"
    );
    let (code, _) = run_as(&db, &apps, "alice", "chima deploy app");
    assert_eq!(code, 0, "the locker may still deploy");
    let (code, t) = run_as(&db, &apps, "bob", "chima unlock app in staging");
    assert_eq!(code, 0);
    assert!(
        t.contains("Unlocked app in staging. alice, your lock was lifted by bob."),
        "{t}"
    );
    let (_, t) = run_as(&db, &apps, "bob", "chima unlock app in staging");
    assert!(t.contains("was not locked; nothing to do"), "{t}");

    // help lists every command with a line each.
    let (code, t) = run_as(&db, &apps, "bob", "chima help");
    assert_eq!(code, 0);
    for word in [
        "deploy[:task]",
        "deploys",
        "where can i deploy",
        "lock",
        "unlock",
        "cancel",
        "rollback",
        "status",
        "deploy:version",
    ] {
        assert!(t.contains(word), "help lacks {word}: {t}");
    }
}

#[test]
fn cancel_stops_a_running_deploy_from_another_chima() {
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let apps = project(
        dir.path(),
        &format!("#!/bin/sh\ntouch {}\nsleep 300\n", started.display()),
    );
    let db = dir.path().join("s.db");
    let runner = chima(&db)
        .arg("--apps")
        .arg(&apps)
        .args(["run", "chima deploy app"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !started.exists() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, t) = run_as(&db, &apps, "bob", "chima cancel app in staging");
    assert_eq!(code, 0, "{t}");
    assert!(
        t.contains("Stopping deployment #1 of app/main to staging"),
        "{t}"
    );
    let out = runner.wait_with_output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("was cancelled: cancelled by bob."), "{t}");
}

/// Every command that changes state needs the permission to deploy there; the
/// read-only ones stay open. A refused command changes nothing.
#[test]
fn every_state_changing_command_needs_the_permission_to_deploy_there() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), "#!/bin/sh\necho deployed\n");
    let apps = dir.path().join("app.json");
    std::fs::write(
        &apps,
        r#"{"app": {"provider": "shell", "repository": "example/app",
            "environments": ["staging", "production"], "default_environment": "staging",
            "clone_url": "repo", "default_ref": "main",
            "allowed_users": {"production": ["alice"]},
            "auto_deploy": {"production": {"ref": "main", "required_contexts": ["ci"]}}}}"#,
    )
    .unwrap();
    let db = dir.path().join("s.db");
    let refused = "mallory is not allowed to deploy `app` to production. Ask one of: `alice`.";

    // alice deploys and locks production.
    let (code, t) = run_as(&db, &apps, "alice", "chima deploy app to production");
    assert_eq!(code, 0, "{t}");
    let (code, t) = run_as(&db, &apps, "alice", "chima lock app in production db work");
    assert_eq!(code, 0, "{t}");

    for line in [
        "chima deploy app to production",
        "chima lock app in production mine now",
        "chima unlock app in production",
        "chima cancel app in production",
        "chima rollback app in production",
        "chima autodeploy app in production off",
        "chima autodeploy app in production on",
    ] {
        let (code, t) = run_as(&db, &apps, "mallory", line);
        assert_eq!(code, 1, "{line}: {t}");
        assert!(t.contains(refused), "{line}: {t}");
    }
    // Nothing changed: the lock is alice's, with her reason, and auto-deploy is on.
    let (code, t) = run_as(&db, &apps, "mallory", "chima where can i deploy app");
    assert_eq!(code, 0, "{t}");
    assert!(t.contains("production (locked by alice: db work)"), "{t}");
    assert!(t.contains("production: auto-deploy on"), "{t}");
    let (code, t) = run_as(&db, &apps, "mallory", "chima deploys app");
    assert_eq!(code, 0, "{t}");
    assert!(
        t.contains("succeeded app/main to production by alice"),
        "{t}"
    );
    assert!(!t.contains("by mallory"), "{t}");
    // The other environment is open to everyone.
    let (code, t) = run_as(&db, &apps, "mallory", "chima lock app in staging testing");
    assert_eq!(code, 0, "{t}");
    // alice deploys through her own lock.
    let (code, t) = run_as(&db, &apps, "alice", "chima deploy app to production");
    assert_eq!(code, 0, "{t}");
}

/// `deploy:noop` in the embedded mode (issue 18): the script runs with
/// `DEPLOY_NOOP=1` and the task `deploy`, past another user's lock, said to be a dry
/// run in every message and in `deploys`; it is never what a rollback counts as
/// deployed; `deploy:noop!` is a usage error and `allowed_users` still applies.
#[test]
fn a_dry_run_runs_past_a_lock_changes_nothing_and_is_never_deployed() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = dir.path().join("shipped");
    let apps = project(
        dir.path(),
        &format!(
            "#!/bin/sh\necho \"noop=${{DEPLOY_NOOP:-unset}} task=$DEPLOY_TASK\"\n\
             if [ -z \"${{DEPLOY_NOOP:-}}\" ]; then echo shipped > {}; fi\n",
            shipped.display()
        ),
    );
    // Only alice and bob may deploy to staging.
    let text_of = std::fs::read_to_string(&apps).unwrap().replace(
        "\"default_ref\": \"main\"",
        "\"default_ref\": \"main\", \"allowed_users\": {\"staging\": [\"alice\", \"bob\"]}",
    );
    std::fs::write(&apps, text_of).unwrap();
    let db = dir.path().join("s.db");

    let (code, t) = run_as(&db, &apps, "bob", "chima lock app in staging db migration");
    assert_eq!(code, 0, "{t}");
    let (code, t) = run_as(&db, &apps, "alice", "chima deploy:noop app to staging");
    assert_eq!(code, 0, "{t}");
    for said in [
        "Dry run #1 of app/main to staging is queued: the provider's dry run, nothing will change.",
        "| ==> staging is locked by bob; a dry run changes nothing, so it runs anyway",
        "| ==> dry run: nothing will change",
        "| ==> running DEPLOY_NOOP=1 ./script/deploy",
        "| noop=1 task=deploy",
        "alice's dry run #1 of app/main to staging is running.",
        "alice's dry run #1 of app/main to staging was successful; nothing was changed.",
    ] {
        assert!(t.contains(said), "missing {said:?} in:\n{t}");
    }
    assert!(!shipped.exists(), "the dry run shipped");

    // bob's lock still stops alice's real deploy.
    let (code, t) = run_as(&db, &apps, "alice", "chima deploy app");
    assert_eq!(code, 1, "{t}");
    assert!(t.contains("staging is locked by bob"), "{t}");
    let (code, t) = run_as(&db, &apps, "alice", "chima deploys app");
    assert_eq!(code, 0, "{t}");
    assert!(
        t.contains("#1 succeeded app/main to staging by alice (")
            && t.contains("[dry run: nothing changed]"),
        "{t}"
    );
    // Nothing was ever deployed: no rollback.
    let (code, t) = run_as(&db, &apps, "alice", "chima rollback app in staging");
    assert_eq!(code, 1, "{t}");
    assert!(
        t.contains("nothing ever deployed there successfully"),
        "{t}"
    );

    // Refusals: a forced dry run is a usage error; someone not allowed is refused
    // before anything is created.
    let (code, t) = run_as(&db, &apps, "alice", "chima deploy:noop! app");
    assert_eq!(code, 2, "{t}");
    assert!(t.contains("cannot be forced"), "{t}");
    let (code, t) = run_as(&db, &apps, "mallory", "chima deploy:noop app");
    assert_eq!(code, 1, "{t}");
    assert!(t.contains("mallory"), "{t}");
    let (_, t) = run_as(&db, &apps, "alice", "chima deploys app");
    assert!(
        !t.contains("#3"),
        "a refused line created a deployment:\n{t}"
    );

    // bob's own real deploy ships, and is what is deployed.
    let (code, t) = run_as(&db, &apps, "bob", "chima deploy app");
    assert_eq!(code, 0, "{t}");
    assert_eq!(std::fs::read_to_string(&shipped).unwrap().trim(), "shipped");
}

/// A Heroku app has no dry run: chima says so before anything is created.
#[test]
fn a_heroku_dry_run_is_refused_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let apps = dir.path().join("app.json");
    std::fs::write(
        &apps,
        r#"{"web": {"provider": "heroku", "repository": "example/web", "heroku_name": "acme-web",
            "environments": ["staging"], "default_environment": "staging"}}"#,
    )
    .unwrap();
    let db = dir.path().join("s.db");
    let (code, t) = run_as(&db, &apps, "alice", "chima deploy:noop web");
    assert_eq!(code, 1, "{t}");
    assert!(
        t.contains("Heroku builds have no dry run, so `deploy:noop` cannot run for web"),
        "{t}"
    );
    let (_, t) = run_as(&db, &apps, "alice", "chima deploys web");
    assert!(t.contains("No deployments of web yet."), "{t}");
}
