//! Environment locks.

use std::time::Duration;

use chima_store::LockResult;
use chrono::Utc;

use crate::harness::{Harness, eventually};

pub async fn locks_hold_update_expire_and_unlock(h: &Harness) {
    let store = h.store();
    assert_eq!(
        store.get_lock("web", "production").await.expect("get"),
        None
    );

    let LockResult::Acquired(lock) = store
        .lock("web", "production", "alice", Some("db migration"), None)
        .await
        .expect("lock")
    else {
        panic!("free lock")
    };
    assert_eq!(lock.holder, "alice");
    assert_eq!(lock.reason.as_deref(), Some("db migration"));
    assert_eq!(lock.expires_at, None);

    // Someone else: refused, told who holds it.
    let LockResult::HeldBy(held) = store
        .lock("web", "production", "bob", Some("hotfix"), None)
        .await
        .expect("lock")
    else {
        panic!("alice holds it")
    };
    assert_eq!(held, lock);

    // The holder again: reason and expiry updated, creation time kept.
    let later = Utc::now() + chrono::Duration::hours(2);
    let LockResult::Acquired(updated) = store
        .lock(
            "web",
            "production",
            "alice",
            Some("still migrating"),
            Some(later),
        )
        .await
        .expect("relock")
    else {
        panic!("the holder can re-lock")
    };
    assert_eq!(updated.reason.as_deref(), Some("still migrating"));
    // SQLite keeps milliseconds, PostgreSQL microseconds.
    assert_eq!(
        updated.expires_at.map(|t| t.timestamp_millis()),
        Some(later.timestamp_millis())
    );
    assert_eq!(updated.created_at, lock.created_at);

    // Other environments and apps are independent.
    let LockResult::Acquired(_) = store
        .lock("web", "staging", "bob", None, None)
        .await
        .expect("lock")
    else {
        panic!("staging is free")
    };
    let LockResult::Acquired(_) = store
        .lock("api", "production", "bob", None, None)
        .await
        .expect("lock")
    else {
        panic!("api is free")
    };
    let listed = store.list_locks().await.expect("list");
    let keys: Vec<(&str, &str, &str)> = listed
        .iter()
        .map(|l| (l.app.as_str(), l.environment.as_str(), l.holder.as_str()))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("api", "production", "bob"),
            ("web", "production", "alice"),
            ("web", "staging", "bob"),
        ]
    );

    // Unlock returns what it removed; a second unlock finds nothing.
    let removed = store
        .unlock("web", "staging")
        .await
        .expect("unlock")
        .expect("was locked");
    assert_eq!(removed.holder, "bob");
    assert_eq!(store.unlock("web", "staging").await.expect("unlock"), None);
    assert_eq!(store.get_lock("web", "staging").await.expect("get"), None);

    // An expired lock counts as absent everywhere, with no sweeper, and is overwritten.
    let past = Utc::now() - chrono::Duration::minutes(1);
    store
        .lock("web", "qa", "carol", Some("old"), Some(past))
        .await
        .expect("lock");
    assert_eq!(store.get_lock("web", "qa").await.expect("get"), None);
    assert!(
        store
            .list_locks()
            .await
            .expect("list")
            .iter()
            .all(|l| l.environment != "qa")
    );
    let LockResult::Acquired(taken) = store
        .lock("web", "qa", "dave", Some("new"), None)
        .await
        .expect("lock")
    else {
        panic!("an expired lock is overwritten")
    };
    assert_eq!(taken.holder, "dave");
    assert_eq!(taken.expires_at, None);

    // A lock that expires while we watch stops counting by itself.
    let soon = Utc::now() + chrono::Duration::milliseconds(300);
    let LockResult::Acquired(_) = store
        .lock("web", "edge", "erin", None, Some(soon))
        .await
        .expect("lock")
    else {
        panic!("edge is free")
    };
    eventually("the lock to expire", Duration::from_secs(30), || async {
        store
            .get_lock("web", "edge")
            .await
            .expect("get")
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(
        store.unlock("web", "edge").await.expect("unlock"),
        None,
        "an expired lock is not reported as removed"
    );
    let LockResult::Acquired(_) = store
        .lock("web", "edge", "frank", None, None)
        .await
        .expect("lock")
    else {
        panic!("edge is free again")
    };
}

/// A lock taken by a verified identity yields to that identity only: someone who
/// renamed themselves to the holder's name is still someone else, and the holder keeps
/// the lock under a new display name.
pub async fn locks_compare_holders_by_identity_not_by_name(h: &Harness) {
    let store = h.store();
    let LockResult::Acquired(lock) = store
        .lock_by(
            "web",
            "production",
            "alice",
            Some("chat:U1"),
            Some("db"),
            None,
        )
        .await
        .expect("lock")
    else {
        panic!("free lock")
    };
    assert_eq!(lock.holder_id.as_deref(), Some("chat:U1"));
    assert!(lock.held_by("chat:U1", "whoever"));
    assert!(!lock.held_by("chat:U2", "alice"), "a name grants nothing");

    // Another identity with the holder's name: refused, nothing changed.
    let LockResult::HeldBy(held) = store
        .lock_by(
            "web",
            "production",
            "alice",
            Some("chat:U2"),
            Some("mine now"),
            None,
        )
        .await
        .expect("lock")
    else {
        panic!("U1 holds it")
    };
    assert_eq!(held, lock);
    assert_eq!(
        store
            .get_lock("web", "production")
            .await
            .expect("get")
            .and_then(|l| l.reason),
        Some("db".to_string())
    );

    // The holder under a new name: still theirs, reason updated.
    let LockResult::Acquired(again) = store
        .lock_by(
            "web",
            "production",
            "alice2",
            Some("chat:U1"),
            Some("db, still"),
            None,
        )
        .await
        .expect("relock")
    else {
        panic!("the holder can re-lock")
    };
    assert_eq!(again.holder, "alice2");
    assert_eq!(again.created_at, lock.created_at);

    // A lock taken by name only compares by name (locks from before identities).
    let LockResult::Acquired(old) = store
        .lock("web", "staging", "bob", None, None)
        .await
        .expect("lock")
    else {
        panic!("free lock")
    };
    assert_eq!(old.holder_id, None);
    assert!(old.held_by("chat:anything", "Bob"));
}
