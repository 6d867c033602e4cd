//! The chat message of a deployment: recorded once posted, replaced when posted anew,
//! kept across store handles (another process edits it).

use std::time::Duration;

use chima_store::{Outcome, StoreError};
use chrono::Utc;

use crate::harness::{Harness, request};

pub async fn chat_message_is_recorded_and_replaced(h: &Harness) {
    let store = h.store();
    let d = store
        .create_deployment(request("chat-1", "web", "production"))
        .await
        .expect("create")
        .deployment;
    let other = store
        .create_deployment(request("chat-2", "web", "staging"))
        .await
        .expect("create")
        .deployment;
    assert_eq!(store.chat_message(d.id).await.expect("read"), None);

    let before = Utc::now() - chrono::Duration::seconds(5);
    store
        .set_chat_message(d.id, "C024BE91L", "1700000000.000100")
        .await
        .expect("record");
    let first = store
        .chat_message(d.id)
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(first.deployment_id, d.id);
    assert_eq!(first.channel, "C024BE91L");
    assert_eq!(first.ts, "1700000000.000100");
    assert!(first.updated_at >= before, "{first:?}");
    assert!(
        first.updated_at <= Utc::now() + chrono::Duration::seconds(5),
        "{first:?}"
    );
    // Only that deployment has one.
    assert_eq!(store.chat_message(other.id).await.expect("read"), None);

    // Another handle on the same database (another faseng process) sees it.
    let elsewhere = h.other_store(2).await;
    assert_eq!(
        elsewhere.chat_message(d.id).await.expect("read elsewhere"),
        Some(first.clone())
    );

    // Posted anew (the old message was deleted): the new ids replace the old ones.
    tokio::time::sleep(Duration::from_millis(20)).await;
    elsewhere
        .set_chat_message(d.id, "C0NEWCHAN1", "1700000001.000200")
        .await
        .expect("replace");
    let second = store
        .chat_message(d.id)
        .await
        .expect("read")
        .expect("still recorded");
    assert_eq!(second.channel, "C0NEWCHAN1");
    assert_eq!(second.ts, "1700000001.000200");
    assert!(second.updated_at >= first.updated_at, "{second:?}");

    // The deployment's life goes on without touching it.
    store
        .claim("w", Duration::from_secs(60))
        .await
        .expect("claim")
        .expect("claimable");
    store
        .finish(d.id, "w", Outcome::succeeded(0))
        .await
        .expect("finish");
    assert_eq!(store.chat_message(d.id).await.expect("read"), Some(second));
}

pub async fn chat_message_needs_a_deployment_and_ids(h: &Harness) {
    let store = h.store();
    let err = store
        .set_chat_message(987_654, "C1", "1.2")
        .await
        .expect_err("no such deployment");
    assert!(
        matches!(err, StoreError::NotFound { .. }),
        "unexpected error: {err:?}"
    );
    assert!(err.to_string().contains("deployment 987654"), "{err}");
    assert_eq!(store.chat_message(987_654).await.expect("read"), None);

    let d = store
        .create_deployment(request("chat-3", "api", "production"))
        .await
        .expect("create")
        .deployment;
    for (channel, ts) in [("", "1.2"), ("C1", ""), ("  ", "1.2")] {
        let err = store
            .set_chat_message(d.id, channel, ts)
            .await
            .expect_err("empty ids are refused");
        assert!(
            matches!(err, StoreError::InvalidInput { .. }),
            "unexpected error for {channel:?}/{ts:?}: {err:?}"
        );
    }
    assert_eq!(store.chat_message(d.id).await.expect("read"), None);
}

pub async fn chat_route_is_used_up_expires_and_is_replaced(h: &Harness) {
    let store = h.store();
    let url = "https://hooks.slack.com/commands/T1/1/abc";
    assert_eq!(store.use_chat_route("github:1").await.expect("use"), None);

    store
        .set_chat_route(
            "github:1",
            url,
            Utc::now() + chrono::Duration::minutes(30),
            3,
        )
        .await
        .expect("record");
    // Another handle (another faseng process) shares the uses.
    let elsewhere = h.other_store(2).await;
    assert_eq!(
        store.use_chat_route("github:1").await.expect("use"),
        Some(url.to_owned())
    );
    assert_eq!(
        elsewhere.use_chat_route("github:1").await.expect("use"),
        Some(url.to_owned())
    );
    assert_eq!(
        store.use_chat_route("github:1").await.expect("use"),
        Some(url.to_owned())
    );
    assert_eq!(store.use_chat_route("github:1").await.expect("use"), None);
    // Other keys have no route.
    assert_eq!(store.use_chat_route("github:2").await.expect("use"), None);

    // Replaced: the new url and uses count.
    let newer = "https://hooks.slack.com/commands/T1/2/def";
    store
        .set_chat_route(
            "github:1",
            newer,
            Utc::now() + chrono::Duration::minutes(30),
            1,
        )
        .await
        .expect("replace");
    assert_eq!(
        store.use_chat_route("github:1").await.expect("use"),
        Some(newer.to_owned())
    );
    assert_eq!(store.use_chat_route("github:1").await.expect("use"), None);

    // Expired: no use, whatever is left.
    store
        .set_chat_route("chima-7", url, Utc::now() - chrono::Duration::seconds(1), 5)
        .await
        .expect("record expired");
    assert_eq!(store.use_chat_route("chima-7").await.expect("use"), None);
    store
        .set_chat_route("chima-8", url, Utc::now() + chrono::Duration::seconds(1), 5)
        .await
        .expect("record short");
    assert_eq!(
        store.use_chat_route("chima-8").await.expect("use"),
        Some(url.to_owned())
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(store.use_chat_route("chima-8").await.expect("use"), None);

    // Dropped: gone; dropping again is fine.
    store
        .set_chat_route("chima-9", url, Utc::now() + chrono::Duration::minutes(1), 5)
        .await
        .expect("record");
    store.drop_chat_route("chima-9").await.expect("drop");
    store.drop_chat_route("chima-9").await.expect("drop again");
    assert_eq!(store.use_chat_route("chima-9").await.expect("use"), None);

    // Bad input is refused.
    for (key, url, uses) in [("", url, 5), ("k", "", 5), ("k", url, -1)] {
        let err = store
            .set_chat_route(key, url, Utc::now() + chrono::Duration::minutes(1), uses)
            .await
            .expect_err("refused");
        assert!(
            matches!(err, StoreError::InvalidInput { .. }),
            "unexpected error for {key:?}/{uses}: {err:?}"
        );
    }
}

pub async fn chat_route_uses_are_taken_once_under_concurrency(h: &Harness) {
    let store = h.other_store(4).await;
    let url = "https://hooks.slack.com/commands/T1/3/xyz";
    store
        .set_chat_route(
            "github:9",
            url,
            Utc::now() + chrono::Duration::minutes(30),
            5,
        )
        .await
        .expect("record");
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.use_chat_route("github:9").await.expect("use")
        }));
    }
    let mut got = 0;
    for task in tasks {
        if task.await.expect("join").is_some() {
            got += 1;
        }
    }
    assert_eq!(got, 5, "exactly the 5 uses are handed out");
}
