//! chima on the terminal with GitHub credentials: the real binary against the
//! fake GitHub. The exact deployment body, and a reply for every answer.

use std::path::{Path, PathBuf};

use chima_testkit::github::{FakeGitHub, Reply};
use serde_json::{Value, json};

fn apps(dir: &Path) -> PathBuf {
    let path = dir.join("app.json");
    std::fs::write(
        &path,
        r#"{"project-x": {"provider": "fabric", "repository": "example/project-x",
            "environments": ["production", "edge"], "aliases": {"prod": "production"},
            "required_contexts": ["ci/build"], "github_token": "ghp_per_app_secret_value"}}"#,
    )
    .unwrap();
    path
}

async fn chima(gh: &FakeGitHub, apps: &Path, line: &str) -> (i32, String) {
    chima_with(gh, apps, line, &[]).await
}

pub(crate) async fn chima_with(
    gh: &FakeGitHub,
    apps: &Path,
    line: &str,
    env: &[(&str, &str)],
) -> (i32, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_chima"))
        .arg("--apps")
        .arg(apps)
        .args(["run", line])
        .env("GITHUB_TOKEN", gh.token())
        .env("GITHUB_API_URL", &gh.url)
        .env("USER", "tester")
        .env_remove("CHIMA_NAME")
        .env_remove("DATABASE_URL")
        .env_remove("CHIMA_SIGNING_KEY")
        .env_remove("FASENG_API_TOKEN")
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

async fn fake() -> FakeGitHub {
    let gh = FakeGitHub::start().await;
    gh.add_repo("example/project-x", "main");
    // The app requires `ci/build`; the fake checks it as GitHub does.
    gh.set_commit_statuses(
        "example/project-x",
        "feature",
        vec![chima_testkit::github::FakeStatus::new(
            "ci/build", "success",
        )],
    );
    gh
}

#[tokio::test]
async fn created_sends_the_hubot_deploy_body_and_says_where_to_watch() {
    let dir = tempfile::tempdir().unwrap();
    let apps = apps(dir.path());
    let gh = fake().await;
    let (code, text) = chima(
        &gh,
        &apps,
        "chima deploy project-x/feature to prod/fe1 123456",
    )
    .await;
    assert_eq!(code, 0, "{text}");
    let created = gh.deployments("example/project-x");
    assert_eq!(created.len(), 1);
    let d = &created[0];
    assert!(
        text.contains(&format!(
            "Created GitHub deployment #{} of project-x/feature to production (commit {}).",
            d.id,
            &d.sha[..7]
        )),
        "{text}"
    );
    let body = &d.body;
    assert_eq!(body["ref"], "feature");
    assert_eq!(body["task"], "deploy");
    assert_eq!(body["auto_merge"], true);
    assert_eq!(body["required_contexts"], json!(["ci/build"]));
    assert_eq!(body["environment"], "production");
    assert_eq!(body["production_environment"], true);
    assert_eq!(
        body["description"],
        format!(
            "deploy on production from chima-v{}",
            env!("CARGO_PKG_VERSION")
        )
    );
    let p = &body["payload"];
    assert_eq!(p["name"], "project-x");
    assert_eq!(p["robotName"], "chima");
    assert_eq!(p["hosts"], "fe1");
    assert_eq!(p["yubikey"], "123456");
    assert_eq!(
        p["notify"],
        json!({"adapter": "shell", "room": "shell", "user": "tester", "user_name": "tester", "thread_ts": null})
    );
    assert_eq!(p["config"]["provider"], "fabric");
    assert_eq!(p["config"]["repository"], "example/project-x");
    // Secrets of the app entry never travel in the payload.
    assert!(!body.to_string().contains("ghp_per_app_secret_value"));
    assert!(p["config"].get("github_token").is_none());
}

#[tokio::test]
async fn force_skips_merge_and_contexts_and_no_ref_means_the_default_branch() {
    let dir = tempfile::tempdir().unwrap();
    let apps = apps(dir.path());
    let gh = fake().await;
    let (code, text) = chima(&gh, &apps, "chima deploy:migrate! project-x to edge").await;
    assert_eq!(code, 0, "{text}");
    let body: Value = gh.deployments("example/project-x")[0].body.clone();
    assert_eq!(body["ref"], "main");
    assert_eq!(body["task"], "deploy:migrate");
    assert_eq!(body["auto_merge"], false);
    assert_eq!(body["required_contexts"], json!([]));
    assert_eq!(body["production_environment"], false);
}

#[tokio::test]
async fn every_refusal_gets_its_reply() {
    let dir = tempfile::tempdir().unwrap();
    let apps = apps(dir.path());
    let gh = fake().await;
    let cases: Vec<(Reply, &str)> = vec![
        (
            Reply::AutoMerged,
            "GitHub merged the default branch into feature first",
        ),
        (
            Reply::FailingContexts(vec![
                ("ci/build".into(), "failure".into()),
                ("security".into(), "pending".into()),
            ]),
            "required checks are not green: ci/build (failure), security (pending). Fix them, or say `deploy!` to skip the checks.",
        ),
        (
            Reply::MergeConflict,
            "could not merge the default branch into feature",
        ),
        (
            Reply::NotFound,
            "GitHub does not show example/project-x to me",
        ),
        (Reply::Unauthorized, "GitHub refused the credentials"),
        (Reply::Forbidden, "GitHub denied access"),
    ];
    for (reply, expected) in cases {
        gh.next_create(reply.clone());
        let (code, text) = chima(&gh, &apps, "chima deploy project-x/feature to edge").await;
        assert_eq!(code, 1, "{reply:?}: {text}");
        assert!(text.contains(expected), "{reply:?}: {text}");
        assert!(!text.contains(&gh.token()), "the token leaked: {text}");
    }
    assert!(gh.deployments("example/project-x").is_empty());
}

#[tokio::test]
async fn github_unreachable_is_said_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let apps = apps(dir.path());
    let gh = fake().await;
    let url = gh.url.clone();
    drop(gh);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_chima"))
        .arg("--apps")
        .arg(&apps)
        .args(["run", "chima deploy project-x/feature to edge"])
        .env("GITHUB_TOKEN", "t0ken-for-a-dead-server")
        .env("GITHUB_API_URL", url)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("I could not reach GitHub"), "{text}");
    assert!(!text.contains("t0ken-for-a-dead-server"));
}

#[tokio::test]
async fn refusals_from_the_config_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let apps = apps(dir.path());
    let gh = fake().await;
    let (code, text) = chima(&gh, &apps, "chima deploy project-y to prod").await;
    assert_eq!(code, 2);
    assert!(
        text.contains("I don't know an app called `project-y`"),
        "{text}"
    );
    assert!(gh.requests_to("POST", "/repos").is_empty());
}

#[tokio::test]
async fn deploys_and_status_read_github() {
    let dir = tempfile::tempdir().unwrap();
    let apps = apps(dir.path());
    let gh = fake().await;
    let (code, _) = chima(&gh, &apps, "chima deploy project-x/feature to edge").await;
    assert_eq!(code, 0);
    let (code, text) = chima(&gh, &apps, "chima deploys project-x").await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("project-x/feature"), "{text}");
    assert!(text.contains("to edge by"), "{text}");
    gh.set_commit_statuses(
        "example/project-x",
        "main",
        vec![chima_testkit::github::FakeStatus::new(
            "ci/build", "success",
        )],
    );
    gh.set_check_runs(
        "example/project-x",
        "main",
        vec![chima_testkit::github::FakeCheckRun::new(
            "lint",
            "completed",
            Some("failure"),
        )],
    );
    let (code, text) = chima(&gh, &apps, "chima status project-x").await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("project-x/main"), "{text}");
    assert!(text.contains("success ci/build"), "{text}");
    assert!(text.contains("failure lint"), "{text}");
}

/// With a signing key, chima signs who asked, for what, in the payload; faseng checks
/// it with the same key. Without one, chima says that its deployments will count as
/// its GitHub login only, and signs nothing.
#[tokio::test]
async fn chima_signs_who_asked_when_it_has_a_key_and_says_so_when_not() {
    let dir = tempfile::tempdir().unwrap();
    let apps = apps(dir.path());
    let gh = fake().await;
    let key = "chima-signing-key-for-these-tests";
    let (code, text) = chima_with(
        &gh,
        &apps,
        "chima deploy project-x/feature to prod/fe1",
        &[("CHIMA_SIGNING_KEY", key)],
    )
    .await;
    assert_eq!(code, 0, "{text}");
    let d = gh.deployments("example/project-x").pop().unwrap();
    let (payload, problems) = chima_payload::DeploymentPayload::read(&d.body["payload"]);
    assert!(problems.is_empty(), "{problems:?}");
    let signed = payload.chima.expect("a signed request");
    chima_payload::SigningKey::new(key.as_bytes())
        .verify(&signed)
        .expect("the signature verifies with the shared key");
    let r = &signed.request;
    assert_eq!(
        (
            r.user_name.as_str(),
            r.app.as_str(),
            r.environment.as_str(),
            r.git_ref.as_str(),
            r.task.as_str()
        ),
        ("tester", "project-x", "production", "feature", "deploy")
    );
    assert_eq!(r.hosts.as_deref(), Some("fe1"));
    assert!(
        signed
            .check_matches(
                "project-x",
                "production",
                "feature",
                "deploy",
                Some(r.issued_at)
            )
            .is_ok()
    );
    assert!(
        chima_payload::SigningKey::new(b"another-key-of-enough-length")
            .verify(&signed)
            .is_err()
    );
    // The same key derived from FASENG_API_TOKEN on both sides.
    let token = "faseng-api-token-for-these-tests";
    let (code, text) = chima_with(
        &gh,
        &apps,
        "chima deploy project-x/feature to prod",
        &[("FASENG_API_TOKEN", token)],
    )
    .await;
    assert_eq!(code, 0, "{text}");
    let d = gh.deployments("example/project-x").pop().unwrap();
    let (payload, _) = chima_payload::DeploymentPayload::read(&d.body["payload"]);
    chima_payload::SigningKey::derived_from_api_token(token.as_bytes())
        .verify(&payload.chima.expect("signed"))
        .expect("derived keys agree");

    // No key: nothing signed, and chima says what that means.
    let (code, text) = chima(&gh, &apps, "chima deploy project-x/feature to prod").await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("counts as chima's GitHub login only"),
        "{text}"
    );
    let d = gh.deployments("example/project-x").pop().unwrap();
    assert!(d.body["payload"].get("chima").is_none());
    // A short key is refused at start, by name.
    let (code, text) = chima_with(
        &gh,
        &apps,
        "chima deploy project-x/feature to prod",
        &[("CHIMA_SIGNING_KEY", "short")],
    )
    .await;
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("CHIMA_SIGNING_KEY is 5 bytes"), "{text}");
}

/// A server that answers 404 to everything: what a wrong FASENG_URL finds.
async fn answers_404() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "<html>Not Found</html>") });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/wrong")
}

/// A wrong FASENG_URL is an error naming the URL and the status, never "no locks" or
/// "no freezes": `lock` fails, and a deploy, which asks faseng for the freezes first,
/// creates nothing.
#[tokio::test]
async fn a_wrong_faseng_url_is_an_error_not_no_locks() {
    let dir = tempfile::tempdir().unwrap();
    let apps = apps(dir.path());
    let gh = fake().await;
    let url = answers_404().await;
    let env = [
        ("FASENG_URL", url.as_str()),
        ("FASENG_API_TOKEN", "faseng-api-token-for-these-tests"),
    ];
    let (code, text) = chima_with(&gh, &apps, "chima lock project-x in prod", &env).await;
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!(
            "faseng answered 404 to PUT {url}/api/locks/project-x/production"
        )),
        "{text}"
    );
    assert!(!text.contains("Locked"), "{text}");

    let (code, text) = chima_with(&gh, &apps, "chima deploy project-x/feature to prod", &env).await;
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!("faseng answered 404 to GET {url}/api/freezes")),
        "{text}"
    );
    assert!(text.contains("nothing more was done"), "{text}");
    assert!(gh.deployments("example/project-x").is_empty(), "{text}");
}
