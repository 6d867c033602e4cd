//! Deployments: states and transitions (every field round-trips, every terminal state
//! has a reason and events, invalid transitions change nothing). Claims and leases are
//! in `claims`, history queries in `history`, auto-deploy claims in `auto_deploy`.

use std::collections::HashSet;
use std::time::Duration;

use chima_store::{
    CancelResult, Deployment, DeploymentState, OutboxEntry, Outcome, Store, StoreError,
};

use crate::harness::{Harness, request};

pub(crate) const LEASE: Duration = Duration::from_secs(60);

/// `(target, event)` of every outbox row of a deployment, oldest first.
pub(crate) async fn events(store: &dyn Store, id: i64) -> Vec<(String, DeploymentState)> {
    store
        .outbox_for_deployment(id)
        .await
        .expect("outbox")
        .into_iter()
        .map(|e: OutboxEntry| (e.target, e.event))
        .collect()
}

pub(crate) fn both(states: &[DeploymentState]) -> Vec<(String, DeploymentState)> {
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
