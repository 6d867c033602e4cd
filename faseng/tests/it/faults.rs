//! Faults that fit CI: faseng killed with SIGKILL mid-deploy, GitHub and
//! Slack outages (5 s here; `chima-bench notify-outage` runs the 30 s one),
//! and webhook redeliveries. The PostgreSQL outage drill stops a server, so
//! it is not here: `bench/faults` runs it on a private cluster.

use std::time::Duration;

use chima_store::{DeploymentState, Store};
use chima_testkit::github::{Endpoint, FakeGitHub, Reply, deployment_event, send_webhook};
use chima_testkit::slack::{self as fake_slack, Failure, FakeSlack};
use serde_json::{Value, json};

use crate::harness::{Faseng, SECRET, kill9, repo, start_peer};

const APPS: &str = r#"{"app": {"provider": "shell", "repository": "example/app", "environments": ["production", "staging", "env-0", "env-1", "env-2"]}}"#;

pub(crate) async fn until<T>(
    what: &str,
    limit: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A payload as chima sends it, asking for Slack messages in `thread`.
/// What chima sends for a deploy of `app` to `env` typed by alice in #deploys.
pub(crate) fn from_slack(env: &str, thread: &str) -> Value {
    crate::harness::signed_payload("app", env, "main", "C0DEPLOYS", thread)
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn deliver(
    url: &str,
    clone_url: &str,
    github_id: i64,
    sha: &str,
    env: &str,
    payload: Value,
    delivery: &str,
) -> (u16, String) {
    let body = deployment_event(
        "example/app",
        clone_url,
        github_id,
        sha,
        "main",
        env,
        "deploy",
        payload,
    );
    send_webhook(
        &format!("{url}/webhooks/github"),
        "deployment",
        delivery,
        SECRET.as_bytes(),
        body.to_string().as_bytes(),
    )
    .await
}

/// Every outbox event of the deployment was handed to its service.
async fn notified(store: &dyn Store, id: i64) -> bool {
    let events = store.outbox_for_deployment(id).await.unwrap();
    !events.is_empty() && events.iter().all(|e| e.delivered_at.is_some())
}

/// The newest text of faseng's message in a thread (the post, or its last edit).
fn thread_text(slack: &FakeSlack, thread: &str) -> Option<String> {
    let posts: Vec<_> = slack
        .posted()
        .into_iter()
        .filter(|p| p.thread_ts.as_deref() == Some(thread))
        .collect();
    let post = posts.first()?;
    slack
        .updated()
        .into_iter()
        .rev()
        .find(|u| u.ts == post.ts)
        .and_then(|u| u.text)
        .or_else(|| post.text.clone())
}

#[tokio::test]
async fn a_deploy_whose_faseng_is_killed_ends_worker_lost_and_the_queue_goes_on() {
    let gh = FakeGitHub::start().await;
    gh.add_repo("example/app", "main");
    let slack = FakeSlack::start().await;
    let env = [
        ("SLACK_BOT_TOKEN", fake_slack::BOT_TOKEN),
        ("SLACK_API_URL", slack.url.as_str()),
        ("FASENG_LEASE_SECS", "3"),
    ];
    let mut f = Faseng::start_with(APPS, Some((&gh.url, &gh.token())), &env).await;
    let pidfile = f.dir.path().join("long.pid");
    let (long, long_sha) = repo(
        f.dir.path(),
        &format!(
            "#!/bin/sh\necho $$ > '{}'\necho started\nsleep 30\n",
            pidfile.display()
        ),
    );
    let (short, short_sha) = repo(f.dir.path(), "#!/bin/sh\necho next\n");

    let first = gh.seed_deployment("example/app", "main", "production", "alice");
    let (s, text) = deliver(
        &f.url,
        &long.to_string_lossy(),
        first,
        &long_sha,
        "production",
        from_slack("production", "500.001"),
        "k1",
    )
    .await;
    assert_eq!(s, 201, "{text}");
    let second = gh.seed_deployment("example/app", "main", "production", "alice");
    let (s, text) = deliver(
        &f.url,
        &short.to_string_lossy(),
        second,
        &short_sha,
        "production",
        from_slack("production", "500.002"),
        "k2",
    )
    .await;
    assert_eq!(s, 201, "{text}");
    let d1 = f.store.find_by_github_id(first).await.unwrap().unwrap().id;
    let d2 = f.store.find_by_github_id(second).await.unwrap().unwrap().id;

    // The first runs, the second waits behind it; everyone has been told so.
    let store = f.store.clone();
    until(
        "the first deployment running and reported",
        Duration::from_secs(60),
        async || {
            let running =
                store.get_deployment(d1).await.unwrap().unwrap().state == DeploymentState::Running;
            (running
                && pidfile.exists()
                && gh.status_states(first).last().map(String::as_str) == Some("in_progress")
                && notified(store.as_ref(), d1).await
                && notified(store.as_ref(), d2).await)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        f.store.get_deployment(d2).await.unwrap().unwrap().state,
        DeploymentState::Queued
    );

    kill9(&mut f).await;
    // The deploy script does not outlive its faseng: its guard saw faseng's pipe
    // close and killed the script's process group.
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let proc_dir = std::path::PathBuf::from(format!("/proc/{}", pid.trim()));
    until(
        "the guard to stop the orphaned deploy script",
        Duration::from_secs(5),
        async || (!proc_dir.exists()).then_some(()),
    )
    .await;
    assert_eq!(
        f.store.get_deployment(d1).await.unwrap().unwrap().state,
        DeploymentState::Running,
        "nobody can know yet that its worker is gone"
    );

    // The restarted faseng: the lost deployment ends `errored`, the queued one runs.
    let restarted = start_peer(&f, "restarted", Some((&gh.url, &gh.token())), &env).await;
    let lost = until(
        "the lost deployment to end",
        Duration::from_secs(60),
        async || {
            let d = store.get_deployment(d1).await.unwrap().unwrap();
            d.state.is_terminal().then_some(d)
        },
    )
    .await;
    assert_eq!(lost.state, DeploymentState::Errored, "{:?}", lost.reason);
    let reason = lost.reason.clone().unwrap_or_default();
    assert!(reason.starts_with("worker lost"), "{reason}");
    let next = until(
        "the queued deployment to run",
        Duration::from_secs(60),
        async || {
            let d = store.get_deployment(d2).await.unwrap().unwrap();
            d.state.is_terminal().then_some(d)
        },
    )
    .await;
    assert_eq!(
        next.state,
        DeploymentState::Succeeded,
        "{:?}\n{}",
        next.reason,
        restarted.log()
    );
    let running = f
        .store
        .count_by_state()
        .await
        .unwrap()
        .into_iter()
        .find(|(s, _)| *s == DeploymentState::Running);
    assert_eq!(running, None, "no deployment stays running");

    // GitHub and Slack are told, in order.
    until(
        "GitHub's error status",
        Duration::from_secs(60),
        async || {
            (gh.status_states(first).last().map(String::as_str) == Some("error")).then_some(())
        },
    )
    .await;
    assert_eq!(gh.status_states(first), ["queued", "in_progress", "error"]);
    let status = gh.statuses(first).pop().unwrap();
    assert!(
        status
            .description
            .unwrap_or_default()
            .starts_with("worker lost"),
        "{:?}",
        gh.statuses(first)
    );
    until(
        "GitHub's success status of the next one",
        Duration::from_secs(60),
        async || (gh.status_states(second) == ["queued", "in_progress", "success"]).then_some(()),
    )
    .await;
    let text = until("Slack's edit", Duration::from_secs(60), async || {
        thread_text(&slack, "500.001").filter(|t| t.contains("could not run"))
    })
    .await;
    assert!(text.contains("worker lost"), "{text}");
    until(
        "Slack's success edit of the next one",
        Duration::from_secs(60),
        async || {
            thread_text(&slack, "500.002")
                .filter(|t| t.contains("was successful"))
                .map(|_| ())
        },
    )
    .await;
}

#[tokio::test]
async fn a_github_and_slack_outage_loses_no_status_and_keeps_their_order() {
    let gh = FakeGitHub::start().await;
    gh.add_repo("example/app", "main");
    let slack = FakeSlack::start().await;
    let f = Faseng::start_with(
        APPS,
        Some((&gh.url, &gh.token())),
        &[
            ("SLACK_BOT_TOKEN", fake_slack::BOT_TOKEN),
            ("SLACK_API_URL", slack.url.as_str()),
        ],
    )
    .await;
    let (path, sha) = repo(f.dir.path(), "#!/bin/sh\necho deployed\n");
    let clone_url = path.to_string_lossy().to_string();

    // 5 s: GitHub answers 502 for 3 s, then rate limits for 2 s; Slack 429s.
    let t0 = tokio::time::Instant::now();
    gh.script(Endpoint::CreateStatus, Reply::Status(502), 100_000);
    for method in ["chat.postMessage", "chat.update"] {
        slack.fail_next(
            method,
            100_000,
            Failure::RateLimited {
                retry_after_secs: 1,
            },
        );
    }
    let mut ids = Vec::new();
    for i in 0..6 {
        let gid = gh.seed_deployment("example/app", "main", "production", "alice");
        let (s, text) = deliver(
            &f.url,
            &clone_url,
            gid,
            &sha,
            &format!("env-{}", i % 3),
            from_slack(&format!("env-{}", i % 3), &format!("600.{i:03}")),
            &format!("o-{i}"),
        )
        .await;
        assert_eq!(s, 201, "{text}");
        ids.push(gid);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep_until(t0 + Duration::from_secs(3)).await;
    gh.clear_scripts();
    gh.script(
        Endpoint::CreateStatus,
        Reply::RateLimited { reset_in_secs: 2 },
        100_000,
    );
    tokio::time::sleep_until(t0 + Duration::from_secs(5)).await;
    // Both were tried during the outage, and nothing got through.
    let tried = gh
        .requests_to("POST", "/repos/example/app/deployments/")
        .len();
    let all_empty = ids.iter().all(|id| gh.status_states(*id).is_empty());
    let slack_tried = slack.calls("chat.postMessage").len();
    let slack_posted = slack.posted().len();
    gh.clear_scripts();
    slack.clear_failures();
    assert!(tried > 0, "no status was tried during the outage");
    assert!(
        all_empty,
        "the fake GitHub accepted a status during the outage"
    );
    assert!(
        slack_tried > 0,
        "no Slack message was tried during the outage"
    );
    assert_eq!(
        slack_posted, 0,
        "the fake Slack accepted a message during the outage"
    );

    // Every status arrives, in order, once; every message is posted once and
    // edited to its end.
    until("every status", Duration::from_secs(60), async || {
        ids.iter()
            .all(|id| gh.status_states(*id).last().map(String::as_str) == Some("success"))
            .then_some(())
    })
    .await;
    for id in &ids {
        assert_eq!(
            gh.status_states(*id),
            ["queued", "in_progress", "success"],
            "#{id}"
        );
    }
    until("every Slack message", Duration::from_secs(60), async || {
        (0..6)
            .all(|i| {
                thread_text(&slack, &format!("600.{i:03}"))
                    .is_some_and(|t| t.contains("was successful"))
            })
            .then_some(())
    })
    .await;
    for i in 0..6 {
        let thread = format!("600.{i:03}");
        let posts = slack
            .posted()
            .into_iter()
            .filter(|p| p.thread_ts.as_deref() == Some(thread.as_str()))
            .count();
        assert_eq!(posts, 1, "thread {thread}: {:#?}", slack.posted());
    }
}

#[tokio::test]
async fn a_thousand_webhooks_with_a_hundred_redeliveries_make_nine_hundred_jobs() {
    // Web only: the jobs are counted, not run.
    let f = Faseng::start_with(APPS, None, &[("FASENG_WORKERS", "0")]).await;
    let url = f.url.clone();
    // 900 deployments; 50 redelivered as GitHub's "Redeliver" does (same
    // delivery id), 50 delivered again under a new delivery id. Each
    // redelivery follows its original closely, so some race it.
    let mut plan: Vec<(i64, String)> = Vec::new();
    for n in 0..900i64 {
        plan.push((n + 1, format!("d-{n}")));
        if n % 9 == 4 {
            let again = if (n / 9) % 2 == 0 {
                format!("d-{n}")
            } else {
                format!("d-{n}-again")
            };
            plan.push((n + 1, again));
        }
    }
    assert_eq!(plan.len(), 1000);
    let mut tasks = tokio::task::JoinSet::new();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for (gid, delivery) in plan {
        if tasks.len() >= 16 {
            let (s, _) = tasks.join_next().await.unwrap().unwrap();
            *statuses.entry(s).or_default() += 1;
        }
        let url = url.clone();
        tasks.spawn(async move {
            deliver(
                &url,
                "/nonexistent/repo",
                gid,
                "0123456789abcdef0123456789abcdef01234567",
                &format!("env-{}", gid % 7),
                json!({}),
                &delivery,
            )
            .await
        });
    }
    while let Some(r) = tasks.join_next().await {
        *statuses.entry(r.unwrap().0).or_default() += 1;
    }
    assert_eq!(
        statuses,
        std::collections::BTreeMap::from([(200, 100), (201, 900)]),
        "201 = queued, 200 = already queued"
    );
    let counts = f.store.count_by_state().await.unwrap();
    assert_eq!(counts, vec![(DeploymentState::Queued, 900)]);
    for gid in [1, 5, 450, 900] {
        assert!(f.store.find_by_github_id(gid).await.unwrap().is_some());
    }
}
