//! Scale-out (README, "Reliability"): two faseng processes on one PostgreSQL
//! take webhooks and run deployments; every deployment runs exactly once,
//! never two at once in one environment, oldest first, and both processes
//! take work.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chima_store::{DeploymentFilter, DeploymentState};
use chima_testkit::github::{deployment_event, send_webhook};
use serde_json::json;

use crate::harness::{Faseng, SECRET, repo, start_peer};

const APPS: &str = r#"{"app": {"provider": "shell", "repository": "example/app", "environments": ["production", "env-0", "env-1", "env-2", "env-3", "env-4", "env-5", "env-6", "env-7", "env-8", "env-9"]}}"#;
const DEPLOYS: i64 = 300;
const ENVS: i64 = 10;

/// One run as the deploy script recorded it (`date +%s%N`).
#[derive(Debug, Default, Clone, Copy)]
struct Run {
    starts: u32,
    ends: u32,
    start: u128,
    end: u128,
}

#[tokio::test]
async fn two_processes_share_the_work_and_never_overlap_in_an_environment() {
    let f = Faseng::start_with(APPS, None, &[("FASENG_WORKERS", "3")]).await;
    let second = start_peer(&f, "second", None, &[("FASENG_WORKERS", "3")]).await;
    let record = f.dir.path().join("runs.txt");
    let script = format!(
        "#!/bin/sh\n\
         echo \"start $DEPLOY_ID $DEPLOY_ENV $(date +%s%N)\" >> '{r}'\n\
         sleep 0.05\n\
         echo \"end $DEPLOY_ID $DEPLOY_ENV $(date +%s%N)\" >> '{r}'\n",
        r = record.display()
    );
    let (path, sha) = repo(f.dir.path(), &script);
    let clone_url = path.to_string_lossy().to_string();

    // The webhooks go to both processes, alternately, 12 at a time.
    let hooks = [
        format!("{}/webhooks/github", f.url),
        format!("{}/webhooks/github", second.url),
    ];
    let mut sending = tokio::task::JoinSet::new();
    for i in 0..DEPLOYS {
        if sending.len() >= 12 {
            let (status, text) = sending.join_next().await.unwrap().unwrap();
            assert_eq!(status, 201, "{text}");
        }
        let body = deployment_event(
            "example/app",
            &clone_url,
            10_000 + i,
            &sha,
            "main",
            &format!("env-{}", i % ENVS),
            "deploy",
            json!({}),
        );
        let hook = hooks[(i % 2) as usize].clone();
        sending.spawn(async move {
            send_webhook(
                &hook,
                "deployment",
                &format!("scale-{i}"),
                SECRET.as_bytes(),
                body.to_string().as_bytes(),
            )
            .await
        });
    }
    while let Some(r) = sending.join_next().await {
        let (status, text) = r.unwrap();
        assert_eq!(status, 201, "{text}");
    }

    // All of them end.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let all = loop {
        let all = f
            .store
            .list_deployments(&DeploymentFilter {
                limit: 1000,
                ..DeploymentFilter::default()
            })
            .await
            .unwrap();
        if all.len() as i64 == DEPLOYS && all.iter().all(|d| d.state.is_terminal()) {
            break all;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} stored, {} ended:\n{}\n{}",
            all.len(),
            all.iter().filter(|d| d.state.is_terminal()).count(),
            f.log(),
            second.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for d in &all {
        assert_eq!(
            d.state,
            DeploymentState::Succeeded,
            "#{}: {:?}",
            d.id,
            d.reason
        );
    }

    // Exactly once, by the script's own record.
    let text = std::fs::read_to_string(&record).unwrap();
    let mut runs: HashMap<i64, (String, Run)> = HashMap::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts.len(), 4, "bad record line {line:?}");
        let id: i64 = parts[1].parse().unwrap();
        let at: u128 = parts[3].parse().unwrap();
        let (env, run) = runs.entry(id).or_default();
        *env = parts[2].to_string();
        match parts[0] {
            "start" => {
                run.starts += 1;
                run.start = at;
            }
            "end" => {
                run.ends += 1;
                run.end = at;
            }
            other => panic!("bad record line {other:?}"),
        }
    }
    assert_eq!(runs.len() as i64, DEPLOYS, "deployments that ran");
    for d in &all {
        let (env, run) = runs
            .get(&d.id)
            .unwrap_or_else(|| panic!("#{} never ran", d.id));
        assert_eq!((run.starts, run.ends), (1, 1), "#{} ran {run:?}", d.id);
        assert_eq!(env, &d.environment);
    }

    // Never two at once in one environment, and oldest first: by the script's
    // clock and by the store's.
    let mut by_env: BTreeMap<&str, Vec<(i64, Run)>> = BTreeMap::new();
    for (id, (env, run)) in &runs {
        by_env.entry(env.as_str()).or_default().push((*id, *run));
    }
    assert_eq!(by_env.len() as i64, ENVS);
    for (env, list) in &mut by_env {
        list.sort_by_key(|(_, r)| r.start);
        for pair in list.windows(2) {
            let ((a, ra), (b, rb)) = (pair[0], pair[1]);
            assert!(
                rb.start >= ra.end,
                "{env}: #{b} started before #{a} had ended"
            );
            assert!(b > a, "{env}: #{b} ran before the older #{a}");
        }
    }
    let mut store_by_env: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for d in &all {
        store_by_env
            .entry(d.environment.as_str())
            .or_default()
            .push((d.started_at.unwrap(), d.finished_at.unwrap(), d.id));
    }
    for (env, list) in &mut store_by_env {
        list.sort();
        for pair in list.windows(2) {
            assert!(
                pair[1].0 >= pair[0].1,
                "{env}: #{} started before #{} had ended (store times)",
                pair[1].2,
                pair[0].2
            );
        }
    }

    // Both processes took work (worker ids are `<host>:<pid>:<n>`).
    let mut by_process: BTreeMap<String, usize> = BTreeMap::new();
    for d in &all {
        let worker = d.worker_id.clone().unwrap_or_default();
        let pid = worker.rsplit(':').nth(1).unwrap_or_default().to_string();
        *by_process.entry(pid).or_default() += 1;
    }
    let second_pid = second.child.id().unwrap().to_string();
    assert_eq!(
        by_process.len(),
        2,
        "deployments by process: {by_process:?}"
    );
    assert!(
        by_process.contains_key(&second_pid),
        "the second process ran nothing: {by_process:?}"
    );
    assert!(
        by_process.values().all(|n| *n > 0),
        "deployments by process: {by_process:?}"
    );
}
