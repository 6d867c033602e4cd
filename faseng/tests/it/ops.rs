//! Operations: `/metrics` as Prometheus text whose counters move, `/readyz`,
//! and SIGTERM with a deploy running.

use std::time::Duration;

use chima_store::{DeploymentState, NewDeployment};
use chima_testkit::github::{deployment_event, send_webhook};
use serde_json::json;

use crate::harness::{Faseng, SECRET, get, repo};

const APPS: &str = r#"{"app": {"provider": "shell", "repository": "example/app", "environments": ["production", "staging", "short", "long"]}}"#;

/// Checks the Prometheus text exposition format line by line and returns the
/// samples (`name{labels}` -> value).
fn parse_prometheus(text: &str) -> std::collections::BTreeMap<String, f64> {
    let mut samples = std::collections::BTreeMap::new();
    let mut typed = std::collections::BTreeSet::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts.next().unwrap_or_default();
            assert!(matches!(kind, "HELP" | "TYPE"), "bad comment: {line}");
            assert!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "bad name: {line}"
            );
            if kind == "TYPE" {
                let t = parts.next().unwrap_or_default();
                assert!(
                    matches!(t, "counter" | "gauge" | "histogram" | "summary" | "untyped"),
                    "bad type: {line}"
                );
                typed.insert(name.to_string());
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad series: {line}"
        );
        if let Some(labels) = series.strip_prefix(name)
            && !labels.is_empty()
        {
            assert!(
                labels.starts_with('{') && labels.ends_with('}'),
                "bad labels: {line}"
            );
            for pair in labels[1..labels.len() - 1].split(',') {
                let (k, v) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("bad label: {line}"));
                assert!(
                    !k.is_empty() && v.starts_with('"') && v.ends_with('"'),
                    "bad label: {line}"
                );
            }
        }
        let base = name
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        assert!(
            typed.contains(name) || typed.contains(base),
            "sample without TYPE: {line}"
        );
        samples.insert(series.to_string(), value);
    }
    samples
}

#[tokio::test]
async fn metrics_are_prometheus_text_and_move_with_webhooks_and_jobs() {
    let f = Faseng::start(APPS, None).await;
    let before = parse_prometheus(&get(&format!("{}/metrics", f.url)).await.1);
    assert_eq!(
        before.get("faseng_deployments_finished_total{state=\"succeeded\"}"),
        Some(&0.0)
    );
    assert_eq!(
        before.get("faseng_deployments{state=\"queued\"}"),
        Some(&0.0)
    );

    let (path, sha) = repo(f.dir.path(), "#!/bin/sh\necho metrics\n");
    let body = deployment_event(
        "example/app",
        &path.to_string_lossy(),
        9001,
        &sha,
        "main",
        "staging",
        "deploy",
        json!({}),
    );
    let hook = format!("{}/webhooks/github", f.url);
    let (s, _) = send_webhook(
        &hook,
        "deployment",
        "m1",
        SECRET.as_bytes(),
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = send_webhook(
        &hook,
        "deployment",
        "m2",
        b"wrong",
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(s, 401);
    let d = f.store.find_by_github_id(9001).await.unwrap().unwrap();
    assert_eq!(f.wait_done(d.id).await.state, DeploymentState::Succeeded);

    let after = parse_prometheus(&get(&format!("{}/metrics", f.url)).await.1);
    assert_eq!(
        after.get("faseng_webhooks_received_total{event=\"deployment\"}"),
        Some(&1.0),
        "{after:#?}"
    );
    assert_eq!(
        after.get("faseng_webhooks_rejected_total{reason=\"signature\"}"),
        Some(&1.0)
    );
    assert_eq!(
        after.get("faseng_deployments_finished_total{state=\"succeeded\"}"),
        Some(&1.0)
    );
    assert_eq!(
        after.get("faseng_deployments{state=\"running\"}"),
        Some(&0.0)
    );
    assert_eq!(after.get("faseng_queue_wait_seconds_count"), Some(&1.0));
    assert_eq!(after.get("faseng_run_seconds_count"), Some(&1.0));
    // Each phase of the deploy, timed: the commit was fetched into the mirror,
    // checked out from it, and the provider ran.
    assert_eq!(after.get("faseng_fetch_seconds_count"), Some(&1.0));
    assert_eq!(after.get("faseng_checkout_seconds_count"), Some(&1.0));
    assert_eq!(after.get("faseng_provider_seconds_count"), Some(&1.0));
    assert!(after.contains_key("faseng_outbox_backlog"));
    assert_eq!(get(&format!("{}/readyz", f.url)).await.0, 200);
}

async fn queue(f: &Faseng, key: &str, script: &str) -> i64 {
    let (_, sha) = repo(f.dir.path(), script);
    f.store
        .create_deployment(NewDeployment {
            source_key: key.to_string(),
            requester: "alice".into(),
            app: "app".into(),
            environment: key.to_string(),
            repository: "example/app".into(),
            git_ref: "main".into(),
            sha: Some(sha),
            task: "deploy".into(),
            hosts: None,
            provider: "shell".into(),
            payload: json!({}),
            github_deployment_id: None,
            notify: vec![],
            timeout_secs: None,
        })
        .await
        .unwrap()
        .deployment
        .id
}

async fn wait_running(f: &Faseng, id: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while f.store.get_deployment(id).await.unwrap().unwrap().state != DeploymentState::Running {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ran: {}",
            f.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sigterm_lets_short_deploys_finish_and_cancels_long_ones_after_the_grace() {
    let mut f = Faseng::start(APPS, None).await;
    std::fs::create_dir_all(f.dir.path().join("short")).unwrap();
    std::fs::create_dir_all(f.dir.path().join("long")).unwrap();
    let short = queue(&f, "short", "#!/bin/sh\nsleep 1\necho finished\n").await;
    let long = queue(&f, "long", "#!/bin/sh\necho started\nsleep 300\n").await;
    wait_running(&f, short).await;
    wait_running(&f, long).await;
    let code = f.terminate(Duration::from_secs(60)).await;
    assert_eq!(code, Some(0), "faseng did not exit cleanly: {}", f.log());
    let s = f.store.get_deployment(short).await.unwrap().unwrap();
    assert_eq!(s.state, DeploymentState::Succeeded, "{:?}", s.reason);
    let l = f.store.get_deployment(long).await.unwrap().unwrap();
    assert_eq!(l.state, DeploymentState::Cancelled);
    assert_eq!(
        l.reason.as_deref(),
        Some("cancelled by faseng (shutting down; the grace period ended)")
    );
    let running = f
        .store
        .count_by_state()
        .await
        .unwrap()
        .into_iter()
        .find(|(s, _)| *s == DeploymentState::Running)
        .map(|(_, n)| n)
        .unwrap_or(0);
    assert_eq!(running, 0);
}
