//! The whole GitHub path: the fake GitHub sends a `deployment` webhook, the
//! real faseng runs it from a local git repository, and the fake receives the
//! statuses, whose `log_url` serves the log.

use std::time::Duration;

use chima_store::DeploymentState;
use chima_testkit::github::{FakeGitHub, deployment_event, send_webhook};
use serde_json::{Value, json};

use crate::harness::{Faseng, SECRET, get, repo};

async fn statuses_until(gh: &FakeGitHub, id: i64, last: &str) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let states = gh.status_states(id);
        if states.last().map(String::as_str) == Some(last) {
            return states;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "statuses so far: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Returns the fake, faseng, the GitHub deployment id and faseng's own id.
async fn deploy_via_webhook(script: &str, payload: Value) -> (FakeGitHub, Faseng, i64, i64) {
    deploy_via_webhook_with(script, payload, &[]).await
}

/// [`deploy_via_webhook`] with faseng started with `env`.
async fn deploy_via_webhook_with(
    script: &str,
    payload: Value,
    env: &[(&str, &str)],
) -> (FakeGitHub, Faseng, i64, i64) {
    let gh = FakeGitHub::start().await;
    gh.add_repo("example/app", "main");
    let apps = r#"{"app": {"provider": "shell", "repository": "example/app", "environments": ["production", "staging"]}}"#;
    let f = Faseng::start_with(apps, Some((&gh.url, &gh.token())), env).await;
    let (path, sha) = repo(f.dir.path(), script);
    let github_id = gh.seed_deployment("example/app", "main", "staging", "octocat");
    let body = deployment_event(
        "example/app",
        &path.to_string_lossy(),
        github_id,
        &sha,
        "main",
        "staging",
        "deploy",
        payload,
    );
    let t0 = tokio::time::Instant::now();
    let (status, text) = send_webhook(
        &format!("{}/webhooks/github", f.url),
        "deployment",
        &format!("delivery-{github_id}"),
        SECRET.as_bytes(),
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "the webhook answer waited for the deploy"
    );
    let d = f.store.find_by_github_id(github_id).await.unwrap().unwrap();
    (gh, f, github_id, d.id)
}

#[tokio::test]
async fn a_deployment_webhook_runs_and_reports_success_with_a_log_link() {
    let (gh, f, gid, id) =
        deploy_via_webhook("#!/bin/sh\necho shipping $DEPLOY_SHA\n", json!({})).await;
    let states = statuses_until(&gh, gid, "success").await;
    assert!(states.contains(&"in_progress".to_string()), "{states:?}");
    assert_eq!(states.last().map(String::as_str), Some("success"));
    let statuses = gh.statuses(gid);
    let in_progress = statuses.iter().find(|s| s.state == "in_progress").unwrap();
    let log_url = in_progress
        .log_url
        .clone()
        .expect("in_progress carries log_url");
    let (code, page) = get(&log_url).await;
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("shipping "), "{page}");
    assert!(page.contains("succeeded"), "{page}");
    // The page says what the checkout took (issue 17: each phase timed and shown).
    let timed = page
        .split("checked out ")
        .nth(1)
        .and_then(|rest| rest.split_once(" in "))
        .and_then(|(_, took)| took.split_once(" s ("))
        .is_some_and(|(secs, _)| secs.parse::<f64>().is_ok());
    assert!(timed, "no `checked out <sha> in <n> s` on the page: {page}");
    let (_, metrics) = get(&format!("{}/metrics", f.url)).await;
    let count = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}_count ")))
            .and_then(|n| n.trim().parse::<u64>().ok())
    };
    assert!(
        count("faseng_status_seconds").is_some_and(|n| n >= 1),
        "{metrics}"
    );
    // Without the signature the page is not served.
    let bare = log_url.split('?').next().unwrap();
    assert_eq!(get(bare).await.0, 403);
    assert_eq!(f.wait_done(id).await.state, DeploymentState::Succeeded);
}

#[tokio::test]
async fn a_failing_script_reports_failure() {
    let (gh, f, gid, id) = deploy_via_webhook("#!/bin/sh\necho no >&2\nexit 9\n", json!({})).await;
    let states = statuses_until(&gh, gid, "failure").await;
    assert!(states.contains(&"in_progress".to_string()), "{states:?}");
    let last = gh.statuses(gid).pop().unwrap();
    // The reason quotes the script's last stderr line.
    assert_eq!(last.description.as_deref(), Some("exited with code 9: no"));
    assert_eq!(f.wait_done(id).await.exit_code, Some(9));
}

#[tokio::test]
async fn string_payloads_run_as_github_and_unknown_repositories_get_an_error_status() {
    // A string payload: hubot-deploy's encrypted mode.
    // A string payload (hubot-deploy's encrypted mode) asks for nothing: faseng's own
    // app.json says what runs, and the deployment counts as its GitHub creator.
    let (gh, f, gid, id) = deploy_via_webhook("#!/bin/sh\necho ran\n", json!("c2VjcmV0")).await;
    statuses_until(&gh, gid, "success").await;
    let d = f.wait_done(id).await;
    assert_eq!(d.state, DeploymentState::Succeeded);
    assert_eq!(
        d.requester,
        format!("github:{}", chima_testkit::github::TOKEN_LOGIN)
    );
    assert_eq!(d.payload["_sent"], json!("c2VjcmV0"), "kept for the record");

    // A repository faseng's app.json does not know, with no payload.config.
    let hook = format!("{}/webhooks/github", f.url);
    gh.add_repo("someone/else", "main");
    let other = gh.seed_deployment("someone/else", "main", "production", "octocat");
    let body = deployment_event(
        "someone/else",
        "/nowhere",
        other,
        "0123456789abcdef0123456789abcdef01234567",
        "main",
        "production",
        "deploy",
        json!({}),
    );
    let (status, _) = send_webhook(
        &hook,
        "deployment",
        "d-other",
        SECRET.as_bytes(),
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 201);
    statuses_until(&gh, other, "error").await;
    let last = gh.statuses(other).pop().unwrap();
    assert!(
        last.description
            .unwrap_or_default()
            .contains("faseng has no app for someone/else")
    );
}

#[tokio::test]
async fn a_deployment_made_by_hubot_deploy_runs_unchanged() {
    // The payload hubot-deploy sends: name, robotName, hosts, notify, config.
    let payload = json!({
        "name": "app",
        "robotName": "hubot",
        "hosts": "",
        "notify": {"adapter": "slack", "room": "", "user": "U123", "user_name": "atmos", "thread_ts": null},
        "config": {"provider": "shell", "repository": "example/app", "environments": ["staging"], "required_contexts": [], "allowed_rooms": ["ops"], "some_hubot_field": true}
    });
    let (gh, f, gid, id) = deploy_via_webhook("#!/bin/sh\necho by hubot\n", payload).await;
    statuses_until(&gh, gid, "success").await;
    let d = f.wait_done(id).await;
    // Unsigned: the name in payload.notify is display text; GitHub's creator asked.
    assert_eq!(
        d.requester,
        format!("github:{}", chima_testkit::github::TOKEN_LOGIN)
    );
    assert_eq!(d.app, "app");
    let log = f.store.read_logs(id, 0, 100).await.unwrap();
    assert!(
        log.iter()
            .any(|l| l.line.contains("payload.config was ignored")),
        "{log:?}"
    );
}

/// Deploys a script that reports its own priority, its parent's (the guard,
/// `faseng-guard`, the small binary beside faseng's, started by a worker) and
/// faseng's main thread's (the web tier's), with `env` set for faseng; the log's lines.
async fn priorities_seen(env: &[(&str, &str)]) -> Vec<String> {
    let script = "#!/bin/sh\n\
        echo \"provider niceness $(nice) io $(ionice -p $$)\"\n\
        echo \"parent $(tr '\\0' ' ' < /proc/$PPID/cmdline)\"\n\
        echo \"parent niceness $(cut -d' ' -f19 /proc/$PPID/stat)\"\n\
        faseng=$(cut -d' ' -f4 /proc/$PPID/stat)\n\
        echo \"faseng $(tr '\\0' ' ' < /proc/$faseng/cmdline)\"\n\
        echo \"faseng niceness $(cut -d' ' -f19 /proc/$faseng/stat)\"\n";
    let (_gh, f, _, id) = deploy_via_webhook_with(script, json!({}), env).await;
    let done = f.wait_done(id).await;
    assert_eq!(done.state, DeploymentState::Succeeded, "{:?}", done.reason);
    f.store
        .read_logs(id, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.line)
        .collect()
}

/// The niceness of a process this test starts: the test's own.
fn own_niceness() -> i32 {
    let own = std::process::Command::new("nice").output().unwrap();
    String::from_utf8_lossy(&own.stdout).trim().parse().unwrap()
}

#[tokio::test]
async fn the_provider_runs_below_the_workers_and_they_below_the_web_tier() {
    let log = priorities_seen(&[
        ("FASENG_PROVIDER_NICE", "15"),
        ("FASENG_PROVIDER_IO", "idle"),
        ("FASENG_WORKER_NICE", "3"),
    ])
    .await;
    let own = own_niceness();
    assert!(
        log.contains(&format!("provider niceness {} io idle", own.max(15))),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.starts_with("parent ") && l.contains("/faseng-guard --status ")),
        "the provider runs under the guard's own binary: {log:#?}"
    );
    // The guard keeps the worker's priority, above the provider's, so that it stops
    // the provider on time on a busy machine.
    assert!(
        log.contains(&format!("parent niceness {}", own.max(3))),
        "the guard runs at the workers' niceness: {log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.starts_with("faseng ") && !l.contains("guard")),
        "the guard's parent is faseng: {log:#?}"
    );
    assert!(
        log.contains(&format!("faseng niceness {own}")),
        "faseng's web tier keeps its priority: {log:#?}"
    );
}

#[tokio::test]
async fn the_workers_never_run_below_their_providers() {
    let log = priorities_seen(&[("FASENG_PROVIDER_NICE", "7"), ("FASENG_WORKER_NICE", "12")]).await;
    let own = own_niceness();
    assert!(
        log.iter()
            .any(|l| l.starts_with(&format!("provider niceness {} ", own.max(7)))),
        "{log:#?}"
    );
    assert!(
        log.contains(&format!("parent niceness {}", own.max(7))),
        "the guard (a worker's) is capped at the providers' niceness: {log:#?}"
    );
}

#[test]
fn a_priority_out_of_range_stops_faseng_with_what_is_allowed() {
    for (name, value, says) in [
        ("FASENG_PROVIDER_NICE", "20", "0 (unchanged) to 19"),
        ("FASENG_PROVIDER_NICE", "-5", "0 (unchanged) to 19"),
        ("FASENG_WORKER_NICE", "20", "0 (unchanged) to 19"),
        (
            "FASENG_PROVIDER_IO",
            "realtime:0",
            "best-effort:0 to best-effort:7",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_faseng"))
            .arg("migrate")
            .env(name, value)
            .env("DATABASE_URL", "sqlite::memory:")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{name}={value}: {err}");
    }
}
