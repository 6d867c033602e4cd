//! faseng against a fake GitHub that pages CI results, rate limits writes and sends
//! `status` events with GitHub's ten-branch cap: auto-deploy reads every page, takes
//! the event's branches as a hint, and the status sender spaces its writes and waits
//! out a secondary rate limit.

use std::time::{Duration, Instant};

use chima_testkit::github::{
    Endpoint, FakeCheckRun, FakeGitHub, FakeStatus, Reply, deployment_event, send_webhook,
};
use serde_json::{Value, json};

use crate::harness::{Faseng, SECRET, repo};

/// Auto-deploy to staging when every reported context of main's head is green.
const APPS: &str = r#"{"app": {"provider": "shell", "repository": "example/app",
    "environments": ["staging", "production"],
    "auto_deploy": {"staging": {"ref": "main"}}}}"#;

const SHA: &str = "abcdefabcdefabcdefabcdefabcdefabcdef0001";

fn status_event(sha: &str, branches: &[&str]) -> Value {
    json!({
        "id": 1, "sha": sha, "name": "example/app", "target_url": null,
        "context": "ci/build", "description": null, "state": "success",
        "branches": branches.iter().map(|b| json!({"name": b, "commit": {"sha": sha}})).collect::<Vec<_>>(),
        "repository": {"full_name": "example/app", "name": "app"},
        "sender": {"login": "ci"}
    })
}

async fn send(f: &Faseng, event: &str, delivery: &str, body: &Value) {
    let (status, text) = send_webhook(
        &format!("{}/webhooks/github", f.url),
        event,
        delivery,
        SECRET.as_bytes(),
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 202, "{text}");
}

async fn until(what: &str, limit: Duration, mut check: impl FnMut() -> bool, f: &Faseng) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            f.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `n` green check runs, then the ones given.
fn runs(n: usize, then: Vec<FakeCheckRun>) -> Vec<FakeCheckRun> {
    let mut runs: Vec<FakeCheckRun> = (0..n)
        .map(|i| FakeCheckRun::new(&format!("job-{i:03}"), "completed", Some("success")))
        .collect();
    runs.extend(then);
    runs
}

async fn start() -> (FakeGitHub, Faseng) {
    let gh = FakeGitHub::start().await;
    gh.add_repo("example/app", "main");
    let f = Faseng::start(APPS, Some((&gh.url, &gh.token()))).await;
    gh.set_ref("example/app", "main", SHA);
    gh.set_commit_statuses(
        "example/app",
        "main",
        vec![FakeStatus::new("ci/build", "success")],
    );
    (gh, f)
}

#[tokio::test]
async fn a_failing_check_run_on_page_2_blocks_auto_deploy() {
    let (gh, f) = start().await;
    // 100 green check runs fill GitHub's largest page; the red one is on page 2.
    gh.set_check_runs(
        "example/app",
        "main",
        runs(
            100,
            vec![FakeCheckRun::new(
                "lint-on-page-2",
                "completed",
                Some("failure"),
            )],
        ),
    );
    send(&f, "status", "red-1", &status_event(SHA, &["main"])).await;
    // faseng read page 2 of the check runs...
    until(
        "page 2 of the check runs",
        Duration::from_secs(30),
        || {
            gh.requests().iter().any(|r| {
                r.route.ends_with("/check-runs") && r.query_param("page").as_deref() == Some("2")
            })
        },
        &f,
    )
    .await;
    // ...and created nothing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        gh.deployments("example/app").is_empty(),
        "auto-deployed past a failing check run: {:#?}",
        gh.deployments("example/app")
    );

    // Once it is green too, the same commit deploys.
    gh.set_check_runs(
        "example/app",
        "main",
        runs(
            100,
            vec![FakeCheckRun::new(
                "lint-on-page-2",
                "completed",
                Some("success"),
            )],
        ),
    );
    send(&f, "status", "green-1", &status_event(SHA, &["main"])).await;
    until(
        "the auto-deploy",
        Duration::from_secs(30),
        || !gh.deployments("example/app").is_empty(),
        &f,
    )
    .await;
    let d = gh.deployments("example/app");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].sha, SHA);
    assert_eq!(d[0].environment, "staging");
}

#[tokio::test]
async fn a_full_list_of_ten_branches_is_a_hint_and_github_says_what_the_head_is() {
    let (gh, f) = start().await;
    gh.set_check_runs("example/app", "main", runs(3, vec![]));
    // Fewer than ten branches, main not among them: GitHub listed them all.
    send(
        &f,
        "status",
        "three",
        &status_event(SHA, &["feature-a", "feature-b", "release"]),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(gh.deployments("example/app").is_empty());
    // Ten branches, the cap: main may be one GitHub left out. SHA is main's head.
    let ten: Vec<String> = (0..10).map(|i| format!("feature-{i}")).collect();
    let ten: Vec<&str> = ten.iter().map(String::as_str).collect();
    send(&f, "status", "ten", &status_event(SHA, &ten)).await;
    until(
        "the auto-deploy",
        Duration::from_secs(30),
        || !gh.deployments("example/app").is_empty(),
        &f,
    )
    .await;
    let d = gh.deployments("example/app");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].sha, SHA);
}

#[tokio::test]
async fn status_writes_are_spaced_and_a_secondary_rate_limit_is_waited_out() {
    let gh = FakeGitHub::start().await;
    gh.add_repo("example/app", "main");
    // Writes closer than GitHub's one second would be refused, as GitHub may.
    gh.limit_write_rate(Duration::from_millis(950));
    let apps = r#"{"app": {"provider": "shell", "repository": "example/app", "environments": ["staging"]}}"#;
    let f = Faseng::start(apps, Some((&gh.url, &gh.token()))).await;
    let (path, sha) = repo(f.dir.path(), "#!/bin/sh\necho shipped\n");
    let gid = gh.seed_deployment("example/app", "main", "staging", "octocat");
    // The first status meets a secondary rate limit.
    gh.script(
        Endpoint::CreateStatus,
        Reply::SecondaryRateLimit {
            retry_after_secs: 2,
        },
        1,
    );
    let body = deployment_event(
        "example/app",
        &path.to_string_lossy(),
        gid,
        &sha,
        "main",
        "staging",
        "deploy",
        json!({}),
    );
    let (status, text) = send_webhook(
        &format!("{}/webhooks/github", f.url),
        "deployment",
        "spaced-1",
        SECRET.as_bytes(),
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    until(
        "the success status",
        Duration::from_secs(60),
        || gh.status_states(gid).last().map(String::as_str) == Some("success"),
        &f,
    )
    .await;
    assert_eq!(gh.status_states(gid), ["queued", "in_progress", "success"]);
    let posts: Vec<Instant> = gh
        .requests_to(
            "POST",
            &format!("/repos/example/app/deployments/{gid}/statuses"),
        )
        .iter()
        .map(|r| r.received_at)
        .collect();
    // The refused one, then each status once: no write was refused for coming too soon.
    assert_eq!(posts.len(), 4, "{}", f.log());
    let gaps: Vec<Duration> = posts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[0] >= Duration::from_secs(2), "Retry-After: {gaps:?}");
    for gap in &gaps {
        assert!(*gap >= Duration::from_secs(1), "writes 1 s apart: {gaps:?}");
    }
}
