//! Auto-deploy claims: one claim per commit, paused environments, and a stale
//! unrecorded claim taken over once.

use std::time::Duration;

use crate::harness::Harness;

/// How old an unrecorded auto-deploy claim must be to be taken over, in these cases.
const STALE_AFTER: Duration = Duration::from_secs(5 * 60);

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
