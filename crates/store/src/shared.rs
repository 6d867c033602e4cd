//! The [`Store`](crate::Store) implementation both backends share, written once.
//!
//! `impl_store!(Type, dialect, lease_pool: field)` writes `impl Store for Type`: every
//! method whose SQL differs between PostgreSQL and SQLite only in the fragments of
//! [`crate::dialect`] (the clock, intervals, casts, `SKIP LOCKED`) is here, built with
//! `concat!` at compile time. The backend's own module keeps what really differs, as
//! inherent methods this impl calls: `insert_deployment` (creation, with PostgreSQL's
//! ordering lock), `reap` (reaping), `write_logs` (COPY versus batched inserts), `wait`
//! (LISTEN/NOTIFY versus polling) and `shut_down`; and implements
//! [`Dialect`](crate::dialect::Dialect) for how values are bound.
//!
//! A macro, not generic code over `sqlx::Database`: each expansion is checked against
//! its own driver's concrete types, with none of the bounds that generic sqlx code needs.
//! `lease_pool` names the pool for claims, renewals, reaps and runner records (PostgreSQL
//! keeps connections apart for them; SQLite has one pool).

macro_rules! impl_store {
    ($store:ty, $d:ident, lease_pool: $lease_pool:ident) => {
        $crate::shared_tables::with_table_methods!($store, $d, $lease_pool);
    };
}
pub(crate) use impl_store;

/// The expansion of [`impl_store!`], with the methods of `shared_tables.rs` as `$more`
/// (one `impl` block, so that `#[async_trait]` sees every method).
macro_rules! impl_store_with {
    ($store:ty, $d:ident, $lease_pool:ident, { $($more:tt)* }) => {
        const _: () = {
            use std::time::Duration;

            use chrono::{DateTime, Utc};
            use sqlx::{FromRow as _, Row as _};

            use $crate::common::{
                self, CLAIM_ATTEMPTS, approval_columns, deployment_columns, freeze_columns,
                lock_columns, outbox_columns,
            };
            use $crate::dialect::{
                Dialect, clock_plus_sql, clock_sql, has_migrations_sql, json_object_sql,
                now_plus_sql, now_sql, skip_locked_sql, targets_sql, typed_sql,
            };
            use $crate::error::{StoreError, is_unique_violation};
            use $crate::model::{
                Approval, ApprovalNeed, AutoDeploy, AutoDeployPause, CancelResult, ChatMessage,
                Created, Decided, Decision, Deployment,
                DeploymentFilter, DeploymentState, EVERY, Freeze, LeaseStatus, Lock, LockResult, LogLine,
                NewDeployment, NewLogLine, OutboxEntry, Outcome, Runner, RunningOn,
            };
            use $crate::{Backend, OUTBOX_IN_FLIGHT, Result, Store};

            impl std::fmt::Debug for $store {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.debug_struct(stringify!($store))
                        .field("location", &self.location)
                        .finish_non_exhaustive()
                }
            }

            impl $store {
                /// Where this store points, without password.
                pub fn location(&self) -> &str {
                    &self.location
                }

                /// The end of `open`: connects, wraps the pool and migrates.
                async fn connect_and_migrate(
                    pool: sqlx::pool::PoolOptions<<Self as Dialect>::Db>,
                    options: <<<Self as Dialect>::Db as sqlx::Database>::Connection as sqlx::Connection>::Options,
                    location: String,
                ) -> Result<Self> {
                    let pool = pool.connect_with(options).await.map_err(|source| {
                        StoreError::Connect { location: location.clone(), source }
                    })?;
                    let mut store = Self::from_pool(pool);
                    store.location = location;
                    store.migrate().await?;
                    Ok(store)
                }

                /// `sql` (an insert of `new_deployment_columns!()`, `created_at` aside)
                /// with the fields of `new` bound as `$1` to `$14`.
                pub(crate) fn insert_query<'q>(
                    sql: &'static str,
                    new: &'q NewDeployment,
                ) -> sqlx::query::QueryAs<
                    'q,
                    <Self as Dialect>::Db,
                    Deployment,
                    <<Self as Dialect>::Db as sqlx::Database>::Arguments,
                > {
                    sqlx::query_as(sql)
                        .bind(&new.source_key)
                        .bind(new.github_deployment_id)
                        .bind(&new.requester)
                        .bind(&new.app)
                        .bind(&new.environment)
                        .bind(&new.repository)
                        .bind(&new.git_ref)
                        .bind(&new.sha)
                        .bind(&new.task)
                        .bind(&new.hosts)
                        .bind(&new.provider)
                        .bind(&new.payload)
                        .bind($crate::columns::Targets(new.notify.clone()))
                        .bind(new.timeout_secs)
                }

                /// `sql` (an insert of `new_awaiting_columns!()`, `created_at` aside):
                /// [`Self::insert_query`]'s `$1` to `$14`, then the approval `new` waits
                /// for as `$15` to `$18` (state, count, expiry, who may approve).
                pub(crate) fn insert_awaiting_query<'q>(
                    sql: &'static str,
                    new: &'q NewDeployment,
                    approval: &ApprovalNeed,
                ) -> sqlx::query::QueryAs<
                    'q,
                    <Self as Dialect>::Db,
                    Deployment,
                    <<Self as Dialect>::Db as sqlx::Database>::Arguments,
                > {
                    Self::insert_query(sql, new)
                        .bind(DeploymentState::AwaitingApproval.as_str())
                        .bind(approval.count)
                        .bind(<Self as Dialect>::ts(
                            Utc::now()
                                + chrono::Duration::from_std(approval.expires_in)
                                    .unwrap_or(chrono::Duration::hours(1)),
                        ))
                        .bind(common::approval_text(&approval.note))
                }

                /// Creates `new`, waiting for `approval` when it needs one.
                async fn create(&self, new: NewDeployment, approval: Option<ApprovalNeed>) -> Result<Created> {
                    common::validate_new(&new, approval.as_ref())?;
                    let op = format!("create deployment {:?}", new.source_key);
                    if let Some(deployment) = self.insert_deployment(&op, &new, approval.as_ref()).await? {
                        tracing::debug!(id = deployment.id, source_key = %new.source_key, state = %deployment.state, "deployment created");
                        if approval.is_none() {
                            self.work_changed();
                        }
                        return Ok(Created { deployment, already_existed: false });
                    }
                    // A conflict on the source key or on the GitHub deployment id: ON
                    // CONFLICT waited for the other insert to commit, so the existing row
                    // is visible now.
                    let existing = sqlx::query_as::<_, Deployment>(concat!(
                        "SELECT ",
                        deployment_columns!(),
                        " FROM deployments WHERE source_key = $1 OR (",
                        typed_sql!($d, "$2", "bigint"),
                        " IS NOT NULL AND github_deployment_id = $2) ORDER BY id LIMIT 1"
                    ))
                    .bind(&new.source_key)
                    .bind(new.github_deployment_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| StoreError::db(op.clone(), e))?;
                    match existing {
                        Some(deployment) => Ok(Created { deployment, already_existed: true }),
                        None => Err(StoreError::Conflict {
                            op,
                            detail: "the insert conflicted but the conflicting deployment is gone"
                                .to_owned(),
                        }),
                    }
                }

                /// Ends every deployment whose approval lapsed as `rejected` ("approval
                /// expired"), with its notifications. Looks before writing: every claim
                /// calls this, and a write that finds nothing would still queue for
                /// SQLite's single write lock.
                async fn end_expired_approvals(&self) -> Result<Vec<Deployment>> {
                    let op = "end deployments whose approval expired";
                    let any: bool = sqlx::query_scalar(concat!(
                        "SELECT EXISTS (SELECT 1 FROM deployments \
                         WHERE state = 'awaiting_approval' AND approval_expires_at < ",
                        now_sql!($d),
                        ")"
                    ))
                    .fetch_one(&self.$lease_pool)
                    .await
                    .map_err(|e| StoreError::db(op, e))?;
                    if !any {
                        return Ok(Vec::new());
                    }
                    let ended = sqlx::query_as::<_, Deployment>(concat!(
                        "UPDATE deployments SET state = 'rejected', reason = 'approval expired', finished_at = ",
                        clock_sql!($d),
                        " WHERE state = 'awaiting_approval' AND approval_expires_at < ",
                        now_sql!($d),
                        " RETURNING ",
                        deployment_columns!()
                    ))
                    .fetch_all(&self.$lease_pool)
                    .await
                    .map_err(|e| StoreError::db(op, e))?;
                    for d in &ended {
                        tracing::info!(id = d.id, app = %d.app, environment = %d.environment, "approval expired: deployment rejected");
                    }
                    Ok(ended)
                }

                /// The deployment with this id; errors name `op`.
                async fn fetch_deployment(&self, op: &str, id: i64) -> Result<Option<Deployment>> {
                    sqlx::query_as::<_, Deployment>(concat!(
                        "SELECT ",
                        deployment_columns!(),
                        " FROM deployments WHERE id = $1"
                    ))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| StoreError::db(format!("{op} (reading deployment {id})"), e))
                }

                /// Ends every running deployment whose lease has lapsed as `errored`
                /// ("worker lost"). The expiry is checked in the statement that ends the
                /// deployment, so a lease renewed after a reaper looked is never reaped.
                async fn end_lapsed_leases(&self) -> Result<Vec<Deployment>> {
                    sqlx::query_as::<_, Deployment>(concat!(
                        "UPDATE deployments \
                         SET state = 'errored', lease_expires_at = NULL, \
                             reason = 'worker lost: ' || worker_id || ' lost its lease (it stopped renewing it)', \
                             finished_at = ",
                        clock_sql!($d),
                        " WHERE state = 'running' AND lease_expires_at < ",
                        now_sql!($d),
                        " RETURNING ",
                        deployment_columns!()
                    ))
                    .fetch_all(&self.$lease_pool)
                    .await
                    .map_err(|e| StoreError::db("end deployments whose worker was lost", e))
                }
            }

            impl $store {
                /// Takes the next `count` log sequence numbers of deployment `id` in the
                /// transaction on `conn` and returns the last; locks the deployment's row
                /// until commit, so concurrent appenders get disjoint ranges.
                async fn reserve_log_seqs(
                    conn: &mut <<Self as Dialect>::Db as sqlx::Database>::Connection,
                    op: &str,
                    id: i64,
                    count: i64,
                ) -> Result<i64> {
                    let last: Option<i64> = sqlx::query_scalar($crate::common::reserve_log_seqs_sql!())
                    .bind(id)
                    .bind(count)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(|e| StoreError::db(op, e))?;
                    last.ok_or_else(|| StoreError::not_found(format!("deployment {id}")))
                }
            }

            #[async_trait::async_trait]
            impl Store for $store {
                fn backend(&self) -> Backend {
                    <Self as Dialect>::BACKEND
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn migrate(&self) -> Result<()> {
                    let op = "read the applied migrations";
                    let has_table: bool = sqlx::query_scalar(has_migrations_sql!($d))
                        .fetch_one(&self.pool)
                        .await
                        .map_err(|e| StoreError::db(op, e))?;
                    let applied_max: Option<i64> = if has_table {
                        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
                            .fetch_one(&self.pool)
                            .await
                            .map_err(|e| StoreError::db(op, e))?
                    } else {
                        None
                    };
                    common::check_not_newer(&self.location, &MIGRATOR, applied_max)?;
                    MIGRATOR.run(&self.pool).await.map_err(|source| StoreError::Migrate {
                        location: self.location.clone(),
                        source,
                    })?;
                    tracing::debug!(location = %self.location, "{} schema is up to date", <Self as Dialect>::NAME);
                    Ok(())
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn ping(&self) -> Result<()> {
                    sqlx::query("SELECT 1")
                        .execute(&self.pool)
                        .await
                        .map_err(|e| StoreError::db("ping the database", e))?;
                    Ok(())
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn close(&self) {
                    self.shut_down().await
                }

                #[tracing::instrument(
                    level = "debug",
                    skip(self, new),
                    fields(source_key = %new.source_key, app = %new.app, environment = %new.environment)
                )]
                async fn create_deployment(&self, new: NewDeployment) -> Result<Created> {
                    self.create(new, None).await
                }

                #[tracing::instrument(
                    level = "debug",
                    skip(self, new, approval),
                    fields(source_key = %new.source_key, app = %new.app, environment = %new.environment)
                )]
                async fn create_awaiting_approval(&self, new: NewDeployment, approval: ApprovalNeed) -> Result<Created> {
                    self.create(new, Some(approval)).await
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn get_deployment(&self, id: i64) -> Result<Option<Deployment>> {
                    self.fetch_deployment("get deployment", id).await
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn find_by_github_id(&self, github_deployment_id: i64) -> Result<Option<Deployment>> {
                    sqlx::query_as::<_, Deployment>(concat!(
                        "SELECT ",
                        deployment_columns!(),
                        " FROM deployments WHERE github_deployment_id = $1"
                    ))
                    .bind(github_deployment_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| {
                        StoreError::db(
                            format!("find the deployment of GitHub deployment {github_deployment_id}"),
                            e,
                        )
                    })
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn list_deployments(&self, filter: &DeploymentFilter) -> Result<Vec<Deployment>> {
                    sqlx::query_as::<_, Deployment>(concat!(
                        "SELECT ",
                        deployment_columns!(),
                        " FROM deployments WHERE (", typed_sql!($d, "$1", "text"), " IS NULL OR app = $1) \
                           AND (", typed_sql!($d, "$2", "text"), " IS NULL OR environment = $2) \
                           AND (", typed_sql!($d, "$3", "text"), " IS NULL OR state = $3) \
                           AND (", typed_sql!($d, "$4", "bigint"), " IS NULL OR id < $4) \
                         ORDER BY id DESC LIMIT $5"
                    ))
                    .bind(&filter.app)
                    .bind(&filter.environment)
                    .bind(filter.state.map(DeploymentState::as_str))
                    .bind(filter.before_id)
                    .bind(filter.effective_limit())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| StoreError::db("list deployments", e))
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn last_succeeded(
                    &self,
                    app: &str,
                    environment: &str,
                    before_id: Option<i64>,
                ) -> Result<Option<Deployment>> {
                    sqlx::query_as::<_, Deployment>(concat!(
                        "SELECT ",
                        deployment_columns!(),
                        " FROM deployments \
                         WHERE app = $1 AND environment = $2 AND state = 'succeeded' AND task = 'deploy' \
                           AND (", typed_sql!($d, "$3", "bigint"), " IS NULL OR id < $3) \
                         ORDER BY id DESC LIMIT 1"
                    ))
                    .bind(app)
                    .bind(environment)
                    .bind(before_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| {
                        StoreError::db(
                            format!("find the last succeeded deployment of {app} to {environment}"),
                            e,
                        )
                    })
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn count_active(&self) -> Result<(i64, i64)> {
                    sqlx::query_as(common::COUNT_ACTIVE)
                        .fetch_one(&self.pool)
                        .await
                        .map_err(|e| StoreError::db("count queued and running deployments", e))
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn count_by_state(&self) -> Result<Vec<(DeploymentState, i64)>> {
                    let rows: Vec<(String, i64)> =
                        sqlx::query_as("SELECT state, count(*) FROM deployments GROUP BY state")
                            .fetch_all(&self.pool)
                            .await
                            .map_err(|e| StoreError::db("count deployments by state", e))?;
                    common::states_in_order("count deployments by state", rows)
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn claim(&self, worker_id: &str, lease: Duration) -> Result<Option<Deployment>> {
                    let op = || format!("claim a deployment for worker {worker_id}");
                    let lease = <Self as Dialect>::lease(&op(), lease)?;
                    self.reap_lapsed_leases().await?;
                    self.expire_approvals().await?;
                    for _ in 0..CLAIM_ATTEMPTS {
                        // A dry run (`deploy:noop`, DRY_RUN_TASK) is claimable at once and
                        // is neither "running" nor "older queued" for the others: it
                        // changes nothing, so it takes no turn (the partial unique index
                        // leaves it out too, migration 20261213000000_dry_runs).
                        // One statement: SQLite takes the write lock before evaluating it, so the
                        // candidate cannot change under it (and the busy timeout applies);
                        // PostgreSQL skips the candidates other claimers are locking.
                        let claimed = sqlx::query_as::<_, Deployment>(concat!(
                            "UPDATE deployments \
                             SET state = 'running', worker_id = $1, started_at = ",
                            clock_sql!($d),
                            ", lease_expires_at = ",
                            clock_plus_sql!($d, "$2"),
                            " WHERE state = 'queued' AND id = ( \
                                 SELECT d.id FROM deployments d \
                                 WHERE d.state = 'queued' \
                                   AND (d.task = 'deploy:noop' OR ( \
                                   NOT EXISTS (SELECT 1 FROM deployments r \
                                       WHERE r.app = d.app AND r.environment = d.environment \
                                         AND r.state = 'running' AND r.task <> 'deploy:noop') \
                                   AND NOT EXISTS (SELECT 1 FROM deployments o \
                                       WHERE o.app = d.app AND o.environment = d.environment \
                                         AND o.state = 'queued' AND o.id < d.id \
                                         AND o.task <> 'deploy:noop'))) \
                                 ORDER BY d.id \
                                 LIMIT 1",
                            skip_locked_sql!($d),
                            ") RETURNING ",
                            deployment_columns!()
                        ))
                        .bind(worker_id)
                        .bind(&lease)
                        .fetch_optional(&self.$lease_pool)
                        .await;
                        match claimed {
                            Ok(Some(deployment)) => {
                                tracing::debug!(id = deployment.id, worker_id, "deployment claimed");
                                return Ok(Some(deployment));
                            }
                            Ok(None) => return Ok(None),
                            // Another claimer started a deployment of the same environment
                            // between our snapshot and our update: the index refused ours.
                            // (Not with SQLite's one writer, but the index is the authority:
                            // a refused claim is a lost race, not an error.) Look again.
                            Err(e) if is_unique_violation(&e) => {
                                tracing::debug!(worker_id, "claim lost a race; retrying");
                            }
                            Err(e) => return Err(StoreError::db(op(), e)),
                        }
                    }
                    Ok(None)
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn renew_lease(&self, id: i64, worker_id: &str, lease: Duration) -> Result<LeaseStatus> {
                    let op = || format!("renew the lease of deployment {id} for worker {worker_id}");
                    let lease = <Self as Dialect>::lease(&op(), lease)?;
                    self.reap_lapsed_leases().await?;
                    let renewed: Option<Option<String>> = sqlx::query_scalar(concat!(
                        "UPDATE deployments SET lease_expires_at = ",
                        clock_plus_sql!($d, "$3"),
                        " WHERE id = $1 AND state = 'running' AND worker_id = $2 \
                           AND lease_expires_at >= ",
                        now_sql!($d),
                        " RETURNING cancel_requested_by"
                    ))
                    .bind(id)
                    .bind(worker_id)
                    .bind(&lease)
                    .fetch_optional(&self.$lease_pool)
                    .await
                    .map_err(|e| StoreError::db(op(), e))?;
                    if let Some(cancel_requested_by) = renewed {
                        return Ok(LeaseStatus { held: true, cancel_requested_by });
                    }
                    match self.fetch_deployment(&op(), id).await? {
                        None => Err(StoreError::not_found(format!("deployment {id}"))),
                        Some(d) => Ok(LeaseStatus {
                            held: false,
                            cancel_requested_by: d.cancel_requested_by,
                        }),
                    }
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn record_sha(&self, id: i64, worker_id: &str, sha: &str) -> Result<()> {
                    let op = || format!("record the sha of deployment {id}");
                    common::validate_sha(&op(), sha)?;
                    let updated = sqlx::query(
                        "UPDATE deployments SET sha = $3 \
                         WHERE id = $1 AND state = 'running' AND worker_id = $2 AND (sha IS NULL OR sha = $3)",
                    )
                    .bind(id)
                    .bind(worker_id)
                    .bind(sha)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| StoreError::db(op(), e))?;
                    if updated.rows_affected() == 1 {
                        Ok(())
                    } else {
                        Err(StoreError::Conflict {
                            op: op(),
                            detail: format!(
                                "deployment {id} is not running under worker {worker_id}, or has another sha"
                            ),
                        })
                    }
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn finish(&self, id: i64, worker_id: &str, outcome: Outcome) -> Result<Deployment> {
                    let op = || format!("finish deployment {id} as {}", outcome.state);
                    let reason = common::outcome_reason(id, &outcome)?;
                    let finished = sqlx::query_as::<_, Deployment>(concat!(
                        "UPDATE deployments \
                         SET state = $3, exit_code = $4, lease_expires_at = NULL, \
                             reason = COALESCE($5, 'cancelled by ' || cancel_requested_by, 'cancelled'), \
                             finished_at = ",
                        clock_sql!($d),
                        " WHERE id = $1 AND state = 'running' AND worker_id = $2 RETURNING ",
                        deployment_columns!()
                    ))
                    .bind(id)
                    .bind(worker_id)
                    .bind(outcome.state.as_str())
                    .bind(outcome.exit_code)
                    .bind(reason)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| StoreError::db(op(), e))?;
                    if let Some(deployment) = finished {
                        tracing::debug!(id, state = %deployment.state, "deployment finished");
                        self.work_changed();
                        return Ok(deployment);
                    }
                    let current = self.fetch_deployment(&op(), id).await?;
                    Err(common::finish_refused(id, worker_id, &outcome, current))
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn fail_queued(&self, id: i64, state: DeploymentState, reason: &str) -> Result<Deployment> {
                    common::check_fail_queued_state(id, state)?;
                    let op = || format!("end queued deployment {id} as {state}");
                    let ended = sqlx::query_as::<_, Deployment>(concat!(
                        "UPDATE deployments SET state = $2, reason = $3, finished_at = ",
                        clock_sql!($d),
                        " WHERE id = $1 AND state = 'queued' RETURNING ",
                        deployment_columns!()
                    ))
                    .bind(id)
                    .bind(state.as_str())
                    .bind(reason)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| StoreError::db(op(), e))?;
                    match ended {
                        Some(deployment) => {
                            // The next deployment of its environment may be claimable now.
                            self.work_changed();
                            Ok(deployment)
                        }
                        None => Err(common::fail_queued_refused(
                            id,
                            state,
                            self.fetch_deployment(&op(), id).await?,
                        )),
                    }
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn request_cancel(&self, id: i64, by: &str) -> Result<CancelResult> {
                    let op = || format!("cancel deployment {id} for {by}");
                    // A deployment only moves forward (queued -> running -> terminal), so at
                    // most one of these rounds misses because of a concurrent change.
                    for _ in 0..3 {
                        let cancelled = sqlx::query_as::<_, Deployment>(concat!(
                            "UPDATE deployments \
                             SET state = 'cancelled', cancel_requested_by = $2, \
                                 reason = 'cancelled by ' || $2, finished_at = ",
                            clock_sql!($d),
                            " WHERE id = $1 AND state IN ('queued', 'awaiting_approval') RETURNING ",
                            deployment_columns!()
                        ))
                        .bind(id)
                        .bind(by)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| StoreError::db(op(), e))?;
                        if let Some(deployment) = cancelled {
                            self.work_changed();
                            return Ok(CancelResult::Cancelled(deployment));
                        }
                        let requested = sqlx::query_as::<_, Deployment>(concat!(
                            "UPDATE deployments SET cancel_requested_by = COALESCE(cancel_requested_by, $2) \
                             WHERE id = $1 AND state = 'running' RETURNING ",
                            deployment_columns!()
                        ))
                        .bind(id)
                        .bind(by)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| StoreError::db(op(), e))?;
                        if let Some(deployment) = requested {
                            return Ok(CancelResult::Requested(deployment));
                        }
                        match self.fetch_deployment(&op(), id).await? {
                            None => return Err(StoreError::not_found(format!("deployment {id}"))),
                            Some(d) if d.state.is_terminal() => {
                                return Ok(CancelResult::AlreadyFinished(d));
                            }
                            Some(_) => continue,
                        }
                    }
                    Err(StoreError::Conflict {
                        op: op(),
                        detail: "the deployment kept changing state; try again".to_owned(),
                    })
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn reap_lapsed_leases(&self) -> Result<Vec<Deployment>> {
                    let reaped = self.reap().await?;
                    common::log_reaped(&reaped);
                    if !reaped.is_empty() {
                        self.work_changed();
                    }
                    Ok(reaped)
                }

                #[tracing::instrument(level = "debug", skip(self, runner))]
                async fn record_runner(&self, id: i64, worker_id: &str, runner: &Runner) -> Result<()> {
                    let op = || format!("record where deployment {id} runs");
                    let json = common::runner_json(&op(), runner)?;
                    sqlx::query(
                        "UPDATE deployments SET runner = $3 WHERE id = $1 AND state = 'running' AND worker_id = $2",
                    )
                    .bind(id)
                    .bind(worker_id)
                    .bind(json)
                    .execute(&self.$lease_pool)
                    .await
                    .map_err(|e| StoreError::db(op(), e))?;
                    Ok(())
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn running_runners(&self) -> Result<Vec<RunningOn>> {
                    let rows: Vec<(i64, Option<String>, String)> = sqlx::query_as(
                        "SELECT id, worker_id, runner FROM deployments \
                         WHERE state = 'running' AND runner IS NOT NULL ORDER BY id",
                    )
                    .fetch_all(&self.$lease_pool)
                    .await
                    .map_err(|e| StoreError::db("list where running deployments run", e))?;
                    Ok(common::running_on(rows))
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn wait_for_work(&self, timeout: Duration) -> Result<()> {
                    self.wait(timeout).await
                }

                #[tracing::instrument(level = "debug", skip(self, lines), fields(lines = lines.len()))]
                async fn append_logs(&self, id: i64, lines: &[NewLogLine]) -> Result<i64> {
                    if lines.is_empty() {
                        return self.log_count(id).await;
                    }
                    self.write_logs(id, lines).await
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn read_logs(&self, id: i64, after_seq: i64, limit: i64) -> Result<Vec<LogLine>> {
                    let op = || format!("read the log of deployment {id}");
                    let lines = sqlx::query_as::<_, LogLine>(
                        "SELECT deployment_id, seq, stream, line, at FROM deployment_logs \
                         WHERE deployment_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                    )
                    .bind(id)
                    .bind(after_seq)
                    .bind(common::log_limit(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| StoreError::db(op(), e))?;
                    if lines.is_empty() && self.fetch_deployment(&op(), id).await?.is_none() {
                        return Err(StoreError::not_found(format!("deployment {id}")));
                    }
                    Ok(lines)
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn log_count(&self, id: i64) -> Result<i64> {
                    let count: Option<i64> =
                        sqlx::query_scalar("SELECT log_seq FROM deployments WHERE id = $1")
                            .bind(id)
                            .fetch_optional(&self.pool)
                            .await
                            .map_err(|e| StoreError::db(format!("count the log lines of deployment {id}"), e))?;
                    count.ok_or_else(|| StoreError::not_found(format!("deployment {id}")))
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn expire_approvals(&self) -> Result<Vec<Deployment>> {
                    let ended = self.end_expired_approvals().await?;
                    if !ended.is_empty() {
                        self.work_changed();
                    }
                    Ok(ended)
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn approvals(&self, id: i64) -> Result<Vec<Approval>> {
                    sqlx::query_as::<_, Approval>(concat!(
                        "SELECT ",
                        approval_columns!(),
                        " FROM approvals WHERE deployment_id = $1 ORDER BY at, approver_key"
                    ))
                    .bind(id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| StoreError::db(format!("read the approvals of deployment {id}"), e))
                }

                #[tracing::instrument(level = "debug", skip(self, reason))]
                async fn decide_approval(
                    &self,
                    id: i64,
                    approver_key: &str,
                    approver: &str,
                    decision: Decision,
                    reason: Option<&str>,
                ) -> Result<Decided> {
                    let op = || format!("record {approver}'s {} of deployment {id}", decision.as_str());
                    if approver_key.trim().is_empty() || approver.trim().is_empty() {
                        return Err(StoreError::InvalidInput {
                            op: op(),
                            detail: "the approver's key and name must not be empty".to_owned(),
                        });
                    }
                    let approver = common::approval_text(approver);
                    let reason = reason
                        .map(common::approval_text)
                        .filter(|r| !r.trim().is_empty());
                    let mut tx = self.pool.begin().await.map_err(|e| StoreError::db(op(), e))?;
                    // A write first: it takes the row (PostgreSQL) or the database's write
                    // lock (SQLite) before anything is read, so that two approvers deciding
                    // at once are one after the other, and the second sees the first.
                    let current = sqlx::query_as::<_, Deployment>(concat!(
                        "UPDATE deployments SET log_seq = log_seq WHERE id = $1 RETURNING ",
                        deployment_columns!()
                    ))
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| StoreError::db(op(), e))?;
                    let Some(current) = current else {
                        return Err(StoreError::not_found(format!("deployment {id}")));
                    };
                    if current.state != DeploymentState::AwaitingApproval {
                        tx.commit().await.map_err(|e| StoreError::db(op(), e))?;
                        return Ok(Decided::NotAwaiting { deployment: current });
                    }
                    let expired = sqlx::query_as::<_, Deployment>(concat!(
                        "UPDATE deployments SET state = 'rejected', reason = 'approval expired', finished_at = ",
                        clock_sql!($d),
                        " WHERE id = $1 AND state = 'awaiting_approval' AND approval_expires_at < ",
                        now_sql!($d),
                        " RETURNING ",
                        deployment_columns!()
                    ))
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| StoreError::db(op(), e))?;
                    if let Some(deployment) = expired {
                        tx.commit().await.map_err(|e| StoreError::db(op(), e))?;
                        self.work_changed();
                        return Ok(Decided::NotAwaiting { deployment });
                    }
                    let earlier = sqlx::query_as::<_, Approval>(concat!(
                        "SELECT ",
                        approval_columns!(),
                        " FROM approvals WHERE deployment_id = $1 AND approver_key = $2"
                    ))
                    .bind(id)
                    .bind(approver_key)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| StoreError::db(op(), e))?;
                    if let Some(earlier) = earlier {
                        tx.commit().await.map_err(|e| StoreError::db(op(), e))?;
                        return Ok(Decided::AlreadyDecided { deployment: current, earlier });
                    }
                    sqlx::query(concat!(
                        "INSERT INTO approvals (",
                        approval_columns!(),
                        ") VALUES ($1, $2, $3, $4, $5, ",
                        clock_sql!($d),
                        ")"
                    ))
                    .bind(id)
                    .bind(approver_key)
                    .bind(&approver)
                    .bind(decision.as_str())
                    .bind(&reason)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| StoreError::db(op(), e))?;
                    let approvals = sqlx::query_as::<_, Approval>(concat!(
                        "SELECT ",
                        approval_columns!(),
                        " FROM approvals WHERE deployment_id = $1 ORDER BY at, approver_key"
                    ))
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(|e| StoreError::db(op(), e))?;
                    let approvers: Vec<&str> = approvals
                        .iter()
                        .filter(|a| a.decision == Decision::Approve)
                        .map(|a| a.approver.as_str())
                        .collect();
                    let needed = usize::try_from(current.approvals_needed.unwrap_or(1).max(1)).unwrap_or(1);
                    let (new_state, new_reason) = match decision {
                        Decision::Reject => (
                            Some(DeploymentState::Rejected),
                            match &reason {
                                Some(r) => format!("rejected by {approver}: {r}"),
                                None => format!("rejected by {approver}"),
                            },
                        ),
                        Decision::Approve if approvers.len() >= needed => (
                            Some(DeploymentState::Queued),
                            format!("approved by {}", approvers.join(", ")),
                        ),
                        Decision::Approve => (
                            None,
                            format!(
                                "approved by {} ({} of {needed})",
                                approvers.join(", "),
                                approvers.len()
                            ),
                        ),
                    };
                    let new_reason = common::approval_text(&new_reason);
                    let decided = match new_state {
                        Some(state) => {
                            // The trigger writes the state change's outbox events.
                            let deployment = sqlx::query_as::<_, Deployment>(concat!(
                                "UPDATE deployments SET state = $2, reason = $3, finished_at = CASE WHEN $2 = 'rejected' THEN ",
                                clock_sql!($d),
                                " ELSE NULL END WHERE id = $1 RETURNING ",
                                deployment_columns!()
                            ))
                            .bind(id)
                            .bind(state.as_str())
                            .bind(&new_reason)
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(|e| StoreError::db(op(), e))?;
                            if state == DeploymentState::Rejected {
                                Decided::Rejected { deployment }
                            } else {
                                Decided::Approved { deployment, approvals }
                            }
                        }
                        None => {
                            // Not a state change, so no trigger: the chat hears of it here,
                            // in the same transaction.
                            sqlx::query(concat!(
                                "INSERT INTO outbox (deployment_id, target, event, payload, created_at, due_at) \
                                 SELECT d.id, t.value, d.state, ",
                                json_object_sql!($d),
                                "'state', d.state, 'reason', $2, 'exit_code', NULL, 'approved_by', $3), ",
                                clock_sql!($d),
                                ", ",
                                clock_sql!($d),
                                " FROM deployments d, ",
                                targets_sql!($d),
                                " WHERE d.id = $1 AND t.value = 'chat'"
                            ))
                            .bind(id)
                            .bind(&new_reason)
                            .bind(&approver)
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| StoreError::db(op(), e))?;
                            Decided::Recorded { deployment: current, approvals }
                        }
                    };
                    tx.commit().await.map_err(|e| StoreError::db(op(), e))?;
                    if matches!(decided, Decided::Approved { .. } | Decided::Rejected { .. }) {
                        self.work_changed();
                    }
                    Ok(decided)
                }

                $($more)*
            }
        };
    };
}
pub(crate) use impl_store_with;
