//! GitHub App credentials: JWT, installation per repository, token cache and refresh.

use std::time::Duration;

use chima_config::Secret;
use chima_github::{Auth, CreateOutcome, GitHub, GitHubConfig, GitHubError};
use chima_testkit::github::FakeGitHub;

use crate::harness::{APP_ID, INSTALLATION, REPO, app_client, app_key, body, fake};

async fn installed() -> FakeGitHub {
    let fake = fake().await;
    fake.install_app(APP_ID, INSTALLATION, &[REPO]);
    fake
}

fn claims_of(jwt: &str) -> serde_json::Value {
    let part = jwt.split('.').nth(1).expect("three parts");
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in part.bytes() {
        let v = alphabet.iter().position(|a| *a == c).expect("base64url") as u32;
        bits = (bits << 6) | v;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    serde_json::from_slice(&out).expect("JSON claims")
}

#[tokio::test]
async fn an_app_finds_the_installation_and_uses_its_token() {
    let fake = installed().await;
    let gh = app_client(&fake.url, APP_ID);
    let outcome = gh
        .create_deployment(REPO, &body("topic"))
        .await
        .expect("created");
    assert!(
        matches!(outcome, CreateOutcome::Created { .. }),
        "{outcome:?}"
    );

    let requests = fake.requests();
    let routes: Vec<String> = requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.route))
        .collect();
    assert_eq!(
        routes,
        [
            "GET /repos/acme/web/installation".to_string(),
            format!("POST /app/installations/{INSTALLATION}/access_tokens"),
            "POST /repos/acme/web/deployments".to_string(),
        ]
    );
    // The first two with the App's JWT, the last with the installation token.
    for r in &requests[..2] {
        let jwt = r
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .expect("a bearer JWT");
        assert_eq!(jwt.split('.').count(), 3);
        let claims = claims_of(jwt);
        assert_eq!(claims["iss"].as_u64(), Some(APP_ID));
        let (iat, exp) = (
            claims["iat"].as_i64().expect("iat"),
            claims["exp"].as_i64().expect("exp"),
        );
        assert!(exp - iat <= 600, "GitHub refuses JWTs over 10 minutes");
    }
    let token = requests[2]
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .expect("bearer");
    assert!(token.starts_with("ghs_"), "{token}");
    assert_eq!(fake.installation_tokens_issued(), 1);
}

#[tokio::test]
async fn the_installation_token_is_cached_and_reused() {
    let fake = installed().await;
    let gh = app_client(&fake.url, APP_ID);
    for _ in 0..3 {
        gh.default_branch(REPO).await.expect("repo");
    }
    gh.clone()
        .create_deployment(REPO, &body("topic"))
        .await
        .expect("created");
    assert_eq!(
        fake.installation_tokens_issued(),
        1,
        "one token for all calls"
    );
    assert_eq!(
        fake.requests_to("GET", "/repos/acme/web/installation")
            .len(),
        1
    );

    // git gets the same token as the API calls.
    let header = gh.git_auth_header(REPO).await.expect("git header");
    assert!(header.expose().starts_with("Basic "));
    assert_eq!(fake.installation_tokens_issued(), 1);
}

#[tokio::test]
async fn a_token_close_to_expiry_is_refreshed() {
    let fake = installed().await;
    // Tokens that expire in 4 minutes are inside the 5-minute margin: each call needs
    // a new one.
    fake.set_installation_token_lifetime(Duration::from_secs(4 * 60));
    let gh = app_client(&fake.url, APP_ID);
    gh.default_branch(REPO).await.expect("first");
    gh.default_branch(REPO).await.expect("second");
    assert_eq!(fake.installation_tokens_issued(), 2);

    // Long-lived ones are reused again.
    fake.set_installation_token_lifetime(Duration::from_secs(3600));
    gh.default_branch(REPO).await.expect("third");
    gh.default_branch(REPO).await.expect("fourth");
    assert_eq!(fake.installation_tokens_issued(), 3);
    assert_eq!(
        fake.requests_to("GET", "/repos/acme/web/installation")
            .len(),
        1,
        "the installation is remembered"
    );
}

#[tokio::test]
async fn a_revoked_token_is_replaced_once() {
    let fake = installed().await;
    let gh = app_client(&fake.url, APP_ID);
    gh.default_branch(REPO).await.expect("first");
    fake.revoke_installation_tokens();
    assert_eq!(
        gh.default_branch(REPO).await.expect("after revocation"),
        "main"
    );
    assert_eq!(fake.installation_tokens_issued(), 2);
}

#[tokio::test]
async fn a_repository_without_the_app_is_not_found_and_says_so() {
    let fake = installed().await;
    fake.add_repo("acme/other", "main");
    let gh = app_client(&fake.url, APP_ID);
    let err = gh
        .default_branch("acme/other")
        .await
        .expect_err("not installed");
    let GitHubError::NotFound { what } = &err else {
        panic!("{err:?}");
    };
    assert!(what.contains("installation on acme/other"), "{what}");
    assert!(what.contains("GITHUB_APP_ID=4242"), "{what}");
}

#[tokio::test]
async fn an_unknown_app_is_unauthorized_and_names_the_settings() {
    let fake = installed().await;
    let gh = app_client(&fake.url, 999);
    let err = gh.default_branch(REPO).await.expect_err("unknown app");
    let GitHubError::Unauthorized { message } = &err else {
        panic!("{err:?}");
    };
    assert!(message.contains("GITHUB_APP_ID"), "{message}");
    assert!(message.contains("GITHUB_APP_PRIVATE_KEY"), "{message}");
    assert!(!message.contains("BEGIN RSA"), "{message}");
}

#[tokio::test]
async fn app_errors_and_debug_never_show_tokens_or_keys() {
    let fake = installed().await;
    let gh = app_client(&fake.url, APP_ID);
    gh.default_branch(REPO).await.expect("a token was issued");
    fake.script(
        chima_testkit::github::Endpoint::GetRepo,
        chima_testkit::github::Reply::Forbidden,
        1,
    );
    let err = gh.default_branch(REPO).await.expect_err("403");
    let GitHubError::Forbidden { message } = &err else {
        panic!("{err:?}");
    };
    assert!(message.contains("Metadata: read"), "{message}");
    assert!(message.contains("GITHUB_APP_ID=4242"), "{message}");
    for text in [err.to_string(), format!("{err:?}"), format!("{gh:?}")] {
        assert!(!text.contains("ghs_"), "{text}");
        assert!(!text.contains("PRIVATE KEY"), "{text}");
    }
}

#[tokio::test]
async fn bad_app_settings_fail_at_construction() {
    let make = |app_id: u64, key: &str| {
        GitHub::new(GitHubConfig {
            api_url: "https://api.github.com".to_string(),
            auth: Auth::App {
                app_id,
                private_key: Secret::new(key),
            },
        })
    };
    let err = make(APP_ID, "not a key").expect_err("bad key");
    let GitHubError::Invalid { message } = &err else {
        panic!("{err:?}");
    };
    assert!(message.contains("GITHUB_APP_PRIVATE_KEY"), "{message}");
    assert!(!message.contains("not a key"), "{message}");

    assert!(matches!(
        make(0, &app_key()),
        Err(GitHubError::Invalid { .. })
    ));
    // A key pasted into an environment variable with `\n` written out still works.
    let escaped = app_key().trim().replace('\n', "\\n");
    assert!(make(APP_ID, &escaped).is_ok());

    let token = GitHub::new(GitHubConfig {
        api_url: "https://api.github.com".to_string(),
        auth: Auth::Token(Secret::new("  ")),
    });
    assert!(matches!(token, Err(GitHubError::Invalid { .. })));
    let url = GitHub::new(GitHubConfig {
        api_url: "api.github.com".to_string(),
        auth: Auth::Token(Secret::new("t")),
    });
    assert!(matches!(url, Err(GitHubError::Invalid { .. })));
}

#[tokio::test]
async fn an_app_works_behind_the_enterprise_prefix() {
    let fake = installed().await;
    let gh = app_client(&fake.ghe_url(), APP_ID);
    assert_eq!(gh.default_branch(REPO).await.expect("repo"), "main");
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.path.starts_with("/api/v3/"))
    );
}
