//! Dry runs (`deploy:noop`, issue 18) change nothing: they take no turn in their
//! environment's queue and no part in the one-running rule, which keeps holding for
//! every real deploy; and they never count as deployed.

use chima_store::{DRY_RUN_TASK, NewDeployment, Outcome};

use crate::harness::{Checker, Harness, request};
use crate::lifecycle::LEASE;

fn dry(key: &str) -> NewDeployment {
    let mut new = request(key, "web", "production");
    new.task = DRY_RUN_TASK.to_owned();
    new
}

/// How many real (not dry-run) deployments of web/production run, as committed.
async fn real_running(checker: &Checker) -> i64 {
    const SQL: &str = "SELECT COUNT(*) FROM deployments WHERE app = 'web' \
         AND environment = 'production' AND state = 'running' AND task <> 'deploy:noop'";
    match checker {
        Checker::Postgres(pool) => sqlx::query_scalar(SQL).fetch_one(pool).await,
        Checker::Sqlite(pool) => sqlx::query_scalar(SQL).fetch_one(pool).await,
    }
    .expect("count real running deployments")
}

pub async fn dry_runs_take_no_turn_and_real_deploys_keep_one_at_a_time(h: &Harness) {
    let store = h.store();
    let create = |new: NewDeployment| async move {
        store
            .create_deployment(new)
            .await
            .expect("create")
            .deployment
            .id
    };
    let claim = |w: &'static str| async move { store.claim(w, LEASE).await.expect("claim") };

    let r1 = create(request("real-1", "web", "production")).await;
    assert_eq!(claim("w1").await.map(|d| d.id), Some(r1));
    // A dry run starts while the real deploy runs.
    let n1 = create(dry("noop-1")).await;
    assert_eq!(
        claim("w2").await.map(|d| d.id),
        Some(n1),
        "a dry run waits for no deploy"
    );
    // A real deploy still waits for the real one.
    let r2 = create(request("real-2", "web", "production")).await;
    assert!(
        claim("w3").await.is_none(),
        "one real deploy at a time: real-2 waits for real-1"
    );
    // A second dry run runs beside both.
    let n2 = create(dry("noop-2")).await;
    assert_eq!(claim("w4").await.map(|d| d.id), Some(n2));
    assert!(claim("w3").await.is_none(), "real-2 still waits");

    // real-1 ends: real-2 starts although two dry runs still run.
    store
        .finish(r1, "w1", Outcome::succeeded(0))
        .await
        .expect("finish real-1");
    assert_eq!(
        claim("w3").await.map(|d| d.id),
        Some(r2),
        "running dry runs never hold a real deploy back"
    );
    assert_eq!(real_running(&h.checker()).await, 1);

    // The database itself still refuses a second real deploy running beside real-2,
    // and lets a dry run run beside it.
    let r3 = create(request("real-3", "web", "production")).await;
    let n3 = create(dry("noop-3")).await;
    let force_running = |id: i64| {
        let checker = h.checker();
        async move {
            match checker {
                Checker::Postgres(pool) => sqlx::query(
                    "UPDATE deployments SET state = 'running', started_at = now(), \
                     worker_id = 'x', lease_expires_at = now() + interval '1 hour' WHERE id = $1",
                )
                .bind(id)
                .execute(&pool)
                .await
                .map(drop),
                Checker::Sqlite(pool) => sqlx::query(
                    "UPDATE deployments SET state = 'running', \
                     started_at = '2026-01-01T00:00:00.000Z', worker_id = 'x', \
                     lease_expires_at = '2999-01-01T00:00:00.000Z' WHERE id = $1",
                )
                .bind(id)
                .execute(&pool)
                .await
                .map(drop),
            }
        }
    };
    let err = force_running(r3)
        .await
        .expect_err("the partial unique index refuses two real deploys running");
    assert!(
        err.as_database_error()
            .is_some_and(|e| e.is_unique_violation()),
        "{err:?}"
    );
    force_running(n3)
        .await
        .expect("a dry run may run beside a real deploy, even written by hand");
    assert_eq!(real_running(&h.checker()).await, 1);

    // Dry runs that succeed are never what is deployed: real-1 is.
    for (id, w) in [(n1, "w2"), (n2, "w4"), (n3, "x")] {
        store
            .finish(id, w, Outcome::succeeded(0))
            .await
            .expect("finish a dry run");
    }
    let last = store
        .last_succeeded("web", "production", None)
        .await
        .expect("last")
        .expect("real-1 succeeded");
    assert_eq!(
        last.id, r1,
        "a succeeded dry run is not the live deployment"
    );
}
