//! The shared methods of the smaller tables (locks, webhook deliveries, the outbox,
//! auto-deploys, chat messages and routes), handed to `impl_store_with!` so that they
//! land in the same `impl Store` block as the rest (see `shared.rs`).

macro_rules! with_table_methods {
    ($store:ty, $d:ident, $lease_pool:ident) => {
        $crate::shared::impl_store_with!($store, $d, $lease_pool, {
            #[tracing::instrument(level = "debug", skip(self))]
            async fn lock_by(
                &self,
                app: &str,
                environment: &str,
                holder: &str,
                holder_id: Option<&str>,
                reason: Option<&str>,
                expires_at: Option<DateTime<Utc>>,
            ) -> Result<LockResult> {
                let op = || format!("lock {app} in {environment} for {holder}");
                common::validate_lock(&op(), app, environment, holder)?;
                for _ in 0..3 {
                    let acquired = sqlx::query_as::<_, Lock>(concat!(
                        "INSERT INTO locks (app, environment, holder, holder_id, reason, created_at, expires_at) \
                         VALUES ($1, $2, $3, $6, $4, ",
                        now_sql!($d),
                        ", $5) \
                         ON CONFLICT (app, environment) DO UPDATE \
                         SET holder = excluded.holder, holder_id = excluded.holder_id, reason = excluded.reason, \
                             expires_at = excluded.expires_at, \
                             created_at = CASE WHEN COALESCE(locks.holder_id, locks.holder) = COALESCE(excluded.holder_id, excluded.holder) \
                                                AND (locks.expires_at IS NULL OR locks.expires_at > ",
                        now_sql!($d),
                        ") THEN locks.created_at ELSE excluded.created_at END \
                         WHERE COALESCE(locks.holder_id, locks.holder) = COALESCE(excluded.holder_id, excluded.holder) \
                            OR (locks.expires_at IS NOT NULL AND locks.expires_at <= ",
                        now_sql!($d),
                        ") RETURNING ",
                        lock_columns!()
                    ))
                    .bind(app)
                    .bind(environment)
                    .bind(holder)
                    .bind(reason)
                    .bind(expires_at.map(<Self as Dialect>::ts))
                    .bind(holder_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(|e| StoreError::db(op(), e))?;
                    if let Some(lock) = acquired {
                        return Ok(LockResult::Acquired(lock));
                    }
                    if let Some(existing) = self.get_lock(app, environment).await? {
                        return Ok(LockResult::HeldBy(existing));
                    }
                    // The other lock expired or was removed in between: try again.
                }
                Err(StoreError::Conflict {
                    op: op(),
                    detail: "the lock kept changing hands; try again".to_owned(),
                })
            }

            #[tracing::instrument(level = "debug", skip(self))]
            async fn unlock(&self, app: &str, environment: &str) -> Result<Option<Lock>> {
                let op = || format!("unlock {app} in {environment}");
                let row = sqlx::query(concat!(
                    "DELETE FROM locks WHERE app = $1 AND environment = $2 RETURNING ",
                    lock_columns!(),
                    ", (expires_at IS NULL OR expires_at > ",
                    now_sql!($d),
                    ") AS in_force"
                ))
                .bind(app)
                .bind(environment)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| StoreError::db(op(), e))?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let in_force: bool = row.try_get("in_force").map_err(|e| StoreError::db(op(), e))?;
                let lock = Lock::from_row(&row).map_err(|e| StoreError::db(op(), e))?;
                Ok(in_force.then_some(lock))
            }

            #[tracing::instrument(level = "debug", skip(self))]
            async fn get_lock(&self, app: &str, environment: &str) -> Result<Option<Lock>> {
                sqlx::query_as::<_, Lock>(concat!(
                    "SELECT ",
                    lock_columns!(),
                    " FROM locks WHERE app = $1 AND environment = $2 \
                       AND (expires_at IS NULL OR expires_at > ",
                    now_sql!($d),
                    ")"
                ))
                .bind(app)
                .bind(environment)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| StoreError::db(format!("read the lock of {app} in {environment}"), e))
            }

            #[tracing::instrument(level = "debug", skip(self))]
            async fn list_locks(&self) -> Result<Vec<Lock>> {
                sqlx::query_as::<_, Lock>(concat!(
                    "SELECT ",
                    lock_columns!(),
                    " FROM locks WHERE expires_at IS NULL OR expires_at > ",
                    now_sql!($d),
                    " ORDER BY app, environment"
                ))
                .fetch_all(&self.pool)
                .await
                .map_err(|e| StoreError::db("list locks", e))
            }

            #[tracing::instrument(level = "debug", skip(self))]
            async fn record_delivery(&self, delivery_id: &str, event: &str) -> Result<bool> {
                let result = sqlx::query(concat!(
                    "INSERT INTO webhook_deliveries (delivery_id, event, received_at) VALUES ($1, $2, ",
                    now_sql!($d),
                    ") ON CONFLICT (delivery_id) DO NOTHING"
                ))
                .bind(delivery_id)
                .bind(event)
                .execute(&self.pool)
                .await
                .map_err(|e| StoreError::db(format!("record webhook delivery {delivery_id:?}"), e))?;
                Ok(result.rows_affected() == 1)
            }

            #[tracing::instrument(level = "debug", skip(self))]
            async fn take_due_outbox(&self, target: &str, limit: i64) -> Result<Vec<OutboxEntry>> {
                let mut entries = sqlx::query_as::<_, OutboxEntry>(concat!(
                    "UPDATE outbox SET due_at = ",
                    now_plus_sql!($d, "$3"),
                    " WHERE id IN ( \
                         SELECT o.id FROM outbox o \
                         WHERE o.target = $1 AND o.delivered_at IS NULL AND o.due_at <= ",
                    now_sql!($d),
                    " AND NOT EXISTS (SELECT 1 FROM outbox p \
                               WHERE p.target = o.target AND p.deployment_id = o.deployment_id \
                                 AND p.delivered_at IS NULL AND p.id < o.id) \
                         ORDER BY o.id \
                         LIMIT $2",
                    skip_locked_sql!($d),
                    ") RETURNING ",
                    outbox_columns!()
                ))
                .bind(target)
                .bind(limit.clamp(1, 1000))
                .bind(<Self as Dialect>::interval(OUTBOX_IN_FLIGHT))
                .fetch_all(&self.pool)
                .await
                .map_err(|e| StoreError::db(format!("take due outbox entries for {target}"), e))?;
                entries.sort_by_key(|e| e.id);
                Ok(entries)
            }

            #[tracing::instrument(level = "debug", skip(self))]
            async fn mark_delivered(&self, outbox_id: i64) -> Result<()> {
                let result = sqlx::query(concat!(
                    "UPDATE outbox SET delivered_at = COALESCE(delivered_at, ",
                    now_sql!($d),
                    ") WHERE id = $1"
                ))
                .bind(outbox_id)
                .execute(&self.pool)
                .await
                .map_err(|e| StoreError::db(format!("mark outbox entry {outbox_id} delivered"), e))?;
                if result.rows_affected() == 0 {
                    return Err(StoreError::not_found(format!("outbox entry {outbox_id}")));
                }
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip(self, error))]
            async fn reschedule_outbox(
                &self,
                outbox_id: i64,
                error: &str,
                retry_at: DateTime<Utc>,
            ) -> Result<()> {
                let op = || format!("reschedule outbox entry {outbox_id}");
                let result = sqlx::query(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = $2, due_at = $3 \
                     WHERE id = $1 AND delivered_at IS NULL",
                )
                .bind(outbox_id)
                .bind(error)
                .bind(<Self as Dialect>::ts(retry_at))
                .execute(&self.pool)
                .await
                .map_err(|e| StoreError::db(op(), e))?;
                if result.rows_affected() == 0 {
                    let exists: bool =
                        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM outbox WHERE id = $1)")
                            .bind(outbox_id)
                            .fetch_one(&self.pool)
                            .await
                            .map_err(|e| StoreError::db(op(), e))?;
                    if !exists {
                        return Err(StoreError::not_found(format!("outbox entry {outbox_id}")));
                    }
                }
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip(self))]
            async fn outbox_backlog(&self) -> Result<i64> {
                sqlx::query_scalar("SELECT count(*) FROM outbox WHERE delivered_at IS NULL")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| StoreError::db("count undelivered outbox entries", e))
            }

            #[tracing::instrument(level = "debug", skip(self))]
            async fn outbox_for_deployment(&self, id: i64) -> Result<Vec<OutboxEntry>> {
                sqlx::query_as::<_, OutboxEntry>(concat!(
                    "SELECT ",
                    outbox_columns!(),
                    " FROM outbox WHERE deployment_id = $1 ORDER BY id"
                ))
                .bind(id)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| StoreError::db(format!("read the outbox of deployment {id}"), e))
            }

            #[tracing::instrument(level = "debug", skip(self))]
            async fn claim_auto_deploy(
                &self,
                app: &str,
                environment: &str,
                sha: &str,
                contexts: &str,
                stale_after: Duration,
            ) -> Result<bool> {
                // One statement. PostgreSQL: a concurrent taker waits for the winner's row
                // lock, then checks the WHERE against the winner's row, whose `created_at`
                // is now. SQLite: under the write lock, the first taker resets `created_at`
                // and the others find the claim fresh. Either way exactly one wins.
                let done = sqlx::query(concat!(
                    "INSERT INTO auto_deploys (app, environment, sha, contexts, created_at) \
                     VALUES ($1, $2, $3, $4, ",
                    clock_sql!($d),
                    ") ON CONFLICT (app, environment, sha) DO UPDATE \
                     SET contexts = excluded.contexts, created_at = excluded.created_at \
                     WHERE auto_deploys.github_deployment_id IS NULL \
                       AND auto_deploys.created_at < ",
                    clock_plus_sql!($d, "$5")
                ))
                .bind(app)
                .bind(environment)
                .bind(sha)
                .bind(contexts)
                .bind(<Self as Dialect>::interval_ago(stale_after))
                .execute(&self.pool)
                .await
                .map_err(|e| {
                    StoreError::db(format!("claim the auto-deploy of {sha} to {app} {environment}"), e)
                })?;
                Ok(done.rows_affected() == 1)
            }

            #[tracing::instrument(level = "debug", skip(self))]
            async fn release_auto_deploy(&self, app: &str, environment: &str, sha: &str) -> Result<()> {
                sqlx::query(
                    "DELETE FROM auto_deploys WHERE app = $1 AND environment = $2 AND sha = $3 \
                     AND github_deployment_id IS NULL",
                )
                .bind(app)
                .bind(environment)
                .bind(sha)
                .execute(&self.pool)
                .await
                .map_err(|e| {
                    StoreError::db(format!("release the auto-deploy of {sha} to {app} {environment}"), e)
                })?;
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip(self))]
            async fn set_auto_deploy_github_id(
                &self,
                app: &str,
                environment: &str,
                sha: &str,
                id: i64,
            ) -> Result<()> {
                sqlx::query(
                    "UPDATE auto_deploys SET github_deployment_id = $4 \
                     WHERE app = $1 AND environment = $2 AND sha = $3",
                )
                .bind(app)
                .bind(environment)
                .bind(sha)
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(|e| {
                    StoreError::db(format!("record the GitHub deployment of the auto-deploy of {sha}"), e)
                })?;
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip(self))]
            async fn last_auto_deploy(&self, app: &str, environment: &str) -> Result<Option<AutoDeploy>> {
                sqlx::query_as::<_, AutoDeploy>(
                    "SELECT app, environment, sha, contexts, github_deployment_id, created_at \
                     FROM auto_deploys WHERE app = $1 AND environment = $2 \
                     ORDER BY created_at DESC LIMIT 1",
                )
                .bind(app)
                .bind(environment)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| {
                    StoreError::db(format!("read the last auto-deploy of {app} {environment}"), e)
                })
            }

            #[tracing::instrument(level = "debug", skip(self))]
            async fn pause_auto_deploy(
                &self,
                app: &str,
                environment: &str,
                by: &str,
                reason: Option<&str>,
            ) -> Result<AutoDeployPause> {
                sqlx::query(concat!(
                    "INSERT INTO auto_deploy_pauses (app, environment, paused_by, reason, created_at) \
                     VALUES ($1, $2, $3, $4, ",
                    clock_sql!($d),
                    ") ON CONFLICT (app, environment) DO UPDATE SET paused_by = excluded.paused_by, \
                     reason = excluded.reason, created_at = excluded.created_at"
                ))
                .bind(app)
                .bind(environment)
                .bind(by)
                .bind(reason)
                .execute(&self.pool)
                .await
                .map_err(|e| StoreError::db(format!("pause auto-deploy of {app} {environment}"), e))?;
                self.auto_deploy_pause(app, environment).await?.ok_or_else(|| {
                    StoreError::not_found(format!("the auto-deploy pause of {app} {environment}"))
                })
            }

            #[tracing::instrument(level = "debug", skip(self))]
            async fn resume_auto_deploy(&self, app: &str, environment: &str) -> Result<Option<AutoDeployPause>> {
                let before = self.auto_deploy_pause(app, environment).await?;
                sqlx::query("DELETE FROM auto_deploy_pauses WHERE app = $1 AND environment = $2")
                    .bind(app)
                    .bind(environment)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| StoreError::db(format!("resume auto-deploy of {app} {environment}"), e))?;
                Ok(before)
            }

            #[tracing::instrument(level = "debug", skip(self))]
            async fn auto_deploy_pause(&self, app: &str, environment: &str) -> Result<Option<AutoDeployPause>> {
                sqlx::query_as::<_, AutoDeployPause>(
                    "SELECT app, environment, paused_by, reason, created_at FROM auto_deploy_pauses \
                     WHERE app = $1 AND environment = $2",
                )
                .bind(app)
                .bind(environment)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| {
                    StoreError::db(format!("read the auto-deploy pause of {app} {environment}"), e)
                })
            }

            #[tracing::instrument(level = "debug", skip(self))]
            async fn chat_message(&self, deployment_id: i64) -> Result<Option<ChatMessage>> {
                sqlx::query_as::<_, ChatMessage>(
                    "SELECT deployment_id, channel, ts, updated_at FROM chat_messages \
                     WHERE deployment_id = $1",
                )
                .bind(deployment_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| {
                    StoreError::db(format!("read the chat message of deployment {deployment_id}"), e)
                })
            }

            #[tracing::instrument(level = "debug", skip(self))]
            async fn set_chat_message(&self, deployment_id: i64, channel: &str, ts: &str) -> Result<()> {
                let op = || format!("record the chat message of deployment {deployment_id}");
                common::validate_chat_message(&op(), channel, ts)?;
                let result = sqlx::query(concat!(
                    "INSERT INTO chat_messages (deployment_id, channel, ts, updated_at) \
                     SELECT id, $2, $3, ",
                    clock_sql!($d),
                    " FROM deployments WHERE id = $1 \
                     ON CONFLICT (deployment_id) DO UPDATE \
                     SET channel = excluded.channel, ts = excluded.ts, updated_at = excluded.updated_at"
                ))
                .bind(deployment_id)
                .bind(channel)
                .bind(ts)
                .execute(&self.pool)
                .await
                .map_err(|e| StoreError::db(op(), e))?;
                if result.rows_affected() == 0 {
                    return Err(StoreError::not_found(format!("deployment {deployment_id}")));
                }
                Ok(())
            }

            // The response url is a credential (anyone holding it can post): never traced.
            #[tracing::instrument(level = "debug", skip(self, response_url))]
            async fn set_chat_route(
                &self,
                source_key: &str,
                response_url: &str,
                expires_at: DateTime<Utc>,
                uses_left: i32,
            ) -> Result<()> {
                let op = || format!("record the chat route of {source_key}");
                common::validate_chat_route(&op(), source_key, response_url, uses_left)?;
                sqlx::query(
                    "INSERT INTO chat_routes (source_key, response_url, expires_at, uses_left) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (source_key) DO UPDATE \
                     SET response_url = excluded.response_url, expires_at = excluded.expires_at, \
                         uses_left = excluded.uses_left",
                )
                .bind(source_key)
                .bind(response_url)
                .bind(<Self as Dialect>::ts(expires_at))
                .bind(uses_left)
                .execute(&self.pool)
                .await
                .map_err(|e| StoreError::db(op(), e))?;
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip(self))]
            async fn use_chat_route(&self, source_key: &str) -> Result<Option<String>> {
                sqlx::query_scalar::<_, String>(concat!(
                    "UPDATE chat_routes SET uses_left = uses_left - 1 \
                     WHERE source_key = $1 AND uses_left > 0 AND expires_at > ",
                    clock_sql!($d),
                    " RETURNING response_url"
                ))
                .bind(source_key)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| StoreError::db(format!("use the chat route of {source_key}"), e))
            }

            #[tracing::instrument(level = "debug", skip(self))]
            async fn drop_chat_route(&self, source_key: &str) -> Result<()> {
                sqlx::query("DELETE FROM chat_routes WHERE source_key = $1")
                    .bind(source_key)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| StoreError::db(format!("drop the chat route of {source_key}"), e))?;
                Ok(())
            }

            #[tracing::instrument(level = "debug", skip(self))]
            async fn freeze(
                &self,
                app: &str,
                environment: &str,
                by: &str,
                by_id: Option<&str>,
                reason: Option<&str>,
                ends_at: DateTime<Utc>,
            ) -> Result<Freeze> {
                let op = || format!("freeze {app} in {environment} for {by}");
                common::validate_lock(&op(), app, environment, by)?;
                sqlx::query_as::<_, Freeze>(concat!(
                    "INSERT INTO freezes (app, environment, frozen_by, frozen_by_id, reason, starts_at, ends_at) \
                     VALUES ($1, $2, $3, $4, $5, ",
                    now_sql!($d),
                    ", $6) ON CONFLICT (app, environment) DO UPDATE \
                     SET frozen_by = excluded.frozen_by, frozen_by_id = excluded.frozen_by_id, \
                         reason = excluded.reason, starts_at = excluded.starts_at, ends_at = excluded.ends_at \
                     RETURNING ",
                    freeze_columns!()
                ))
                .bind(app)
                .bind(environment)
                .bind(by)
                .bind(by_id)
                .bind(reason)
                .bind(<Self as Dialect>::ts(ends_at))
                .fetch_one(&self.pool)
                .await
                .map_err(|e| StoreError::db(op(), e))
            }

            #[tracing::instrument(level = "debug", skip(self))]
            async fn unfreeze(&self, app: &str, environment: Option<&str>) -> Result<Vec<Freeze>> {
                let op = || format!("unfreeze {app} in {}", environment.unwrap_or(EVERY));
                let rows = sqlx::query(concat!(
                    "DELETE FROM freezes WHERE app = $1 AND (",
                    typed_sql!($d, "$2", "text"),
                    " IS NULL OR environment = $2) RETURNING ",
                    freeze_columns!(),
                    ", (ends_at > ",
                    now_sql!($d),
                    ") AS in_force"
                ))
                .bind(app)
                .bind(environment)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| StoreError::db(op(), e))?;
                let mut lifted = Vec::new();
                for row in rows {
                    let in_force: bool = row.try_get("in_force").map_err(|e| StoreError::db(op(), e))?;
                    if in_force {
                        lifted.push(Freeze::from_row(&row).map_err(|e| StoreError::db(op(), e))?);
                    }
                }
                lifted.sort_by(|a, b| (&a.app, &a.environment).cmp(&(&b.app, &b.environment)));
                Ok(lifted)
            }

            #[tracing::instrument(level = "debug", skip(self))]
            async fn freezes_of(&self, app: &str, environment: &str) -> Result<Vec<Freeze>> {
                sqlx::query_as::<_, Freeze>(concat!(
                    "SELECT ",
                    freeze_columns!(),
                    " FROM freezes WHERE (app = $1 OR app = '*') AND (environment = $2 OR environment = '*') \
                       AND ends_at > ",
                    now_sql!($d),
                    " ORDER BY ends_at DESC, app, environment"
                ))
                .bind(app)
                .bind(environment)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| StoreError::db(format!("read the freezes of {app} in {environment}"), e))
            }

            #[tracing::instrument(level = "debug", skip(self))]
            async fn list_freezes(&self) -> Result<Vec<Freeze>> {
                sqlx::query_as::<_, Freeze>(concat!(
                    "SELECT ",
                    freeze_columns!(),
                    " FROM freezes WHERE ends_at > ",
                    now_sql!($d),
                    " ORDER BY app, environment"
                ))
                .fetch_all(&self.pool)
                .await
                .map_err(|e| StoreError::db("list freezes", e))
            }
        });
    };
}
pub(crate) use with_table_methods;
