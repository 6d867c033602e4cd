//! `faseng doctor`, run as an operator runs it: against PostgreSQL, the fake
//! GitHub and the fake Slack, with a PATH that has (or lacks) the provider's tool.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use chima_testkit::github::FakeGitHub;
use chima_testkit::slack::{self as fake_slack, FakeSlack};

use crate::harness::{Database, SECRET, SIGNING_KEY};

const APPS: &str = r#"{
  "web": {"provider": "fabric", "repository": "acme/web", "environments": ["production"]},
  "api": {"provider": "fabric", "repository": "acme/api", "environments": ["production"]}
}"#;

/// A folder holding a `fab` that prints Fabric 2's version (when `with_fab`).
fn bin_dir(with_fab: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    if with_fab {
        let fab = dir.path().join("fab");
        std::fs::write(
            &fab,
            "#!/bin/sh\necho 'Fabric 2.7.1'\necho 'Paramiko 3.4.0'\necho 'Invoke 2.2.0'\n",
        )
        .unwrap();
        std::fs::set_permissions(&fab, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

async fn doctor(path: &Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_faseng"));
    cmd.arg("doctor").env_clear().env("PATH", path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out: Output = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
        .await
        .expect("doctor finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code(), stdout)
}

fn line<'a>(out: &'a str, start: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting with {start:?} in:\n{out}"))
}

#[tokio::test]
async fn doctor_passes_when_everything_is_right() {
    let db = Database::create().await;
    let gh = FakeGitHub::start().await;
    gh.add_repo("acme/web", "main");
    gh.add_repo("acme/api", "main");
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.json"), APPS).unwrap();
    let bin = bin_dir(true);
    let apps = dir.path().join("app.json");
    let token = gh.token();
    let (code, out) = doctor(
        bin.path(),
        &[
            ("DATABASE_URL", &db.url),
            ("APPS_JSON", apps.to_str().unwrap()),
            ("GITHUB_WEBHOOK_SECRET", SECRET),
            ("CHIMA_SIGNING_KEY", SIGNING_KEY),
            ("GITHUB_TOKEN", &token),
            ("GITHUB_API_URL", &gh.url),
            ("SLACK_BOT_TOKEN", fake_slack::BOT_TOKEN),
            ("SLACK_API_URL", &slack.url),
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    line(&out, "ok   database reachable and migrated");
    line(&out, "ok   GITHUB_WEBHOOK_SECRET");
    line(&out, "ok   GitHub sees acme/web");
    line(&out, "ok   GitHub sees acme/api");
    assert!(
        line(&out, "ok   fab").contains("(Fabric 2)"),
        "Fabric's major version: {out}"
    );
    line(&out, "ok   Slack token valid");
}

#[tokio::test]
async fn doctor_names_each_problem_with_its_fix() {
    let db = Database::create().await;
    let gh = FakeGitHub::start().await;
    gh.add_repo("acme/web", "main"); // but not acme/api
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.json"), APPS).unwrap();
    let bin = bin_dir(false);
    let apps = dir.path().join("app.json");
    let token = gh.token();
    let (code, out) = doctor(
        bin.path(),
        &[
            ("DATABASE_URL", &db.url),
            ("APPS_JSON", apps.to_str().unwrap()),
            ("GITHUB_WEBHOOK_SECRET", "too-short"),
            ("GITHUB_TOKEN", &token),
            ("GITHUB_API_URL", &gh.url),
            ("SLACK_BOT_TOKEN", "xoxb-wrong-token"),
            ("SLACK_API_URL", &slack.url),
        ],
    )
    .await;
    assert_eq!(code, Some(1), "{out}");
    let secret = line(&out, "FAIL GITHUB_WEBHOOK_SECRET");
    assert!(secret.contains("at least 16"), "{secret}");
    assert!(!secret.contains("too-short"), "never the value: {secret}");
    line(&out, "ok   GitHub sees acme/web");
    let repo = line(&out, "FAIL GitHub repository acme/api");
    assert!(repo.contains("Give GITHUB_TOKEN access"), "{repo}");
    let fab = line(&out, "FAIL fab (Fabric)");
    assert!(fab.contains("not found on PATH"), "{fab}");
    assert!(fab.contains("Install Fabric"), "{fab}");
    let slack_line = line(&out, "FAIL Slack token");
    assert!(slack_line.contains("SLACK_BOT_TOKEN"), "{slack_line}");
    line(&out, "skip chima's signing key");
    line(&out, "ok   database reachable and migrated");

    // An unreachable database is named too.
    let (code, out) = doctor(
        bin.path(),
        &[
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none"),
            ("APPS_JSON", apps.to_str().unwrap()),
            ("GITHUB_WEBHOOK_SECRET", SECRET),
        ],
    )
    .await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        line(&out, "FAIL database").contains("DATABASE_URL"),
        "{out}"
    );
}

#[tokio::test]
async fn doctor_names_the_app_installation_of_each_repository() {
    const APP_ID: u64 = 4242;
    let db = Database::create().await;
    let gh = FakeGitHub::start().await;
    gh.add_repo("acme/web", "main");
    gh.add_repo("acme/api", "main");
    gh.install_app(APP_ID, 77, &["acme/web"]); // not on acme/api
    let key = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crates/github/tests/fixtures/test-app-key.pem"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.json"), APPS).unwrap();
    let bin = bin_dir(true);
    let apps = dir.path().join("app.json");
    let (code, out) = doctor(
        bin.path(),
        &[
            ("DATABASE_URL", &db.url),
            ("APPS_JSON", apps.to_str().unwrap()),
            ("GITHUB_WEBHOOK_SECRET", SECRET),
            ("GITHUB_APP_ID", &APP_ID.to_string()),
            ("GITHUB_APP_PRIVATE_KEY", &key),
            ("GITHUB_API_URL", &gh.url),
        ],
    )
    .await;
    assert_eq!(code, Some(1), "{out}");
    line(&out, "ok   GitHub sees acme/web (App installation 77)");
    let api = line(&out, "FAIL GitHub repository acme/api");
    assert!(api.contains("Install the GitHub App"), "{api}");
}
