//! Creating and listing deployments: every answer GitHub gives to its own variant,
//! retries, rate limits, GitHub Enterprise.

use std::time::{Duration, Instant};

use chima_github::{CreateOutcome, GitHubError, RetryPolicy};
use chima_testkit::github::{Endpoint, FakeGitHub, FakeStatus, Reply, TOKEN};
use serde_json::json;

use crate::harness::{REPO, body, client, fake, quick_client, token_client};

#[tokio::test]
async fn a_created_deployment_returns_its_id_and_sends_the_body_as_is() {
    let fake = fake().await;
    let gh = client(&fake);
    let outcome = gh
        .create_deployment(REPO, &body("topic"))
        .await
        .expect("created");
    let CreateOutcome::Created { id, sha, url } = outcome else {
        panic!("expected Created, got {outcome:?}");
    };
    assert_eq!(id, 1000);
    assert_eq!(sha, fake.sha_of(REPO, "topic"));
    assert_eq!(url, format!("{}/repos/{REPO}/deployments/1000", fake.url));

    let sent = fake.requests_to("POST", "/repos/acme/web/deployments");
    assert_eq!(sent.len(), 1);
    let request = &sent[0];
    assert_eq!(
        request.json.as_ref().expect("a JSON body"),
        &json!({
            "ref": "topic",
            "task": "deploy",
            "auto_merge": true,
            "environment": "production",
            "description": "alice deploying web/topic to production",
            "production_environment": true,
            "payload": body("topic").payload,
        }),
        "required_contexts and transient_environment are left out when unset"
    );
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.header("accept"),
        Some("application/vnd.github+json")
    );
    assert_eq!(request.header("x-github-api-version"), Some("2022-11-28"));
    assert!(request.header("user-agent").is_some());
    assert_eq!(fake.deployments(REPO).len(), 1);
}

#[tokio::test]
async fn empty_required_contexts_are_sent_as_an_empty_list() {
    let fake = fake().await;
    // A failing context would make GitHub (and the fake) refuse the deployment...
    fake.set_commit_statuses(REPO, "topic", vec![FakeStatus::new("ci/build", "failure")]);
    let gh = client(&fake);
    let mut forced = body("topic");
    forced.auto_merge = false;
    forced.required_contexts = Some(vec![]);
    forced.transient_environment = Some(true);
    // ...but a forced deploy lists none, which skips the check.
    let outcome = gh.create_deployment(REPO, &forced).await.expect("created");
    assert!(
        matches!(outcome, CreateOutcome::Created { .. }),
        "{outcome:?}"
    );
    let sent = fake.requests_to("POST", "/repos/acme/web/deployments");
    let json = sent[0].json.clone().expect("json");
    assert_eq!(json["required_contexts"], json!([]));
    assert_eq!(json["auto_merge"], json!(false));
    assert_eq!(json["transient_environment"], json!(true));
}

#[tokio::test]
async fn failing_required_contexts_are_named() {
    let fake = fake().await;
    fake.set_commit_statuses(
        REPO,
        "topic",
        vec![
            FakeStatus::new("ci/build", "failure"),
            FakeStatus::new("ci/lint", "success"),
            FakeStatus::new("ci/test", "pending"),
        ],
    );
    let outcome = client(&fake)
        .create_deployment(REPO, &body("topic"))
        .await
        .expect("a 409 is an outcome, not an error");
    let CreateOutcome::FailingContexts { message, contexts } = outcome else {
        panic!("expected FailingContexts, got {outcome:?}");
    };
    assert!(message.contains("Commit status checks failed"), "{message}");
    let named: Vec<(&str, &str)> = contexts
        .iter()
        .map(|c| (c.context.as_str(), c.state.as_str()))
        .collect();
    assert_eq!(named, [("ci/build", "failure"), ("ci/test", "pending")]);
    assert!(fake.deployments(REPO).is_empty());
}

#[tokio::test]
async fn scripted_conflicts_and_auto_merge_map_to_their_variants() {
    let fake = fake().await;
    let gh = client(&fake);

    fake.next_create(Reply::AutoMerged);
    let outcome = gh
        .create_deployment(REPO, &body("topic"))
        .await
        .expect("202");
    assert_eq!(
        outcome,
        CreateOutcome::AutoMerged {
            message: "Auto-merged master into topic-branch on deploy.".to_string()
        }
    );

    fake.next_create(Reply::FailingContexts(vec![(
        "ci/build".to_string(),
        "failure".to_string(),
    )]));
    match gh
        .create_deployment(REPO, &body("topic"))
        .await
        .expect("409")
    {
        CreateOutcome::FailingContexts { contexts, .. } => {
            assert_eq!(contexts.len(), 1);
            assert_eq!(contexts[0].context, "ci/build");
            assert_eq!(contexts[0].state, "failure");
        }
        other => panic!("expected FailingContexts, got {other:?}"),
    }

    fake.next_create(Reply::MergeConflict);
    assert_eq!(
        gh.create_deployment(REPO, &body("topic"))
            .await
            .expect("409"),
        CreateOutcome::MergeConflict {
            message: "Conflict merging master into topic-branch.".to_string()
        }
    );
    assert!(
        fake.deployments(REPO).is_empty(),
        "none of these creates a deployment"
    );
    // None of these is retried.
    assert_eq!(
        fake.requests_to("POST", "/repos/acme/web/deployments")
            .len(),
        3
    );
}

#[tokio::test]
async fn refusals_map_to_errors_that_say_what_to_fix() {
    let fake = fake().await;
    let gh = quick_client(&fake);

    fake.next_create(Reply::Unauthorized);
    let err = gh
        .create_deployment(REPO, &body("t"))
        .await
        .expect_err("401");
    let GitHubError::Unauthorized { message } = &err else {
        panic!("expected Unauthorized, got {err:?}");
    };
    assert!(message.contains("GITHUB_TOKEN"), "{message}");
    assert!(message.contains("Bad credentials"), "{message}");

    fake.next_create(Reply::Forbidden);
    let err = gh
        .create_deployment(REPO, &body("t"))
        .await
        .expect_err("403");
    let GitHubError::Forbidden { message } = &err else {
        panic!("expected Forbidden, got {err:?}");
    };
    assert!(message.contains("repo_deployment"), "{message}");
    assert!(message.contains("Deployments: write"), "{message}");
    assert!(
        message.contains("deployments=write"),
        "GitHub's hint header: {message}"
    );

    let err = gh
        .create_deployment("acme/nope", &body("t"))
        .await
        .expect_err("404");
    let GitHubError::NotFound { what } = &err else {
        panic!("expected NotFound, got {err:?}");
    };
    assert!(what.contains("acme/nope"), "{what}");
    assert!(
        what.contains("does not exist") && what.contains("cannot see"),
        "{what}"
    );
    assert!(what.contains("`repo` scope"), "{what}");

    fake.script(Endpoint::CreateDeployment, Reply::Status(422), 1);
    let err = gh
        .create_deployment(REPO, &body("t"))
        .await
        .expect_err("422");
    assert!(
        matches!(&err, GitHubError::Rejected { status: 422, message } if message.contains("Validation Failed")),
        "{err:?}"
    );

    let err = gh
        .create_deployment("not a repo", &body("t"))
        .await
        .expect_err("invalid");
    assert!(matches!(err, GitHubError::Invalid { .. }), "{err:?}");

    // 4xx are never retried.
    assert_eq!(
        fake.requests_to("POST", "/repos/acme/web/deployments")
            .len(),
        3
    );
}

/// A create is not idempotent: after a 5xx nothing is resent until GitHub's list of
/// the ref's deployments shows that none came of it; then it is sent once more.
#[tokio::test]
async fn a_server_error_before_creation_is_checked_then_tried_once_more() {
    let fake = fake().await;
    fake.script(Endpoint::CreateDeployment, Reply::Status(502), 1);
    let gh = client(&fake);
    let outcome = gh
        .create_deployment(REPO, &body("topic"))
        .await
        .expect("second try");
    let CreateOutcome::Created { id, .. } = outcome else {
        panic!("expected Created, got {outcome:?}");
    };
    let requests: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.route.starts_with("/repos/acme/web/deployments"))
        .map(|r| r.method.clone())
        .collect();
    assert_eq!(requests, ["POST", "GET", "POST"], "create, check, create");
    let deployments = fake.deployments(REPO);
    assert_eq!(deployments.len(), 1, "exactly one deployment");
    assert_eq!(deployments[0].id, id);
}

#[tokio::test]
async fn server_errors_twice_with_nothing_created_say_so_and_stop() {
    let fake = fake().await;
    fake.script(Endpoint::CreateDeployment, Reply::Status(500), u32::MAX);
    let outcome = quick_client(&fake)
        .create_deployment(REPO, &body("topic"))
        .await
        .expect("an outcome: GitHub said what it did");
    let CreateOutcome::NotCreated { message } = &outcome else {
        panic!("expected NotCreated, got {outcome:?}");
    };
    assert!(
        message.contains("500") && message.contains("lists no deployment"),
        "{message}"
    );
    assert_eq!(
        fake.requests_to("POST", "/repos/acme/web/deployments")
            .len(),
        2,
        "at most once more"
    );
    assert!(fake.deployments(REPO).is_empty());
}

#[tokio::test]
async fn an_unreachable_github_is_unavailable() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let gh = token_client(&url, TOKEN).with_retry_policy(RetryPolicy {
        base_delay: Duration::from_millis(10),
        ..RetryPolicy::default()
    });
    let err = gh.default_branch(REPO).await.expect_err("nothing listens");
    let GitHubError::Unavailable { message } = &err else {
        panic!("expected Unavailable, got {err:?}");
    };
    assert!(message.contains("3 times"), "{message}");
    assert!(!message.contains(TOKEN), "{message}");
}

#[tokio::test]
async fn a_primary_rate_limit_is_waited_out() {
    let fake = fake().await;
    fake.script(
        Endpoint::CreateDeployment,
        Reply::RateLimited { reset_in_secs: 1 },
        1,
    );
    let start = Instant::now();
    let outcome = client(&fake)
        .create_deployment(REPO, &body("topic"))
        .await
        .expect("after the reset");
    assert!(
        matches!(outcome, CreateOutcome::Created { .. }),
        "{outcome:?}"
    );
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        fake.requests_to("POST", "/repos/acme/web/deployments")
            .len(),
        2
    );
}

#[tokio::test]
async fn retry_after_is_honoured_on_429_and_secondary_limits() {
    let fake = fake().await;
    let gh = client(&fake);
    fake.script(
        Endpoint::CreateDeployment,
        Reply::TooManyRequests {
            retry_after_secs: 1,
        },
        1,
    );
    let start = Instant::now();
    gh.create_deployment(REPO, &body("a"))
        .await
        .expect("after 429");
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );

    fake.script(
        Endpoint::GetRepo,
        Reply::SecondaryRateLimit {
            retry_after_secs: 1,
        },
        1,
    );
    let start = Instant::now();
    assert_eq!(gh.default_branch(REPO).await.expect("after 403"), "main");
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(fake.requests_to("GET", "/repos/acme/web").len(), 2);
}

#[tokio::test]
async fn a_long_rate_limit_fails_at_once_instead_of_hanging() {
    let fake = fake().await;
    fake.script(
        Endpoint::CreateDeployment,
        Reply::RateLimited {
            reset_in_secs: 3600,
        },
        1,
    );
    let start = Instant::now();
    let err = client(&fake)
        .create_deployment(REPO, &body("topic"))
        .await
        .expect_err("limited for an hour");
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "{:?}",
        start.elapsed()
    );
    let GitHubError::Unavailable { message } = &err else {
        panic!("expected Unavailable, got {err:?}");
    };
    assert!(message.contains("rate limit"), "{message}");
    assert!(message.contains("GITHUB_TOKEN"), "{message}");
    assert_eq!(
        fake.requests_to("POST", "/repos/acme/web/deployments")
            .len(),
        1
    );
}

#[tokio::test]
async fn no_error_text_contains_the_token() {
    let fake = fake().await;
    let gh = quick_client(&fake);
    let mut errors = Vec::new();

    for reply in [
        Reply::Unauthorized,
        Reply::Forbidden,
        Reply::NotFound,
        Reply::Status(422),
        Reply::RateLimited {
            reset_in_secs: 3600,
        },
    ] {
        fake.script(Endpoint::CreateDeployment, reply, 1);
        errors.push(
            gh.create_deployment(REPO, &body("t"))
                .await
                .expect_err("scripted refusal"),
        );
    }
    // Two 503s: an outcome whose message must not hold the token either.
    fake.script(Endpoint::CreateDeployment, Reply::Status(503), 2);
    let outcome = gh
        .create_deployment(REPO, &body("t"))
        .await
        .expect("not created");
    assert!(
        matches!(&outcome, CreateOutcome::NotCreated { message } if !message.contains("ghp_")),
        "{outcome:?}"
    );
    errors.push(GitHubError::Unavailable {
        message: format!("{outcome:?}"),
    });
    // A real 401: the fake no longer accepts this token.
    fake.set_token("ghp_another");
    errors.push(gh.default_branch(REPO).await.expect_err("bad credentials"));
    assert_eq!(errors.len(), 7);
    for err in &errors {
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains(TOKEN), "{text}");
            assert!(!text.contains("ghp_"), "{text}");
        }
    }
    assert!(!format!("{gh:?}").contains(TOKEN));
}

#[tokio::test]
async fn github_enterprise_paths_keep_the_api_v3_prefix() {
    let fake = fake().await;
    let gh = token_client(&fake.ghe_url(), &fake.token());
    let outcome = gh
        .create_deployment(REPO, &body("topic"))
        .await
        .expect("created");
    let CreateOutcome::Created { url, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(
        url,
        format!("{}/api/v3/repos/{REPO}/deployments/1000", fake.url)
    );
    assert_eq!(gh.default_branch(REPO).await.expect("repo"), "main");
    let listed = gh.list_deployments(REPO, None, 5).await.expect("list");
    assert_eq!(listed.len(), 1);
    let tarball = gh.tarball_url(REPO, "abc123").await.expect("tarball");
    assert!(tarball.starts_with(&fake.url), "{tarball}");
    for request in fake.requests() {
        assert!(
            request.path.starts_with("/api/v3/"),
            "{} {} left the prefix",
            request.method,
            request.path
        );
    }
}

#[tokio::test]
async fn deployments_are_listed_newest_first_with_their_latest_state() {
    let fake = fake().await;
    let old = fake.seed_deployment(REPO, "v1", "production", "alice");
    fake.seed_status(old, "in_progress");
    fake.seed_status(old, "success");
    let staging = fake.seed_deployment(REPO, "topic", "staging", "bob");
    fake.seed_status(staging, "failure");
    let new = fake.seed_deployment(REPO, "v2", "production", "carol");

    let gh = client(&fake);
    let all = gh.list_deployments(REPO, None, 10).await.expect("list");
    let ids: Vec<i64> = all.iter().map(|d| d.id).collect();
    assert_eq!(ids, [new, staging, old]);
    assert_eq!(all[0].state, None, "no status yet");
    assert_eq!(all[1].state.as_deref(), Some("failure"));
    assert_eq!(all[2].state.as_deref(), Some("success"), "the latest one");
    assert_eq!(all[2].creator, "alice");
    assert_eq!(all[2].git_ref, "v1");
    assert_eq!(all[2].sha, fake.sha_of(REPO, "v1"));
    assert_eq!(all[2].task, "deploy");
    assert_eq!(all[2].environment, "production");
    assert!(
        all[2]
            .description
            .as_deref()
            .unwrap_or_default()
            .contains("alice")
    );
    assert!(all[0].created_at >= all[2].created_at);

    let production = gh
        .list_deployments(REPO, Some("production"), 1)
        .await
        .expect("list");
    assert_eq!(production.len(), 1);
    assert_eq!(production[0].id, new);
    let request = fake
        .requests_to("GET", "/repos/acme/web/deployments")
        .into_iter()
        .find(|r| {
            r.route == "/repos/acme/web/deployments" && r.query_param("environment").is_some()
        })
        .expect("filtered list");
    assert_eq!(
        request.query_param("environment").as_deref(),
        Some("production")
    );
    assert_eq!(request.query_param("per_page").as_deref(), Some("1"));

    assert!(
        gh.list_deployments(REPO, None, 0)
            .await
            .expect("empty")
            .is_empty()
    );
}

#[tokio::test]
async fn many_deployments_list_in_order() {
    let fake = FakeGitHub::start().await;
    fake.add_repo(REPO, "main");
    let ids: Vec<i64> = (0..20)
        .map(|i| fake.seed_deployment(REPO, &format!("r{i}"), "production", "alice"))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        if i % 2 == 0 {
            fake.seed_status(*id, "success");
        }
    }
    let listed = client(&fake)
        .list_deployments(REPO, None, 20)
        .await
        .expect("list");
    let got: Vec<i64> = listed.iter().map(|d| d.id).collect();
    let mut want = ids.clone();
    want.reverse();
    assert_eq!(got, want);
    for d in &listed {
        let i = ids.iter().position(|id| *id == d.id).expect("known id");
        let expected = (i % 2 == 0).then(|| "success".to_string());
        assert_eq!(d.state, expected, "deployment {}", d.id);
    }
}
