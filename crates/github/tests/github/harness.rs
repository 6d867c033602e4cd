//! Shared set-up: a fake GitHub with one repository, and clients pointed at it.

use std::future::Future;
use std::time::{Duration, Instant};

use chima_config::Secret;
use chima_github::{Auth, DeploymentBody, GitHub, GitHubConfig, RetryPolicy};
use chima_testkit::github::FakeGitHub;
use serde_json::json;

pub const REPO: &str = "acme/web";
pub const APP_ID: u64 = 4242;
pub const INSTALLATION: i64 = 77;

/// The test-only App key (see tests/fixtures/README.md).
pub fn app_key() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/test-app-key.pem"
    );
    std::fs::read_to_string(path).expect("tests/fixtures/test-app-key.pem")
}

/// A fake with `acme/web` (default branch `main`).
pub async fn fake() -> FakeGitHub {
    let fake = FakeGitHub::start().await;
    fake.add_repo(REPO, "main");
    fake
}

pub fn token_client(api_url: &str, token: &str) -> GitHub {
    GitHub::new(GitHubConfig {
        api_url: api_url.to_string(),
        auth: Auth::Token(Secret::new(token)),
    })
    .expect("client")
}

/// A token client on the fake, with the default retry policy.
pub fn client(fake: &FakeGitHub) -> GitHub {
    token_client(&fake.url, &fake.token())
}

/// The same with short retry delays, for tests that only count attempts.
pub fn quick_client(fake: &FakeGitHub) -> GitHub {
    client(fake).with_retry_policy(RetryPolicy {
        base_delay: Duration::from_millis(20),
        ..RetryPolicy::default()
    })
}

pub fn app_client(api_url: &str, app_id: u64) -> GitHub {
    GitHub::new(GitHubConfig {
        api_url: api_url.to_string(),
        auth: Auth::App {
            app_id,
            private_key: Secret::new(app_key()),
        },
    })
    .expect("app client")
}

/// What chima sends for `chima deploy web/topic to production`.
pub fn body(git_ref: &str) -> DeploymentBody {
    DeploymentBody {
        git_ref: git_ref.to_string(),
        task: "deploy".to_string(),
        auto_merge: true,
        required_contexts: None,
        environment: "production".to_string(),
        description: "alice deploying web/topic to production".to_string(),
        production_environment: true,
        transient_environment: None,
        payload: json!({
            "name": "web",
            "robotName": "chima",
            "hosts": "",
            "notify": {"adapter": "slack", "room": "C123", "user": "U1", "user_name": "alice", "thread_ts": "1.2"},
            "config": {"provider": "shell", "repository": REPO, "production_url": "https://web.example.com"},
        }),
    }
}

/// Polls `check` until it holds, for at most `limit` (generous: the machine may be
/// loaded). Panics with `what` when it never does.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
