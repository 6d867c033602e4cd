//! faseng's JSON API, and chima in GitHub mode using it for locks, cancel,
//! rollback and history.

use chima_testkit::github::{FakeGitHub, send_raw_webhook};

use crate::harness::{Faseng, get};

const TOKEN: &str = "api-token-for-tests";
const APPS: &str = r#"{"app": {"provider": "shell", "repository": "example/app", "environments": ["production", "staging"]}}"#;

async fn chima(f: &Faseng, gh: &FakeGitHub, user: &str, line: &str) -> (i32, String) {
    let out = tokio::process::Command::new(crate::slack::chima_binary())
        .env("APPS_JSON", f.dir.path().join("app.json"))
        .env("GITHUB_TOKEN", gh.token())
        .env("GITHUB_API_URL", &gh.url)
        .env("FASENG_URL", &f.url)
        .env("FASENG_API_TOKEN", TOKEN)
        .env("USER", user)
        .env_remove("SLACK_BOT_TOKEN")
        .args(["run", line])
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn the_api_needs_the_bearer_token() {
    let f = Faseng::start_with(APPS, None, &[("FASENG_API_TOKEN", TOKEN)]).await;
    assert_eq!(get(&format!("{}/api/deployments", f.url)).await.0, 401);
    let (status, _) = send_raw_webhook(
        &format!("{}/api/deployments", f.url),
        &[("authorization", "Bearer wrong")],
        b"{}",
    )
    .await;
    assert_eq!(status, 401);
    let body = br#"{"app": "app", "environment": "staging", "ref": "main", "requester": "api", "key": "k1"}"#;
    let auth = format!("Bearer {TOKEN}");
    let (status, text) = send_raw_webhook(
        &format!("{}/api/deployments", f.url),
        &[("authorization", &auth)],
        body,
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let (status, text) = send_raw_webhook(
        &format!("{}/api/deployments", f.url),
        &[("authorization", &auth)],
        body,
    )
    .await;
    assert_eq!(status, 200, "the same key twice is one deployment: {text}");
    let (status, text) = send_raw_webhook(
        &format!("{}/api/deployments", f.url),
        &[("authorization", &auth)],
        br#"{"app": "app", "environment": "staging", "ref": "--upload-pack=x", "requester": "api", "key": "k2"}"#,
    )
    .await;
    assert_eq!(status, 422, "{text}");
    let (status, _) = send_raw_webhook(
        &format!("{}/api/deployments", f.url),
        &[("authorization", &auth)],
        b"nope",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(f.count().await, 1);
}

#[tokio::test]
async fn chima_in_github_mode_locks_cancels_and_rolls_back_through_faseng() {
    let gh = FakeGitHub::start().await;
    gh.add_repo("example/app", "main");
    let f = Faseng::start_with(
        APPS,
        Some((&gh.url, &gh.token())),
        &[("FASENG_API_TOKEN", TOKEN)],
    )
    .await;

    let (code, t) = chima(&f, &gh, "alice", "chima cancel app in staging").await;
    assert_eq!(code, 1, "{t}");
    assert!(
        t.contains("Nothing is running or queued for app in staging"),
        "{t}"
    );
    let (code, t) = chima(&f, &gh, "alice", "chima rollback app in production").await;
    assert_eq!(code, 1, "{t}");
    assert!(
        t.contains("Cannot roll back app in production: nothing ever deployed there successfully."),
        "{t}"
    );

    let (code, t) = chima(
        &f,
        &gh,
        "alice",
        "chima lock app in production for 30m release",
    )
    .await;
    assert_eq!(code, 0, "{t}");
    assert!(
        t.contains("Locked app in production: release (until "),
        "{t}"
    );
    let (_, t) = chima(&f, &gh, "bob", "chima where can i deploy app").await;
    assert!(t.contains("production (locked by alice: release)"), "{t}");
    let (code, t) = chima(&f, &gh, "bob", "chima deploy app to production").await;
    assert_eq!(code, 1, "{t}");
    assert!(
        t.contains("production is locked by alice: release. Nothing was deployed."),
        "{t}"
    );
    assert!(
        gh.deployments("example/app").is_empty(),
        "a locked deploy reached GitHub"
    );
    let (code, t) = chima(&f, &gh, "alice", "chima deploy app to production").await;
    assert_eq!(code, 0, "the locker deploys: {t}");
    let (code, t) = chima(&f, &gh, "bob", "chima unlock app in production").await;
    assert_eq!(code, 0);
    assert!(t.contains("alice, your lock was lifted by bob."), "{t}");

    let (code, t) = chima(&f, &gh, "bob", "chima deploys app").await;
    assert_eq!(code, 0, "{t}");
    assert!(
        t.contains("No deployments of app yet.") || t.contains("#"),
        "{t}"
    );
}
