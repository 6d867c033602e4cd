//! Deployments: states, transitions, claims, leases, idempotent creation, queries.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chima_store::{
    CancelResult, Deployment, DeploymentFilter, DeploymentState, LockResult, OutboxEntry, Outcome,
    Store, StoreError,
};
use tokio::time::Instant;

use crate::harness::{Harness, eventually, request};

const LEASE: Duration = Duration::from_secs(60);

/// How old an unrecorded auto-deploy claim must be to be taken over, in these cases.
const STALE_AFTER: Duration = Duration::from_secs(5 * 60);

/// `(target, event)` of every outbox row of a deployment, oldest first.
async fn events(store: &dyn Store, id: i64) -> Vec<(String, DeploymentState)> {
    store
        .outbox_for_deployment(id)
        .await
        .expect("outbox")
        .into_iter()
        .map(|e: OutboxEntry| (e.target, e.event))
        .collect()
}

fn both(states: &[DeploymentState]) -> Vec<(String, DeploymentState)> {
    states
        .iter()
        .flat_map(|s| [("github".to_owned(), *s), ("chat".to_owned(), *s)])
        .collect()
}

pub async fn happy_path_round_trips_every_field(h: &Harness) {
    let store = h.store();
    let mut new = request("gh-deployment-1001", "web", "production");
    new.github_deployment_id = Some(1001);
    new.hosts = Some("web-1,web-2".to_owned());
    new.task = "deploy:migrations".to_owned();
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);

    let created = store.create_deployment(new.clone()).await.expect("create");
    assert!(!created.already_existed);
    let d = created.deployment;
    assert_eq!(d.state, DeploymentState::Queued);
    assert_eq!(d.source_key, new.source_key);
    assert_eq!(d.github_deployment_id, Some(1001));
    assert_eq!(d.requester, "alice");
    assert_eq!(
        (d.app.as_str(), d.environment.as_str()),
        ("web", "production")
    );
    assert_eq!(d.repository, "acme/web");
    assert_eq!(d.git_ref, "main");
    assert_eq!(d.sha, new.sha);
    assert_eq!(d.task, "deploy:migrations");
    assert_eq!(d.hosts.as_deref(), Some("web-1,web-2"));
    assert_eq!(d.provider, "script");
    assert_eq!(d.payload, new.payload);
    assert_eq!(d.notify, vec!["github", "chat"]);
    assert_eq!(d.timeout_secs, Some(600));
    assert!(d.created_at > before);
    assert_eq!(d.started_at, None);
    assert_eq!(d.finished_at, None);
    assert_eq!(d.reason, None);
    assert_eq!(events(store, d.id).await, both(&[DeploymentState::Queued]));
    assert_eq!(
        store.get_deployment(d.id).await.expect("get"),
        Some(d.clone())
    );
    assert_eq!(
        store.find_by_github_id(1001).await.expect("find"),
        Some(d.clone())
    );

    let claimed = store
        .claim("worker-a", LEASE)
        .await
        .expect("claim")
        .expect("one claimable deployment");
    assert_eq!(claimed.id, d.id);
    assert_eq!(claimed.state, DeploymentState::Running);
    assert_eq!(claimed.worker_id.as_deref(), Some("worker-a"));
    let started = claimed.started_at.expect("started_at");
    let lease_end = claimed.lease_expires_at.expect("lease");
    assert!(started >= d.created_at);
    assert!(lease_end > started + chrono::Duration::seconds(50));
    assert_eq!(
        events(store, d.id).await,
        both(&[DeploymentState::Queued, DeploymentState::Running])
    );
    assert!(
        store
            .claim("worker-b", LEASE)
            .await
            .expect("claim")
            .is_none(),
        "nothing else is claimable"
    );

    let status = store
        .renew_lease(d.id, "worker-a", LEASE)
        .await
        .expect("renew");
    assert!(status.held);
    assert_eq!(status.cancel_requested_by, None);

    let done = store
        .finish(d.id, "worker-a", Outcome::succeeded(0))
        .await
        .expect("finish");
    assert_eq!(done.state, DeploymentState::Succeeded);
    assert_eq!(done.exit_code, Some(0));
    assert_eq!(done.reason.as_deref(), Some("succeeded"));
    assert!(done.finished_at.expect("finished_at") >= started);
    assert_eq!(done.lease_expires_at, None);
    assert_eq!(done.worker_id.as_deref(), Some("worker-a"));
    assert_eq!(
        events(store, d.id).await,
        both(&[
            DeploymentState::Queued,
            DeploymentState::Running,
            DeploymentState::Succeeded
        ])
    );
    let outbox = store.outbox_for_deployment(d.id).await.expect("outbox");
    let last = outbox.last().expect("an event");
    assert_eq!(
        last.payload,
        serde_json::json!({"state": "succeeded", "reason": "succeeded", "exit_code": 0})
    );
    assert!(
        store
            .claim("worker-a", LEASE)
            .await
            .expect("claim")
            .is_none()
    );
}

pub async fn every_terminal_state_has_a_reason_and_events(h: &Harness) {
    let store = h.store();
    // Each in its own environment so that they can all run at once.
    let mut ids = Vec::new();
    for env in ["failed", "errored", "cancelled-running"] {
        let d = store
            .create_deployment(request(&format!("k-{env}"), "api", env))
            .await
            .expect("create")
            .deployment;
        ids.push(d.id);
    }
    let queued_cancel = store
        .create_deployment(request("k-cancel-queued", "api", "staging"))
        .await
        .expect("create")
        .deployment;
    let refused = store
        .create_deployment(request("k-refused", "api", "qa"))
        .await
        .expect("create")
        .deployment;

    // Queued -> cancelled at once, without a worker.
    let CancelResult::Cancelled(c) = store
        .request_cancel(queued_cancel.id, "bob")
        .await
        .expect("cancel queued")
    else {
        panic!("a queued deployment is cancelled at once")
    };
    assert_eq!(c.state, DeploymentState::Cancelled);
    assert_eq!(c.reason.as_deref(), Some("cancelled by bob"));
    assert!(c.finished_at.is_some());
    assert_eq!(
        events(store, c.id).await,
        both(&[DeploymentState::Queued, DeploymentState::Cancelled])
    );

    // Queued -> errored without running (the engine refuses it: locked, bad provider).
    let e = store
        .fail_queued(
            refused.id,
            DeploymentState::Errored,
            "qa is locked by carol",
        )
        .await
        .expect("fail queued");
    assert_eq!(e.state, DeploymentState::Errored);
    assert_eq!(e.reason.as_deref(), Some("qa is locked by carol"));
    assert_eq!(
        events(store, e.id).await,
        both(&[DeploymentState::Queued, DeploymentState::Errored])
    );
    let payload = &store.outbox_for_deployment(e.id).await.expect("outbox")[3].payload;
    assert_eq!(payload["reason"], "qa is locked by carol");

    // Claim the three others (three environments: all claimable at once).
    let mut claimed = HashSet::new();
    for _ in 0..3 {
        let d = store
            .claim("w", LEASE)
            .await
            .expect("claim")
            .expect("claimable");
        claimed.insert(d.id);
    }
    assert_eq!(claimed, ids.iter().copied().collect());

    let failed = store
        .finish(
            ids[0],
            "w",
            Outcome {
                state: DeploymentState::Failed,
                exit_code: Some(2),
                reason: None,
            },
        )
        .await
        .expect("finish failed");
    assert_eq!(failed.state, DeploymentState::Failed);
    assert_eq!(failed.exit_code, Some(2));
    assert_eq!(failed.reason.as_deref(), Some("failed with exit code 2"));

    let errored = store
        .finish(
            ids[1],
            "w",
            Outcome::errored("checkout failed: no such sha"),
        )
        .await
        .expect("finish errored");
    assert_eq!(
        errored.reason.as_deref(),
        Some("checkout failed: no such sha")
    );

    // Running -> cancel requested; the worker sees it on renewal and stops.
    let CancelResult::Requested(r) = store
        .request_cancel(ids[2], "dave")
        .await
        .expect("cancel running")
    else {
        panic!("a running deployment gets a cancel request")
    };
    assert_eq!(r.state, DeploymentState::Running);
    assert_eq!(r.cancel_requested_by.as_deref(), Some("dave"));
    // A second request keeps the first requester.
    store.request_cancel(ids[2], "erin").await.expect("again");
    let status = store.renew_lease(ids[2], "w", LEASE).await.expect("renew");
    assert!(status.held);
    assert_eq!(status.cancel_requested_by.as_deref(), Some("dave"));
    let cancelled = store
        .finish(
            ids[2],
            "w",
            Outcome {
                state: DeploymentState::Cancelled,
                exit_code: Some(143),
                reason: None,
            },
        )
        .await
        .expect("finish cancelled");
    assert_eq!(cancelled.reason.as_deref(), Some("cancelled by dave"));
    assert_eq!(cancelled.exit_code, Some(143));

    // Terminal -> cancel is refused, nothing changes.
    let CancelResult::AlreadyFinished(f) = store
        .request_cancel(ids[0], "frank")
        .await
        .expect("cancel finished")
    else {
        panic!("a finished deployment cannot be cancelled")
    };
    assert_eq!(f.state, DeploymentState::Failed);
    assert_eq!(f.cancel_requested_by, None);

    for (id, terminal) in [
        (ids[0], DeploymentState::Failed),
        (ids[1], DeploymentState::Errored),
        (ids[2], DeploymentState::Cancelled),
    ] {
        assert_eq!(
            events(store, id).await,
            both(&[DeploymentState::Queued, DeploymentState::Running, terminal])
        );
        let d = store
            .get_deployment(id)
            .await
            .expect("get")
            .expect("exists");
        assert!(d.reason.is_some() && d.finished_at.is_some(), "{d:?}");
    }
}

/// The deployment and its outbox, to compare before and after a refused change.
async fn snapshot(store: &dyn Store, id: i64) -> (Option<Deployment>, Vec<OutboxEntry>) {
    (
        store.get_deployment(id).await.expect("get"),
        store.outbox_for_deployment(id).await.expect("outbox"),
    )
}

pub async fn invalid_transitions_are_errors_and_change_nothing(h: &Harness) {
    let store = h.store();
    let d = store
        .create_deployment(request("k1", "web", "production"))
        .await
        .expect("create")
        .deployment;

    // Finishing a queued deployment.
    let before = snapshot(store, d.id).await;
    let err = store
        .finish(d.id, "w1", Outcome::succeeded(0))
        .await
        .expect_err("a queued deployment cannot finish");
    assert!(
        matches!(
            err,
            StoreError::InvalidTransition {
                from: DeploymentState::Queued,
                to: DeploymentState::Succeeded,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&format!("deployment {}", d.id)),
        "{err}"
    );
    assert_eq!(snapshot(store, d.id).await, before);

    // Finishing with a state that is not terminal.
    store
        .claim("w1", LEASE)
        .await
        .expect("claim")
        .expect("claimable");
    let before = snapshot(store, d.id).await;
    let err = store
        .finish(
            d.id,
            "w1",
            Outcome {
                state: DeploymentState::Queued,
                exit_code: None,
                reason: None,
            },
        )
        .await
        .expect_err("not terminal");
    assert!(
        matches!(err, StoreError::InvalidTransition { .. }),
        "{err:?}"
    );
    assert_eq!(snapshot(store, d.id).await, before);

    // Finishing by a worker that does not hold the lease.
    let err = store
        .finish(d.id, "w2", Outcome::succeeded(0))
        .await
        .expect_err("not the lease holder");
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert!(err.to_string().contains("w1"), "{err}");
    assert_eq!(snapshot(store, d.id).await, before);

    // Renewing by a worker that does not hold it: not held, nothing changes.
    let status = store.renew_lease(d.id, "w2", LEASE).await.expect("renew");
    assert!(!status.held);
    assert_eq!(snapshot(store, d.id).await, before);

    // Ending a claimed deployment as if it were queued.
    let err = store
        .fail_queued(d.id, DeploymentState::Errored, "nope")
        .await
        .expect_err("only queued");
    assert!(
        matches!(
            err,
            StoreError::InvalidTransition {
                from: DeploymentState::Running,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(snapshot(store, d.id).await, before);

    // Finishing twice.
    store
        .finish(d.id, "w1", Outcome::failed(Some(1), "exit 1"))
        .await
        .expect("finish");
    let before = snapshot(store, d.id).await;
    let err = store
        .finish(d.id, "w1", Outcome::succeeded(0))
        .await
        .expect_err("already finished");
    assert!(
        matches!(
            err,
            StoreError::InvalidTransition {
                from: DeploymentState::Failed,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(snapshot(store, d.id).await, before);

    // `fail_queued` into succeeded makes no sense.
    let q = store
        .create_deployment(request("k2", "web", "production"))
        .await
        .expect("create")
        .deployment;
    let err = store
        .fail_queued(q.id, DeploymentState::Succeeded, "?")
        .await
        .expect_err("not succeeded");
    assert!(
        matches!(err, StoreError::InvalidTransition { .. }),
        "{err:?}"
    );
    assert_eq!(
        store
            .get_deployment(q.id)
            .await
            .expect("get")
            .map(|d| d.state),
        Some(DeploymentState::Queued)
    );

    // Unknown ids are NotFound, everywhere.
    let missing = 987_654;
    let not_found = |r: Result<(), StoreError>| match r {
        Err(StoreError::NotFound { what }) => assert!(what.contains("987654"), "{what}"),
        other => panic!("expected NotFound, got {other:?}"),
    };
    not_found(
        store
            .finish(missing, "w", Outcome::succeeded(0))
            .await
            .map(drop),
    );
    not_found(store.renew_lease(missing, "w", LEASE).await.map(drop));
    not_found(store.request_cancel(missing, "w").await.map(drop));
    not_found(
        store
            .fail_queued(missing, DeploymentState::Errored, "x")
            .await
            .map(drop),
    );
    not_found(store.log_count(missing).await.map(drop));
    not_found(store.read_logs(missing, 0, 10).await.map(drop));
    not_found(store.mark_delivered(missing).await);
    not_found(
        store
            .reschedule_outbox(missing, "x", chrono::Utc::now())
            .await,
    );
    assert_eq!(store.get_deployment(missing).await.expect("get"), None);

    // Bad input is refused before touching the database.
    let mut bad = request("", "web", "production");
    let err = store
        .create_deployment(bad.clone())
        .await
        .expect_err("empty key");
    assert!(matches!(err, StoreError::InvalidInput { .. }), "{err:?}");
    bad.source_key = "k3".to_owned();
    bad.app = " ".to_owned();
    assert!(store.create_deployment(bad).await.is_err());
    let err = store
        .claim("w", Duration::ZERO)
        .await
        .expect_err("a zero lease");
    assert!(matches!(err, StoreError::InvalidInput { .. }), "{err:?}");
}

pub async fn duplicate_creation_from_four_tasks_is_one_deployment(h: &Harness) {
    let mut tasks = Vec::new();
    for i in 0..4 {
        let store = Arc::clone(&h.store);
        tasks.push(tokio::spawn(async move {
            let mut new = request("delivery-72d3162e", "web", "production");
            new.requester = format!("caller-{i}");
            store.create_deployment(new).await.expect("create")
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("task"));
    }
    let fresh: Vec<_> = results.iter().filter(|r| !r.already_existed).collect();
    assert_eq!(fresh.len(), 1, "exactly one caller created it");
    let id = fresh[0].deployment.id;
    assert!(results.iter().all(|r| r.deployment.id == id));
    let all = h
        .store()
        .list_deployments(&DeploymentFilter::default())
        .await
        .expect("list");
    assert_eq!(all.len(), 1);
    // One deployment, one set of `queued` events.
    assert_eq!(
        events(h.store(), id).await,
        both(&[DeploymentState::Queued])
    );

    // A redelivered webhook: new delivery id, same GitHub deployment -> same deployment.
    let mut first = request("delivery-aaa", "api", "production");
    first.github_deployment_id = Some(555);
    let created = h.store().create_deployment(first).await.expect("create");
    assert!(!created.already_existed);
    let mut again = request("delivery-bbb", "api", "production");
    again.github_deployment_id = Some(555);
    let second = h.store().create_deployment(again).await.expect("create");
    assert!(second.already_existed);
    assert_eq!(second.deployment.id, created.deployment.id);
    assert_eq!(second.deployment.source_key, "delivery-aaa");
    assert_eq!(
        h.store()
            .list_deployments(&DeploymentFilter::default())
            .await
            .expect("list")
            .len(),
        2
    );
}

pub async fn fifo_within_environment_parallel_across(h: &Harness) {
    let store = h.store();
    let mut a = Vec::new();
    let mut b = Vec::new();
    // Interleaved creation: a1 b1 a2 a3 b2.
    for (key, env) in [
        ("a1", "env-a"),
        ("b1", "env-b"),
        ("a2", "env-a"),
        ("a3", "env-a"),
        ("b2", "env-b"),
    ] {
        let d = store
            .create_deployment(request(key, "web", env))
            .await
            .expect("create")
            .deployment;
        if env == "env-a" { &mut a } else { &mut b }.push(d.id);
    }
    // The same environment name under another app is independent.
    let other_app = store
        .create_deployment(request("x1", "api", "env-a"))
        .await
        .expect("create")
        .deployment;

    let c1 = store.claim("w1", LEASE).await.expect("claim").expect("a1");
    let c2 = store.claim("w2", LEASE).await.expect("claim").expect("b1");
    let c3 = store.claim("w3", LEASE).await.expect("claim").expect("x1");
    assert_eq!((c1.id, c2.id, c3.id), (a[0], b[0], other_app.id));
    assert!(
        store.claim("w4", LEASE).await.expect("claim").is_none(),
        "env-a and env-b are busy: their next deployments wait"
    );
    assert_eq!(h.checker().max_running_per_environment().await, 1);

    store
        .finish(b[0], "w2", Outcome::succeeded(0))
        .await
        .expect("finish b1");
    let c = store.claim("w4", LEASE).await.expect("claim").expect("b2");
    assert_eq!(c.id, b[1]);
    store
        .finish(a[0], "w1", Outcome::failed(Some(1), "boom"))
        .await
        .expect("finish a1");
    let c = store.claim("w1", LEASE).await.expect("claim").expect("a2");
    assert_eq!(c.id, a[1], "oldest first");
    // a3 waits for a2, even with free workers.
    assert!(store.claim("w5", LEASE).await.expect("claim").is_none());
    store
        .finish(a[1], "w1", Outcome::succeeded(0))
        .await
        .expect("finish a2");
    let c = store.claim("w1", LEASE).await.expect("claim").expect("a3");
    assert_eq!(c.id, a[2]);

    // The database refuses a second running deployment even if the code tried.
    let d = store
        .create_deployment(request("a4", "web", "env-a"))
        .await
        .expect("create")
        .deployment;
    let refused = match &h.checker() {
        crate::harness::Checker::Postgres(pool) => sqlx::query(
            "UPDATE deployments SET state = 'running', started_at = now(), worker_id = 'x', \
             lease_expires_at = now() WHERE id = $1",
        )
        .bind(d.id)
        .execute(pool)
        .await
        .map(drop),
        crate::harness::Checker::Sqlite(pool) => sqlx::query(
            "UPDATE deployments SET state = 'running', started_at = '2026-01-01T00:00:00.000000Z', \
             worker_id = 'x', lease_expires_at = '2999-01-01T00:00:00.000000Z' WHERE id = $1",
        )
        .bind(d.id)
        .execute(pool)
        .await
        .map(drop),
    };
    let err = refused.expect_err("the partial unique index refuses two running");
    assert!(
        err.as_database_error()
            .is_some_and(|e| e.is_unique_violation()),
        "{err:?}"
    );
}

/// Claims ignore locks (the engine checks them after claiming); a deployment queued for a
/// locked environment stays queued until someone takes it, and a refusal is recorded
/// with its reason and notifications: never dropped.
pub async fn queued_deployment_of_locked_environment_is_never_dropped(h: &Harness) {
    let store = h.store();
    let LockResult::Acquired(_) = store
        .lock("web", "production", "carol", Some("db migration"), None)
        .await
        .expect("lock")
    else {
        panic!("nobody else holds it")
    };
    let d = store
        .create_deployment(request("locked-1", "web", "production"))
        .await
        .expect("create")
        .deployment;
    let queued = store
        .list_deployments(&DeploymentFilter {
            state: Some(DeploymentState::Queued),
            ..DeploymentFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(queued.iter().map(|d| d.id).collect::<Vec<_>>(), vec![d.id]);

    // The engine claims it, sees the lock held by someone else, and refuses it.
    let claimed = store
        .claim("w", LEASE)
        .await
        .expect("claim")
        .expect("claimable");
    assert_eq!(claimed.id, d.id);
    let lock = store
        .get_lock("web", "production")
        .await
        .expect("get lock")
        .expect("locked");
    let refused = store
        .finish(
            d.id,
            "w",
            Outcome::errored(format!(
                "production is locked by {}: {}",
                lock.holder,
                lock.reason.as_deref().unwrap_or("")
            )),
        )
        .await
        .expect("refuse");
    assert_eq!(
        refused.reason.as_deref(),
        Some("production is locked by carol: db migration")
    );
    assert_eq!(
        events(store, d.id).await,
        both(&[
            DeploymentState::Queued,
            DeploymentState::Running,
            DeploymentState::Errored
        ])
    );
}

pub async fn queries_for_history_and_rollback(h: &Harness) {
    let store = h.store();
    let mut ids = Vec::new();
    for i in 0..6 {
        let env = if i % 2 == 0 { "production" } else { "staging" };
        let mut new = request(&format!("q{i}"), "web", env);
        new.github_deployment_id = Some(9000 + i);
        let d = store
            .create_deployment(new)
            .await
            .expect("create")
            .deployment;
        let c = store
            .claim("w", LEASE)
            .await
            .expect("claim")
            .expect("claimable");
        assert_eq!(c.id, d.id);
        let outcome = if i == 4 {
            Outcome::failed(Some(1), "tests failed")
        } else {
            Outcome::succeeded(0)
        };
        store.finish(d.id, "w", outcome).await.expect("finish");
        ids.push(d.id);
    }
    let queued = store
        .create_deployment(request("q-last", "web", "production"))
        .await
        .expect("create")
        .deployment;

    let all = store
        .list_deployments(&DeploymentFilter::default())
        .await
        .expect("list");
    let listed: Vec<i64> = all.iter().map(|d| d.id).collect();
    let mut expected: Vec<i64> = ids.clone();
    expected.push(queued.id);
    expected.reverse();
    assert_eq!(listed, expected, "newest first");

    let production = store
        .list_deployments(&DeploymentFilter {
            app: Some("web".to_owned()),
            environment: Some("production".to_owned()),
            state: Some(DeploymentState::Succeeded),
            ..DeploymentFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(
        production.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![ids[2], ids[0]]
    );
    let page = store
        .list_deployments(&DeploymentFilter {
            before_id: Some(ids[3]),
            limit: 2,
            ..DeploymentFilter::default()
        })
        .await
        .expect("list");
    assert_eq!(
        page.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![ids[2], ids[1]]
    );
    assert!(
        store
            .list_deployments(&DeploymentFilter {
                app: Some("nope".to_owned()),
                ..DeploymentFilter::default()
            })
            .await
            .expect("list")
            .is_empty()
    );

    // Rollback target: the last success before a given deployment (ids[4] failed).
    let last = store
        .last_succeeded("web", "production", None)
        .await
        .expect("last")
        .expect("one");
    assert_eq!(last.id, ids[2]);
    let before = store
        .last_succeeded("web", "production", Some(ids[2]))
        .await
        .expect("last")
        .expect("one");
    assert_eq!(before.id, ids[0]);
    assert_eq!(
        store
            .last_succeeded("web", "production", Some(ids[0]))
            .await
            .expect("last"),
        None
    );
    assert_eq!(
        store.last_succeeded("web", "qa", None).await.expect("last"),
        None
    );

    assert_eq!(
        store
            .find_by_github_id(9003)
            .await
            .expect("find")
            .map(|d| d.id),
        Some(ids[3])
    );
    assert_eq!(store.find_by_github_id(1).await.expect("find"), None);

    assert_eq!(
        store.count_by_state().await.expect("count"),
        vec![
            (DeploymentState::Queued, 1),
            (DeploymentState::Succeeded, 5),
            (DeploymentState::Failed, 1),
        ]
    );
}

/// A claimer that stops renewing loses the deployment: it becomes `errored` ("worker
/// lost") with its notifications, is never re-run, and the next deployment of the
/// environment becomes claimable.
pub async fn lapsed_lease_errors_and_frees_the_environment(h: &Harness) {
    let store = h.store();
    let first = store
        .create_deployment(request("lease-1", "web", "production"))
        .await
        .expect("create")
        .deployment;
    let second = store
        .create_deployment(request("lease-2", "web", "production"))
        .await
        .expect("create")
        .deployment;

    let short = Duration::from_millis(1500);
    let claimed_at = Instant::now();
    let claimed = store
        .claim("w1", short)
        .await
        .expect("claim")
        .expect("first");
    assert_eq!(claimed.id, first.id);
    let nothing = store.claim("w2", LEASE).await.expect("claim");
    if claimed_at.elapsed() < short {
        // The lease cannot have lapsed yet, so the second must wait behind the first.
        assert!(nothing.is_none(), "second claimed while first still held");
    }

    // w1 never renews. Claiming reaps the lapsed lease, then takes the next one.
    let next = eventually(
        "the lapsed lease to free production",
        Duration::from_secs(30),
        || async { store.claim("w2", LEASE).await.expect("claim") },
    )
    .await;
    assert_eq!(
        next.id, second.id,
        "the next queued deployment, not a re-run"
    );
    assert_eq!(next.worker_id.as_deref(), Some("w2"));

    let lost = store
        .get_deployment(first.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(lost.state, DeploymentState::Errored);
    let reason = lost.reason.clone().expect("a reason");
    assert!(reason.starts_with("worker lost"), "{reason}");
    assert!(reason.contains("w1"), "{reason}");
    assert!(lost.finished_at.is_some());
    assert_eq!(lost.lease_expires_at, None);
    assert_eq!(
        events(store, first.id).await,
        both(&[
            DeploymentState::Queued,
            DeploymentState::Running,
            DeploymentState::Errored
        ])
    );
    let outbox = store.outbox_for_deployment(first.id).await.expect("outbox");
    assert_eq!(outbox[4].payload["reason"], serde_json::json!(reason));

    // The lost worker finds out and cannot report over it.
    let status = store
        .renew_lease(first.id, "w1", LEASE)
        .await
        .expect("renew");
    assert!(!status.held);
    let err = store
        .finish(first.id, "w1", Outcome::succeeded(0))
        .await
        .expect_err("lost");
    assert!(
        matches!(
            err,
            StoreError::InvalidTransition {
                from: DeploymentState::Errored,
                ..
            }
        ),
        "{err:?}"
    );
    // Never reaped twice, never re-run.
    assert!(store.reap_lapsed_leases().await.expect("reap").is_empty());
    assert_eq!(
        store
            .get_deployment(first.id)
            .await
            .expect("get")
            .map(|d| d.state),
        Some(DeploymentState::Errored)
    );

    // The public sweep does the same without a claim.
    let third = store
        .create_deployment(request("lease-3", "web", "staging"))
        .await
        .expect("create")
        .deployment;
    let c = store
        .claim("w3", Duration::from_millis(200))
        .await
        .expect("claim")
        .expect("third");
    assert_eq!(c.id, third.id);
    let reaped = eventually("the sweep to reap", Duration::from_secs(30), || async {
        let reaped = store.reap_lapsed_leases().await.expect("reap");
        (!reaped.is_empty()).then_some(reaped)
    })
    .await;
    assert_eq!(
        reaped.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![third.id]
    );
    assert_eq!(reaped[0].state, DeploymentState::Errored);
}

pub async fn renewed_lease_is_kept(h: &Harness) {
    let store = h.store();
    let d = store
        .create_deployment(request("renew-1", "web", "production"))
        .await
        .expect("create")
        .deployment;
    let lease = Duration::from_secs(3);
    let c = store
        .claim("w", lease)
        .await
        .expect("claim")
        .expect("claimable");
    let mut last_expiry = c.lease_expires_at.expect("lease");
    // Renew well within the lease, for longer than the lease.
    let start = Instant::now();
    while start.elapsed() < lease + Duration::from_millis(500) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let status = store.renew_lease(d.id, "w", lease).await.expect("renew");
        assert!(status.held, "renewed in time, still held");
        assert!(store.reap_lapsed_leases().await.expect("reap").is_empty());
        let now = store
            .get_deployment(d.id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(now.state, DeploymentState::Running);
        let expiry = now.lease_expires_at.expect("lease");
        assert!(expiry >= last_expiry, "renewal moves the lease forward");
        last_expiry = expiry;
    }
    store
        .finish(d.id, "w", Outcome::succeeded(0))
        .await
        .expect("finish after the original lease would have lapsed");
}

pub async fn webhook_deliveries_are_recorded_once(h: &Harness) {
    let store = h.store();
    assert!(
        store
            .record_delivery("d-1", "deployment")
            .await
            .expect("record")
    );
    assert!(
        !store
            .record_delivery("d-1", "deployment")
            .await
            .expect("record")
    );
    assert!(
        store
            .record_delivery("d-2", "deployment_status")
            .await
            .expect("record")
    );

    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = Arc::clone(&h.store);
        tasks.push(tokio::spawn(async move {
            store
                .record_delivery("d-3", "deployment")
                .await
                .expect("record")
        }));
    }
    let mut firsts = 0;
    for task in tasks {
        if task.await.expect("task") {
            firsts += 1;
        }
    }
    assert_eq!(firsts, 1, "one of four concurrent receivers sees it first");
}

pub async fn the_resolved_sha_is_recorded_once_by_the_holder(h: &Harness) {
    let store = h.store();
    let mut req = request("sha-1", "web", "production");
    req.sha = None;
    let d = store
        .create_deployment(req)
        .await
        .expect("create")
        .deployment;
    assert!(
        store
            .record_sha(d.id, "w", "0123456789abcdef")
            .await
            .is_err(),
        "not running yet"
    );
    store
        .claim("w", Duration::from_secs(30))
        .await
        .expect("claim")
        .expect("claimable");
    assert!(
        store
            .record_sha(d.id, "other", "0123456789abcdef")
            .await
            .is_err(),
        "not the holder"
    );
    assert!(
        store.record_sha(d.id, "w", "not-a-sha;").await.is_err(),
        "not a sha"
    );
    store
        .record_sha(d.id, "w", "0123456789abcdef")
        .await
        .expect("record");
    assert!(
        store
            .record_sha(d.id, "w", "fedcba9876543210")
            .await
            .is_err(),
        "never changed"
    );
    let now = store
        .get_deployment(d.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(now.sha.as_deref(), Some("0123456789abcdef"));
}

pub async fn auto_deploy_claims_once_and_pauses(h: &Harness) {
    let store = h.store();
    let other = h.other_store(2).await;
    // Concurrent claims of one sha from two store handles: exactly one wins.
    let (a, b) = tokio::join!(
        store.claim_auto_deploy("web", "staging", "abc1234", "ci/build", STALE_AFTER),
        other.claim_auto_deploy("web", "staging", "abc1234", "ci/build", STALE_AFTER)
    );
    assert_eq!(
        u8::from(a.expect("claim a")) + u8::from(b.expect("claim b")),
        1
    );
    assert!(
        !store
            .claim_auto_deploy("web", "staging", "abc1234", "x", STALE_AFTER)
            .await
            .expect("again")
    );
    // Another environment or sha is another claim.
    assert!(
        store
            .claim_auto_deploy("web", "production", "abc1234", "x", STALE_AFTER)
            .await
            .expect("prod")
    );
    // A released claim (GitHub failed) can be claimed again; a recorded one cannot be released.
    store
        .release_auto_deploy("web", "production", "abc1234")
        .await
        .expect("release");
    assert!(
        store
            .claim_auto_deploy("web", "production", "abc1234", "x", STALE_AFTER)
            .await
            .expect("reclaim")
    );
    store
        .set_auto_deploy_github_id("web", "staging", "abc1234", 77)
        .await
        .expect("id");
    store
        .release_auto_deploy("web", "staging", "abc1234")
        .await
        .expect("no-op");
    let last = store
        .last_auto_deploy("web", "staging")
        .await
        .expect("last")
        .expect("exists");
    assert_eq!(
        (
            last.sha.as_str(),
            last.github_deployment_id,
            last.contexts.as_str()
        ),
        ("abc1234", Some(77), "ci/build")
    );
    assert!(
        store
            .last_auto_deploy("web", "edge")
            .await
            .expect("none")
            .is_none()
    );

    assert!(
        store
            .auto_deploy_pause("web", "staging")
            .await
            .expect("none")
            .is_none()
    );
    let p = store
        .pause_auto_deploy("web", "staging", "alice", Some("freeze"))
        .await
        .expect("pause");
    assert_eq!(
        (p.paused_by.as_str(), p.reason.as_deref()),
        ("alice", Some("freeze"))
    );
    let seen = other
        .auto_deploy_pause("web", "staging")
        .await
        .expect("read")
        .expect("paused");
    assert_eq!(seen.paused_by, "alice");
    let lifted = store
        .resume_auto_deploy("web", "staging")
        .await
        .expect("resume")
        .expect("was paused");
    assert_eq!(lifted.reason.as_deref(), Some("freeze"));
    assert!(
        store
            .resume_auto_deploy("web", "staging")
            .await
            .expect("again")
            .is_none()
    );
}

pub async fn auto_deploy_stale_unrecorded_claim_is_taken_over_once(h: &Harness) {
    let store = h.store();
    let other = h.other_store(2).await;
    let checker = h.checker();
    let latest = |environment: &'static str| async move {
        store
            .last_auto_deploy("web", environment)
            .await
            .expect("last")
            .expect("the claim is there")
    };

    // A fresh claim is refused to a second caller, even one without a GitHub id yet.
    assert!(
        store
            .claim_auto_deploy("web", "staging", "aaa1111", "first", STALE_AFTER)
            .await
            .expect("claim")
    );
    assert!(
        !other
            .claim_auto_deploy("web", "staging", "aaa1111", "second", STALE_AFTER)
            .await
            .expect("fresh")
    );
    // Four minutes old: still within the timeout.
    checker
        .age_auto_deploy("web", "staging", "aaa1111", 4 * 60)
        .await;
    assert!(
        !other
            .claim_auto_deploy("web", "staging", "aaa1111", "second", STALE_AFTER)
            .await
            .expect("not yet stale")
    );
    assert_eq!(latest("staging").await.contexts, "first");

    // Its claimer died an hour ago without recording a GitHub deployment: of two
    // concurrent callers exactly one takes it over, and the clock starts again.
    for round in 0..3 {
        checker
            .age_auto_deploy("web", "staging", "aaa1111", 60 * 60)
            .await;
        let (a, b) = tokio::join!(
            store.claim_auto_deploy("web", "staging", "aaa1111", "by-a", STALE_AFTER),
            other.claim_auto_deploy("web", "staging", "aaa1111", "by-b", STALE_AFTER)
        );
        let (a, b) = (a.expect("claim a"), b.expect("claim b"));
        assert!(a ^ b, "round {round}: exactly one takes it over ({a}, {b})");
        let taken = latest("staging").await;
        assert_eq!(taken.sha, "aaa1111");
        assert_eq!(taken.contexts, if a { "by-a" } else { "by-b" });
        assert_eq!(taken.github_deployment_id, None);
        let age = chrono::Utc::now() - taken.created_at;
        assert!(
            age < chrono::Duration::seconds(60),
            "round {round}: the takeover restarts the clock ({age})"
        );
        assert!(
            !store
                .claim_auto_deploy("web", "staging", "aaa1111", "late", STALE_AFTER)
                .await
                .expect("fresh again"),
            "round {round}: a taken-over claim is fresh"
        );
    }

    // A stale claim whose GitHub deployment was recorded is never taken over.
    assert!(
        store
            .claim_auto_deploy("web", "production", "bbb2222", "recorded", STALE_AFTER)
            .await
            .expect("claim")
    );
    store
        .set_auto_deploy_github_id("web", "production", "bbb2222", 4242)
        .await
        .expect("record");
    checker
        .age_auto_deploy("web", "production", "bbb2222", 24 * 60 * 60)
        .await;
    let (a, b) = tokio::join!(
        store.claim_auto_deploy("web", "production", "bbb2222", "x", STALE_AFTER),
        other.claim_auto_deploy("web", "production", "bbb2222", "y", STALE_AFTER)
    );
    assert!(!a.expect("claim a") && !b.expect("claim b"));
    assert!(
        !store
            .claim_auto_deploy("web", "production", "bbb2222", "z", Duration::ZERO)
            .await
            .expect("claim with no timeout")
    );
    let kept = latest("production").await;
    assert_eq!(
        (
            kept.sha.as_str(),
            kept.contexts.as_str(),
            kept.github_deployment_id
        ),
        ("bbb2222", "recorded", Some(4242))
    );
}

/// A rollback goes back to the last successful run of the `deploy` task: never to a
/// lock, an unlock or another `deploy:<word>` task, nor to a failed deploy.
pub async fn rollback_target_is_the_last_successful_deploy_task(h: &Harness) {
    let store = h.store();
    let run = |n: u32, task: &'static str, succeeded: bool| async move {
        let mut new = request(&format!("rollback-{n}"), "web", "production");
        new.task = task.to_owned();
        let d = store
            .create_deployment(new)
            .await
            .expect("create")
            .deployment;
        let c = store
            .claim("w", LEASE)
            .await
            .expect("claim")
            .expect("claimable");
        assert_eq!(c.id, d.id);
        let outcome = if succeeded {
            Outcome::succeeded(0)
        } else {
            Outcome::failed(Some(1), "tests failed")
        };
        store.finish(d.id, "w", outcome).await.expect("finish");
        d.id
    };
    let older = run(1, "deploy", true).await;
    let deploy = run(2, "deploy", true).await;
    let lock = run(3, "deploy:lock", true).await;
    let migrate = run(4, "deploy:migrate", true).await;
    let unlock = run(5, "deploy:unlock", true).await;
    let failed = run(6, "deploy", false).await;
    assert!(older < deploy && deploy < lock && lock < migrate && migrate < unlock);
    assert!(unlock < failed);

    let last = store
        .last_succeeded("web", "production", None)
        .await
        .expect("last")
        .expect("one");
    assert_eq!(
        (last.id, last.task.as_str()),
        (deploy, "deploy"),
        "the newest successful deploy, past the failed deploy and the other tasks"
    );
    for before in [failed, unlock, migrate, lock] {
        assert_eq!(
            store
                .last_succeeded("web", "production", Some(before))
                .await
                .expect("last")
                .map(|d| d.id),
            Some(deploy),
            "before {before}"
        );
    }
    assert_eq!(
        store
            .last_succeeded("web", "production", Some(deploy))
            .await
            .expect("last")
            .map(|d| d.id),
        Some(older)
    );
}
