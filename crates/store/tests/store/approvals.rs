//! Approvals (app.json `approvals`): a deployment created awaiting approval is never
//! claimed; enough different approvers make it queued, in order; a rejection or the
//! expiry ends it `rejected`; one decision per approver; every change has its events.

use std::sync::Arc;
use std::time::Duration;

use chima_store::{ApprovalNeed, Decided, Decision, DeploymentState, Store, StoreError};

use crate::harness::{Harness, eventually, request};
use crate::lifecycle::{LEASE, both, events};

fn need(count: i32, expires_in: Duration) -> ApprovalNeed {
    ApprovalNeed {
        count,
        expires_in,
        note: "waiting for 2 approvals from bob, carol, dave".to_owned(),
    }
}

pub async fn awaiting_approval_is_never_claimed_until_approved_by_enough(h: &Harness) {
    let store = h.store();
    let created = store
        .create_awaiting_approval(
            request("appr-1", "web", "production"),
            need(2, Duration::from_secs(3600)),
        )
        .await
        .expect("create");
    let d = created.deployment;
    assert_eq!(d.state, DeploymentState::AwaitingApproval);
    assert!(!d.state.is_terminal());
    assert_eq!(d.approvals_needed, Some(2));
    assert!(
        d.approval_expires_at
            .is_some_and(|t| t > chrono::Utc::now())
    );
    assert_eq!(
        d.reason.as_deref(),
        Some("waiting for 2 approvals from bob, carol, dave")
    );
    assert_eq!(
        events(store, d.id).await,
        both(&[DeploymentState::AwaitingApproval])
    );
    // The same source key again: the same deployment, still waiting.
    let again = store
        .create_awaiting_approval(
            request("appr-1", "web", "production"),
            need(2, Duration::from_secs(3600)),
        )
        .await
        .expect("create again");
    assert!(again.already_existed);
    assert_eq!(again.deployment.id, d.id);

    // A later deployment of another environment runs; the waiting one is never taken.
    let other = store
        .create_deployment(request("appr-2", "web", "staging"))
        .await
        .expect("other");
    let claimed = store.claim("w", LEASE).await.expect("claim").expect("one");
    assert_eq!(claimed.id, other.deployment.id);
    assert_eq!(store.claim("w", LEASE).await.expect("claim"), None);

    // The first approval is recorded; the chat hears of it; still waiting.
    let first = store
        .decide_approval(d.id, "chat:u-bob", "bob", Decision::Approve, None)
        .await
        .expect("bob approves");
    let Decided::Recorded {
        deployment,
        approvals,
    } = first
    else {
        panic!("one of two approvals: {first:?}")
    };
    assert_eq!(deployment.state, DeploymentState::AwaitingApproval);
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0].approver, "bob");
    assert_eq!(approvals[0].approver_key, "chat:u-bob");
    assert_eq!(approvals[0].decision, Decision::Approve);
    let outbox = store.outbox_for_deployment(d.id).await.expect("outbox");
    let last = outbox.last().expect("an event for bob's approval");
    assert_eq!(last.target, "chat");
    assert_eq!(last.event, DeploymentState::AwaitingApproval);
    assert_eq!(
        last.payload.get("reason").and_then(|r| r.as_str()),
        Some("approved by bob (1 of 2)")
    );
    assert_eq!(store.claim("w", LEASE).await.expect("claim"), None);

    // bob again (a second click): nothing changes.
    let twice = store
        .decide_approval(d.id, "chat:u-bob", "bob", Decision::Approve, None)
        .await
        .expect("bob again");
    assert!(
        matches!(&twice, Decided::AlreadyDecided { earlier, .. } if earlier.decision == Decision::Approve),
        "{twice:?}"
    );
    assert_eq!(store.approvals(d.id).await.expect("approvals").len(), 1);

    // carol's approval is the second: queued, claimable, with both names.
    let second = store
        .decide_approval(
            d.id,
            "github:carol",
            "github:carol",
            Decision::Approve,
            None,
        )
        .await
        .expect("carol approves");
    let Decided::Approved {
        deployment,
        approvals,
    } = second
    else {
        panic!("two of two approvals: {second:?}")
    };
    assert_eq!(deployment.state, DeploymentState::Queued);
    assert_eq!(
        deployment.reason.as_deref(),
        Some("approved by bob, github:carol")
    );
    assert_eq!(approvals.len(), 2);
    let events = events(store, d.id).await;
    assert_eq!(
        events.last(),
        Some(&("chat".to_owned(), DeploymentState::Queued)),
        "{events:?}"
    );
    assert!(events.contains(&("github".to_owned(), DeploymentState::Queued)));

    // An approval after that: nothing to decide.
    let late = store
        .decide_approval(
            d.id,
            "chat:u-dave",
            "dave",
            Decision::Reject,
            Some("too late"),
        )
        .await
        .expect("dave");
    assert!(matches!(late, Decided::NotAwaiting { .. }), "{late:?}");
    assert_eq!(store.approvals(d.id).await.expect("approvals").len(), 2);

    // It runs once staging is done? No: another environment. It is claimable now.
    let claimed = store
        .claim("w2", LEASE)
        .await
        .expect("claim")
        .expect("approved");
    assert_eq!(claimed.id, d.id);

    // Unknown deployments are an error, not a decision.
    let err = store
        .decide_approval(999_999, "chat:u-bob", "bob", Decision::Approve, None)
        .await
        .expect_err("no such deployment");
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}

pub async fn rejection_and_expiry_end_it_rejected_and_nothing_runs(h: &Harness) {
    let store = h.store();
    let a = store
        .create_awaiting_approval(
            request("rej-1", "web", "production"),
            need(1, Duration::from_secs(3600)),
        )
        .await
        .expect("create")
        .deployment;
    let rejected = store
        .decide_approval(
            a.id,
            "chat:u-bob",
            "bob",
            Decision::Reject,
            Some("not during the sale"),
        )
        .await
        .expect("reject");
    let Decided::Rejected { deployment } = rejected else {
        panic!("rejected: {rejected:?}")
    };
    assert_eq!(deployment.state, DeploymentState::Rejected);
    assert!(deployment.state.is_terminal());
    assert_eq!(
        deployment.reason.as_deref(),
        Some("rejected by bob: not during the sale")
    );
    assert!(deployment.finished_at.is_some());
    assert_eq!(
        events(store, a.id).await,
        both(&[DeploymentState::AwaitingApproval, DeploymentState::Rejected])
    );
    assert_eq!(store.claim("w", LEASE).await.expect("claim"), None);

    // Expiry: nobody decides; the claim path (any worker's) ends it.
    let b = store
        .create_awaiting_approval(
            request("exp-1", "web", "production"),
            need(1, Duration::from_millis(1500)),
        )
        .await
        .expect("create")
        .deployment;
    let ended = eventually(
        "the approval to expire",
        Duration::from_secs(20),
        || async {
            assert_eq!(store.claim("w", LEASE).await.expect("claim"), None);
            let d = store
                .get_deployment(b.id)
                .await
                .expect("get")
                .expect("there");
            (d.state == DeploymentState::Rejected).then_some(d)
        },
    )
    .await;
    assert_eq!(ended.reason.as_deref(), Some("approval expired"));
    assert_eq!(
        events(store, b.id).await,
        both(&[DeploymentState::AwaitingApproval, DeploymentState::Rejected])
    );
    // An approval after the expiry records nothing.
    let late = store
        .decide_approval(b.id, "chat:u-bob", "bob", Decision::Approve, None)
        .await
        .expect("late");
    assert!(matches!(late, Decided::NotAwaiting { .. }), "{late:?}");
    assert!(store.approvals(b.id).await.expect("approvals").is_empty());

    // A waiting deployment can be cancelled like a queued one.
    let c = store
        .create_awaiting_approval(
            request("can-1", "web", "production"),
            need(1, Duration::from_secs(3600)),
        )
        .await
        .expect("create")
        .deployment;
    let cancelled = store.request_cancel(c.id, "alice").await.expect("cancel");
    assert!(
        matches!(cancelled, chima_store::CancelResult::Cancelled(ref d) if d.state == DeploymentState::Cancelled),
        "{cancelled:?}"
    );

    // Bad needs are refused.
    for bad in [need(0, Duration::from_secs(60)), need(1, Duration::ZERO)] {
        let err = store
            .create_awaiting_approval(request("bad", "web", "production"), bad)
            .await
            .expect_err("refused");
        assert!(matches!(err, StoreError::InvalidInput { .. }), "{err:?}");
    }
}

pub async fn concurrent_approvals_are_counted_once_each(h: &Harness) {
    let store = h.store.clone();
    let d = store
        .create_awaiting_approval(
            request("conc-1", "web", "production"),
            need(2, Duration::from_secs(3600)),
        )
        .await
        .expect("create")
        .deployment;
    // Four approvers, each clicking twice, at once, from two "processes".
    let other = h.other_store(4).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s: Arc<dyn Store> = if i % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        let who = format!("chat:u{}", i % 4);
        tasks.push(tokio::spawn(async move {
            s.decide_approval(d.id, &who, &who, Decision::Approve, None)
                .await
                .expect("decide")
        }));
    }
    let mut approved = 0;
    for t in tasks {
        if matches!(t.await.expect("task"), Decided::Approved { .. }) {
            approved += 1;
        }
    }
    assert_eq!(approved, 1, "exactly one approval made it queued");
    let now = store
        .get_deployment(d.id)
        .await
        .expect("get")
        .expect("there");
    assert_eq!(now.state, DeploymentState::Queued);
    let approvals = store.approvals(d.id).await.expect("approvals");
    assert!(
        (2..=4).contains(&approvals.len()),
        "one row per approver who came in time: {approvals:?}"
    );
    let queued_events = events(store.as_ref(), d.id)
        .await
        .into_iter()
        .filter(|(_, s)| *s == DeploymentState::Queued)
        .count();
    assert_eq!(queued_events, 2, "one queued event per target");
}
