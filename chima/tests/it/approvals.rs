//! Approvals in the embedded mode, through the real binary: `chima run` waits through
//! the approval; a second `chima run` by another user (the terminal's user is `$USER`)
//! on the same SQLite file approves or rejects; expiry ends it; nothing runs unless
//! approved (the deploy script's marker file never appears).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn chima(db: &Path, apps: &Path, user: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_chima"));
    c.env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .env("USER", user)
        .env_remove("APPS_JSON")
        .env_remove("CHIMA_NAME")
        .env_remove("GITHUB_TOKEN")
        .arg("--apps")
        .arg(apps);
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A git repository whose deploy script leaves `marker`, and an app.json whose
/// production needs `rule` (JSON) as its approvals.
fn project(dir: &Path, marker: &Path, rule: &str) -> PathBuf {
    crate::embedded::repo_with_deploy_script(
        dir,
        &format!(
            "#!/bin/sh\necho deploying\ntouch '{}'\necho done\n",
            marker.display()
        ),
    );
    let apps = dir.join("app.json");
    std::fs::write(
        &apps,
        format!(
            r#"{{"app": {{"provider": "shell", "repository": "example/app",
                "environments": ["staging", "production"], "clone_url": "repo",
                "default_ref": "main", "approvals": {{"production": {rule}}}}}}}"#
        ),
    )
    .unwrap();
    apps
}

/// A `chima run` left running, its output read line by line as it comes.
struct Waiting {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Waiting {
    fn start(mut c: Command, line: &str) -> Waiting {
        let mut child = c
            .args(["run", line])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Waiting {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `what`.
    fn wait_for(&mut self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        if let Some(l) = self.seen.iter().find(|l| l.contains(what)) {
            return l.clone();
        }
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                self.seen.push(line.clone());
                if line.contains(what) {
                    return line;
                }
            }
        }
        let _ = self.child.kill();
        panic!("no line with {what:?} in:\n{}", self.seen.join("\n"));
    }

    /// Waits for the process to end: its exit code and everything it said.
    fn finish(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(300)) {
                    self.seen.push(line);
                }
                return (status.code(), self.seen.join("\n"));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("still running:\n{}", self.seen.join("\n"));
            }
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn a_deploy_waits_for_another_approver_and_runs_after_the_approval() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("deployed");
    let apps = project(
        dir.path(),
        &marker,
        r#"{"from": ["alice", "bob", "carol"], "count": 1, "expires": "10m"}"#,
    );
    let db = dir.path().join("s.db");
    let mut waiting = Waiting::start(chima(&db, &apps, "alice"), "deploy app to production");
    let head = waiting.wait_for("is waiting for");
    assert_eq!(
        head,
        "Deployment #1 of app/main to production is waiting for 1 approval from alice, bob, carol. An approver says `approve 1` (or `reject 1 [reason]`)."
    );
    assert!(!marker.exists(), "nothing runs before the approval");

    // The requester's own approval is refused, with the reason.
    let o = chima(&db, &apps, "alice")
        .args(["run", "approve 1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(
        text(&o).trim(),
        "You asked for deployment #1; someone else from alice, bob, carol must approve it."
    );
    // Someone not listed.
    let o = chima(&db, &apps, "mallory")
        .args(["run", "approve 1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(
        text(&o).trim(),
        "mallory may not approve deployments of app to production; ask one of alice, bob, carol."
    );
    // Hostile and malformed ids: usage errors, nothing recorded.
    for line in [
        "approve -1",
        "approve 99999999999999999999",
        "approve 1; rm -rf /",
        "approve",
    ] {
        let o = chima(&db, &apps, "bob")
            .args(["run", line])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{line}: {}", text(&o));
        assert!(text(&o).contains("deployment"), "{line}: {}", text(&o));
    }
    let o = chima(&db, &apps, "bob")
        .args(["run", "approve 42"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(text(&o).trim(), "There is no deployment #42.");
    assert!(!marker.exists(), "nothing runs before the approval");

    // bob approves: the waiting `chima run` runs it and exits 0.
    let o = chima(&db, &apps, "bob")
        .args(["run", "approve 1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        text(&o).trim(),
        "bob approved deployment #1 of app/main to production; it is queued and runs next."
    );
    // A second click: refused, nothing changes.
    let o = chima(&db, &apps, "bob")
        .args(["run", "approve 1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("there is nothing to approve"),
        "{}",
        text(&o)
    );

    let (code, out) = waiting.finish();
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(
            "alice's deployment #1 of app/main to production was approved by bob; it is queued."
        ),
        "{out}"
    );
    assert!(out.contains("| ==> approved by bob"), "{out}");
    assert!(out.contains("| deploying"), "{out}");
    assert!(out.contains("was successful."), "{out}");
    assert!(marker.exists(), "the deploy ran");

    // `deploys` shows who approved it.
    let o = chima(&db, &apps, "carol")
        .args(["run", "deploys app"])
        .output()
        .unwrap();
    assert!(
        text(&o).contains("#1 succeeded app/main to production by alice")
            && text(&o).contains("[approved by bob]"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_rejection_ends_the_waiting_run_with_exit_1_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("deployed");
    let apps = project(
        dir.path(),
        &marker,
        r#"{"from": ["alice", "bob", "carol"], "count": 2}"#,
    );
    let db = dir.path().join("s.db");
    let mut waiting = Waiting::start(chima(&db, &apps, "alice"), "deploy app to production");
    waiting.wait_for("is waiting for 2 approvals from alice, bob, carol");

    let o = chima(&db, &apps, "carol")
        .args(["run", "approve 1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        text(&o).trim(),
        "carol approved deployment #1 of app/main to production (1 of 2); it waits for 1 more."
    );
    waiting.wait_for("was approved by carol (1 of 2).");
    let o = chima(&db, &apps, "bob")
        .args(["run", "reject 1 not during the sale; $(touch /tmp/x)"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        text(&o).trim(),
        "Deployment #1 of app/main to production was rejected by bob: not during the sale; $(touch /tmp/x). Nothing will run."
    );
    let (code, out) = waiting.finish();
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "alice's deployment #1 of app/main to production was rejected by bob: not during the sale; $(touch /tmp/x). Nothing was run."
        ),
        "{out}"
    );
    assert!(!out.contains("| deploying"), "{out}");
    assert!(!marker.exists(), "nothing ran");
    // An approval after the rejection changes nothing.
    let o = chima(&db, &apps, "carol")
        .args(["run", "approve 1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("has ended: rejected"), "{}", text(&o));
    std::thread::sleep(Duration::from_millis(500));
    assert!(!marker.exists(), "nothing ran");
}

#[test]
fn an_approval_nobody_gives_expires_and_the_run_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("deployed");
    let apps = project(dir.path(), &marker, r#"{"from": ["bob"], "expires": "2s"}"#);
    let db = dir.path().join("s.db");
    let started = Instant::now();
    let o = chima(&db, &apps, "alice")
        .args(["run", "deploy app to production"])
        .output()
        .unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(started.elapsed() >= Duration::from_secs(2), "{out}");
    assert!(
        out.contains("alice's deployment #1 of app/main to production was rejected: approval expired. Nothing was run."),
        "{out}"
    );
    assert!(!marker.exists(), "nothing ran");
    // Staging needs no approval; a dry run of production neither.
    let o = chima(&db, &apps, "alice")
        .args(["run", "deploy app to staging"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(marker.exists(), "staging deployed at once");
}
