//! Starting on a fresh database, and refusing a newer one.

use chima_store::{Backend, DeploymentFilter, StoreError};

use crate::harness::{Harness, Kind, request};

/// The SQLite store works from a fresh file (in a folder that does not exist yet) with no
/// setup; the PostgreSQL store from an empty database. Opening again is a no-op.
pub async fn fresh_database_needs_no_setup(h: &Harness) {
    let url = h.empty_database_url().await;
    let store = chima_store::open(&url)
        .await
        .expect("open an empty database");
    assert_eq!(
        store.backend(),
        match h.kind {
            Kind::Postgres => Backend::Postgres,
            Kind::Sqlite => Backend::Sqlite,
        }
    );
    store.ping().await.expect("ping");
    let created = store
        .create_deployment(request("fresh-1", "web", "production"))
        .await
        .expect("create on a fresh database");
    assert!(!created.already_existed);
    store.close().await;

    // A second start finds the schema up to date and the data in place.
    let again = chima_store::open(&url).await.expect("open again");
    again.migrate().await.expect("migrating twice is a no-op");
    let listed = again
        .list_deployments(&DeploymentFilter::default())
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, created.deployment.id);
    again.close().await;
}

/// A database that holds a migration newer than this build knows is refused with a clear
/// message that names the database (never its password) and the versions.
pub async fn newer_migrations_are_refused(h: &Harness) {
    const FUTURE: i64 = 20991231000000;
    h.insert_future_migration(FUTURE).await;

    let err = h
        .store()
        .migrate()
        .await
        .expect_err("migrate must refuse a newer database");
    assert!(
        matches!(err, StoreError::NewerMigrations { found: FUTURE, .. }),
        "unexpected error: {err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("has migration 20991231000000 which this faseng does not know"),
        "{text}"
    );
    assert!(text.contains("newest known: 2026"), "{text}");
    assert!(text.contains("Upgrade faseng"), "{text}");

    // Through `open`, with a password in the URL: the message must not show it.
    let url = match h.kind {
        Kind::Postgres => with_password(&h.url(), "hunter2"),
        Kind::Sqlite => h.url(),
    };
    let err = match chima_store::open(&url).await {
        Ok(_) => panic!("open must refuse a newer database"),
        Err(err) => err,
    };
    let text = err.to_string();
    assert!(
        text.contains("has migration 20991231000000 which this faseng does not know"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "password leaked: {text}");
    match h.kind {
        Kind::Postgres => assert!(text.contains("database at postgres://"), "{text}"),
        Kind::Sqlite => assert!(text.contains("store.db"), "{text}"),
    }
}

/// Adds a password to a URL that has none (trust authentication ignores it), so that we
/// can check it never appears in messages. A URL that has one keeps it.
fn with_password(url: &str, password: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority = rest.split('/').next().unwrap_or("");
    match authority.rfind('@') {
        Some(at) if !authority[..at].contains(':') => format!(
            "{}{}:{}{}",
            &url[..scheme_end],
            &authority[..at],
            password,
            &rest[at..]
        ),
        _ => url.to_owned(),
    }
}
