//! Errors of the store.
//!
//! Callers match on the kind: [`StoreError::NotFound`], [`StoreError::InvalidTransition`]
//! and [`StoreError::Conflict`] are answers about the data (map them to 404 / 409 and
//! friendly chat replies); [`StoreError::Database`] is the database failing (retry, alert).
//! Every variant says which operation and which record it was about, because a bare
//! "database error" in a deploy log is useless at 3 a.m.

use crate::model::DeploymentState;

/// What can go wrong in the store. See the module docs for how callers should sort the
/// variants.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record does not exist.
    #[error("{what} not found")]
    NotFound {
        /// e.g. `deployment 42`, `outbox entry 7`.
        what: String,
    },

    /// The deployment is not in a state that allows the change; nothing changed.
    #[error("deployment {id} cannot go from {from} to {to}: {detail}")]
    InvalidTransition {
        /// The deployment's id.
        id: i64,
        /// The state it is in.
        from: DeploymentState,
        /// The state the change would have put it in.
        to: DeploymentState,
        /// Why the change is refused.
        detail: String,
    },

    /// The change collides with someone else's (e.g. finishing a deployment whose lease
    /// another worker holds); nothing changed.
    #[error("{op}: {detail}")]
    Conflict {
        /// What was attempted, e.g. `finish deployment 42`.
        op: String,
        /// What collided.
        detail: String,
    },

    /// The arguments make no sense (e.g. finishing with a non-terminal state).
    #[error("{op}: {detail}")]
    InvalidInput {
        /// What was attempted, e.g. `finish deployment 42`.
        op: String,
        /// What is wrong with the arguments.
        detail: String,
    },

    /// The database holds migrations that this build does not know: it was migrated by a
    /// newer faseng. Running old code against a newer schema could corrupt it, so we stop.
    #[error(
        "database at {location} has migration {found} which this faseng does not know \
         (newest known: {newest_known}). Upgrade faseng, or point DATABASE_URL at another database."
    )]
    NewerMigrations {
        /// The database URL without password.
        location: String,
        /// The newest migration version the database has.
        found: i64,
        /// The newest migration version this build carries.
        newest_known: i64,
    },

    /// Applying migrations failed.
    #[error("migrating the database at {location} failed: {source}")]
    Migrate {
        /// The database URL without password.
        location: String,
        /// What sqlx's migrator said.
        #[source]
        source: sqlx::migrate::MigrateError,
    },

    /// The URL names no backend we have, or cannot be parsed.
    #[error("invalid database URL {url}: {detail}")]
    InvalidUrl {
        /// The URL without password.
        url: String,
        /// What is wrong with it.
        detail: String,
    },

    /// Connecting failed.
    #[error("cannot connect to the database at {location}: {source}")]
    Connect {
        /// The database URL without password.
        location: String,
        /// What sqlx said.
        #[source]
        source: sqlx::Error,
    },

    /// A query failed.
    #[error("database error while trying to {op}: {source}")]
    Database {
        /// What we were doing, e.g. `finish deployment 42`.
        op: String,
        /// What sqlx said.
        #[source]
        source: sqlx::Error,
    },

    /// A stored value could not be read back (a bug, or someone edited the tables by hand).
    #[error("unreadable data while trying to {op}: {detail}")]
    Corrupt {
        /// What was attempted, e.g. `finish deployment 42`.
        op: String,
        /// Which value could not be read, and why.
        detail: String,
    },
}

impl StoreError {
    /// Wraps a query error with the operation it belongs to. A value that cannot be
    /// decoded is not the database failing but bad data: it becomes [`StoreError::Corrupt`].
    pub(crate) fn db(op: impl Into<String>, source: sqlx::Error) -> Self {
        match source {
            sqlx::Error::ColumnDecode { index, source } => StoreError::Corrupt {
                op: op.into(),
                detail: format!("column {index}: {source}"),
            },
            sqlx::Error::Decode(source) => StoreError::Corrupt {
                op: op.into(),
                detail: source.to_string(),
            },
            source => StoreError::Database {
                op: op.into(),
                source,
            },
        }
    }

    /// Whether the database could not be reached or answer (worth retrying once it is
    /// back), as opposed to a refusal that retrying cannot change.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Connect { .. } | StoreError::Database { .. }
        )
    }

    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        StoreError::NotFound { what: what.into() }
    }

    pub(crate) fn corrupt(op: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        StoreError::Corrupt {
            op: op.into(),
            detail: detail.to_string(),
        }
    }

    /// `true` for answers about the data (not found, invalid transition, conflict, bad
    /// input), as opposed to the database or the schema failing.
    pub fn is_about_data(&self) -> bool {
        matches!(
            self,
            StoreError::NotFound { .. }
                | StoreError::InvalidTransition { .. }
                | StoreError::Conflict { .. }
                | StoreError::InvalidInput { .. }
        )
    }
}

/// `true` when the error is a unique-constraint violation (a lost race, not a failure).
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db.is_unique_violation(),
        _ => false,
    }
}
