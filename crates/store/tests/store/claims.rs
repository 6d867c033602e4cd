//! Deployments: idempotent creation, claims in queue order, leases lapsing and
//! renewed, locked environments, the resolved sha and webhook deliveries recorded once.

use std::sync::Arc;
use std::time::Duration;

use chima_store::{DeploymentFilter, DeploymentState, LockResult, Outcome, StoreError};
use tokio::time::Instant;

use crate::harness::{Harness, eventually, request};
use crate::lifecycle::{LEASE, both, events};

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
