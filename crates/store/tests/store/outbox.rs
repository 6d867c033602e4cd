//! The outbox: events written with the state change, taken in order, rescheduled on
//! failure, delivered once.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chima_store::{DeploymentState, OUTBOX_IN_FLIGHT, Outcome};
use chrono::Utc;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::harness::{Harness, request};

const LEASE: Duration = Duration::from_secs(60);

pub async fn outbox_entry_written_rescheduled_delivered_once(h: &Harness) {
    let store = h.store();
    let d = store
        .create_deployment(request("ob-1", "web", "production"))
        .await
        .expect("create")
        .deployment;
    // Written with the creation, before anyone sent anything.
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 2);

    let taken = store.take_due_outbox("github", 10).await.expect("take");
    assert_eq!(taken.len(), 1);
    let queued = &taken[0];
    assert_eq!(queued.deployment_id, d.id);
    assert_eq!(queued.target, "github");
    assert_eq!(queued.event, DeploymentState::Queued);
    assert_eq!(
        queued.payload,
        serde_json::json!({"state": "queued", "reason": null, "exit_code": null})
    );
    assert_eq!(queued.attempts, 0);
    assert_eq!(queued.delivered_at, None);
    // Taken entries are hidden from other senders while in flight.
    assert!(queued.due_at > Utc::now() + chrono::Duration::seconds(60));
    assert!(OUTBOX_IN_FLIGHT >= Duration::from_secs(60));
    assert!(
        store
            .take_due_outbox("github", 10)
            .await
            .expect("take")
            .is_empty()
    );

    // Delivery failed: back off for an hour.
    store
        .reschedule_outbox(
            queued.id,
            "GitHub answered 502",
            Utc::now() + chrono::Duration::hours(1),
        )
        .await
        .expect("reschedule");
    assert!(
        store
            .take_due_outbox("github", 10)
            .await
            .expect("take")
            .is_empty(),
        "not due yet"
    );
    let row = &store.outbox_for_deployment(d.id).await.expect("outbox")[0];
    assert_eq!(row.attempts, 1);
    assert_eq!(row.last_error.as_deref(), Some("GitHub answered 502"));
    assert!(row.due_at > Utc::now() + chrono::Duration::minutes(50));

    // The engine moves on meanwhile: its events queue behind the undelivered one.
    store
        .claim("w", LEASE)
        .await
        .expect("claim")
        .expect("claimable");
    store
        .finish(d.id, "w", Outcome::succeeded(0))
        .await
        .expect("finish");
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 6);
    assert!(
        store
            .take_due_outbox("github", 10)
            .await
            .expect("take")
            .is_empty(),
        "later events wait for the earlier one of the same deployment"
    );

    // Retry time comes (rescheduled into the past here, rather than waiting).
    store
        .reschedule_outbox(
            queued.id,
            "GitHub answered 503",
            Utc::now() - chrono::Duration::seconds(1),
        )
        .await
        .expect("reschedule");
    let again = store.take_due_outbox("github", 10).await.expect("take");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, queued.id);
    assert_eq!(again[0].attempts, 2);
    assert_eq!(again[0].last_error.as_deref(), Some("GitHub answered 503"));
    store.mark_delivered(queued.id).await.expect("delivered");
    // Delivered once: marking again changes nothing, rescheduling cannot revive it.
    store.mark_delivered(queued.id).await.expect("idempotent");
    store
        .reschedule_outbox(
            queued.id,
            "late failure",
            Utc::now() - chrono::Duration::seconds(1),
        )
        .await
        .expect("no effect on a delivered entry");
    let row = &store.outbox_for_deployment(d.id).await.expect("outbox")[0];
    assert!(row.delivered_at.is_some());
    assert_eq!(row.attempts, 2);

    // Then the rest, in order, each exactly once.
    let mut delivered = vec![queued.event];
    loop {
        let batch = store.take_due_outbox("github", 10).await.expect("take");
        if batch.is_empty() {
            break;
        }
        assert_eq!(batch.len(), 1, "one event per deployment at a time");
        assert!(batch.iter().all(|e| e.id != queued.id));
        store.mark_delivered(batch[0].id).await.expect("delivered");
        delivered.push(batch[0].event);
    }
    assert_eq!(
        delivered,
        vec![
            DeploymentState::Queued,
            DeploymentState::Running,
            DeploymentState::Succeeded
        ]
    );
    // The chat target has its own queue, untouched by GitHub's.
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 3);
    let chat = store.take_due_outbox("chat", 10).await.expect("take");
    assert_eq!(chat.len(), 1);
    assert_eq!(chat[0].event, DeploymentState::Queued);
    assert_eq!(chat[0].attempts, 0);
}

/// Events of each deployment are taken oldest first, one at a time per deployment, and
/// two senders working at once never get the same event.
pub async fn outbox_order_per_deployment_and_no_double_delivery(h: &Harness) {
    let store = h.store();
    const COUNT: usize = 10;
    let mut ids = Vec::new();
    for i in 0..COUNT {
        let mut new = request(&format!("ob-{i}"), "web", &format!("env-{i}"));
        new.notify = vec!["github".to_owned()];
        ids.push(
            store
                .create_deployment(new)
                .await
                .expect("create")
                .deployment
                .id,
        );
    }
    for _ in 0..COUNT {
        store
            .claim("w", LEASE)
            .await
            .expect("claim")
            .expect("claimable");
    }
    for (i, id) in ids.iter().enumerate() {
        let outcome = if i % 3 == 0 {
            Outcome::failed(Some(1), "boom")
        } else {
            Outcome::succeeded(0)
        };
        store.finish(*id, "w", outcome).await.expect("finish");
    }
    assert_eq!(
        store.outbox_backlog().await.expect("backlog"),
        (COUNT * 3) as i64
    );

    // One round: the oldest event of every deployment, nothing else.
    let first = store.take_due_outbox("github", 100).await.expect("take");
    assert_eq!(first.len(), COUNT);
    assert!(first.iter().all(|e| e.event == DeploymentState::Queued));
    let deployments: HashSet<i64> = first.iter().map(|e| e.deployment_id).collect();
    assert_eq!(deployments.len(), COUNT);
    // Give them back (as a sender that failed them all would) so that the senders
    // below start from the beginning.
    for e in &first {
        store
            .reschedule_outbox(e.id, "retry", Utc::now() - chrono::Duration::seconds(1))
            .await
            .expect("reschedule");
    }

    // Two senders at once, small batches, until everything is delivered.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut senders = Vec::new();
    for _ in 0..2 {
        let store = Arc::clone(&h.store);
        let seen = Arc::clone(&seen);
        senders.push(tokio::spawn(async move {
            loop {
                assert!(Instant::now() < deadline, "senders did not finish");
                let batch = store.take_due_outbox("github", 3).await.expect("take");
                if batch.is_empty() {
                    if store.outbox_backlog().await.expect("backlog") == 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                for e in batch {
                    seen.lock().await.push((e.id, e.deployment_id, e.event));
                    store.mark_delivered(e.id).await.expect("delivered");
                }
            }
        }));
    }
    for sender in senders {
        sender.await.expect("sender");
    }
    let seen = seen.lock().await;
    assert_eq!(seen.len(), COUNT * 3, "every event delivered");
    let unique: HashSet<i64> = seen.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(unique.len(), COUNT * 3, "no event delivered twice");
    let mut per_deployment: BTreeMap<i64, Vec<(i64, DeploymentState)>> = BTreeMap::new();
    for (id, deployment, event) in seen.iter() {
        per_deployment
            .entry(*deployment)
            .or_default()
            .push((*id, *event));
    }
    for (deployment, events) in per_deployment {
        let states: Vec<DeploymentState> = events.iter().map(|(_, s)| *s).collect();
        assert_eq!(
            states[0],
            DeploymentState::Queued,
            "deployment {deployment}"
        );
        assert_eq!(
            states[1],
            DeploymentState::Running,
            "deployment {deployment}"
        );
        assert!(states[2].is_terminal(), "deployment {deployment}");
        assert!(
            events.windows(2).all(|w| w[0].0 < w[1].0),
            "deployment {deployment}: delivered out of order: {events:?}"
        );
    }
    assert!(
        store
            .take_due_outbox("github", 100)
            .await
            .expect("take")
            .is_empty()
    );
    assert_eq!(store.outbox_backlog().await.expect("backlog"), 0);
}
