//! Secrets at start: empty or short shared secrets stop faseng with a message that
//! names the setting (never the value); every secret can come from a `*_FILE`;
//! `/metrics` can require a bearer token.

use std::process::Stdio;

use chima_testkit::github::{deployment_event, send_webhook};
use serde_json::json;

use crate::harness::{Faseng, repo};

const APPS: &str =
    r#"{"app": {"provider": "shell", "repository": "example/app", "environments": ["staging"]}}"#;

/// Runs faseng with `env` (and nothing of the caller's secrets) and returns its
/// exit code and standard error. A refused secret stops it before it opens the
/// database, so none is needed.
async fn start_fails(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.json"), APPS).unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_faseng"));
    cmd.arg("serve")
        .env("APPS_JSON", dir.path().join("app.json"))
        .env("DATABASE_URL", "postgres://127.0.0.1:1/none")
        .env("FASENG_LISTEN", "127.0.0.1:0")
        .env_remove("GITHUB_WEBHOOK_SECRET")
        .env_remove("FASENG_API_TOKEN")
        .env_remove("CHIMA_SIGNING_KEY")
        .env_remove("GITHUB_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), cmd.output())
        .await
        .expect("faseng should stop at once")
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn empty_or_short_shared_secrets_stop_faseng_and_name_the_setting() {
    for (name, value, says) in [
        (
            "GITHUB_WEBHOOK_SECRET",
            "",
            "GITHUB_WEBHOOK_SECRET is empty",
        ),
        (
            "GITHUB_WEBHOOK_SECRET",
            "hunter2",
            "GITHUB_WEBHOOK_SECRET is 7 bytes; it must be at least 16",
        ),
        ("FASENG_API_TOKEN", "", "FASENG_API_TOKEN is empty"),
        ("FASENG_API_TOKEN", "abc", "FASENG_API_TOKEN is 3 bytes"),
        ("CHIMA_SIGNING_KEY", "k", "CHIMA_SIGNING_KEY is 1 bytes"),
        (
            "FASENG_METRICS_TOKEN",
            "short",
            "FASENG_METRICS_TOKEN is 5 bytes",
        ),
    ] {
        let (code, stderr) = start_fails(&[(name, value)]).await;
        assert_eq!(code, Some(2), "{name}={value:?}: {stderr}");
        assert!(stderr.contains(says), "{name}={value:?}: {stderr}");
        if !value.is_empty() {
            assert!(!stderr.contains(value), "the secret was printed: {stderr}");
        }
    }
    // A file and a value at once is ambiguous.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, "from-a-file-long-enough\n").unwrap();
    let (code, stderr) = start_fails(&[
        ("GITHUB_WEBHOOK_SECRET", "also-set-directly-long-enough"),
        ("GITHUB_WEBHOOK_SECRET_FILE", file.to_str().unwrap()),
    ])
    .await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("set GITHUB_WEBHOOK_SECRET or GITHUB_WEBHOOK_SECRET_FILE, not both"),
        "{stderr}"
    );
    // A missing file says which.
    let (code, stderr) =
        start_fails(&[("FASENG_API_TOKEN_FILE", "/nonexistent/faseng-token")]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/faseng-token"), "{stderr}");
}

#[tokio::test]
async fn the_webhook_secret_can_come_from_a_file_and_metrics_can_need_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("webhook-secret");
    let secret = "webhook-secret-from-a-file";
    // A trailing newline, as `echo` and editors write it, is not part of the secret.
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    let metrics_token = "metrics-token-for-prometheus";
    let f = Faseng::start_without(
        APPS,
        None,
        &[
            ("GITHUB_WEBHOOK_SECRET_FILE", file.to_str().unwrap()),
            ("FASENG_METRICS_TOKEN", metrics_token),
        ],
        &["GITHUB_WEBHOOK_SECRET"],
    )
    .await;
    let (_, sha) = repo(f.dir.path(), "#!/bin/sh\necho from the file secret\n");
    let body = deployment_event(
        "example/app",
        "",
        31,
        &sha,
        "main",
        "staging",
        "deploy",
        json!({}),
    );
    let hook = format!("{}/webhooks/github", f.url);
    let (status, text) = send_webhook(
        &hook,
        "deployment",
        "file-1",
        secret.as_bytes(),
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let (status, _) = send_webhook(
        &hook,
        "deployment",
        "file-2",
        format!("{secret}\n").as_bytes(),
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 401, "the newline is not part of the secret");

    let metrics = format!("{}/metrics", f.url);
    let (status, text) = get_with(&metrics, None).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("FASENG_METRICS_TOKEN"), "{text}");
    assert_eq!(
        get_with(&metrics, Some("wrong-token-entirely")).await.0,
        401
    );
    let (status, text) = get_with(&metrics, Some(metrics_token)).await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("faseng_deployments{state=\"queued\"}"),
        "{text}"
    );
}

async fn get_with(url: &str, bearer: Option<&str>) -> (u16, String) {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Empty<hyper::body::Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut req = hyper::Request::get(url);
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let r = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}
