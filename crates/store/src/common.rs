//! Helpers shared by both backends.

use std::borrow::Cow;
use std::time::Duration;

use tokio::sync::Notify;

use crate::error::StoreError;
use crate::model::{Deployment, DeploymentState, NewDeployment, Outcome};

/// The columns of `deployments` that make a [`crate::Deployment`], in one place so that
/// every query returns the same shape.
macro_rules! deployment_columns {
    () => {
        "id, source_key, github_deployment_id, state, requester, app, environment, \
         repository, git_ref, sha, task, hosts, provider, payload, notify, timeout_secs, \
         created_at, started_at, finished_at, exit_code, reason, worker_id, \
         lease_expires_at, cancel_requested_by, approvals_needed, approval_expires_at"
    };
}
pub(crate) use deployment_columns;

/// The columns of `approvals` that make a [`crate::Approval`].
macro_rules! approval_columns {
    () => {
        "deployment_id, approver_key, approver, decision, reason, at"
    };
}
pub(crate) use approval_columns;

/// The columns a new deployment sets, bound as `$1` to `$14` (see `insert_query` in
/// `shared.rs`); `created_at` follows, from the database's clock.
macro_rules! new_deployment_columns {
    () => {
        "source_key, github_deployment_id, requester, app, environment, repository, git_ref, \
         sha, task, hosts, provider, payload, notify, timeout_secs, created_at"
    };
}
pub(crate) use new_deployment_columns;

/// The columns a new deployment awaiting approval sets, bound as `$1` to `$18` (see
/// `insert_awaiting_query` in `shared.rs`); `created_at` follows.
macro_rules! new_awaiting_columns {
    () => {
        "source_key, github_deployment_id, requester, app, environment, repository, git_ref, \
         sha, task, hosts, provider, payload, notify, timeout_secs, state, approvals_needed, \
         approval_expires_at, reason, created_at"
    };
}
pub(crate) use new_awaiting_columns;

/// Takes the next `$2` log sequence numbers of deployment `$1` and returns the last;
/// locks the deployment's row until commit. Alone in `reserve_log_seqs` (`shared.rs`)
/// and inside PostgreSQL's one-statement append (`insert_logs`).
macro_rules! reserve_log_seqs_sql {
    () => {
        "UPDATE deployments SET log_seq = log_seq + $2 WHERE id = $1 RETURNING log_seq"
    };
}
pub(crate) use reserve_log_seqs_sql;

macro_rules! outbox_columns {
    () => {
        "id, deployment_id, target, event, payload, created_at, due_at, attempts, \
         last_error, delivered_at"
    };
}
pub(crate) use outbox_columns;

macro_rules! lock_columns {
    () => {
        "app, environment, holder, holder_id, reason, created_at, expires_at"
    };
}
pub(crate) use lock_columns;

/// `(queued, running)`, each counted through its partial index (both backends).
pub(crate) const COUNT_ACTIVE: &str = "SELECT (SELECT count(*) FROM deployments WHERE state = 'queued'), \
     (SELECT count(*) FROM deployments WHERE state = 'running')";

/// Lines per INSERT statement when appending logs: well under both backends' bind
/// parameter limits (SQLite 32766, PostgreSQL 65535) with 5 columns per line, and large
/// enough that a busy deploy writes a handful of statements per second.
pub(crate) const LOG_CHUNK: usize = 1000;

/// Claim attempts before giving up on a round of lost races (each lost race means
/// another claimer made progress, so giving up is fine: the caller polls again).
pub(crate) const CLAIM_ATTEMPTS: usize = 4;

/// The longest lease we accept: beyond this a lost worker would block its environment
/// for too long, and the number would overflow an interval.
const MAX_LEASE: Duration = Duration::from_secs(24 * 3600);

/// The longest an approval may be awaited.
pub(crate) const MAX_APPROVAL_WAIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// The most text kept for an approver's name or a rejection's reason.
pub(crate) const MAX_APPROVAL_TEXT: usize = 500;

/// `text` cut to [`MAX_APPROVAL_TEXT`] characters, control characters dropped.
pub(crate) fn approval_text(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_APPROVAL_TEXT)
        .collect()
}

/// A lease as whole milliseconds, validated.
pub(crate) fn lease_millis(op: &str, lease: Duration) -> Result<i64, StoreError> {
    if lease.is_zero() || lease > MAX_LEASE {
        return Err(StoreError::InvalidInput {
            op: op.to_owned(),
            detail: format!("lease must be between 1 ms and 24 h, got {lease:?}"),
        });
    }
    Ok(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX).max(1))
}

/// Checks that `outcome` is a terminal state and returns the reason to store: the caller's,
/// or a short default so that every terminal state has one. `Cancelled` without a reason
/// gets `None` here; the query fills in "cancelled by <who asked>".
pub(crate) fn outcome_reason(id: i64, outcome: &Outcome) -> Result<Option<String>, StoreError> {
    if !outcome.state.is_terminal() {
        return Err(StoreError::InvalidTransition {
            id,
            from: DeploymentState::Running,
            to: outcome.state,
            detail: "a deployment can only finish in a terminal state".to_owned(),
        });
    }
    if let Some(reason) = &outcome.reason {
        return Ok(Some(reason.clone()));
    }
    Ok(match outcome.state {
        DeploymentState::Succeeded => Some("succeeded".to_owned()),
        DeploymentState::Failed => Some(match outcome.exit_code {
            Some(code) => format!("failed with exit code {code}"),
            None => "failed".to_owned(),
        }),
        DeploymentState::Errored => Some("errored".to_owned()),
        _ => None,
    })
}

/// Checks the ids of a chat message before they are recorded.
pub(crate) fn validate_chat_message(op: &str, channel: &str, ts: &str) -> Result<(), StoreError> {
    if channel.trim().is_empty() || ts.trim().is_empty() {
        return Err(StoreError::InvalidInput {
            op: op.to_owned(),
            detail: format!("a chat message needs a channel and a ts, got {channel:?} and {ts:?}"),
        });
    }
    Ok(())
}

/// Validates a chat route before it is stored.
pub(crate) fn validate_chat_route(
    op: &str,
    source_key: &str,
    response_url: &str,
    uses_left: i32,
) -> Result<(), StoreError> {
    if source_key.trim().is_empty() || response_url.trim().is_empty() || uses_left < 0 {
        return Err(StoreError::InvalidInput {
            op: op.to_owned(),
            detail: format!(
                "a chat route needs a source key, a url and uses_left >= 0, got {source_key:?}, \
                 {} url and {uses_left}",
                if response_url.trim().is_empty() {
                    "an empty"
                } else {
                    "a"
                }
            ),
        });
    }
    Ok(())
}

/// Validates the target state of `fail_queued`.
pub(crate) fn check_fail_queued_state(id: i64, state: DeploymentState) -> Result<(), StoreError> {
    if !state.is_terminal() || state == DeploymentState::Succeeded {
        return Err(StoreError::InvalidTransition {
            id,
            from: DeploymentState::Queued,
            to: state,
            detail: "a queued deployment can only end failed, errored or cancelled without running"
                .to_owned(),
        });
    }
    Ok(())
}

/// A URL fit for messages and logs: no password, no query string (which may hold one).
pub(crate) fn redact_url(url: &str) -> String {
    let url = url.trim();
    let without_query = url.split(['?', '#']).next().unwrap_or("");
    let Some(scheme_end) = without_query.find("://") else {
        return without_query.to_owned();
    };
    let (scheme, rest) = without_query.split_at(scheme_end + 3);
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let host = &authority[at + 1..];
            let user = userinfo.split(':').next().unwrap_or("");
            if user.is_empty() {
                format!("{scheme}{host}{path}")
            } else {
                format!("{scheme}{user}@{host}{path}")
            }
        }
        None => without_query.to_owned(),
    }
}

/// Wakes claimers blocked in `wait_for_work`.
///
/// `notify_waiters` wakes everyone waiting now; `notify_one` then leaves a permit for the
/// next waiter, which closes the window between a claimer's empty `claim` and its
/// `wait_for_work` (the cost is one spurious wake-up, which callers tolerate).
#[derive(Debug, Default)]
pub(crate) struct Wake {
    notify: Notify,
}

impl Wake {
    pub(crate) fn signal(&self) {
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

/// Refuses to run on a database migrated by a newer build (see
/// [`StoreError::NewerMigrations`]).
pub(crate) fn check_not_newer(
    location: &str,
    migrator: &sqlx::migrate::Migrator,
    applied_max: Option<i64>,
) -> Result<(), StoreError> {
    let newest_known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    match applied_max {
        Some(found) if found > newest_known => Err(StoreError::NewerMigrations {
            location: location.to_owned(),
            found,
            newest_known,
        }),
        _ => Ok(()),
    }
}

/// Rejects requests the schema would store but nobody could act on.
pub(crate) fn validate_new(
    new: &NewDeployment,
    approval: Option<&crate::model::ApprovalNeed>,
) -> Result<(), StoreError> {
    let op = || format!("create deployment {:?}", new.source_key);
    if let Some(a) = approval
        && (a.count < 1 || a.expires_in.is_zero() || a.expires_in > MAX_APPROVAL_WAIT)
    {
        return Err(StoreError::InvalidInput {
            op: op(),
            detail: format!(
                "an approval needs at least 1 approver and expires after 1 s to 7 days, got {} approvers and {:?}",
                a.count, a.expires_in
            ),
        });
    }
    for (field, value) in [
        ("source_key", &new.source_key),
        ("app", &new.app),
        ("environment", &new.environment),
        ("provider", &new.provider),
    ] {
        if value.trim().is_empty() {
            return Err(StoreError::InvalidInput {
                op: op(),
                detail: format!("{field} must not be empty"),
            });
        }
    }
    Ok(())
}

pub(crate) fn validate_lock(
    op: &str,
    app: &str,
    environment: &str,
    holder: &str,
) -> Result<(), StoreError> {
    if app.is_empty() || environment.is_empty() || holder.is_empty() {
        return Err(StoreError::InvalidInput {
            op: op.to_owned(),
            detail: "app, environment and holder must not be empty".to_owned(),
        });
    }
    Ok(())
}

/// The columns of `freezes`, in `Freeze`'s order.
macro_rules! freeze_columns {
    () => {
        "app, environment, frozen_by, frozen_by_id, reason, starts_at, ends_at"
    };
}
pub(crate) use freeze_columns;

/// `(state text, count)` rows in life-cycle order.
pub(crate) fn states_in_order(
    op: &str,
    rows: Vec<(String, i64)>,
) -> Result<Vec<(DeploymentState, i64)>, StoreError> {
    let mut counts = rows
        .into_iter()
        .map(|(state, n)| {
            state
                .parse::<DeploymentState>()
                .map(|s| (s, n))
                .map_err(|e| StoreError::corrupt(op, e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    counts.sort_by_key(|(state, _)| *state);
    Ok(counts)
}

/// Why `finish` changed nothing, from the deployment as it is now.
pub(crate) fn finish_refused(
    id: i64,
    worker_id: &str,
    outcome: &Outcome,
    current: Option<Deployment>,
) -> StoreError {
    match current {
        None => StoreError::not_found(format!("deployment {id}")),
        Some(d) if d.state != DeploymentState::Running => StoreError::InvalidTransition {
            id,
            from: d.state,
            to: outcome.state,
            detail: match d.state {
                DeploymentState::Queued => "it was never claimed".to_owned(),
                _ => format!(
                    "it already ended ({})",
                    d.reason.as_deref().unwrap_or("no reason recorded")
                ),
            },
        },
        Some(d) => StoreError::Conflict {
            op: format!("finish deployment {id} as {}", outcome.state),
            detail: format!(
                "its lease is held by worker {:?}, not by {worker_id:?}",
                d.worker_id.as_deref().unwrap_or("")
            ),
        },
    }
}

/// Why `fail_queued` changed nothing.
pub(crate) fn fail_queued_refused(
    id: i64,
    state: DeploymentState,
    current: Option<Deployment>,
) -> StoreError {
    match current {
        None => StoreError::not_found(format!("deployment {id}")),
        Some(d) => StoreError::InvalidTransition {
            id,
            from: d.state,
            to: state,
            detail: "only a queued deployment can end without running; \
                     a claimed one is ended by its worker"
                .to_owned(),
        },
    }
}

/// Log lines as the databases accept them: PostgreSQL refuses NUL in text, and a
/// provider that prints one must not lose its log. Allocates only when needed.
pub(crate) fn clean_line(line: &str) -> Cow<'_, str> {
    if line.contains('\0') {
        Cow::Owned(line.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(line)
    }
}

/// Bounds a page of log lines.
pub(crate) fn log_limit(limit: i64) -> i64 {
    limit.clamp(1, 10_000)
}

/// Checks that `sha` looks like a commit id before it is recorded.
pub(crate) fn validate_sha(op: &str, sha: &str) -> Result<(), StoreError> {
    if sha.len() < 7 || sha.len() > 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StoreError::InvalidInput {
            op: op.to_owned(),
            detail: format!("sha {sha:?} is not a commit id"),
        });
    }
    Ok(())
}

/// A runner record as stored (JSON text on both backends).
pub(crate) fn runner_json(op: &str, runner: &crate::Runner) -> Result<String, StoreError> {
    serde_json::to_string(runner).map_err(|e| StoreError::InvalidInput {
        op: op.to_owned(),
        detail: e.to_string(),
    })
}

/// Says which deployments a reap ended, and why: each is a deploy cut short.
pub(crate) fn log_reaped(reaped: &[Deployment]) {
    for d in reaped {
        tracing::warn!(
            id = d.id,
            app = %d.app,
            environment = %d.environment,
            worker_id = d.worker_id.as_deref().unwrap_or(""),
            "deployment errored: its worker stopped renewing the lease"
        );
    }
}

/// Reads `(id, worker_id, runner JSON)` rows; a row whose runner cannot be read is
/// skipped with a warning (it only helps a restart clean up faster).
pub(crate) fn running_on(rows: Vec<(i64, Option<String>, String)>) -> Vec<crate::RunningOn> {
    rows.into_iter()
        .filter_map(
            |(id, worker_id, runner)| match serde_json::from_str(&runner) {
                Ok(runner) => Some(crate::RunningOn {
                    id,
                    worker_id: worker_id.unwrap_or_default(),
                    runner,
                }),
                Err(e) => {
                    tracing::warn!(id, error = %e, "unreadable runner record; skipped");
                    None
                }
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_and_queries() {
        assert_eq!(
            redact_url(
                "postgres://faseng:s3cret@db.example:5432/faseng?sslmode=require&password=x"
            ),
            "postgres://faseng@db.example:5432/faseng"
        );
        assert_eq!(
            redact_url("postgresql://:only@host/db"),
            "postgresql://host/db"
        );
        assert_eq!(
            redact_url("postgres://user@host/db"),
            "postgres://user@host/db"
        );
        assert_eq!(
            redact_url("sqlite://data/faseng.db"),
            "sqlite://data/faseng.db"
        );
        assert_eq!(redact_url("sqlite:faseng.db?mode=rwc"), "sqlite:faseng.db");
    }

    #[test]
    fn leases_are_bounded() {
        assert_eq!(lease_millis("t", Duration::from_secs(2)).ok(), Some(2000));
        assert!(lease_millis("t", Duration::ZERO).is_err());
        assert!(lease_millis("t", Duration::from_secs(48 * 3600)).is_err());
    }

    #[test]
    fn every_terminal_outcome_has_a_reason() {
        let reason = outcome_reason(1, &Outcome::succeeded(0)).ok().flatten();
        assert_eq!(reason.as_deref(), Some("succeeded"));
        let failed = Outcome {
            state: DeploymentState::Failed,
            exit_code: Some(3),
            reason: None,
        };
        let reason = outcome_reason(1, &failed).ok().flatten();
        assert_eq!(reason.as_deref(), Some("failed with exit code 3"));
        let running = Outcome {
            state: DeploymentState::Running,
            exit_code: None,
            reason: None,
        };
        assert!(outcome_reason(1, &running).is_err());
    }
}
