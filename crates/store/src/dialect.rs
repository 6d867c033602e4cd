//! What sets the two SQL dialects apart, in one place, so that every query whose text
//! differs only in these fragments is written once (see `shared.rs`).
//!
//! The fragment macros take the dialect as their first token, `pg` or `sqlite`, and
//! expand to string literals, so that `concat!` builds each statement at compile time.
//! The Rust side (how a timestamp or an interval is bound) is the [`Dialect`] trait.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{Backend, Result, common};

/// The transaction's "now": PostgreSQL's `now()` (when the transaction began); SQLite's
/// clock in the stored format (milliseconds: the resolution of SQLite's clock). An
/// SQLite statement reads its clock only once it holds the write lock, so times recorded
/// by successive writers are in commit order, as with PostgreSQL.
macro_rules! now_sql {
    (pg) => {
        "now()"
    };
    (sqlite) => {
        "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
    };
}
pub(crate) use now_sql;

/// The clock while the statement runs: what a deployment records (`started_at`,
/// `finished_at`, its lease). On PostgreSQL `clock_timestamp()`, not `now()`: `now()` can
/// be before the snapshot that saw the previous deployment finish, and would let a claim
/// record a start earlier than the finish it waited for. On SQLite the same as
/// [`now_sql!`].
macro_rules! clock_sql {
    (pg) => {
        "clock_timestamp()"
    };
    (sqlite) => {
        "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
    };
}
pub(crate) use clock_sql;

/// The clock plus the interval bound as `$n` (see [`Dialect::interval`]).
macro_rules! clock_plus_sql {
    (pg, $param:literal) => {
        concat!("clock_timestamp() + make_interval(secs => ", $param, ")")
    };
    (sqlite, $param:literal) => {
        concat!("strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ", $param, ")")
    };
}
pub(crate) use clock_plus_sql;

/// The transaction's "now" plus the interval bound as `$n`.
macro_rules! now_plus_sql {
    (pg, $param:literal) => {
        concat!("now() + make_interval(secs => ", $param, ")")
    };
    (sqlite, $param:literal) => {
        concat!("strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ", $param, ")")
    };
}
pub(crate) use now_plus_sql;

/// A parameter with its type spelled out: PostgreSQL cannot infer the type of
/// `$1 IS NULL`; SQLite has no such casts to give.
macro_rules! typed_sql {
    (pg, $param:literal, $ty:literal) => {
        concat!($param, "::", $ty)
    };
    (sqlite, $param:literal, $ty:literal) => {
        $param
    };
}
pub(crate) use typed_sql;

/// Row locking for a subquery that picks rows to update. PostgreSQL: `SKIP LOCKED`, so
/// that claimers and senders on many machines never wait on each other (the partial
/// unique index on running deployments settles any race that slips through). SQLite has
/// one writer at a time, which takes the write lock before evaluating the statement, so
/// the candidate cannot change under it: nothing to add.
macro_rules! skip_locked_sql {
    (pg) => {
        " FOR UPDATE SKIP LOCKED"
    };
    (sqlite) => {
        ""
    };
}
pub(crate) use skip_locked_sql;

/// A JSON object built from key, value pairs: `jsonb_build_object(` or `json_object(`
/// (the caller closes the parenthesis).
macro_rules! json_object_sql {
    (pg) => {
        "jsonb_build_object("
    };
    (sqlite) => {
        "json_object("
    };
}
pub(crate) use json_object_sql;

/// The outbox targets of the deployment `d` as rows of a column `value`: `TEXT[]` on
/// PostgreSQL, a JSON array on SQLite.
macro_rules! targets_sql {
    (pg) => {
        "unnest(d.notify) AS t (value)"
    };
    (sqlite) => {
        "json_each(d.notify) AS t"
    };
}
pub(crate) use targets_sql;

/// Whether sqlx's migrations table exists.
macro_rules! has_migrations_sql {
    (pg) => {
        "SELECT to_regclass('_sqlx_migrations') IS NOT NULL"
    };
    (sqlite) => {
        "SELECT EXISTS (SELECT 1 FROM sqlite_master \
         WHERE type = 'table' AND name = '_sqlx_migrations')"
    };
}
pub(crate) use has_migrations_sql;

/// How a backend binds what the fragments above leave as parameters, and what it does
/// after a change that may make work claimable.
pub(crate) trait Dialect {
    /// Which database this is.
    const BACKEND: Backend;
    /// Its name, for messages.
    const NAME: &'static str;

    /// The sqlx driver.
    type Db: sqlx::Database;
    /// A caller's timestamp as bound.
    type Ts;
    /// An interval as bound to the `*_plus_sql!` fragments.
    type Interval;

    /// A caller's timestamp, as stored and compared with the clock.
    fn ts(t: DateTime<Utc>) -> Self::Ts;

    /// `duration` from now.
    fn interval(duration: Duration) -> Self::Interval;

    /// `duration` ago.
    fn interval_ago(duration: Duration) -> Self::Interval;

    /// A lease as an interval, validated in whole milliseconds so that both backends
    /// accept the same leases.
    fn lease(op: &str, lease: Duration) -> Result<Self::Interval> {
        let millis = common::lease_millis(op, lease)?;
        Ok(Self::interval(Duration::from_millis(
            u64::try_from(millis).unwrap_or(1),
        )))
    }

    /// After a change that may make work claimable: wake this process's claimers where
    /// the database does not (PostgreSQL's trigger sends a NOTIFY itself).
    fn work_changed(&self);
}
