//! `chima doctor`, run as an operator runs it, against the fake Slack, the fake
//! GitHub and a stand-in for faseng's API.

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use chima_testkit::github::FakeGitHub;
use chima_testkit::slack::{self as fake_slack, FakeSlack};

const APPS: &str = r#"{
  "web": {"provider": "shell", "repository": "acme/web", "environments": ["production"]},
  "api": {"provider": "shell", "repository": "acme/api", "environments": ["production"]}
}"#;

const FASENG_TOKEN: &str = "faseng-api-token-for-doctor-tests";

/// faseng's `GET /api/locks`: 200 with the right bearer token, else 401.
async fn start_faseng() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route(
        "/api/locks",
        get(|headers: HeaderMap| async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if auth == format!("Bearer {FASENG_TOKEN}") {
                (StatusCode::OK, r#"{"locks": []}"#)
            } else {
                (StatusCode::UNAUTHORIZED, r#"{"error": "unauthorized"}"#)
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

async fn doctor(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let apps = dir.path().join("app.json");
    std::fs::write(&apps, APPS).unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_chima"));
    cmd.arg("doctor")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("APPS_JSON", &apps);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
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
    let slack = FakeSlack::start().await;
    let gh = FakeGitHub::start().await;
    gh.add_repo("acme/web", "main");
    gh.add_repo("acme/api", "main");
    let faseng = start_faseng().await;
    let token = gh.token();
    let (code, out) = doctor(&[
        ("SLACK_BOT_TOKEN", fake_slack::BOT_TOKEN),
        ("SLACK_APP_TOKEN", fake_slack::APP_TOKEN),
        ("SLACK_API_URL", &slack.url),
        ("GITHUB_TOKEN", &token),
        ("GITHUB_API_URL", &gh.url),
        ("FASENG_URL", &faseng),
        ("FASENG_API_TOKEN", FASENG_TOKEN),
    ])
    .await;
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    line(&out, "ok   Slack token valid");
    line(&out, "ok   Slack bot scopes");
    line(&out, "ok   Slack Socket Mode connection opens");
    line(&out, "ok   GitHub sees acme/web");
    line(&out, "ok   GitHub sees acme/api");
    line(&out, "ok   faseng answers");
    line(&out, "ok   signing key set");
    line(&out, "skip Slack signing secret");
}

#[tokio::test]
async fn doctor_names_each_problem_with_its_fix() {
    let slack = FakeSlack::start().await;
    let mut scopes = chima_slack::manifest::bot_scopes();
    scopes.retain(|s| *s != "chat:write");
    slack.set_scopes(&scopes);
    let gh = FakeGitHub::start().await;
    gh.add_repo("acme/web", "main"); // but not acme/api
    // Nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = format!("http://127.0.0.1:{port}");
    let token = gh.token();
    let (code, out) = doctor(&[
        ("SLACK_BOT_TOKEN", fake_slack::BOT_TOKEN),
        ("SLACK_APP_TOKEN", "xapp-wrong"),
        ("SLACK_API_URL", &slack.url),
        ("SLACK_SIGNING_SECRET", "short"),
        ("GITHUB_TOKEN", &token),
        ("GITHUB_API_URL", &gh.url),
        ("FASENG_URL", &unreachable),
        ("FASENG_API_TOKEN", FASENG_TOKEN),
    ])
    .await;
    assert_eq!(code, Some(1), "{out}");
    let scope = line(&out, "FAIL Slack bot scopes");
    assert!(scope.contains("missing chat:write"), "{scope}");
    assert!(scope.contains("reinstall"), "{scope}");
    let secret = line(&out, "FAIL SLACK_SIGNING_SECRET");
    assert!(secret.contains("at least 16"), "{secret}");
    assert!(!secret.contains("short,"), "{secret}");
    let socket = line(&out, "FAIL Slack Socket Mode");
    assert!(socket.contains("invalid_auth"), "{socket}");
    assert!(socket.contains("connections:write"), "{socket}");
    line(&out, "ok   GitHub sees acme/web");
    let repo = line(&out, "FAIL GitHub repository acme/api");
    assert!(repo.contains("Give GITHUB_TOKEN access"), "{repo}");
    let f = line(&out, "FAIL faseng at");
    assert!(f.contains("cannot reach faseng"), "{f}");
    assert!(f.contains("Start faseng"), "{f}");

    // A faseng that refuses the token, and no signing key at all.
    let faseng = start_faseng().await;
    let (code, out) = doctor(&[
        ("SLACK_BOT_TOKEN", "xoxb-wrong"),
        ("SLACK_APP_TOKEN", fake_slack::APP_TOKEN),
        ("SLACK_API_URL", &slack.url),
        ("FASENG_URL", &faseng),
        ("FASENG_API_TOKEN", "a-wrong-but-long-enough-token"),
    ])
    .await;
    assert_eq!(code, Some(1), "{out}");
    let bot = line(&out, "FAIL Slack token (SLACK_BOT_TOKEN)");
    assert!(bot.contains("invalid_auth"), "{bot}");
    let f = line(&out, "FAIL faseng at");
    assert!(f.contains("401"), "{f}");
    assert!(f.contains("Set FASENG_API_TOKEN"), "{f}");
    line(&out, "skip GitHub credentials");

    let (code, out) = doctor(&[]).await;
    assert_eq!(code, Some(0), "nothing configured fails nothing: {out}");
    assert!(
        line(&out, "skip signing key").contains("github:<login>"),
        "{out}"
    );
}
