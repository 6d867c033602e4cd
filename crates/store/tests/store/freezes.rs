//! Deploy freezes: scopes (one app, every app, one environment, every environment),
//! replacement, lifting, and the end every freeze reaches by itself.

use std::time::Duration;

use chima_store::{EVERY, StoreError};
use chrono::Utc;

use crate::harness::{Harness, eventually};

pub async fn freezes_cover_their_scope_and_are_lifted(h: &Harness) {
    let store = h.store();
    let week = Utc::now() + chrono::Duration::days(7);
    assert!(
        store
            .freezes_of("web", "production")
            .await
            .expect("read")
            .is_empty()
    );

    let f = store
        .freeze(
            "web",
            "production",
            "alice",
            Some("chat:U1"),
            Some("holidays"),
            week,
        )
        .await
        .expect("freeze");
    assert_eq!(f.frozen_by, "alice");
    assert_eq!(f.frozen_by_id.as_deref(), Some("chat:U1"));
    assert_eq!(f.reason.as_deref(), Some("holidays"));
    // SQLite keeps milliseconds, PostgreSQL microseconds.
    assert_eq!(f.ends_at.timestamp_millis(), week.timestamp_millis());
    assert!(f.starts_at <= Utc::now() + chrono::Duration::seconds(5));
    assert!(f.covers("web", "production"));
    assert!(!f.covers("web", "staging"));

    // Only what it covers is frozen.
    assert_eq!(
        store.freezes_of("web", "production").await.expect("read"),
        vec![f.clone()]
    );
    assert!(
        store
            .freezes_of("web", "staging")
            .await
            .expect("read")
            .is_empty()
    );
    assert!(
        store
            .freezes_of("api", "production")
            .await
            .expect("read")
            .is_empty()
    );

    // Every app in production, and every environment of api: both cover api's production.
    let two_days = Utc::now() + chrono::Duration::days(2);
    let all_prod = store
        .freeze(EVERY, "production", "bob", Some("chat:U2"), None, two_days)
        .await
        .expect("freeze all");
    let api_all = store
        .freeze("api", EVERY, "carol", None, Some("migration"), week)
        .await
        .expect("freeze api");
    assert_eq!(
        store.freezes_of("api", "production").await.expect("read"),
        vec![api_all.clone(), all_prod.clone()],
        "the one that ends last comes first"
    );
    assert_eq!(
        store.freezes_of("api", "staging").await.expect("read"),
        vec![api_all.clone()]
    );
    assert_eq!(
        store
            .freezes_of("web", "production")
            .await
            .expect("read")
            .len(),
        2
    );

    // Freezing the same scope again replaces it.
    let later = week + chrono::Duration::days(1);
    let replaced = store
        .freeze(
            "web",
            "production",
            "dave",
            Some("chat:U4"),
            Some("longer"),
            later,
        )
        .await
        .expect("refreeze");
    assert_eq!(replaced.frozen_by, "dave");
    let listed = store.list_freezes().await.expect("list");
    let keys: Vec<(&str, &str, &str)> = listed
        .iter()
        .map(|f| (f.app.as_str(), f.environment.as_str(), f.frozen_by.as_str()))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("*", "production", "bob"),
            ("api", "*", "carol"),
            ("web", "production", "dave")
        ]
    );

    // Lifting one scope leaves the others.
    let lifted = store
        .unfreeze("web", Some("production"))
        .await
        .expect("unfreeze");
    assert_eq!(lifted, vec![replaced]);
    assert_eq!(
        store.freezes_of("web", "production").await.expect("read"),
        vec![all_prod.clone()],
        "the freeze of every app still covers it"
    );
    assert!(
        store
            .unfreeze("web", Some("production"))
            .await
            .expect("again")
            .is_empty()
    );
    // Without an environment: every freeze of that app, whatever its environment.
    store
        .freeze("api", "staging", "erin", None, None, week)
        .await
        .expect("freeze");
    let lifted = store.unfreeze("api", None).await.expect("unfreeze api");
    assert_eq!(lifted.len(), 2, "{lifted:?}");
    assert_eq!(
        store.unfreeze(EVERY, None).await.expect("unfreeze all"),
        vec![all_prod]
    );
    assert!(store.list_freezes().await.expect("list").is_empty());

    // Hostile text is stored as text; empty names are refused.
    let hostile = "'; DROP TABLE freezes; -- <script>";
    let f = store
        .freeze("web", "production", hostile, None, Some(hostile), week)
        .await
        .expect("freeze");
    assert_eq!(f.reason.as_deref(), Some(hostile));
    assert_eq!(store.list_freezes().await.expect("list").len(), 1);
    for (app, env, by) in [
        ("", "production", "x"),
        ("web", "", "x"),
        ("web", "production", ""),
    ] {
        let err = store
            .freeze(app, env, by, None, None, week)
            .await
            .expect_err("empty names are refused");
        assert!(matches!(err, StoreError::InvalidInput { .. }), "{err:?}");
    }
}

/// A freeze ends by itself: past its end it counts as absent in every read, with no
/// sweeper, is not reported as lifted, and is replaced by the next freeze.
pub async fn freezes_end_by_themselves(h: &Harness) {
    let store = h.store();
    let past = Utc::now() - chrono::Duration::minutes(1);
    store
        .freeze("web", "production", "alice", None, Some("old"), past)
        .await
        .expect("freeze");
    assert!(
        store
            .freezes_of("web", "production")
            .await
            .expect("read")
            .is_empty()
    );
    assert!(store.list_freezes().await.expect("list").is_empty());
    assert!(
        store
            .unfreeze("web", None)
            .await
            .expect("unfreeze")
            .is_empty()
    );

    let soon = Utc::now() + chrono::Duration::milliseconds(400);
    store
        .freeze(EVERY, EVERY, "bob", None, Some("brief"), soon)
        .await
        .expect("freeze");
    assert_eq!(
        store
            .freezes_of("web", "production")
            .await
            .expect("read")
            .len(),
        1
    );
    eventually("the freeze to end", Duration::from_secs(30), || async {
        store
            .freezes_of("web", "production")
            .await
            .expect("read")
            .is_empty()
            .then_some(())
    })
    .await;
    let again = store
        .freeze(
            EVERY,
            EVERY,
            "carol",
            None,
            None,
            Utc::now() + chrono::Duration::hours(1),
        )
        .await
        .expect("a new freeze of the same scope");
    assert_eq!(again.frozen_by, "carol");
    assert_eq!(store.list_freezes().await.expect("list"), vec![again]);
}
