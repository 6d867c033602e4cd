//! What fencing needs from the store: where a deployment runs is recorded by its
//! holder only, a lease renewed in time is never reaped however hard a reaper
//! tries, and a lapsed lease cannot be renewed back.

use std::sync::Arc;
use std::time::Duration;

use chima_store::{DeploymentState, Outcome, Runner, Store};
use tokio::time::Instant;

use crate::harness::{Harness, request};

fn runner(pid: u32) -> Runner {
    Runner {
        host: "machine-1".into(),
        boot: "boot-1".into(),
        pid,
        pid_start: 4242,
        guard_pid: Some(pid + 1),
        guard_start: Some(4343),
    }
}

pub async fn runner_is_recorded_by_the_holder_only(h: &Harness) {
    let store = h.store();
    let d = store
        .create_deployment(request("runner-1", "web", "production"))
        .await
        .expect("create")
        .deployment;
    assert!(store.running_runners().await.expect("list").is_empty());
    store
        .claim("w1", Duration::from_secs(60))
        .await
        .expect("claim")
        .expect("claimable");
    store
        .record_runner(d.id, "w1", &runner(100))
        .await
        .expect("record");
    // Someone else's record changes nothing.
    store
        .record_runner(d.id, "intruder", &runner(999))
        .await
        .expect("a non-holder's record is ignored, not an error");
    let listed = store.running_runners().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, d.id);
    assert_eq!(listed[0].worker_id, "w1");
    assert_eq!(listed[0].runner, runner(100));
    store
        .finish(d.id, "w1", Outcome::succeeded(0))
        .await
        .expect("finish");
    assert!(
        store.running_runners().await.expect("list").is_empty(),
        "only running deployments are listed"
    );
    store
        .record_runner(d.id, "w1", &runner(101))
        .await
        .expect("a record after the end is ignored");
}

pub async fn a_lease_renewed_in_time_is_never_reaped(h: &Harness) {
    let store: Arc<dyn Store> = h.other_store(4).await;
    let d = store
        .create_deployment(request("race-1", "web", "production"))
        .await
        .expect("create")
        .deployment;
    let lease = Duration::from_millis(1500);
    store
        .claim("w", lease)
        .await
        .expect("claim")
        .expect("claimable");
    let until = Instant::now() + Duration::from_secs(4);
    let reaper = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut reaped = 0usize;
            while Instant::now() < until {
                reaped += store.reap_lapsed_leases().await.expect("reap").len();
            }
            reaped
        })
    };
    let mut renewals = 0;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let status = store.renew_lease(d.id, "w", lease).await.expect("renew");
        assert!(status.held, "renewed well inside the lease, still held");
        renewals += 1;
    }
    assert_eq!(reaper.await.expect("reaper"), 0, "nothing was reaped");
    assert!(renewals > 10);
    let now = store
        .get_deployment(d.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(now.state, DeploymentState::Running);
    store
        .finish(d.id, "w", Outcome::succeeded(0))
        .await
        .expect("the holder finishes");
}

pub async fn a_lapsed_lease_cannot_be_renewed_back(h: &Harness) {
    let store = h.store();
    let d = store
        .create_deployment(request("lapse-1", "web", "production"))
        .await
        .expect("create")
        .deployment;
    store
        .claim("w", Duration::from_secs(1))
        .await
        .expect("claim")
        .expect("claimable");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let status = store
        .renew_lease(d.id, "w", Duration::from_secs(60))
        .await
        .expect("renew");
    assert!(!status.held, "a lapsed lease is lost, not extended");
    let lost = store
        .get_deployment(d.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(lost.state, DeploymentState::Errored);
    let reason = lost.reason.unwrap_or_default();
    assert!(reason.contains("lost its lease"), "{reason}");
    // Its holder's late result does not overwrite what the reaper recorded.
    assert!(
        store
            .finish(d.id, "w", Outcome::succeeded(0))
            .await
            .is_err()
    );
    let after = store
        .get_deployment(d.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(after.state, DeploymentState::Errored);
}
