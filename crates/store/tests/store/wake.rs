//! "Wait for work": idle claimers wake when work arrives.

use std::sync::Arc;
use std::time::Duration;

use chima_store::{Outcome, SQLITE_POLL_INTERVAL, Store};
use tokio::time::Instant;

use crate::harness::{Harness, Kind, request};

/// Uses up wake-ups left over from earlier activity (and, on PostgreSQL, lets the first
/// wait start the listener and return), so that the next wait really blocks: returns once
/// a wait lasted its whole timeout.
async fn drain(store: &dyn Store) {
    for _ in 0..20 {
        let started = Instant::now();
        store
            .wait_for_work(Duration::from_millis(150))
            .await
            .expect("wait");
        if started.elapsed() >= Duration::from_millis(140) {
            return;
        }
    }
    panic!("wait_for_work keeps returning at once with nothing to do");
}

/// Blocks a claimer in `wait_for_work` (timeout 30 s), runs `act`, and returns how long
/// after `act` completed the claimer woke.
async fn wake_latency<F, Fut>(waiter: &Arc<dyn Store>, act: F) -> Duration
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    drain(waiter.as_ref()).await;
    let blocked = {
        let waiter = Arc::clone(waiter);
        tokio::spawn(async move {
            waiter
                .wait_for_work(Duration::from_secs(30))
                .await
                .expect("wait");
            Instant::now()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!blocked.is_finished(), "the claimer should be blocked");
    act().await;
    let acted = Instant::now();
    let woke = tokio::time::timeout(Duration::from_secs(40), blocked)
        .await
        .expect("the waiter returns")
        .expect("waiter task");
    woke.saturating_duration_since(acted)
}

/// A claimer blocked in `wait_for_work` wakes when a deployment is queued by another
/// process, and when a running deployment ends (the next one may go). On PostgreSQL
/// (LISTEN/NOTIFY) within 100 ms; on SQLite at once in-process, within the poll interval
/// across processes. Without work it waits its whole timeout.
pub async fn wait_for_work_wakes_on_insert_and_on_finish(h: &Harness) {
    let waiter = Arc::clone(&h.store);
    let other = h.other_store(3).await;

    // Nothing to do: the wait lasts its timeout.
    drain(waiter.as_ref()).await;
    let started = Instant::now();
    waiter
        .wait_for_work(Duration::from_millis(400))
        .await
        .expect("wait");
    assert!(started.elapsed() >= Duration::from_millis(390));

    // Queued by another process.
    let latency = wake_latency(&waiter, || async {
        other
            .create_deployment(request("wake-1", "web", "production"))
            .await
            .expect("create");
    })
    .await;
    eprintln!(
        "{:?}: woke {latency:?} after an insert by another process",
        h.kind
    );
    let bound = match h.kind {
        Kind::Postgres => Duration::from_millis(100),
        // Polling: one interval, plus slack for a loaded machine.
        Kind::Sqlite => SQLITE_POLL_INTERVAL + Duration::from_secs(2),
    };
    assert!(
        latency < bound,
        "woke {latency:?} after the insert (bound {bound:?})"
    );

    // While the only deployment runs there is nothing to claim: the wait blocks; when it
    // ends, the claimer wakes.
    let d = other
        .claim("w", Duration::from_secs(60))
        .await
        .expect("claim")
        .expect("claimable");
    other
        .create_deployment(request("wake-2", "web", "production"))
        .await
        .expect("create");
    let latency = wake_latency(&waiter, || async {
        other
            .finish(d.id, "w", Outcome::succeeded(0))
            .await
            .expect("finish");
    })
    .await;
    eprintln!(
        "{:?}: woke {latency:?} after a finish by another process",
        h.kind
    );
    assert!(
        latency < bound,
        "woke {latency:?} after the finish (bound {bound:?})"
    );
    let next = waiter
        .claim("w2", Duration::from_secs(60))
        .await
        .expect("claim")
        .expect("the next one is claimable");
    assert_eq!(next.source_key, "wake-2");

    // In the same process (chima's embedded mode) the wake-up is immediate on both.
    waiter
        .finish(next.id, "w2", Outcome::succeeded(0))
        .await
        .expect("finish");
    let latency = wake_latency(&waiter, || async {
        waiter
            .create_deployment(request("wake-3", "web", "production"))
            .await
            .expect("create");
    })
    .await;
    eprintln!("{:?}: woke {latency:?} after an insert in-process", h.kind);
    assert!(
        latency < Duration::from_millis(100),
        "woke {latency:?} after an in-process insert"
    );
}
