//! Many claimers at once: the per-environment guarantee, exactly-once claims, FIFO.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use chima_store::{DeploymentFilter, DeploymentState, Outcome, Store};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::harness::{Harness, request};

const DEPLOYMENTS: usize = 200;
const ENVIRONMENTS: [&str; 5] = ["production", "staging", "qa", "edge", "canary"];
const CLAIMERS: usize = 8;

struct Claim {
    /// Global order in which claims returned.
    order: usize,
    id: i64,
    environment: String,
    worker: String,
}

/// 8 claimers (real tasks, each on its own connection) over 200 deployments in 5
/// environments. After every claim, and continuously from a monitor, the database is
/// asked whether any environment has two running: never. Every deployment is claimed
/// exactly once, and within an environment in creation order.
pub async fn eight_claimers_two_hundred_deployments_five_environments(h: &Harness) {
    // A store whose pool has a connection for every claimer (plus the listener), as a
    // faseng process with 8 workers would have.
    let store: Arc<dyn Store> = h.other_store(CLAIMERS as u32 + 4).await;
    let checker = h.checker();

    let mut by_environment: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for i in 0..DEPLOYMENTS {
        let environment = ENVIRONMENTS[i % ENVIRONMENTS.len()];
        let d = store
            .create_deployment(request(&format!("load-{i}"), "web", environment))
            .await
            .expect("create")
            .deployment;
        by_environment
            .entry(environment.to_owned())
            .or_default()
            .push(d.id);
    }

    let claims = Arc::new(Mutex::new(Vec::<Claim>::new()));
    let order = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let most_running = Arc::new(AtomicI64::new(0));
    let deadline = Instant::now() + Duration::from_secs(240);

    let mut tasks = Vec::new();
    for n in 0..CLAIMERS {
        let store = Arc::clone(&store);
        let checker = checker.clone();
        let claims = Arc::clone(&claims);
        let order = Arc::clone(&order);
        let finished = Arc::clone(&finished);
        tasks.push(tokio::spawn(async move {
            let worker = format!("worker-{n}");
            while finished.load(Ordering::SeqCst) < DEPLOYMENTS {
                assert!(
                    Instant::now() < deadline,
                    "{worker}: the run did not finish in time"
                );
                let Some(d) = store
                    .claim(&worker, Duration::from_secs(120))
                    .await
                    .expect("claim")
                else {
                    store
                        .wait_for_work(Duration::from_millis(200))
                        .await
                        .expect("wait for work");
                    continue;
                };
                let claimed = order.fetch_add(1, Ordering::SeqCst);
                assert_eq!(d.state, DeploymentState::Running);
                assert_eq!(
                    checker.max_running_per_environment().await,
                    1,
                    "{worker} claimed {} and sees two running in one environment",
                    d.id
                );
                claims.lock().await.push(Claim {
                    order: claimed,
                    id: d.id,
                    environment: d.environment.clone(),
                    worker: worker.clone(),
                });
                // Hold it a moment so that claims overlap, then check again.
                tokio::time::sleep(Duration::from_millis(2)).await;
                assert_eq!(checker.max_running_per_environment().await, 1);
                store
                    .finish(d.id, &worker, Outcome::succeeded(0))
                    .await
                    .expect("finish");
                finished.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }

    // The monitor asks the database continuously, between and during the claims.
    let monitor = {
        let checker = checker.clone();
        let finished = Arc::clone(&finished);
        let most_running = Arc::clone(&most_running);
        tokio::spawn(async move {
            let mut checks = 0u64;
            while finished.load(Ordering::SeqCst) < DEPLOYMENTS {
                assert!(
                    Instant::now() < deadline,
                    "monitor: the run did not finish in time"
                );
                let worst = checker.max_running_per_environment().await;
                assert!(worst <= 1, "monitor saw {worst} running in one environment");
                let total = checker.running_total().await;
                most_running.fetch_max(total, Ordering::SeqCst);
                checks += 1;
                tokio::task::yield_now().await;
            }
            checks
        })
    };

    for task in tasks {
        task.await.expect("claimer");
    }
    let checks = monitor.await.expect("monitor");
    assert!(checks > 0);

    let claims = claims.lock().await;
    // Exactly once.
    assert_eq!(claims.len(), DEPLOYMENTS, "one claim per deployment");
    let ids: HashSet<i64> = claims.iter().map(|c| c.id).collect();
    assert_eq!(ids.len(), DEPLOYMENTS, "no deployment claimed twice");
    let all: HashSet<i64> = by_environment.values().flatten().copied().collect();
    assert_eq!(ids, all, "every deployment claimed");

    // FIFO within each environment, by the order claims happened.
    for (environment, created) in &by_environment {
        let mut in_env: Vec<&Claim> = claims
            .iter()
            .filter(|c| &c.environment == environment)
            .collect();
        in_env.sort_by_key(|c| c.order);
        let claimed: Vec<i64> = in_env.iter().map(|c| c.id).collect();
        assert_eq!(&claimed, created, "FIFO in {environment}");
    }

    // And from the database: in each environment, each deployment started after the
    // previous one finished.
    let history = store
        .list_deployments(&DeploymentFilter {
            limit: 1000,
            ..DeploymentFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(history.len(), DEPLOYMENTS);
    assert!(
        history
            .iter()
            .all(|d| d.state == DeploymentState::Succeeded)
    );
    for environment in ENVIRONMENTS {
        let mut runs: Vec<_> = history
            .iter()
            .filter(|d| d.environment == environment)
            .collect();
        runs.sort_by_key(|d| d.id);
        for pair in runs.windows(2) {
            let previous_end = pair[0].finished_at.expect("finished");
            let next_start = pair[1].started_at.expect("started");
            assert!(
                next_start >= previous_end,
                "{environment}: {} started before {} finished",
                pair[1].id,
                pair[0].id
            );
        }
    }

    // The claimers really ran side by side.
    let workers: HashSet<&str> = claims.iter().map(|c| c.worker.as_str()).collect();
    assert!(workers.len() >= 2, "only {workers:?} claimed anything");
    assert!(
        most_running.load(Ordering::SeqCst) >= 2,
        "environments never ran in parallel"
    );
}

/// Deployments of one environment created from four tasks at once (as webhooks reach two
/// faseng processes at once) while two claimers take and finish them as fast as they
/// can: each starts only after every deployment with a smaller id has, so "oldest first"
/// holds even for deployments that were still being created when a claimer looked.
///
/// On PostgreSQL an id comes from a sequence: without serialising creation per
/// environment, #2 could be numbered before #3 but committed after it, and a claimer
/// that saw only #3 started it first.
pub async fn deployments_created_while_claiming_start_in_id_order(h: &Harness) {
    const CREATORS: usize = 8;
    const EACH: usize = 100;
    let total = CREATORS * EACH;
    let store: Arc<dyn Store> = h.other_store(CREATORS as u32 + 4).await;
    let started = Arc::new(Mutex::new(Vec::<i64>::new()));
    let finished = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(120);

    let mut claimers = Vec::new();
    for n in 0..2 {
        let store = Arc::clone(&store);
        let started = Arc::clone(&started);
        let finished = Arc::clone(&finished);
        claimers.push(tokio::spawn(async move {
            let worker = format!("worker-{n}");
            while finished.load(Ordering::SeqCst) < total {
                assert!(Instant::now() < deadline, "{worker}: not done in time");
                let Some(d) = store
                    .claim(&worker, Duration::from_secs(120))
                    .await
                    .expect("claim")
                else {
                    tokio::task::yield_now().await;
                    continue;
                };
                started.lock().await.push(d.id);
                store
                    .finish(d.id, &worker, Outcome::succeeded(0))
                    .await
                    .expect("finish");
                finished.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let mut creators = Vec::new();
    for c in 0..CREATORS {
        let store = Arc::clone(&store);
        creators.push(tokio::spawn(async move {
            for i in 0..EACH {
                store
                    .create_deployment(request(&format!("race-{c}-{i}"), "web", "production"))
                    .await
                    .expect("create");
            }
        }));
    }
    for task in creators {
        task.await.expect("creator");
    }
    for task in claimers {
        task.await.expect("claimer");
    }

    let started = started.lock().await;
    assert_eq!(started.len(), total, "every deployment started once");
    for pair in started.windows(2) {
        assert!(
            pair[1] > pair[0],
            "#{} started after the newer #{}: {:?}",
            pair[1],
            pair[0],
            *started
        );
    }
}

/// 96 creations at once over 5 environments, 16 of them sent twice at the same
/// moment (a redelivered webhook), and one whose payload PostgreSQL's `jsonb`
/// refuses (a `\u0000` in a string): each deployment is stored once, both sends
/// of a duplicate get the same deployment, one refused row costs the others
/// nothing, and every stored one has its notify targets and its `queued`
/// events. PostgreSQL stores concurrent creations in groups (`group.rs`), so this
/// is where a group's bookkeeping would show.
pub async fn many_creations_at_once_are_each_stored_once(h: &Harness) {
    let store: Arc<dyn Store> = h.other_store(12).await;
    let mut sends = Vec::new();
    for i in 0..96usize {
        let mut new = request(
            &format!("burst-{i}"),
            "web",
            ENVIRONMENTS[i % ENVIRONMENTS.len()],
        );
        if i % 2 == 0 {
            new.github_deployment_id = Some(10_000 + i as i64);
        }
        let copies = if i < 16 { 2 } else { 1 };
        for _ in 0..copies {
            sends.push((format!("burst-{i}"), new.clone()));
        }
    }
    let mut refused = request("burst-nul", "web", "production");
    refused.payload = serde_json::json!({"note": "a\u{0}b"});
    sends.push(("burst-nul".to_owned(), refused));

    let tasks: Vec<_> = sends
        .into_iter()
        .map(|(key, new)| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { (key, store.create_deployment(new).await) })
        })
        .collect();
    let mut by_key: BTreeMap<String, Vec<(i64, bool)>> = BTreeMap::new();
    for t in tasks {
        let (key, answer) = t.await.expect("task");
        match answer {
            Ok(c) => by_key
                .entry(key)
                .or_default()
                .push((c.deployment.id, c.already_existed)),
            Err(e) => assert_eq!(key, "burst-nul", "only the refused row may fail: {e}"),
        }
    }
    for i in 0..96usize {
        let key = format!("burst-{i}");
        let answers = by_key
            .get(&key)
            .unwrap_or_else(|| panic!("{key} got no answer"));
        let created = answers.iter().filter(|(_, existed)| !existed).count();
        assert_eq!(created, 1, "{key} was created {created} times: {answers:?}");
        let ids: HashSet<i64> = answers.iter().map(|(id, _)| *id).collect();
        assert_eq!(
            ids.len(),
            1,
            "{key}'s sends got different deployments: {answers:?}"
        );
        let id = answers[0].0;
        let d = store
            .get_deployment(id)
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(d.source_key, key);
        assert_eq!(d.environment, ENVIRONMENTS[i % ENVIRONMENTS.len()]);
        assert_eq!(d.notify, vec!["github".to_owned(), "chat".to_owned()]);
        assert_eq!(
            d.github_deployment_id,
            (i % 2 == 0).then_some(10_000 + i as i64)
        );
        let events: Vec<(String, String)> = store
            .outbox_for_deployment(id)
            .await
            .expect("outbox")
            .into_iter()
            .map(|e| (e.target, e.event.as_str().to_owned()))
            .collect();
        assert_eq!(
            events,
            vec![
                ("github".to_owned(), "queued".to_owned()),
                ("chat".to_owned(), "queued".to_owned())
            ],
            "{key}"
        );
    }
    let all = store
        .list_deployments(&DeploymentFilter {
            app: Some("web".to_owned()),
            limit: 500,
            ..Default::default()
        })
        .await
        .expect("list");
    let burst = all
        .iter()
        .filter(|d| d.source_key.starts_with("burst-") && d.source_key != "burst-nul")
        .count();
    assert_eq!(burst, 96, "every creation stored once, no more");
    store.close().await;
}

/// The server ends the store's connections (a restart, a proxy's idle cut) between
/// two webhooks: the next creation is stored all the same, as new, and a redelivery
/// of the first still finds its deployment. On PostgreSQL creations go through
/// connections of their own (`group.rs`), which no pool checks before use; a dead one
/// must cost a reconnection, never a refused webhook (a 503 that GitHub does not
/// redeliver by itself).
pub async fn a_creation_after_the_server_dropped_the_connections_is_stored(h: &Harness) {
    let store: Arc<dyn Store> = h.other_store(4).await;
    let first = store
        .create_deployment(request("before-drop", "web", "production"))
        .await
        .expect("the first creation");
    assert!(!first.already_existed);
    let ended = h.checker().drop_other_connections().await;
    if h.kind == crate::harness::Kind::Postgres {
        assert!(ended >= 1, "the store's connections were ended ({ended})");
    }
    for (i, environment) in ENVIRONMENTS.iter().enumerate() {
        let created = store
            .create_deployment(request(&format!("after-drop-{i}"), "web", environment))
            .await
            .unwrap_or_else(|e| panic!("a creation after the drop was refused: {e}"));
        assert!(!created.already_existed, "after-drop-{i} is new");
    }
    let again = store
        .create_deployment(request("before-drop", "web", "production"))
        .await
        .expect("a redelivery after the drop");
    assert!(
        again.already_existed,
        "the redelivery finds the first deployment"
    );
    assert_eq!(again.deployment.id, first.deployment.id);
}
