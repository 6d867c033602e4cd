//! What a case gets: the store under test, plus a few raw database hooks that the store
//! deliberately does not offer (independent checks, faking a newer schema).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chima_store::{NewDeployment, PgStore, SqliteStore, Store};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use tempfile::TempDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Sqlite,
}

/// A handle for independent checks from the database: its own connections, not the
/// store's, so what it sees is what is committed.
#[derive(Clone)]
pub enum Checker {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Checker {
    /// The largest number of running deployments of any one app+environment.
    pub async fn max_running_per_environment(&self) -> i64 {
        const SQL: &str = "SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) AS n \
             FROM deployments WHERE state = 'running' GROUP BY app, environment) AS t";
        match self {
            Checker::Postgres(pool) => sqlx::query_scalar(SQL).fetch_one(pool).await,
            Checker::Sqlite(pool) => sqlx::query_scalar(SQL).fetch_one(pool).await,
        }
        .expect("count running deployments")
    }

    /// How many deployments are running, all environments together.
    pub async fn running_total(&self) -> i64 {
        const SQL: &str = "SELECT COUNT(*) FROM deployments WHERE state = 'running'";
        match self {
            Checker::Postgres(pool) => sqlx::query_scalar(SQL).fetch_one(pool).await,
            Checker::Sqlite(pool) => sqlx::query_scalar(SQL).fetch_one(pool).await,
        }
        .expect("count running deployments")
    }

    /// Deletes a deployment the way an administrator would, with SQL.
    pub async fn delete_deployment(&self, id: i64) {
        const SQL: &str = "DELETE FROM deployments WHERE id = $1";
        match self {
            Checker::Postgres(pool) => sqlx::query(SQL).bind(id).execute(pool).await.map(|_| ()),
            Checker::Sqlite(pool) => sqlx::query(SQL).bind(id).execute(pool).await.map(|_| ()),
        }
        .expect("delete a deployment");
    }

    /// Log rows stored for a deployment, counted in the table itself.
    pub async fn log_rows(&self, id: i64) -> i64 {
        const SQL: &str = "SELECT COUNT(*) FROM deployment_logs WHERE deployment_id = $1";
        match self {
            Checker::Postgres(pool) => sqlx::query_scalar(SQL).bind(id).fetch_one(pool).await,
            Checker::Sqlite(pool) => sqlx::query_scalar(SQL).bind(id).fetch_one(pool).await,
        }
        .expect("count log rows")
    }

    /// Makes an auto-deploy claim `secs` seconds older, as a claimer that died that long
    /// ago would have left it.
    pub async fn age_auto_deploy(&self, app: &str, environment: &str, sha: &str, secs: i64) {
        const PG: &str = "UPDATE auto_deploys \
             SET created_at = created_at - make_interval(secs => $4::bigint::float8) \
             WHERE app = $1 AND environment = $2 AND sha = $3";
        const LITE: &str = "UPDATE auto_deploys \
             SET created_at = strftime('%Y-%m-%dT%H:%M:%fZ', created_at, '-' || $4 || ' seconds') \
             WHERE app = $1 AND environment = $2 AND sha = $3";
        let done = match self {
            Checker::Postgres(pool) => sqlx::query(PG)
                .bind(app)
                .bind(environment)
                .bind(sha)
                .bind(secs)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
            Checker::Sqlite(pool) => sqlx::query(LITE)
                .bind(app)
                .bind(environment)
                .bind(sha)
                .bind(secs)
                .execute(pool)
                .await
                .map(|r| r.rows_affected()),
        }
        .expect("age an auto-deploy claim");
        assert_eq!(done, 1, "one claim aged");
    }

    /// Ends every other session on the store's database, as a server restart or a
    /// proxy's idle cut does to a running service's connections (PostgreSQL; a SQLite
    /// file has no server, so nothing happens). The number of sessions ended.
    pub async fn drop_other_connections(&self) -> i64 {
        match self {
            Checker::Postgres(pool) => sqlx::query_scalar(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .fetch_one(pool)
            .await
            .expect("end the other sessions"),
            Checker::Sqlite(_) => 0,
        }
    }

    async fn close(&self) {
        match self {
            Checker::Postgres(pool) => pool.close().await,
            Checker::Sqlite(pool) => pool.close().await,
        }
    }
}

pub struct Harness {
    pub kind: Kind,
    pub store: Arc<dyn Store>,
    checker: Checker,
    /// Other stores a case opened (other "processes"); closed at the end.
    extra: Mutex<Vec<Arc<dyn Store>>>,
    /// PostgreSQL: the URL of the test database (with the password of DATABASE_URL, if any).
    pg_url: Option<String>,
    /// SQLite: the folder holding the database file, removed on drop.
    dir: Option<TempDir>,
    sqlite_path: Option<PathBuf>,
}

impl Harness {
    /// A store on the fresh, empty database `#[sqlx::test]` made for this test, migrated by
    /// the store itself.
    pub async fn postgres(pool: PgPool) -> Harness {
        let database = pool
            .connect_options()
            .get_database()
            .expect("sqlx::test names its database")
            .to_owned();
        let store = PgStore::from_pool(pool.clone());
        store
            .migrate()
            .await
            .expect("migrate an empty PostgreSQL database");
        let master = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for sqlx::test");
        Harness {
            kind: Kind::Postgres,
            store: Arc::new(store),
            checker: Checker::Postgres(pool),
            extra: Mutex::new(Vec::new()),
            pg_url: Some(with_database(&master, &database)),
            dir: None,
            sqlite_path: None,
        }
    }

    /// A store on a new file in a temporary folder, through `chima_store::open`.
    pub async fn sqlite() -> Harness {
        let dir = tempfile::tempdir().expect("temporary folder");
        let path = dir.path().join("store.db");
        let store = chima_store::open(&format!("sqlite://{}", path.display()))
            .await
            .expect("open a fresh SQLite file");
        let checker = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(
                SqliteConnectOptions::new()
                    .filename(&path)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(30)),
            )
            .await
            .expect("checker connections");
        Harness {
            kind: Kind::Sqlite,
            store,
            checker: Checker::Sqlite(checker),
            extra: Mutex::new(Vec::new()),
            pg_url: None,
            dir: Some(dir),
            sqlite_path: Some(path),
        }
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    pub fn checker(&self) -> Checker {
        self.checker.clone()
    }

    /// The URL `chima_store::open` takes for this test's database.
    pub fn url(&self) -> String {
        match self.kind {
            Kind::Postgres => self.pg_url.clone().expect("postgres url"),
            Kind::Sqlite => format!(
                "sqlite://{}",
                self.sqlite_path.as_ref().expect("sqlite path").display()
            ),
        }
    }

    /// Another store on the same database with its own connections: what another
    /// process sees. `connections` sizes its pool (PostgreSQL; SQLite uses its default).
    pub async fn other_store(&self, connections: u32) -> Arc<dyn Store> {
        let store: Arc<dyn Store> = match self.kind {
            Kind::Postgres => {
                let pool = PgPoolOptions::new()
                    .max_connections(connections)
                    .connect(&self.url())
                    .await
                    .expect("second PostgreSQL pool");
                Arc::new(PgStore::from_pool(pool))
            }
            Kind::Sqlite => Arc::new(
                SqliteStore::open(&self.url())
                    .await
                    .expect("second SQLite store"),
            ),
        };
        self.extra
            .lock()
            .expect("extra stores")
            .push(Arc::clone(&store));
        store
    }

    /// A URL of an empty database that no migration has touched: PostgreSQL empties this
    /// test's database (drops and re-creates the `public` schema); SQLite names a file in
    /// a folder that does not exist yet.
    pub async fn empty_database_url(&self) -> String {
        match (&self.checker, self.kind) {
            (Checker::Postgres(pool), Kind::Postgres) => {
                sqlx::query("DROP SCHEMA public CASCADE")
                    .execute(pool)
                    .await
                    .expect("drop schema");
                sqlx::query("CREATE SCHEMA public")
                    .execute(pool)
                    .await
                    .expect("create schema");
                self.url()
            }
            _ => {
                let dir = self.dir.as_ref().expect("temporary folder");
                format!(
                    "sqlite://{}",
                    dir.path().join("not/yet/there/fresh.db").display()
                )
            }
        }
    }

    /// Records a migration this build does not know, as a newer faseng would have.
    pub async fn insert_future_migration(&self, version: i64) {
        match &self.checker {
            Checker::Postgres(pool) => sqlx::query(
                "INSERT INTO _sqlx_migrations \
                 (version, description, success, checksum, execution_time) \
                 VALUES ($1, 'from a newer faseng', TRUE, '\\x00'::bytea, 0)",
            )
            .bind(version)
            .execute(pool)
            .await
            .map(|_| ()),
            Checker::Sqlite(pool) => sqlx::query(
                "INSERT INTO _sqlx_migrations \
                 (version, description, success, checksum, execution_time) \
                 VALUES ($1, 'from a newer faseng', TRUE, X'00', 0)",
            )
            .bind(version)
            .execute(pool)
            .await
            .map(|_| ()),
        }
        .expect("insert a future migration");
    }

    /// Closes every store and pool the case used (PostgreSQL drops the test database
    /// afterwards, which needs every connection gone).
    pub async fn close(self) {
        let extra = std::mem::take(&mut *self.extra.lock().expect("extra stores"));
        for store in extra {
            store.close().await;
        }
        self.store.close().await;
        self.checker.close().await;
    }
}

/// `url` with its database replaced (keeps user, password, host and parameters).
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let authority_end = base[after_scheme..]
        .find('/')
        .map(|i| after_scheme + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..authority_end], database);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// A deployment request with every field set, notifying GitHub and chat.
pub fn request(source_key: &str, app: &str, environment: &str) -> NewDeployment {
    NewDeployment {
        source_key: source_key.to_owned(),
        requester: "alice".to_owned(),
        app: app.to_owned(),
        environment: environment.to_owned(),
        repository: format!("acme/{app}"),
        git_ref: "main".to_owned(),
        sha: Some("0123456789abcdef0123456789abcdef01234567".to_owned()),
        task: "deploy".to_owned(),
        hosts: None,
        provider: "script".to_owned(),
        payload: serde_json::json!({"notify": {"room": "ops"}, "config": {"provider": "script"}}),
        github_deployment_id: None,
        notify: vec!["github".to_owned(), "chat".to_owned()],
        timeout_secs: Some(600),
    }
}

/// Runs `check` until it returns `Some`, or fails the test after `limit`. Deadlines, not
/// sleeps: a slow machine only makes the test slower, not red.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
