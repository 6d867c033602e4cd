//! The client against a fake that behaves as GitHub does where it hurts: creates that
//! succeed and then fail, lists that page, secondary rate limits, writes that must be
//! spaced, required contexts that count check runs.

use std::time::{Duration, Instant};

use chima_github::{
    CreateOutcome, DeploymentBody, GitHub, MAX_PAGES, RequestId, RetryPolicy, StatusBody,
    StatusState,
};
use chima_testkit::github::{Endpoint, FakeCheckRun, FakeGitHub, FakeStatus, Reply};
use serde_json::json;

use crate::harness::{REPO, body, client, fake, token_client};

/// What chima sends with a signing key: the signed request's nonce identifies it.
fn signed_body(git_ref: &str, nonce: &str) -> DeploymentBody {
    let mut b = body(git_ref);
    b.payload["chima"] = json!({
        "request": {"version": 1, "nonce": nonce, "app": "web", "environment": "production"},
        "signature": "hmac-sha256=00",
    });
    b
}

/// Short delays, so that tests only count what happens.
fn quick(fake: &FakeGitHub) -> GitHub {
    client(fake)
        .with_retry_policy(RetryPolicy {
            base_delay: Duration::from_millis(20),
            ..RetryPolicy::default()
        })
        .with_write_spacing(Duration::from_millis(10))
}

fn creates(fake: &FakeGitHub) -> usize {
    fake.requests_to("POST", "/repos/acme/web/deployments")
        .len()
}

#[tokio::test]
async fn a_502_after_creation_adopts_the_deployment_carrying_the_nonce() {
    let fake = fake().await;
    fake.create_then_fail(502);
    let outcome = quick(&fake)
        .create_deployment(REPO, &signed_body("topic", "nonce-1"))
        .await
        .expect("an outcome");
    let CreateOutcome::Created { id, sha, url } = outcome else {
        panic!("expected the created deployment to be adopted, got {outcome:?}");
    };
    let stored = fake.deployments(REPO);
    assert_eq!(stored.len(), 1, "exactly one deployment: {stored:#?}");
    assert_eq!(stored[0].id, id);
    assert_eq!(sha, stored[0].sha);
    assert!(url.ends_with(&format!("/deployments/{id}")), "{url}");
    assert_eq!(creates(&fake), 1, "never sent twice");
    // It looked among the ref's deployments in that environment.
    let listed = fake
        .requests_to("GET", "/repos/acme/web/deployments")
        .into_iter()
        .find(|r| r.route == "/repos/acme/web/deployments")
        .expect("a list of the ref's deployments");
    assert_eq!(listed.query_param("ref").as_deref(), Some("topic"));
    assert_eq!(
        listed.query_param("environment").as_deref(),
        Some("production")
    );
}

#[tokio::test]
async fn without_a_nonce_the_identical_payload_is_adopted() {
    let fake = fake().await;
    fake.create_then_fail(500);
    let b = body("topic");
    assert_eq!(RequestId::of(&b), RequestId::SamePayload);
    let outcome = quick(&fake)
        .create_deployment(REPO, &b)
        .await
        .expect("an outcome");
    assert!(
        matches!(outcome, CreateOutcome::Created { .. }),
        "{outcome:?}"
    );
    assert_eq!(fake.deployments(REPO).len(), 1);
    assert_eq!(creates(&fake), 1);
}

#[tokio::test]
async fn an_answer_lost_to_the_timeout_is_found_and_not_resent() {
    let fake = fake().await;
    fake.create_then_hang(Duration::from_secs(5));
    let gh = quick(&fake).with_retry_policy(RetryPolicy {
        base_delay: Duration::from_millis(20),
        request_timeout: Duration::from_millis(700),
        ..RetryPolicy::default()
    });
    let start = Instant::now();
    let outcome = gh
        .create_deployment(REPO, &signed_body("topic", "nonce-hang"))
        .await
        .expect("an outcome");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    let CreateOutcome::Created { id, .. } = outcome else {
        panic!("expected Created, got {outcome:?}");
    };
    assert_eq!(fake.deployments(REPO).len(), 1);
    assert_eq!(fake.deployments(REPO)[0].id, id);
    assert_eq!(creates(&fake), 1);
}

#[tokio::test]
async fn another_requests_deployment_is_not_adopted() {
    let fake = fake().await;
    let gh = quick(&fake);
    // An earlier request for the same ref and environment, with its own nonce.
    let earlier = match gh
        .create_deployment(REPO, &signed_body("topic", "nonce-earlier"))
        .await
        .expect("created")
    {
        CreateOutcome::Created { id, .. } => id,
        other => panic!("{other:?}"),
    };
    // This request's create fails before GitHub does anything.
    fake.script(Endpoint::CreateDeployment, Reply::Status(502), 1);
    let outcome = gh
        .create_deployment(REPO, &signed_body("topic", "nonce-now"))
        .await
        .expect("an outcome");
    let CreateOutcome::Created { id, .. } = outcome else {
        panic!("expected Created, got {outcome:?}");
    };
    assert_ne!(id, earlier, "the earlier request's deployment was taken");
    assert_eq!(fake.deployments(REPO).len(), 2);
    assert_eq!(
        fake.deployment(id)
            .map(|d| d.payload["chima"]["request"]["nonce"].clone()),
        Some(json!("nonce-now"))
    );
}

#[tokio::test]
async fn when_the_check_fails_too_nothing_is_resent_and_the_outcome_says_so() {
    let fake = fake().await;
    fake.create_then_fail(502);
    fake.script(Endpoint::ListDeployments, Reply::Status(503), u32::MAX);
    let outcome = quick(&fake)
        .create_deployment(REPO, &signed_body("topic", "nonce-2"))
        .await
        .expect("an outcome");
    let CreateOutcome::Unconfirmed { message } = &outcome else {
        panic!("expected Unconfirmed, got {outcome:?}");
    };
    assert!(
        message.contains("502") && message.contains("503"),
        "{message}"
    );
    assert_eq!(creates(&fake), 1, "not sent again while unsure");
    assert_eq!(fake.deployments(REPO).len(), 1, "GitHub did create it");
}

#[tokio::test]
async fn a_create_that_never_reached_github_is_retried_as_usual() {
    // Nothing listens: the connection is refused, so GitHub saw nothing, and the
    // create is retried like any call (it is not an unknown outcome).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let gh = token_client(&url, "ghp_unused").with_retry_policy(RetryPolicy {
        base_delay: Duration::from_millis(10),
        ..RetryPolicy::default()
    });
    let err = gh
        .create_deployment(REPO, &signed_body("topic", "n"))
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(&err, chima_github::GitHubError::Unavailable { message } if message.contains("3 times")),
        "{err:?}"
    );
}

#[tokio::test]
async fn ci_state_reads_every_page_of_statuses_and_check_runs() {
    let fake = fake().await;
    let mut statuses: Vec<FakeStatus> = (0..130)
        .map(|i| FakeStatus::new(&format!("ci/s{i:03}"), "success"))
        .collect();
    statuses[120] = FakeStatus::new("ci/late-status", "success");
    fake.set_commit_statuses(REPO, "main", statuses);
    let mut runs: Vec<FakeCheckRun> = (0..150)
        .map(|i| FakeCheckRun::new(&format!("job{i:03}"), "completed", Some("success")))
        .collect();
    runs[140] = FakeCheckRun::new("late-job", "completed", Some("failure"));
    fake.set_check_runs(REPO, "main", runs);

    let ci = quick(&fake).ci_state(REPO, "main").await.expect("ci");
    assert_eq!(ci.statuses.len(), 130);
    assert_eq!(ci.check_runs.len(), 150);
    assert!(ci.statuses.iter().any(|s| s.context == "ci/late-status"));
    assert_eq!(
        ci.state, "failure",
        "the failing check run is on page 2 and counts"
    );
    // Page 2 of each was asked for where GitHub's Link header pointed.
    let page_two: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.query_param("page").as_deref() == Some("2"))
        .map(|r| r.route.clone())
        .collect();
    assert_eq!(page_two.len(), 2, "{page_two:?}");
    assert!(
        page_two.iter().all(|r| r.starts_with("/repositories/")),
        "page 2 is where the Link header pointed, not a URL built by the client: {page_two:?}"
    );
    assert!(
        page_two.iter().any(|r| r.ends_with("/status")),
        "{page_two:?}"
    );
    assert!(
        page_two.iter().any(|r| r.ends_with("/check-runs")),
        "{page_two:?}"
    );
}

#[tokio::test]
async fn pages_are_followed_under_the_github_enterprise_prefix() {
    let fake = fake().await;
    let runs: Vec<FakeCheckRun> = (0..101)
        .map(|i| FakeCheckRun::new(&format!("job{i:03}"), "completed", Some("success")))
        .collect();
    fake.set_check_runs(REPO, "feature/x", runs);
    let gh = token_client(&fake.ghe_url(), &fake.token());
    let ci = gh.ci_state(REPO, "feature/x").await.expect("ci");
    assert_eq!(ci.check_runs.len(), 101);
    assert_eq!(ci.state, "success");
    assert!(
        fake.requests()
            .iter()
            .all(|r| r.path.starts_with("/api/v3/")),
        "a request left the prefix"
    );
}

#[tokio::test]
async fn more_pages_than_the_bound_are_never_green() {
    let fake = fake().await;
    let runs: Vec<FakeCheckRun> = (0..(MAX_PAGES * 100 + 5))
        .map(|i| FakeCheckRun::new(&format!("job{i:04}"), "completed", Some("success")))
        .collect();
    fake.set_check_runs(REPO, "main", runs);
    let ci = quick(&fake).ci_state(REPO, "main").await.expect("ci");
    assert_eq!(ci.check_runs.len(), MAX_PAGES * 100);
    assert_eq!(ci.state, "pending", "unread pages may hold a failure");
    let check_run_pages = fake
        .requests()
        .iter()
        .filter(|r| r.route.ends_with("/check-runs"))
        .count();
    assert_eq!(check_run_pages, MAX_PAGES, "bounded");
}

fn status(state: StatusState) -> StatusBody {
    StatusBody {
        state,
        log_url: None,
        environment_url: None,
        description: None,
        auto_inactive: None,
    }
}

/// The gaps between consecutive requests that match.
fn gaps(fake: &FakeGitHub, method: &str, prefix: &str) -> Vec<Duration> {
    let times: Vec<Instant> = fake
        .requests_to(method, prefix)
        .iter()
        .map(|r| r.received_at)
        .collect();
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test]
async fn concurrent_writes_go_one_at_a_time_spaced_apart() {
    let fake = fake().await;
    // The fake refuses writes closer than 250 ms with a secondary rate limit.
    fake.limit_write_rate(Duration::from_millis(250));
    let gh = client(&fake).with_write_spacing(Duration::from_millis(300));
    let id = fake.seed_deployment(REPO, "main", "production", "alice");
    let states = [
        StatusState::Queued,
        StatusState::InProgress,
        StatusState::Success,
        StatusState::Inactive,
    ];
    let posts = states.map(|state| {
        let gh = gh.clone();
        tokio::spawn(async move { gh.create_status(REPO, id, &status(state)).await })
    });
    // Reads are not held up by the writes' spacing.
    let start = Instant::now();
    gh.default_branch(REPO).await.expect("a read");
    assert!(start.elapsed() < Duration::from_millis(250));
    for post in posts {
        post.await.expect("joined").expect("posted");
    }
    assert_eq!(fake.statuses(id).len(), 4);
    let gaps = gaps(&fake, "POST", "/repos/acme/web/deployments/");
    assert_eq!(gaps.len(), 3, "no write was refused and resent");
    for gap in gaps {
        assert!(gap >= Duration::from_millis(300), "{gap:?}");
    }
}

#[tokio::test]
async fn by_default_writes_are_a_second_apart() {
    let fake = fake().await;
    let gh = client(&fake);
    let id = fake.seed_deployment(REPO, "main", "production", "alice");
    gh.create_status(REPO, id, &status(StatusState::InProgress))
        .await
        .expect("first");
    gh.create_status(REPO, id, &status(StatusState::Success))
        .await
        .expect("second");
    let gaps = gaps(&fake, "POST", "/repos/acme/web/deployments/");
    assert_eq!(gaps.len(), 1);
    assert!(gaps[0] >= Duration::from_secs(1), "{:?}", gaps[0]);
}

#[tokio::test]
async fn a_secondary_rate_limit_on_a_status_is_waited_out_and_the_status_posted() {
    let fake = fake().await;
    let id = fake.seed_deployment(REPO, "main", "production", "alice");
    fake.script(
        Endpoint::CreateStatus,
        Reply::SecondaryRateLimit {
            retry_after_secs: 2,
        },
        1,
    );
    quick(&fake)
        .create_status(REPO, id, &status(StatusState::Success))
        .await
        .expect("posted after the wait");
    assert_eq!(fake.status_states(id), ["success"]);
    let gaps = gaps(&fake, "POST", "/repos/acme/web/deployments/");
    assert_eq!(gaps.len(), 1, "refused once, sent again once");
    assert!(gaps[0] >= Duration::from_secs(2), "{:?}", gaps[0]);
}

#[tokio::test]
async fn a_secondary_rate_limit_on_a_read_is_waited_out() {
    let fake = fake().await;
    fake.set_check_runs(
        REPO,
        "main",
        vec![FakeCheckRun::new("test", "completed", Some("failure"))],
    );
    fake.script(
        Endpoint::CheckRuns,
        Reply::SecondaryRateLimit {
            retry_after_secs: 1,
        },
        1,
    );
    let start = Instant::now();
    let ci = quick(&fake).ci_state(REPO, "main").await.expect("ci");
    assert!(start.elapsed() >= Duration::from_secs(1));
    assert_eq!(ci.state, "failure");
}

#[tokio::test]
async fn required_contexts_count_check_runs_as_github_does() {
    let fake = fake().await;
    fake.set_commit_statuses(REPO, "topic", vec![FakeStatus::new("ci/build", "success")]);
    fake.set_check_runs(
        REPO,
        "topic",
        vec![FakeCheckRun::new("test", "completed", Some("failure"))],
    );
    let gh = quick(&fake);
    let mut b = body("topic");
    b.required_contexts = Some(vec!["ci/build".into(), "test".into()]);
    match gh.create_deployment(REPO, &b).await.expect("409") {
        CreateOutcome::FailingContexts { contexts, .. } => {
            let named: Vec<(&str, &str)> = contexts
                .iter()
                .map(|c| (c.context.as_str(), c.state.as_str()))
                .collect();
            assert_eq!(named, [("test", "failure")]);
        }
        other => panic!("expected FailingContexts, got {other:?}"),
    }
    // All contexts (none listed) include the check run too.
    assert!(matches!(
        gh.create_deployment(REPO, &body("topic")).await,
        Ok(CreateOutcome::FailingContexts { .. })
    ));
    // Only the green one required: created.
    b.required_contexts = Some(vec!["ci/build".into()]);
    assert!(matches!(
        gh.create_deployment(REPO, &b).await,
        Ok(CreateOutcome::Created { .. })
    ));
    assert_eq!(fake.deployments(REPO).len(), 1);
}
