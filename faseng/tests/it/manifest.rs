//! `faseng github-app-manifest`, run as a user runs it: the manifest, and the
//! exchange of GitHub's code against the fake GitHub.

use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use chima_testkit::github::FakeGitHub;
use serde_json::{Value, json};

async fn faseng(args: &[&str], api_url: Option<&str>) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_faseng"));
    cmd.arg("github-app-manifest").args(args).env_clear();
    if let Some(url) = api_url {
        cmd.env("GITHUB_API_URL", url);
    }
    cmd.output().await.expect("faseng runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn the_manifest_asks_for_what_faseng_uses_and_nothing_else() {
    let out = faseng(&["--url", "https://faseng.example/"], None).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let manifest: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(
        manifest["default_permissions"],
        json!({
            "deployments": "write",
            "statuses": "read",
            "checks": "read",
            "contents": "read",
            "metadata": "read",
        })
    );
    let mut events: Vec<&str> = manifest["default_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    events.sort();
    assert_eq!(
        events,
        ["check_run", "check_suite", "deployment", "push", "status"]
    );
    assert_eq!(
        manifest["hook_attributes"]["url"],
        "https://faseng.example/webhooks/github"
    );
    assert_eq!(manifest["hook_attributes"]["active"], true);
    assert_eq!(manifest["public"], false);
    assert_eq!(manifest["name"], "faseng");
    assert_eq!(manifest["url"], "https://faseng.example");
    assert_eq!(manifest["redirect_url"], "https://faseng.example/");

    let out = faseng(
        &["--url", "https://f.example", "--name", "acme-faseng"],
        None,
    )
    .await;
    let manifest: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(manifest["name"], "acme-faseng");

    let out = faseng(&["--url", "faseng.example"], None).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--url"), "{}", text(&out.stderr));
    let out = faseng(&[], None).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "one of --url, --exchange is needed"
    );
}

#[tokio::test]
async fn exchange_prints_the_settings_and_writes_the_key_0600() {
    let github = FakeGitHub::start().await;
    let app = github.add_manifest_code("a1b2c3");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("app.pem");
    let out = faseng(
        &["--exchange", "a1b2c3", "--key-file", key.to_str().unwrap()],
        Some(&github.url),
    )
    .await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert_eq!(
        stdout,
        format!(
            "GITHUB_APP_ID={}\nGITHUB_WEBHOOK_SECRET={}\nGITHUB_APP_PRIVATE_KEY_FILE={}\n",
            app.id,
            app.webhook_secret,
            key.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&key).unwrap(), app.pem);
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    for stream in [&out.stdout, &out.stderr] {
        assert!(
            !text(stream).contains("PRIVATE KEY"),
            "the key is never printed"
        );
    }
    let sent = github.requests_to("POST", "/app-manifests/a1b2c3/conversions");
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].header("authorization").is_none(),
        "no credentials sent"
    );

    // The code is used up; an unknown one is refused, and nothing is written.
    for code in ["a1b2c3", "nope"] {
        let other = dir.path().join(format!("{code}.pem"));
        let out = faseng(
            &["--exchange", code, "--key-file", other.to_str().unwrap()],
            Some(&github.url),
        )
        .await;
        let stderr = text(&out.stderr);
        assert_ne!(out.status.code(), Some(0));
        assert!(
            stderr.contains("unknown") && stderr.contains("older than an hour"),
            "{stderr}"
        );
        assert!(text(&out.stdout).is_empty());
        assert!(!other.exists());
    }
}

#[tokio::test]
async fn the_default_key_file_is_in_the_current_folder_and_never_overwritten() {
    let github = FakeGitHub::start().await;
    github.add_manifest_code("first");
    github.add_manifest_code("second");
    let dir = tempfile::tempdir().unwrap();
    let run = |code: &'static str| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_faseng"));
        cmd.args(["github-app-manifest", "--exchange", code])
            .env_clear()
            .env("GITHUB_API_URL", &github.url)
            .current_dir(dir.path());
        async move { cmd.output().await.unwrap() }
    };
    let out = run("first").await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let key = dir.path().join("github-app.pem");
    assert!(text(&out.stdout).contains(&format!(
        "GITHUB_APP_PRIVATE_KEY_FILE={}\n",
        std::path::absolute(&key).unwrap().display()
    )));
    let first = std::fs::read_to_string(&key).unwrap();
    let out = run("second").await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).is_empty());
    assert_eq!(std::fs::read_to_string(&key).unwrap(), first);
    assert!(
        github
            .requests_to("POST", "/app-manifests/second/conversions")
            .is_empty(),
        "the code is kept for another try"
    );
}
