//! Statuses, default branch, CI state, tarball URL, clone credentials.

use chima_github::{CreateOutcome, GitHubError, StatusBody, StatusState};
use chima_testkit::github::{Endpoint, FakeCheckRun, FakeStatus, Reply, TOKEN};
use serde_json::json;

use crate::harness::{REPO, body, client, fake, quick_client};

async fn created(fake: &chima_testkit::github::FakeGitHub) -> i64 {
    match client(fake)
        .create_deployment(REPO, &body("topic"))
        .await
        .expect("created")
    {
        CreateOutcome::Created { id, .. } => id,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn statuses_are_posted_with_only_the_fields_set() {
    let fake = fake().await;
    let id = created(&fake).await;
    let gh = client(&fake);
    gh.create_status(
        REPO,
        id,
        &StatusBody {
            state: StatusState::InProgress,
            log_url: Some("https://faseng.example.com/deployments/7".to_string()),
            environment_url: None,
            description: None,
            auto_inactive: None,
        },
    )
    .await
    .expect("in_progress");
    let long = "x".repeat(300);
    gh.create_status(
        REPO,
        id,
        &StatusBody {
            state: StatusState::Failure,
            log_url: Some("https://faseng.example.com/deployments/7".to_string()),
            environment_url: Some("https://web.example.com".to_string()),
            description: Some(long),
            auto_inactive: Some(false),
        },
    )
    .await
    .expect("a long description is cut, not refused");

    let statuses = fake.statuses(id);
    assert_eq!(fake.status_states(id), ["in_progress", "failure"]);
    assert_eq!(
        statuses[0].body,
        json!({"state": "in_progress", "log_url": "https://faseng.example.com/deployments/7"})
    );
    let failure = &statuses[1];
    assert_eq!(
        failure.description.as_ref().map(|d| d.chars().count()),
        Some(140)
    );
    assert!(
        failure
            .description
            .as_deref()
            .unwrap_or_default()
            .ends_with('…')
    );
    assert_eq!(
        failure.environment_url.as_deref(),
        Some("https://web.example.com")
    );
    assert_eq!(failure.auto_inactive, Some(false));
}

#[tokio::test]
async fn every_status_state_is_accepted_by_its_github_name() {
    let fake = fake().await;
    let id = created(&fake).await;
    let gh = client(&fake);
    let states = [
        StatusState::Queued,
        StatusState::Pending,
        StatusState::InProgress,
        StatusState::Success,
        StatusState::Failure,
        StatusState::Error,
        StatusState::Inactive,
    ];
    for state in states {
        gh.create_status(
            REPO,
            id,
            &StatusBody {
                state,
                log_url: None,
                environment_url: None,
                description: None,
                auto_inactive: None,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{state}: {e}"));
    }
    assert_eq!(
        fake.status_states(id),
        [
            "queued",
            "pending",
            "in_progress",
            "success",
            "failure",
            "error",
            "inactive"
        ]
    );
}

#[tokio::test]
async fn a_status_for_an_unknown_deployment_is_not_found() {
    let fake = fake().await;
    let err = quick_client(&fake)
        .create_status(
            REPO,
            424242,
            &StatusBody {
                state: StatusState::Success,
                log_url: None,
                environment_url: None,
                description: None,
                auto_inactive: None,
            },
        )
        .await
        .expect_err("no such deployment");
    let GitHubError::NotFound { what } = &err else {
        panic!("{err:?}");
    };
    assert!(
        what.contains("deployment 424242 of repository acme/web"),
        "{what}"
    );
}

#[tokio::test]
async fn the_default_branch_is_read_from_the_repository() {
    let fake = fake().await;
    fake.add_repo("acme/legacy", "master");
    let gh = client(&fake);
    assert_eq!(gh.default_branch(REPO).await.expect("main"), "main");
    assert_eq!(
        gh.default_branch("acme/legacy").await.expect("master"),
        "master"
    );
    let err = gh.default_branch("acme/missing").await.expect_err("404");
    assert!(matches!(err, GitHubError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn ci_state_joins_statuses_and_check_runs() {
    let fake = fake().await;
    fake.set_ref(
        REPO,
        "feature/login",
        "0123456789abcdef0123456789abcdef01234567",
    );
    fake.set_commit_statuses(
        REPO,
        "feature/login",
        vec![
            FakeStatus::new("ci/build", "success"),
            FakeStatus::new("security/scan", "success"),
        ],
    );
    fake.set_check_runs(
        REPO,
        "feature/login",
        vec![
            FakeCheckRun::new("test", "completed", Some("success")),
            FakeCheckRun::new("e2e", "in_progress", None),
        ],
    );
    let gh = client(&fake);
    let ci = gh.ci_state(REPO, "feature/login").await.expect("ci");
    assert_eq!(ci.sha, "0123456789abcdef0123456789abcdef01234567");
    assert_eq!(ci.state, "pending", "e2e is still running");
    assert_eq!(ci.statuses.len(), 2);
    assert_eq!(ci.statuses[0].context, "ci/build");
    assert_eq!(ci.statuses[0].state, "success");
    assert_eq!(
        ci.statuses[0].target_url.as_deref(),
        Some("https://ci.example.com/ci/build")
    );
    assert_eq!(ci.check_runs.len(), 2);
    assert_eq!(ci.check_runs[1].name, "e2e");
    assert_eq!(ci.check_runs[1].conclusion, None);
    assert!(ci.check_runs[0].html_url.is_some());
    // The ref's `/` travels encoded, as octokit sends it.
    let sent = fake.requests_to("GET", "/repos/acme/web/commits/");
    assert!(
        sent.iter().all(|r| r.path.contains("feature%2Flogin")),
        "{:?}",
        sent.iter().map(|r| r.path.clone()).collect::<Vec<_>>()
    );

    fake.set_check_runs(
        REPO,
        "feature/login",
        vec![FakeCheckRun::new("e2e", "completed", Some("failure"))],
    );
    assert_eq!(
        gh.ci_state(REPO, "feature/login").await.expect("ci").state,
        "failure"
    );

    // Nothing at all: GitHub's own answer.
    let bare = gh.ci_state(REPO, "main").await.expect("ci");
    assert_eq!(bare.state, "pending");
    assert!(bare.statuses.is_empty() && bare.check_runs.is_empty());
}

#[tokio::test]
async fn the_tarball_url_is_the_redirect_not_the_tarball() {
    let fake = fake().await;
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let url = client(&fake)
        .tarball_url(REPO, sha)
        .await
        .expect("location");
    assert_eq!(
        url,
        format!(
            "{}/_codeload/acme/web/legacy.tar.gz/{sha}?token=AAAAtestkitCODELOAD",
            fake.url
        )
    );
    // Asked once, never followed.
    assert_eq!(fake.requests_to("GET", "/repos/acme/web/tarball/").len(), 1);
    assert!(fake.requests_to("GET", "/_codeload").is_empty());

    fake.script(Endpoint::Tarball, Reply::NotFound, 1);
    let err = quick_client(&fake)
        .tarball_url(REPO, sha)
        .await
        .expect_err("404");
    assert!(matches!(err, GitHubError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn the_git_header_carries_the_token_for_git() {
    let fake = fake().await;
    let header = client(&fake).git_auth_header(REPO).await.expect("header");
    // base64("x-access-token:" + TOKEN)
    let expected = format!("x-access-token:{TOKEN}");
    let value = header
        .expose()
        .strip_prefix("Basic ")
        .expect("Basic scheme");
    assert_eq!(decode_base64(value), expected.into_bytes());
    assert_eq!(format!("{header:?}"), "Secret(***)");
}

fn decode_base64(s: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = alphabet.iter().position(|a| *a == c).expect("base64 digit") as u32;
        bits = (bits << 6) | v;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}
